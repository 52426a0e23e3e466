package provider

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	corev1listers "k8s.io/client-go/listers/core/v1"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
)

// These tests drive the provider against fake clientsets: the management side is a pod lister standing in
// for virtual-kubelet's plus a fake client, the workload side a fake client.

type harness struct {
	t        *testing.T
	p        *Provider
	mgmt     *fake.Clientset
	workload *fake.Clientset
	proxies  cache.Indexer
	events   *record.FakeRecorder
	notified chan *corev1.Pod
}

func newHarness(t *testing.T, workloadObjects ...runtime.Object) *harness {
	t.Helper()
	h := &harness{
		t:        t,
		mgmt:     fake.NewClientset(),
		workload: fake.NewClientset(workloadObjects...),
		proxies:  cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc}),
		events:   record.NewFakeRecorder(100),
		notified: make(chan *corev1.Pod, 100),
	}
	p, err := New(Config{
		NodeName: "eu-west-3-1", ClusterName: "eu-west-3-1", ManagementID: "mgmt-1",
		Management: h.mgmt, Workload: h.workload,
		ManagementPods: corev1listers.NewPodLister(h.proxies),
		EventRecorder:  h.events,
		HostIP:         "10.0.0.7",
	})
	if err != nil {
		t.Fatal(err)
	}
	p.NotifyPods(context.Background(), func(pod *corev1.Pod) { h.notified <- pod })
	h.p = p
	return h
}

// bind makes a proxy exist in the management cluster, bound to the virtual node.
func (h *harness) bind(pod *corev1.Pod) {
	h.t.Helper()
	pod.Spec.NodeName = "eu-west-3-1"
	if err := h.proxies.Add(pod); err != nil {
		h.t.Fatal(err)
	}
	if _, err := h.mgmt.CoreV1().Pods(pod.Namespace).Create(context.Background(), pod, metav1.CreateOptions{}); err != nil {
		h.t.Fatal(err)
	}
}

// unbind removes a proxy from the management cluster.
func (h *harness) unbind(pod *corev1.Pod) {
	h.t.Helper()
	if err := h.proxies.Delete(pod); err != nil {
		h.t.Fatal(err)
	}
	if err := h.mgmt.CoreV1().Pods(pod.Namespace).Delete(context.Background(), pod.Name, metav1.DeleteOptions{}); err != nil {
		h.t.Fatal(err)
	}
}

func (h *harness) sync(pod *corev1.Pod) error {
	return h.p.syncDelegate(context.Background(), pod.Namespace+"/"+pod.Name)
}

// workloadPod is the workload pod of the given name, nil if there is none.
func (h *harness) workloadPod(namespace, name string) *corev1.Pod {
	h.t.Helper()
	pod, err := h.workload.CoreV1().Pods(namespace).Get(context.Background(), name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		h.t.Fatal(err)
	}
	return pod
}

// expectEvent fails unless an Event with the given reason and message part was recorded.
func (h *harness) expectEvent(reason, part string) {
	h.t.Helper()
	for {
		select {
		case e := <-h.events.Events:
			if strings.Contains(e, " "+reason+" ") && strings.Contains(e, part) {
				return
			}
		default:
			h.t.Fatalf("no %s event containing %q", reason, part)
		}
	}
}

// deletions are the delete actions a fake clientset received.
func deletions(c *fake.Clientset) []k8stesting.DeleteActionImpl {
	var ds []k8stesting.DeleteActionImpl
	for _, a := range c.Actions() {
		if d, ok := a.(k8stesting.DeleteActionImpl); ok && a.GetResource().Resource == "pods" {
			ds = append(ds, d)
		}
	}
	return ds
}

func newProxy() *corev1.Pod {
	p := proxyPod()
	p.ResourceVersion, p.ManagedFields = "", nil
	p.Status = corev1.PodStatus{Phase: corev1.PodPending, QOSClass: corev1.PodQOSBestEffort}
	return p
}

// ownDelegate is what flotilla created for the proxy earlier.
func ownDelegate(proxy *corev1.Pod) *corev1.Pod {
	d := buildDelegate(proxy, testOwner, false)
	d.UID = "delegate-uid"
	return d
}

