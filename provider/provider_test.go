package provider

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// These tests drive the provider's queues' syncs and its PodLifecycleHandler against the lab (lab_test.go).

func TestCreateDelegate(t *testing.T) {
	h := newHarness(t)
	proxy := h.bind(h.newProxy("web-1"))
	if err := h.sync(proxy); err != nil {
		t.Fatal(err)
	}
	d := h.workloadPod(h.ns, "web-1")
	if d == nil {
		t.Fatal("no delegate")
	}
	// The workload scheduler may have placed it on a kwok node already; never on the virtual node.
	if d.Labels[LabelParentUID] != string(proxy.UID) || d.Labels[LabelManagement] != "mgmt-1" || d.Labels[LabelNode] != h.node || d.Spec.NodeName == h.node {
		t.Errorf("delegate labels %v, nodeName %q", d.Labels, d.Spec.NodeName)
	}
	ns, err := h.workload.CoreV1().Namespaces().Get(h.ctx, h.ns, metav1.GetOptions{})
	if err != nil || ns.Labels[LabelManagement] != "mgmt-1" || ns.Labels["pod-security.kubernetes.io/enforce"] != "baseline" {
		t.Errorf("namespace %v, %v", ns, err)
	}
	sa, err := h.workload.CoreV1().ServiceAccounts(h.ns).Get(h.ctx, "web", metav1.GetOptions{})
	if err != nil || sa.Labels[LabelManagement] != "mgmt-1" {
		t.Errorf("service account %v, %v", sa, err)
	}
}

func TestCreateAdoptsOwnDelegate(t *testing.T) {
	h := newHarness(t)
	proxy := h.bind(h.newProxy("web-1"))
	existing := h.createDelegate(proxy, func(d *corev1.Pod) { d.Labels["app"] = "old" })
	if err := h.sync(proxy); err != nil {
		t.Fatal(err)
	}
	if d := h.workloadPod(h.ns, "web-1"); d == nil || d.UID != existing.UID || d.Labels["app"] != "web" {
		t.Errorf("delegate not adopted and updated: %v", d)
	}
}

func TestNameConflictLeavesForeignPodAlone(t *testing.T) {
	for name, labels := range map[string]func(proxy *corev1.Pod) map[string]string{
		"unlabelled": func(*corev1.Pod) map[string]string { return nil },
		"another node's": func(proxy *corev1.Pod) map[string]string {
			return map[string]string{LabelParentUID: string(proxy.UID), LabelManagement: "mgmt-1", LabelNode: "eu-west-3-0"}
		},
		"another manager's": func(proxy *corev1.Pod) map[string]string {
			return map[string]string{LabelParentUID: string(proxy.UID), LabelManagement: "mgmt-2", LabelNode: proxy.Spec.NodeName}
		},
	} {
		t.Run(name, func(t *testing.T) {
			h := newHarness(t)
			proxy := h.bind(h.newProxy("web-1"))
			foreign := h.createForeignPod("web-1", labels(proxy))
			err := h.sync(proxy)
			if err == nil {
				t.Error("a conflict should be retried")
			}
			if !apierrors.IsAlreadyExists(err) {
				t.Errorf("the error does not keep the workload apiserver's AlreadyExists: %#v", err)
			}
			// Nothing else changes the foreign pod (no scheduler serves it): any write by flotilla would
			// show in its resourceVersion.
			if now := h.workloadPod(h.ns, "web-1"); now == nil || now.UID != foreign.UID || now.ResourceVersion != foreign.ResourceVersion {
				t.Errorf("the foreign pod was touched: %v", now)
			}
			h.expectEvent("web-1", ReasonNameConflict, "does not own")
			if s := h.status(proxy); s.Reason != ReasonNameConflict {
				t.Errorf("proxy status %+v", s)
			}
		})
	}
}

func TestStaleDelegateIsReplaced(t *testing.T) {
	h := newHarness(t)
	proxy := h.bind(h.newProxy("web-1"))
	h.createDelegate(proxy, func(d *corev1.Pod) {
		d.Labels[LabelParentUID] = string(otherUID())
		// Unscheduled: kwok, which deletes a node's pods by name, would take the new delegate for the old.
		d.Spec.SchedulerName = "nobody"
	})
	if err := h.sync(proxy); err == nil {
		t.Error("should wait for the stale delegate to go")
	}
	if d := h.workloadPod(h.ns, "web-1"); d != nil {
		t.Fatalf("stale delegate still there: %v", d.Labels)
	}
	if err := h.sync(proxy); err != nil {
		t.Fatal(err)
	}
	if d := h.workloadPod(h.ns, "web-1"); d == nil || d.Labels[LabelParentUID] != string(proxy.UID) {
		t.Errorf("no new delegate: %v", d)
	}
}

