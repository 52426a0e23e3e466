package provider

import (
	"context"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/virtual-kubelet/virtual-kubelet/node/nodeutil"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"
	corev1listers "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/retry"

	flotillanode "github.com/flotilla-io/flotilla/node"
	"github.com/flotilla-io/flotilla/tenancy"
	"github.com/flotilla-io/flotilla/test/lab"
)

// These tests drive the provider against the real apiservers of a lab (a management cluster and one
// workload cluster with kwok nodes, no flotilla process): the provider runs in-process with flotilla's own
// identities, bound only to deploy/charts/flotilla/files/rbac, so a permission missing there fails a test. The lab's admin
// clients only set up and inspect. Each test has a virtual node and a namespace of its own.

// shared is the lab of this test binary.
var shared *lab.Lab

// workloadName is the lab's one workload cluster; the tests' virtual nodes all stand for it.
const workloadName = "eu-west-3-1"

// limit bounds every wait for an eventual condition; generous, for a busy machine.
const limit = 30 * time.Second

// managementID is the management cluster's identity the tests' providers use.
const managementID = "mgmt-1"

func TestMain(m *testing.M) {
	os.Exit(lab.RunWithLab(m, lab.Options{
		Workloads: []lab.WorkloadSpec{lab.Workload(workloadName, "eu-west-3")},
	}, func(l *lab.Lab) { shared = l }))
}

type harness struct {
	t   *testing.T
	ctx context.Context
	p   *Provider
	// node is the test's virtual node; ns its namespace, in both clusters.
	node, ns string
	// mgmt and workload are admin clients, for setup and inspection only.
	mgmt, workload kubernetes.Interface
	// flotillaMgmt is flotilla's identity in the management cluster, for what the pod controller would do.
	flotillaMgmt kubernetes.Interface
	proxies      corev1listers.PodLister
	// namespaces is the provider's cache of management namespaces, as cmd/flotilla wires it.
	namespaces corev1listers.NamespaceLister
	notified   chan *corev1.Pod

	// tenancyReads counts the provider's GETs of single workload namespaces and ServiceAccounts.
	tenancyReads atomic.Int64

	workloadNamespace bool // created by setup
	cacheRunning      bool // the provider's management pod cache runs
	// lost is what the provider's Config.ClusterLost answers.
	lost atomic.Bool
}

type harnessOption func(*harnessOptions)

type harnessOptions struct{ unsyncedProxies bool }

// unsyncedProxies gives the provider a management pod cache that has not synced (is empty), as
// virtual-kubelet's is right after a start.
func unsyncedProxies(o *harnessOptions) { o.unsyncedProxies = true }

func newHarness(t *testing.T, options ...harnessOption) *harness {
	t.Helper()
	var o harnessOptions
	for _, opt := range options {
		opt(&o)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	w := shared.Workload(workloadName)
	h := &harness{
		t: t, ctx: ctx,
		node: lab.UniqueName("vn", ""), ns: lab.UniqueName("shop", t.Name()),
		mgmt: shared.Management.Client, workload: w.Client,
		notified: make(chan *corev1.Pod, 1000),
	}
	h.flotillaMgmt = flotillaClient(t, shared.Management.FlotillaKubeconfig)
	flotillaWorkload := flotillaClient(t, w.FlotillaKubeconfig, func(rt http.RoundTripper) http.RoundTripper {
		return countReads{&h.tenancyReads, rt}
	})
	// The workload tenancy cache, as cmd/flotilla wires it.
	tenancyCache := tenancy.NewWorkloadCache(flotillaWorkload, managementID)
	tenancyCache.Start(ctx.Done())
	t.Cleanup(func() {
		cancel()
		tenancyCache.Shutdown()
	})

	lab.Namespace(t, h.mgmt, h.ns)
	t.Cleanup(func() { lab.DeleteNamespace(h.workload, h.ns) }) // flotilla, or setup, creates it there
	if _, err := h.mgmt.CoreV1().ServiceAccounts(h.ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "web"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	lab.StandInNode(t, h.mgmt, h.node, flotillanode.Labels(h.node, workloadName), []corev1.Taint{flotillanode.Taint()})

	events := record.NewBroadcaster()
	events.StartRecordingToSink(&corev1client.EventSinkImpl{Interface: h.flotillaMgmt.CoreV1().Events(metav1.NamespaceAll)})
	recorder := events.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "flotilla", Host: h.node})

	// As cmd/flotilla wires it: virtual-kubelet's informer of the pods bound to the node.
	factory := informers.NewSharedInformerFactoryWithOptions(h.flotillaMgmt, 0, nodeutil.PodInformerFilter(h.node))
	pods := factory.Core().V1().Pods()
	pods.Informer()
	h.proxies = pods.Lister()
	t.Cleanup(func() {
		cancel()
		factory.Shutdown()
		events.Shutdown()
	})
	if h.cacheRunning = !o.unsyncedProxies; h.cacheRunning {
		factory.Start(ctx.Done())
		if !cache.WaitForCacheSync(ctx.Done(), pods.Informer().HasSynced) {
			t.Fatal("the management pod cache did not sync")
		}
	}
	// The management namespaces (the opt-in label), cached cluster-wide; it holds the test's namespace, made
	// above, once synced.
	nsFactory := informers.NewSharedInformerFactory(h.flotillaMgmt, 0)
	namespaces := nsFactory.Core().V1().Namespaces()
	namespaces.Informer()
	h.namespaces = namespaces.Lister()
	nsFactory.Start(ctx.Done())
	t.Cleanup(func() {
		cancel() // Shutdown waits for the informers, which stop with ctx
		nsFactory.Shutdown()
	})
	if !cache.WaitForCacheSync(ctx.Done(), namespaces.Informer().HasSynced) {
		t.Fatal("the management namespace cache did not sync")
	}

	p, err := New(Config{
		NodeName: h.node, ClusterName: workloadName, ManagementID: managementID,
		Management: h.flotillaMgmt, Workload: flotillaWorkload,
		ManagementPods: h.proxies,
		Namespaces: &tenancy.Namespaces{
			Workload: flotillaWorkload, Management: h.namespaces, ManagementID: managementID, Level: tenancy.DefaultLevel,
			Cache: tenancyCache,
		},
		EventRecorder: recorder,
		HostIP:        "10.0.0.7",
		ClusterLost:   h.lost.Load,
	})
	if err != nil {
		t.Fatal(err)
	}
	p.NotifyPods(ctx, func(pod *corev1.Pod) {
		select {
		case h.notified <- pod:
		default:
		}
	})
	h.p = p
	return h
}