func TestCreateDelegate(t *testing.T) {
	h := newHarness(t)
	proxy := newProxy()
	h.bind(proxy)
	if err := h.sync(proxy); err != nil {
		t.Fatal(err)
	}
	d := h.workloadPod("shop", "web-1")
	if d == nil {
		t.Fatal("no delegate")
	}
	if d.Labels[LabelParentUID] != "proxy-uid" || d.Labels[LabelManagement] != "mgmt-1" || d.Labels[LabelNode] != "eu-west-3-1" || d.Spec.NodeName != "" {
		t.Errorf("delegate labels %v, nodeName %q", d.Labels, d.Spec.NodeName)
	}
	ns, err := h.workload.CoreV1().Namespaces().Get(context.Background(), "shop", metav1.GetOptions{})
	if err != nil || ns.Labels[LabelManagement] != "mgmt-1" || ns.Labels[LabelNode] != "eu-west-3-1" {
		t.Errorf("namespace %v, %v", ns, err)
	}
	sa, err := h.workload.CoreV1().ServiceAccounts("shop").Get(context.Background(), "web", metav1.GetOptions{})
	if err != nil || sa.Labels[LabelManagement] != "mgmt-1" {
		t.Errorf("service account %v, %v", sa, err)
	}
	h.expectEvent(ReasonDelegated, "workload cluster eu-west-3-1")
}

func TestCreateAdoptsOwnDelegate(t *testing.T) {
	proxy := newProxy()
	existing := ownDelegate(proxy)
	existing.Labels["app"] = "old"
	h := newHarness(t, existing)
	h.bind(proxy)
	if err := h.sync(proxy); err != nil {
		t.Fatal(err)
	}
	if d := h.workloadPod("shop", "web-1"); d == nil || d.UID != "delegate-uid" || d.Labels["app"] != "web" {
		t.Errorf("delegate not adopted and updated: %v", d)
	}
}

func TestNameConflictLeavesForeignPodAlone(t *testing.T) {
	for name, labels := range map[string]map[string]string{
		"unlabelled":        nil,
		"another node's":    {LabelParentUID: "proxy-uid", LabelManagement: "mgmt-1", LabelNode: "eu-west-3-0"},
		"another manager's": {LabelParentUID: "proxy-uid", LabelManagement: "mgmt-2", LabelNode: "eu-west-3-1"},
	} {
		t.Run(name, func(t *testing.T) {
			foreign := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web-1", UID: "foreign", Labels: labels},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "x", Image: "theirs"}}}}
			h := newHarness(t, foreign)
			proxy := newProxy()
			h.bind(proxy)
			if err := h.sync(proxy); err == nil {
				t.Error("a conflict should be retried")
			}
			for _, a := range h.workload.Actions() {
				if a.GetResource().Resource == "pods" && (a.GetVerb() == "update" || a.GetVerb() == "delete" || a.GetVerb() == "patch") {
					t.Errorf("the foreign pod was touched: %v", a)
				}
			}
			h.expectEvent(ReasonNameConflict, "does not own")
			if s := h.status(proxy); s.Reason != ReasonNameConflict {
				t.Errorf("proxy status %+v", s)
			}
		})
	}
}

// status runs the status queue's sync for the proxy and returns what it notified (the proxy's own status if
// nothing).
func (h *harness) status(proxy *corev1.Pod) corev1.PodStatus {
	h.t.Helper()
	if err := h.p.syncStatus(context.Background(), proxy.Namespace+"/"+proxy.Name); err != nil {
		h.t.Fatal(err)
	}
	select {
	case pod := <-h.notified:
		return pod.Status
	default:
		return proxy.Status
	}
}

func TestStaleDelegateIsReplaced(t *testing.T) {
	proxy := newProxy()
	stale := ownDelegate(proxy)
	stale.Labels[LabelParentUID] = "earlier-uid"
	h := newHarness(t, stale)
	h.bind(proxy)
	if err := h.sync(proxy); err == nil {
		t.Error("should wait for the stale delegate to go")
	}
	if d := h.workloadPod("shop", "web-1"); d != nil {
		t.Fatalf("stale delegate still there: %v", d.Labels)
	}
	if err := h.sync(proxy); err != nil {
		t.Fatal(err)
	}
	if d := h.workloadPod("shop", "web-1"); d == nil || d.Labels[LabelParentUID] != "proxy-uid" {
		t.Errorf("no new delegate: %v", d)
	}
}