// TestRefusalIsRetriedAndShown: a ResourceQuota of the workload namespace forbids the delegate.
func TestRefusalIsRetriedAndShown(t *testing.T) {
	h := newHarness(t)
	h.setUpWorkloadNamespace()
	quota := &corev1.ResourceQuota{
		ObjectMeta: metav1.ObjectMeta{Name: "no-pods", Namespace: h.ns},
		Spec:       corev1.ResourceQuotaSpec{Hard: corev1.ResourceList{corev1.ResourcePods: resource.MustParse("0")}},
	}
	if _, err := h.workload.CoreV1().ResourceQuotas(h.ns).Create(h.ctx, quota, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// Until the quota controller has counted the namespace, admission refuses with "status unknown".
	h.poll("the quota counted", func() (bool, error) {
		q, err := h.workload.CoreV1().ResourceQuotas(h.ns).Get(h.ctx, quota.Name, metav1.GetOptions{})
		return err == nil && q.Status.Hard != nil, err
	})

	p := h.newProxy("web-1")
	p.Spec.RestartPolicy = corev1.RestartPolicyNever
	proxy := h.bind(p)
	// The pod controller's own error handling would fail a restartPolicy: Never pod for good.
	if err := h.p.CreatePod(h.ctx, proxy); err != nil {
		t.Fatalf("CreatePod returned %v", err)
	}
	if err := h.sync(proxy); err == nil {
		t.Error("a refusal should be retried")
	}
	h.expectEvent("web-1", ReasonRefused, "exceeded quota")
	s := h.status(proxy)
	if s.Phase != corev1.PodPending || s.Reason != ReasonRefused || !strings.Contains(s.Message, "exceeded quota") {
		t.Errorf("proxy status %+v", s)
	}
	if h.workloadPod(h.ns, "web-1") != nil {
		t.Fatal("a delegate exists despite the quota")
	}

	if err := h.workload.CoreV1().ResourceQuotas(h.ns).Delete(h.ctx, quota.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	// The apiserver's quota admission notices the deletion shortly.
	var last error
	h.poll("a sync to succeed once the quota is gone", func() (bool, error) {
		last = h.sync(proxy)
		return last == nil, nil
	})
	if h.p.problemOf(h.ns+"/web-1") != nil {
		t.Error("problem not cleared")
	}
	if h.workloadPod(h.ns, "web-1") == nil {
		t.Error("no delegate once the quota is gone")
	}
}

func TestStatusIsReportedOnlyWhenItChanges(t *testing.T) {
	h := newHarness(t)
	proxy := h.bind(h.newProxy("web-1"))
	d := h.running(h.createDelegate(proxy, nil))
	s := h.status(proxy)
	if s.Phase != corev1.PodRunning || s.PodIP != d.Status.PodIP || s.HostIP != "10.0.0.7" {
		t.Fatalf("proxy status %+v", s)
	}
	// The pod controller writes it; the management apiserver stores it as it stores it.
	h.setProxyStatus(proxy, s)
	if err := h.p.syncStatus(h.ctx, h.ns+"/web-1"); err != nil {
		t.Fatal(err)
	}
	select {
	case pod := <-h.notified:
		t.Errorf("notified again: %+v", pod.Status)
	default:
	}
}

func TestUpdateReachesDelegate(t *testing.T) {
	h := newHarness(t)
	proxy := h.bind(h.newProxy("web-1"))
	h.createDelegate(proxy, nil)
	// Someone changes the proxy: a label, and the image (which Kubernetes lets change on a live pod).
	updated, err := h.mgmt.CoreV1().Pods(h.ns).Get(h.ctx, "web-1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	updated.Labels["version"] = "2"
	updated.Spec.Containers[0].Image = "nginx:2"
	if updated, err = h.mgmt.CoreV1().Pods(h.ns).Update(h.ctx, updated, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	proxy = h.cached(updated, func(p *corev1.Pod) bool { return p.ResourceVersion == updated.ResourceVersion })
	if err := h.p.UpdatePod(h.ctx, proxy); err != nil {
		t.Fatal(err)
	}
	if err := h.sync(proxy); err != nil {
		t.Fatal(err)
	}
	d := h.workloadPod(h.ns, "web-1")
	if d.Labels["version"] != "2" || d.Spec.Containers[0].Image != "nginx:2" {
		t.Errorf("delegate labels %v image %q", d.Labels, d.Spec.Containers[0].Image)
	}
}

func TestDeletePod(t *testing.T) {
	tests := []struct {
		name string
		// setUp makes the workload pod of the proxy's name and returns it and the pod to hand DeletePod.
		setUp     func(h *harness, proxy *corev1.Pod) (workload, pod *corev1.Pod)
		wantGrace *int64 // nil: the workload pod must not be deleted
	}{
		{
			name: "a terminating proxy's delegate gets its grace period",
			setUp: func(h *harness, proxy *corev1.Pod) (*corev1.Pod, *corev1.Pod) {
				// Bound to a kwok node: the apiserver deletes an unscheduled pod at once, whatever the grace.
				d := h.running(h.createDelegate(proxy, nil))
				// No kubelet confirms the deletion: the proxy stays Terminating.
				if err := h.mgmt.CoreV1().Pods(h.ns).Delete(h.ctx, proxy.Name, metav1.DeleteOptions{GracePeriodSeconds: new(int64(30))}); err != nil {
					h.t.Fatal(err)
				}
				return d, h.cached(proxy, func(p *corev1.Pod) bool { return p.DeletionTimestamp != nil })
			},
			wantGrace: new(int64(30)),
		},
		{
			name: "a proxy gone from the API (force delete) leaves no grace period",
			setUp: func(h *harness, proxy *corev1.Pod) (*corev1.Pod, *corev1.Pod) {
				d := h.running(h.createDelegate(proxy, nil))
				if err := h.mgmt.CoreV1().Pods(h.ns).Delete(h.ctx, proxy.Name, metav1.DeleteOptions{GracePeriodSeconds: new(int64(0))}); err != nil {
					h.t.Fatal(err)
				}
				h.gone(proxy)
				// The pod controller hands DeletePod what GetPod describes.
				view, err := h.p.GetPod(h.ctx, h.ns, proxy.Name)
				if err != nil {
					h.t.Fatal(err)
				}
				return d, view
			},
			wantGrace: new(int64(0)),
		},
		{
			name: "another pod's delegate is not deleted",
			setUp: func(h *harness, proxy *corev1.Pod) (*corev1.Pod, *corev1.Pod) {
				return h.createDelegate(proxy, func(d *corev1.Pod) { d.Labels[LabelParentUID] = string(otherUID()) }), proxy
			},
		},
		{
			name: "a foreign pod is not deleted",
			setUp: func(h *harness, proxy *corev1.Pod) (*corev1.Pod, *corev1.Pod) {
				return h.createForeignPod(proxy.Name, nil), proxy
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			proxy := h.bind(h.newProxy("web-1"))
			d, pod := tt.setUp(h, proxy)
			deletion := h.deletionOf(d)
			if err := h.p.DeletePod(h.ctx, pod); err != nil {
				t.Fatal(err)
			}
			if tt.wantGrace == nil {
				// DeletePod is synchronous: a deletion would show at once.
				if now := h.workloadPod(h.ns, d.Name); now == nil || now.UID != d.UID || now.DeletionTimestamp != nil {
					t.Errorf("deleted: %v", now)
				}
				return
			}
			if got := deletion(); got == nil || *got != *tt.wantGrace {
				t.Errorf("delegate deleted with grace period %v, want %d", got, *tt.wantGrace)
			}
		})
	}
}

// TestDeletionsSpareNewerPodsOfTheSameName: flotilla deletes exactly the pod it decided on; a pod that took
// its name meanwhile stays (UID preconditions).
func TestDeletionsSpareNewerPodsOfTheSameName(t *testing.T) {
	h := newHarness(t)
	proxy := h.bind(h.newProxy("web-1"))
	// No scheduler serves these delegates, so no kwok node (which deletes by name) is involved.
	unscheduled := func(d *corev1.Pod) { d.Spec.SchedulerName = "nobody" }
	d := h.createDelegate(proxy, unscheduled)
	if err := h.workload.CoreV1().Pods(h.ns).Delete(h.ctx, d.Name, metav1.DeleteOptions{GracePeriodSeconds: new(int64(0))}); err != nil {
		t.Fatal(err)
	}
	newer := h.createDelegate(proxy, unscheduled)
	if err := h.p.deleteDelegate(h.ctx, d, new(int64(0))); err != nil {
		t.Fatal(err)
	}
	if now := h.workloadPod(h.ns, d.Name); now == nil || now.UID != newer.UID || now.DeletionTimestamp != nil {
		t.Errorf("the newer delegate was deleted: %v", now)
	}

	if err := h.mgmt.CoreV1().Pods(h.ns).Delete(h.ctx, proxy.Name, metav1.DeleteOptions{GracePeriodSeconds: new(int64(0))}); err != nil {
		t.Fatal(err)
	}
	h.gone(proxy)
	newerProxy := h.bind(h.newProxy("web-1"))
	if err := h.p.deleteProxy(h.ctx, proxy); err != nil {
		t.Fatal(err)
	}
	if h.managementPod(newerProxy) == nil {
		t.Error("the newer proxy was deleted")
	}
}

func TestLostDelegateEndsProxy(t *testing.T) {
	started := metav1.NewTime(time.Now().Add(-time.Minute).Truncate(time.Second))
	running := func(h *harness, proxy *corev1.Pod) *corev1.Pod {
		return h.setProxyStatus(proxy, corev1.PodStatus{Phase: corev1.PodRunning, StartTime: &started, QOSClass: proxy.Status.QOSClass,
			ContainerStatuses: []corev1.ContainerStatus{{Name: "app", Image: "nginx:1", State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: started}}}}})
	}
	t.Run("controlled proxy is deleted for its controller to replace", func(t *testing.T) {
		h := newHarness(t)
		proxy := running(h, h.controlledProxy())
		if err := h.sync(proxy); err != nil {
			t.Fatal(err)
		}
		h.expectEvent(proxy.Name, ReasonDeletedInWorkloadCluster, "eu-west-3-1")
		// Deleted at once: nothing (no kubelet) would confirm a graceful deletion.
		if p := h.managementPod(proxy); p != nil {
			t.Errorf("proxy not deleted: deletionTimestamp %v", p.DeletionTimestamp)
		}
		if h.workloadPod(h.ns, proxy.Name) != nil {
			t.Error("the lost delegate was recreated")
		}
	})
	t.Run("bare proxy stays, Failed", func(t *testing.T) {
		h := newHarness(t)
		proxy := running(h, h.bind(h.newProxy("web-1")))
		if err := h.sync(proxy); err != nil {
			t.Fatal(err)
		}
		if p := h.managementPod(proxy); p == nil || p.DeletionTimestamp != nil {
			t.Errorf("bare proxy deleted: %v", p)
		}
		if s := h.status(proxy); s.Phase != corev1.PodFailed || s.Reason != ReasonDeletedInWorkloadCluster {
			t.Errorf("proxy status %+v", s)
		}
		if h.workloadPod(h.ns, proxy.Name) != nil {
			t.Error("the lost delegate was recreated")
		}
	})
}

func TestTerminatingProxyIsRemovedOnceDelegateIsGone(t *testing.T) {
	h := newHarness(t)
	proxy := h.bind(h.newProxy("web-1"))
	if err := h.mgmt.CoreV1().Pods(h.ns).Delete(h.ctx, proxy.Name, metav1.DeleteOptions{GracePeriodSeconds: new(int64(30))}); err != nil {
		t.Fatal(err)
	}
	proxy = h.cached(proxy, func(p *corev1.Pod) bool { return p.DeletionTimestamp != nil })
	if err := h.sync(proxy); err != nil {
		t.Fatal(err)
	}
	if p := h.managementPod(proxy); p != nil {
		t.Errorf("terminating proxy kept: %v", p.DeletionTimestamp)
	}
}

func TestDelegateOfVanishedProxyIsDeleted(t *testing.T) {
	h := newHarness(t)
	proxy := h.bind(h.newProxy("web-1"))
	h.createDelegate(proxy, nil)
	if err := h.mgmt.CoreV1().Pods(h.ns).Delete(h.ctx, proxy.Name, metav1.DeleteOptions{GracePeriodSeconds: new(int64(0))}); err != nil {
		t.Fatal(err)
	}
	h.gone(proxy)
	if err := h.sync(proxy); err != nil {
		t.Fatal(err)
	}
	if h.workloadPod(h.ns, "web-1") != nil {
		t.Error("delegate of a deleted proxy kept")
	}
}

func TestDelegateIsKeptWhileProxyIsOnlyMissingFromCache(t *testing.T) {
	h := newHarness(t, unsyncedProxies) // the pod controller's cache has not synced yet
	proxy := h.bind(h.newProxy("web-1"))
	h.createDelegate(proxy, nil)
	if err := h.sync(proxy); err != nil {
		t.Fatal(err)
	}
	if h.workloadPod(h.ns, "web-1") == nil {
		t.Error("delegate deleted on the word of an unsynced cache")
	}
}

func TestCollectOrphans(t *testing.T) {
	h := newHarness(t)
	kept := h.bind(h.newProxy("kept"))
	stale := h.bind(h.newProxy("stale"))
	h.createDelegate(kept, nil)
	h.createDelegate(stale, func(d *corev1.Pod) { d.Labels[LabelParentUID] = string(otherUID()) }) // an earlier pod's
	orphan := h.newProxy("orphan")
	orphan.UID = otherUID() // never created: its proxy is gone
	h.createDelegate(orphan, nil)
	h.createForeignPod("foreign", nil)
	h.p.collectOrphans(h.ctx)
	for name, want := range map[string]bool{"kept": true, "orphan": false, "stale": false, "foreign": true} {
		if got := h.workloadPod(h.ns, name) != nil; got != want {
			t.Errorf("%s exists = %v, want %v", name, got, want)
		}
	}
}

func TestGetPods(t *testing.T) {
	h := newHarness(t)
	proxy := h.bind(h.newProxy("web-1"))
	h.createDelegate(proxy, nil)
	h.createForeignPod("foreign", nil)
	pods, err := h.p.GetPods(h.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(pods) != 1 || pods[0].Name != "web-1" || pods[0].UID != proxy.UID || pods[0].Spec.NodeName != h.node {
		t.Errorf("GetPods = %v", pods)
	}
	if _, err := h.p.GetPod(h.ctx, h.ns, "foreign"); err == nil {
		t.Error("GetPod answered for a foreign pod")
	}
}

// TestRun drives the whole loop through the informers: a proxy handed to CreatePod gets a delegate, the
// delegate's status (kwok runs it) reaches the pod controller's callback, and losing the delegate ends the
// proxy.
func TestRun(t *testing.T) {
	h := newHarness(t)
	ctx, cancel := context.WithCancel(h.ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- h.p.Run(ctx) }()

	proxy := h.controlledProxy()
	if err := h.p.CreatePod(ctx, proxy); err != nil {
		t.Fatal(err)
	}
	h.poll("the delegate", func() (bool, error) { return h.workloadPod(h.ns, proxy.Name) != nil, nil })
	d := h.running(h.workloadPod(h.ns, proxy.Name))

	var got *corev1.Pod
	h.poll("a Running status notified", func() (bool, error) {
		for {
			select {
			case got = <-h.notified:
				if got.Status.Phase == corev1.PodRunning {
					return true, nil
				}
			default:
				return false, nil
			}
		}
	})
	if got.Status.PodIP != d.Status.PodIP || got.Status.HostIP != "10.0.0.7" || got.UID != proxy.UID || got.Labels["app"] != "web" {
		t.Errorf("notified %+v", got)
	}

	// The pod controller writes the status; then someone deletes the delegate in the workload cluster.
	h.setProxyStatus(proxy, got.Status)
	if err := h.workload.CoreV1().Pods(h.ns).Delete(ctx, d.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	h.poll("the proxy deleted", func() (bool, error) { return h.managementPod(proxy) == nil, nil })

	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestResyncChecksEveryProxy: nothing but a delegate event or the pod controller makes the provider look at
// a proxy, so a deletion that failed while the workload cluster was away would wait for its backoff. Resync,
// called when the cluster answers again, looks at every proxy at once.
func TestResyncChecksEveryProxy(t *testing.T) {
	h := newHarness(t)
	proxy := h.bind(h.newProxy("web-1"))
	d := h.createDelegate(proxy, nil)
	ctx, cancel := context.WithCancel(h.ctx)
	defer cancel()
	go func() { _ = h.p.Run(ctx) }()
	h.poll("the delegate cache synced", func() (bool, error) { return h.p.informer.HasSynced(), nil })

	if err := h.mgmt.CoreV1().Pods(h.ns).Delete(h.ctx, proxy.Name, metav1.DeleteOptions{GracePeriodSeconds: new(int64(30))}); err != nil {
		t.Fatal(err)
	}
	h.cached(proxy, func(p *corev1.Pod) bool { return p.DeletionTimestamp != nil })
	time.Sleep(time.Second) // time for anything else that would delete the delegate (nothing should)
	if got := h.workloadPod(h.ns, d.Name); got == nil || got.DeletionTimestamp != nil {
		t.Fatal("the delegate was deleted before Resync: this test would not show that Resync works")
	}

	h.p.Resync()
	h.poll("the terminating proxy's delegate deleted", func() (bool, error) {
		got := h.workloadPod(h.ns, d.Name)
		return got == nil || got.DeletionTimestamp != nil, nil
	})
}