// flotillaClient is a client with flotilla's own identity from the lab; wrap, if given, wraps its transport.
func flotillaClient(t *testing.T, kubeconfig string, wrap ...func(http.RoundTripper) http.RoundTripper) kubernetes.Interface {
	t.Helper()
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	cfg.QPS, cfg.Burst = 100, 200
	for _, w := range wrap {
		cfg.Wrap(w)
	}
	c, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// countReads counts GETs of one namespace or ServiceAccount (not lists, not watches).
type countReads struct {
	reads *atomic.Int64
	next  http.RoundTripper
}

func (c countReads) RoundTrip(req *http.Request) (*http.Response, error) {
	parts := strings.Split(strings.Trim(req.URL.Path, "/"), "/") // api v1 [namespaces NS] RESOURCE NAME
	if req.Method == http.MethodGet && req.URL.Query().Get("watch") == "" && len(parts) >= 4 &&
		(parts[len(parts)-2] == "namespaces" || parts[len(parts)-2] == "serviceaccounts") {
		c.reads.Add(1)
	}
	return c.next.RoundTrip(req)
}

// newProxy is a pod for the test's namespace, not created yet.
func (h *harness) newProxy(name string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: h.ns, Name: name, Labels: map[string]string{"app": "web"}, Annotations: map[string]string{"note": "hi"}},
		Spec: corev1.PodSpec{
			ServiceAccountName: "web",
			Containers:         []corev1.Container{{Name: "app", Image: "nginx:1"}},
			Tolerations:        []corev1.Toleration{{Key: flotillanode.TaintKey, Operator: corev1.TolerationOpExists}},
		},
	}
}

// bind creates the pod in the management cluster, bound to the virtual node, and returns it once the
// provider's cache holds it (at once when that cache is not running).
func (h *harness) bind(pod *corev1.Pod) *corev1.Pod {
	h.t.Helper()
	pod.Spec.NodeName = h.node
	created, err := h.mgmt.CoreV1().Pods(pod.Namespace).Create(h.ctx, pod, metav1.CreateOptions{})
	if err != nil {
		h.t.Fatal(err)
	}
	if pod := h.cached(created, func(p *corev1.Pod) bool { return p.UID == created.UID }); pod != nil {
		return pod
	}
	return created
}

// cached waits until the provider's cache holds the proxy in a state cond accepts and returns it; nil when
// the test's cache does not run.
func (h *harness) cached(proxy *corev1.Pod, cond func(*corev1.Pod) bool) *corev1.Pod {
	h.t.Helper()
	if !h.cacheRunning {
		return nil
	}
	var got *corev1.Pod
	h.poll("the proxy "+proxy.Name+" in the provider's cache", func() (bool, error) {
		p, err := h.proxies.Pods(proxy.Namespace).Get(proxy.Name)
		if err == nil && cond(p) {
			got = p
			return true, nil
		}
		return false, nil
	})
	return got
}