func TestRefusalIsRetriedAndShown(t *testing.T) {
	h := newHarness(t)
	refuse := true
	h.workload.PrependReactor("create", "pods", func(k8stesting.Action) (bool, runtime.Object, error) {
		if refuse {
			return true, nil, apierrors.NewForbidden(schema.GroupResource{Resource: "pods"}, "web-1",
				errorString("exceeded quota: q, requested: pods=1, used: pods=0, limited: pods=0"))
		}
		return false, nil, nil
	})
	proxy := newProxy()
	proxy.Spec.RestartPolicy = corev1.RestartPolicyNever
	h.bind(proxy)
	// The pod controller's own error handling would fail a restartPolicy: Never pod for good.
	if err := h.p.CreatePod(context.Background(), proxy); err != nil {
		t.Fatalf("CreatePod returned %v", err)
	}
	if err := h.sync(proxy); err == nil {
		t.Error("a refusal should be retried")
	}
	h.expectEvent(ReasonRefused, "exceeded quota")
	s := h.status(proxy)
	if s.Phase != corev1.PodPending || s.Reason != ReasonRefused || !strings.Contains(s.Message, "exceeded quota") {
		t.Errorf("proxy status %+v", s)
	}
	refuse = false
	if err := h.sync(proxy); err != nil {
		t.Fatal(err)
	}
	if h.p.problemOf("shop/web-1") != nil {
		t.Error("problem not cleared")
	}
}

type errorString string

func (e errorString) Error() string { return string(e) }

func TestStatusIsReportedOnlyWhenItChanges(t *testing.T) {
	proxy := newProxy()
	d := ownDelegate(proxy)
	d.Status = corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "10.244.0.9"}
	h := newHarness(t, d)
	h.bind(proxy)
	s := h.status(proxy)
	if s.Phase != corev1.PodRunning || s.PodIP != "10.244.0.9" || s.HostIP != "10.0.0.7" {
		t.Fatalf("proxy status %+v", s)
	}
	written := proxy.DeepCopy()
	written.Status = s
	if err := h.proxies.Update(written); err != nil {
		t.Fatal(err)
	}
	if err := h.p.syncStatus(context.Background(), "shop/web-1"); err != nil {
		t.Fatal(err)
	}
	select {
	case pod := <-h.notified:
		t.Errorf("notified again: %+v", pod.Status)
	default:
	}
}

func TestUpdateReachesDelegate(t *testing.T) {
	proxy := newProxy()
	h := newHarness(t, ownDelegate(proxy))
	proxy.Labels["version"] = "2"
	proxy.Spec.Containers[0].Image = "nginx:2"
	h.bind(proxy)
	if err := h.p.UpdatePod(context.Background(), proxy); err != nil {
		t.Fatal(err)
	}
	if err := h.sync(proxy); err != nil {
		t.Fatal(err)
	}
	d := h.workloadPod("shop", "web-1")
	if d.Labels["version"] != "2" || d.Spec.Containers[0].Image != "nginx:2" {
		t.Errorf("delegate labels %v image %q", d.Labels, d.Spec.Containers[0].Image)
	}
}

func TestDeletePod(t *testing.T) {
	proxy := newProxy()
	tests := []struct {
		name      string
		delegate  *corev1.Pod
		pod       func() *corev1.Pod
		wantGrace *int64 // nil: the delegate must not be deleted
	}{
		{
			name:     "a terminating proxy's delegate gets its grace period",
			delegate: ownDelegate(proxy),
			pod: func() *corev1.Pod {
				p := proxy.DeepCopy()
				p.DeletionTimestamp, p.DeletionGracePeriodSeconds = &metav1.Time{Time: time.Now()}, new(int64(30))
				return p
			},
			wantGrace: new(int64(30)),
		},
		{
			name:     "a proxy gone from the API (force delete) leaves no grace period",
			delegate: ownDelegate(proxy),
			pod: func() *corev1.Pod {
				view := proxyView(ownDelegate(proxy), "eu-west-3-1", "")
				return view
			},
			wantGrace: new(int64(0)),
		},
		{
			name: "another pod's delegate is not deleted",
			delegate: func() *corev1.Pod {
				d := ownDelegate(proxy)
				d.Labels[LabelParentUID] = "later-uid"
				return d
			}(),
			pod: proxy.DeepCopy,
		},
		{
			name:     "a foreign pod is not deleted",
			delegate: &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web-1", UID: "foreign"}},
			pod:      proxy.DeepCopy,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, tt.delegate)
			if err := h.p.DeletePod(context.Background(), tt.pod()); err != nil {
				t.Fatal(err)
			}
			ds := deletions(h.workload)
			if tt.wantGrace == nil {
				if len(ds) > 0 {
					t.Errorf("deleted: %v", ds)
				}
				return
			}
			if len(ds) != 1 {
				t.Fatalf("want one deletion, got %v", ds)
			}
			o := ds[0].DeleteOptions
			if o.GracePeriodSeconds == nil || *o.GracePeriodSeconds != *tt.wantGrace || o.Preconditions == nil || *o.Preconditions.UID != tt.delegate.UID {
				t.Errorf("delete options %+v", o)
			}
		})
	}
}

func TestLostDelegateEndsProxy(t *testing.T) {
	started := metav1.NewTime(time.Now().Add(-time.Minute).Truncate(time.Second))
	running := func(controlled bool) *corev1.Pod {
		p := newProxy()
		p.Status = corev1.PodStatus{Phase: corev1.PodRunning, StartTime: &started, QOSClass: corev1.PodQOSBestEffort,
			ContainerStatuses: []corev1.ContainerStatus{{Name: "app", State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: started}}}}}
		if !controlled {
			p.OwnerReferences = nil
		}
		return p
	}
	t.Run("controlled proxy is deleted for its controller to replace", func(t *testing.T) {
		h := newHarness(t)
		proxy := running(true)
		h.bind(proxy)
		if err := h.sync(proxy); err != nil {
			t.Fatal(err)
		}
		h.expectEvent(ReasonDeletedInWorkloadCluster, "eu-west-3-1")
		ds := deletions(h.mgmt)
		if len(ds) != 1 || *ds[0].DeleteOptions.GracePeriodSeconds != 0 || *ds[0].DeleteOptions.Preconditions.UID != "proxy-uid" {
			t.Errorf("proxy deletions %+v", ds)
		}
		if h.workloadPod("shop", "web-1") != nil {
			t.Error("the lost delegate was recreated")
		}
	})
	t.Run("bare proxy stays, Failed", func(t *testing.T) {
		h := newHarness(t)
		proxy := running(false)
		h.bind(proxy)
		if err := h.sync(proxy); err != nil {
			t.Fatal(err)
		}
		if ds := deletions(h.mgmt); len(ds) > 0 {
			t.Errorf("bare proxy deleted: %v", ds)
		}
		if s := h.status(proxy); s.Phase != corev1.PodFailed || s.Reason != ReasonDeletedInWorkloadCluster {
			t.Errorf("proxy status %+v", s)
		}
	})
}

func TestTerminatingProxyIsRemovedOnceDelegateIsGone(t *testing.T) {
	h := newHarness(t)
	proxy := newProxy()
	proxy.DeletionTimestamp, proxy.DeletionGracePeriodSeconds = &metav1.Time{Time: time.Now()}, new(int64(30))
	h.bind(proxy)
	if err := h.sync(proxy); err != nil {
		t.Fatal(err)
	}
	ds := deletions(h.mgmt)
	if len(ds) != 1 || *ds[0].DeleteOptions.GracePeriodSeconds != 0 || *ds[0].DeleteOptions.Preconditions.UID != "proxy-uid" {
		t.Errorf("proxy deletions %+v", ds)
	}
}

func TestDelegateOfVanishedProxyIsDeleted(t *testing.T) {
	proxy := newProxy()
	h := newHarness(t, ownDelegate(proxy))
	h.bind(proxy)
	h.unbind(proxy)
	if err := h.sync(proxy); err != nil {
		t.Fatal(err)
	}
	if h.workloadPod("shop", "web-1") != nil {
		t.Error("delegate of a deleted proxy kept")
	}
}