// gone waits until the provider's cache no longer holds the proxy.
func (h *harness) gone(proxy *corev1.Pod) {
	h.t.Helper()
	h.poll("the proxy "+proxy.Name+" gone from the provider's cache", func() (bool, error) {
		p, err := h.proxies.Pods(proxy.Namespace).Get(proxy.Name)
		return apierrors.IsNotFound(err) || (err == nil && p.UID != proxy.UID), nil
	})
}

// setProxyStatus writes a proxy's status as virtual-kubelet's pod controller does, with flotilla's
// identity, and returns the proxy once the provider's cache has it.
func (h *harness) setProxyStatus(proxy *corev1.Pod, status corev1.PodStatus) *corev1.Pod {
	h.t.Helper()
	var written *corev1.Pod
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		live, err := h.flotillaMgmt.CoreV1().Pods(proxy.Namespace).Get(h.ctx, proxy.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		live.Status = status
		written, err = h.flotillaMgmt.CoreV1().Pods(proxy.Namespace).UpdateStatus(h.ctx, live, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		h.t.Fatalf("writing the status of %s: %v", proxy.Name, err)
	}
	return h.cached(written, func(p *corev1.Pod) bool { return p.ResourceVersion == written.ResourceVersion })
}

// controlledProxy makes a ReplicaSet whose one pod is bound to the virtual node, and returns that pod.
func (h *harness) controlledProxy() *corev1.Pod {
	h.t.Helper()
	template := h.newProxy("")
	template.Spec.NodeName = h.node
	rs := &appsv1.ReplicaSet{
		ObjectMeta: metav1.ObjectMeta{Namespace: h.ns, Name: "web"},
		Spec: appsv1.ReplicaSetSpec{
			Replicas: new(int32(1)),
			Selector: &metav1.LabelSelector{MatchLabels: template.Labels},
			Template: corev1.PodTemplateSpec{ObjectMeta: template.ObjectMeta, Spec: template.Spec},
		},
	}
	rs, err := h.mgmt.AppsV1().ReplicaSets(h.ns).Create(h.ctx, rs, metav1.CreateOptions{})
	if err != nil {
		h.t.Fatal(err)
	}
	var proxy *corev1.Pod
	h.poll("the ReplicaSet's pod in the provider's cache", func() (bool, error) {
		pods, err := h.proxies.Pods(h.ns).List(labels.Everything())
		for _, p := range pods {
			if c := metav1.GetControllerOf(p); c != nil && c.UID == rs.UID {
				proxy = p
			}
		}
		return proxy != nil, err
	})
	return proxy
}

// setUpWorkloadNamespace creates the test's namespace in the workload cluster as an earlier flotilla would
// have (labelled for this management cluster, Pod Security baseline), with the ServiceAccount its pods run
// as, for tests that put pods there before flotilla does.
func (h *harness) setUpWorkloadNamespace() {
	h.t.Helper()
	if h.workloadNamespace {
		return
	}
	h.workloadNamespace = true
	if _, err := h.workload.CoreV1().Namespaces().Create(h.ctx, tenancy.Desired(h.ns, managementID, tenancy.DefaultLevel), metav1.CreateOptions{}); err != nil {
		h.t.Fatal(err)
	}
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "web", Labels: map[string]string{tenancy.LabelManagement: managementID}}}
	if _, err := h.workload.CoreV1().ServiceAccounts(h.ns).Create(h.ctx, sa, metav1.CreateOptions{}); err != nil {
		h.t.Fatal(err)
	}
}

// createDelegate puts the delegate flotilla would make for proxy into the workload cluster (as an earlier
// flotilla did), after mutate.
func (h *harness) createDelegate(proxy *corev1.Pod, mutate func(*corev1.Pod)) *corev1.Pod {
	h.t.Helper()
	h.setUpWorkloadNamespace()
	d := buildDelegate(proxy, h.p.owner, false, nil)
	if mutate != nil {
		mutate(d)
	}
	created, err := h.workload.CoreV1().Pods(h.ns).Create(h.ctx, d, metav1.CreateOptions{})
	if err != nil {
		h.t.Fatal(err)
	}
	return created
}

// createForeignPod puts a pod flotilla did not make into the workload cluster. No scheduler serves it, so
// nothing but flotilla could change it.
func (h *harness) createForeignPod(name string, labels map[string]string) *corev1.Pod {
	h.t.Helper()
	h.setUpWorkloadNamespace()
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: h.ns, Name: name, Labels: labels},
		Spec: corev1.PodSpec{SchedulerName: "nobody", ServiceAccountName: "web", Containers: []corev1.Container{{Name: "x", Image: "theirs"}}}}
	created, err := h.workload.CoreV1().Pods(h.ns).Create(h.ctx, pod, metav1.CreateOptions{})
	if err != nil {
		h.t.Fatal(err)
	}
	return created
}