func TestDelegateIsKeptWhileProxyIsOnlyMissingFromCache(t *testing.T) {
	proxy := newProxy()
	h := newHarness(t, ownDelegate(proxy))
	h.bind(proxy)
	if err := h.proxies.Delete(proxy); err != nil { // the pod controller's cache has not synced yet
		t.Fatal(err)
	}
	if err := h.sync(proxy); err != nil {
		t.Fatal(err)
	}
	if h.workloadPod("shop", "web-1") == nil {
		t.Error("delegate deleted on the word of an unsynced cache")
	}
}

func TestCollectOrphans(t *testing.T) {
	named := func(name string, parent types.UID) *corev1.Pod {
		p := newProxy()
		p.Name, p.UID = name, parent
		return p
	}
	kept, orphan, stale := named("kept", "kept-uid"), named("orphan", "orphan-uid"), named("stale", "stale-uid")
	foreign := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "foreign", UID: "foreign-uid"}}
	h := newHarness(t, ownDelegate(kept), ownDelegate(orphan), ownDelegate(stale), foreign)
	h.bind(kept)
	h.bind(named("stale", "newer-uid"))
	h.p.collectOrphans(context.Background())
	for name, want := range map[string]bool{"kept": true, "orphan": false, "stale": false, "foreign": true} {
		if got := h.workloadPod("shop", name) != nil; got != want {
			t.Errorf("%s exists = %v, want %v", name, got, want)
		}
	}
}

func TestGetPods(t *testing.T) {
	proxy := newProxy()
	foreign := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "foreign", UID: "foreign-uid"}}
	h := newHarness(t, ownDelegate(proxy), foreign)
	pods, err := h.p.GetPods(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(pods) != 1 || pods[0].Name != "web-1" || pods[0].UID != "proxy-uid" || pods[0].Spec.NodeName != "eu-west-3-1" {
		t.Errorf("GetPods = %v", pods)
	}
	if _, err := h.p.GetPod(context.Background(), "shop", "foreign"); err == nil {
		t.Error("GetPod answered for a foreign pod")
	}
}

// TestRun drives the whole loop through the informer: a proxy handed to CreatePod gets a delegate, the
// delegate's status reaches the pod controller's callback, and losing the delegate ends the proxy.
func TestRun(t *testing.T) {
	h := newHarness(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error)
	go func() { done <- h.p.Run(ctx) }()

	proxy := newProxy()
	h.bind(proxy)
	if err := h.p.CreatePod(ctx, proxy); err != nil {
		t.Fatal(err)
	}
	var d *corev1.Pod
	eventually(t, func() bool { d = h.workloadPod("shop", "web-1"); return d != nil })

	started := metav1.NewTime(time.Now().Truncate(time.Second))
	d.Status = corev1.PodStatus{Phase: corev1.PodRunning, StartTime: &started, PodIP: "10.244.0.9",
		ContainerStatuses: []corev1.ContainerStatus{{Name: "app", Ready: true, State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: started}}}}}
	if _, err := h.workload.CoreV1().Pods("shop").UpdateStatus(ctx, d, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	var got *corev1.Pod
	eventually(t, func() bool {
		select {
		case got = <-h.notified:
			return got.Status.Phase == corev1.PodRunning
		default:
			return false
		}
	})
	if got.Status.PodIP != "10.244.0.9" || got.Status.HostIP != "10.0.0.7" || got.UID != "proxy-uid" || got.Labels["app"] != "web" {
		t.Errorf("notified %+v", got)
	}

	// The pod controller writes the status; then someone deletes the delegate in the workload cluster.
	written := proxy.DeepCopy() // the cached proxy is shared with the workers: replace it, do not modify it
	written.Status = got.Status
	if err := h.proxies.Update(written); err != nil {
		t.Fatal(err)
	}
	if err := h.workload.CoreV1().Pods("shop").Delete(ctx, "web-1", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, func() bool { return len(deletions(h.mgmt)) == 1 })

	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func eventually(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 5s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