// running waits until kwok runs the workload pod and returns it.
func (h *harness) running(d *corev1.Pod) *corev1.Pod {
	h.t.Helper()
	var got *corev1.Pod
	h.poll("workload pod "+d.Name+" Running", func() (bool, error) {
		var err error
		got, err = h.workload.CoreV1().Pods(d.Namespace).Get(h.ctx, d.Name, metav1.GetOptions{})
		return err == nil && got.Status.Phase == corev1.PodRunning && got.Status.PodIP != "" && got.Status.StartTime != nil, err
	})
	return got
}

func (h *harness) sync(pod *corev1.Pod) error {
	return h.p.syncDelegate(h.ctx, pod.Namespace+"/"+pod.Name)
}

// workloadPod is the workload pod of the given name, nil if there is none.
func (h *harness) workloadPod(namespace, name string) *corev1.Pod {
	h.t.Helper()
	pod, err := h.workload.CoreV1().Pods(namespace).Get(h.ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		h.t.Fatal(err)
	}
	return pod
}

// managementPod is the management pod of the given name and UID, nil if there is none.
func (h *harness) managementPod(proxy *corev1.Pod) *corev1.Pod {
	h.t.Helper()
	pod, err := h.mgmt.CoreV1().Pods(proxy.Namespace).Get(h.ctx, proxy.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) || (err == nil && pod.UID != proxy.UID) {
		return nil
	}
	if err != nil {
		h.t.Fatal(err)
	}
	return pod
}

// expectEvent fails unless an Event with the given reason and message part reaches the management
// cluster for the named proxy.
func (h *harness) expectEvent(proxy, reason, part string) {
	h.t.Helper()
	var seen []string
	err := wait.PollUntilContextTimeout(h.ctx, 100*time.Millisecond, limit, true, func(ctx context.Context) (bool, error) {
		list, err := h.mgmt.CoreV1().Events(h.ns).List(ctx, metav1.ListOptions{
			FieldSelector: fields.OneTermEqualSelector("involvedObject.name", proxy).String()})
		if err != nil {
			return false, nil
		}
		seen = seen[:0]
		for _, e := range list.Items {
			seen = append(seen, e.Reason+": "+e.Message)
			if e.Reason == reason && strings.Contains(e.Message, part) {
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		h.t.Fatalf("no %s event containing %q on %s (events: %q)", reason, part, proxy, seen)
	}
}

// status runs the status queue's sync for the proxy and returns what it notified (the proxy's own status if
// nothing).
func (h *harness) status(proxy *corev1.Pod) corev1.PodStatus {
	h.t.Helper()
	if err := h.p.syncStatus(h.ctx, proxy.Namespace+"/"+proxy.Name); err != nil {
		h.t.Fatal(err)
	}
	select {
	case pod := <-h.notified:
		return pod.Status
	default:
		return proxy.Status
	}
}

// deletionOf watches a workload pod and, once something happens, reports how it was deleted: the grace
// period it was given (0 when it was removed at once), or nil if it was not deleted within the limit.
func (h *harness) deletionOf(d *corev1.Pod) func() *int64 {
	h.t.Helper()
	w, err := h.workload.CoreV1().Pods(d.Namespace).Watch(h.ctx, metav1.ListOptions{
		FieldSelector:   fields.OneTermEqualSelector(metav1.ObjectNameField, d.Name).String(),
		ResourceVersion: d.ResourceVersion,
	})
	if err != nil {
		h.t.Fatal(err)
	}
	return func() *int64 {
		defer w.Stop()
		timeout := time.After(limit)
		for {
			select {
			case e, ok := <-w.ResultChan():
				if !ok {
					h.t.Fatal("watch ended")
				}
				pod, isPod := e.Object.(*corev1.Pod)
				if !isPod || pod.UID != d.UID {
					continue
				}
				switch {
				case pod.DeletionTimestamp != nil:
					return pod.DeletionGracePeriodSeconds
				case e.Type == watch.Deleted:
					return new(int64(0))
				}
			case <-timeout:
				return nil
			}
		}
	}
}

func (h *harness) poll(what string, cond func() (bool, error)) {
	h.t.Helper()
	lab.Poll(h.t, limit, what, cond)
}

// otherUID is a UID no pod of the test has.
func otherUID() types.UID { return types.UID(lab.UniqueName("uid", "")) }
