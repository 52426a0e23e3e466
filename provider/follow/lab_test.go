package follow

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/virtual-kubelet/virtual-kubelet/node/nodeutil"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/tools/record"

	"github.com/flotilla-io/flotilla/internal/cachetrim"
	"github.com/flotilla-io/flotilla/tenancy"
	"github.com/flotilla-io/flotilla/test/lab"
)

// These tests drive the followers against the real apiservers of a lab (a management cluster and one
// workload cluster, no flotilla process), in-process with flotilla's own identities, bound only to
// deploy/charts/flotilla/files/rbac. The lab's admin clients only set up and inspect. Each test has a virtual node and a namespace
// of its own; test/e2e/follow_test.go drives the same mechanism through flotilla processes.

var shared *lab.Lab

const (
	workloadName = "eu-west-3-1"
	// limit bounds every wait for an eventual condition; generous, for a busy machine.
	limit = 30 * time.Second
)

func TestMain(m *testing.M) {
	os.Exit(lab.RunWithLab(m, lab.Options{
		Workloads: []lab.WorkloadSpec{lab.Workload(workloadName, "eu-west-3")},
	}, func(l *lab.Lab) { shared = l }))
}

type fixture struct {
	t *testing.T
	f *Followers
	// node is the test's virtual node, ns its namespace (in the management cluster; flotilla creates it in
	// the workload cluster).
	node, ns string
	owner    map[string]string
	// management and workload are admin clients, for setup and inspection only.
	management, workload kubernetes.Interface
	// events tees what flotilla records: to the management cluster (as flotilla does), and to a channel.
	events *teeRecorder
	// writes counts flotilla's write requests to the workload cluster.
	writes *atomic.Int64
	ctx    context.Context
}

// fixtureOptions are what a test sets up besides the defaults.
type fixtureOptions struct {
	// management objects are created in the test's namespace (pods bound to the test's virtual node).
	management []runtime.Object
	// workload objects are created in the test's namespace of the workload cluster, which is then created
	// first with workloadNamespace's labels.
	workload []runtime.Object
	// workloadNamespace, when set, are the labels of the test's namespace in the workload cluster, created
	// before flotilla starts. With workload objects and no labels, the namespace is opened to flotilla
	// (tenancy.LabelOpen), as a workload admin would.
	workloadNamespace map[string]string
	// notEnabled: the test's management namespace does not carry flotilla.io/enabled=true.
	notEnabled bool
	// managementTransport, when set, wraps the transport of flotilla's management client: to record its
	// requests, or to answer some as the apiserver would. workloadTransport does the same for its workload
	// client.
	managementTransport, workloadTransport func(http.RoundTripper) http.RoundTripper
	// confined: flotilla's workload identity is the ServiceAccount a joined flotilla has
	// (tenancy.WorkloadAccount), bound only to deploy's ClusterRole flotilla-workload, so it reads copies only
	// in the namespaces where it grants itself the read (the tenancy gate's Reader); otherwise it is the lab's
	// package-test identity, which reads them cluster-wide.
	confined bool
}

// virtualNodeLabels are the labels of a virtual node that the virtual nodes' informer selects.
func virtualNodeLabels(name string) map[string]string {
	return map[string]string{"type": "virtual-kubelet", "flotilla.io/cluster": name}
}

// newFixture creates the management objects (ConfigMaps, Secrets, Services, Ingresses, pods bound to the
// test's virtual node) and workload objects given, in the test's namespace, and starts the management
// informers as cmd/flotilla does. It does not Run the followers.
func newFixture(t *testing.T, management, workload []runtime.Object) *fixture {
	return newFixtureWith(t, fixtureOptions{management: management, workload: workload})
}

func newFixtureWith(t *testing.T, o fixtureOptions) *fixture {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	fx := &fixture{
		t: t, ctx: ctx,
		node: lab.UniqueName("vn", ""), ns: lab.UniqueName("shop", t.Name()),
		management: shared.Management.Client, workload: shared.Workload(workloadName).Client,
		writes: &atomic.Int64{},
	}
	fx.owner = map[string]string{"flotilla.io/management": "m1", "flotilla.io/node": fx.node}
	flotillaMgmt := flotillaClientWith(t, shared.Management.FlotillaKubeconfig, o.managementTransport)
	workloadCfg, err := clientcmd.BuildConfigFromFlags("", shared.Workload(workloadName).FlotillaKubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	var reader *rbacv1.Subject
	if o.confined {
		workloadCfg, reader = confinedIdentity(t, ctx, fx.workload, fx.owner["flotilla.io/management"], fx.node)
	}
	flotillaWorkload := clientWith(t, workloadCfg, countWrites(fx.writes), o.workloadTransport)

	lab.Namespace(t, fx.management, fx.ns)
	if o.notEnabled {
		fx.setEnabled(false)
	}
	t.Cleanup(func() { lab.DeleteNamespace(fx.workload, fx.ns) })
	lab.StandInNode(t, fx.management, fx.node, virtualNodeLabels(fx.node), nil)
	fx.create(fx.management, o.management)
	if len(o.workload) > 0 && o.workloadNamespace == nil {
		o.workloadNamespace = map[string]string{tenancy.LabelOpen: "true"}
	}
	if o.workloadNamespace != nil {
		if _, err := fx.workload.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: fx.ns, Labels: o.workloadNamespace}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		fx.create(fx.workload, o.workload)
	}

	broadcaster := record.NewBroadcaster()
	broadcaster.StartRecordingToSink(&corev1client.EventSinkImpl{Interface: flotillaMgmt.CoreV1().Events(metav1.NamespaceAll)})
	fx.events = &teeRecorder{
		real: broadcaster.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "flotilla", Host: fx.node}),
		fake: record.NewFakeRecorder(100),
	}
	// Not trimmed of managedFields, unlike flotilla's own: what a user forges there must not matter.
	objects := informers.NewSharedInformerFactory(flotillaMgmt, 0)
	podFactory := informers.NewSharedInformerFactoryWithOptions(flotillaMgmt, 0, nodeutil.PodInformerFilter(fx.node))
	nodeFactory := informers.NewSharedInformerFactoryWithOptions(flotillaMgmt, 0,
		informers.WithTransform(cachetrim.ManagedFields),
		informers.WithTweakListOptions(func(lo *metav1.ListOptions) { lo.LabelSelector = "flotilla.io/cluster,type=virtual-kubelet" }))
	pods := podFactory.Core().V1().Pods()
	gate := &tenancy.Namespaces{
		Workload: flotillaWorkload, Management: objects.Core().V1().Namespaces().Lister(),
		ManagementID: fx.owner["flotilla.io/management"], Level: tenancy.DefaultLevel,
		Node: fx.node, Reader: reader,
	}
	f, err := New(Config{
		NodeName: fx.node, OwnerLabels: fx.owner,
		Management: flotillaMgmt, Workload: flotillaWorkload,
		ManagementInformers: objects, Proxies: pods, VirtualNodes: nodeFactory.Core().V1().Nodes(),
		Namespaces: gate, EventRecorder: fx.events,
	})
	if err != nil {
		t.Fatal(err)
	}
	fx.f = f
	// As cmd/flotilla does: a namespace that becomes enabled, or stops being enabled, is looked at again.
	if _, err := objects.Core().V1().Namespaces().Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		UpdateFunc: func(old, obj any) {
			before, _ := old.(*corev1.Namespace)
			if ns, ok := obj.(*corev1.Namespace); ok && tenancy.Enabled(ns) != tenancy.Enabled(before) {
				f.NamespaceChanged(ns.Name)
			}
		},
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		f.stopWatches()
		objects.Shutdown()
		podFactory.Shutdown()
		nodeFactory.Shutdown()
		broadcaster.Shutdown()
	})
	objects.Start(ctx.Done())
	podFactory.Start(ctx.Done())
	nodeFactory.Start(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), slices.Concat(f.referencesSynced, []cache.InformerSynced{objects.Core().V1().Namespaces().Informer().HasSynced})...) {
		t.Fatal("caches did not sync")
	}
	return fx
}

// run runs the followers until the test ends.
func (fx *fixture) run() {
	done := make(chan error, 1)
	ctx, cancel := context.WithCancel(fx.ctx)
	go func() { done <- fx.f.Run(ctx) }()
	fx.t.Cleanup(func() {
		cancel()
		<-done
	})
}

// setEnabled labels the test's management namespace flotilla.io/enabled=true, or removes the label, as a
// management admin would.
func (fx *fixture) setEnabled(enabled bool) {
	fx.t.Helper()
	value := "null"
	if enabled {
		value = `"true"`
	}
	patch := fmt.Sprintf(`{"metadata":{"labels":{%q:%s}}}`, tenancy.LabelEnabled, value)
	if _, err := fx.management.CoreV1().Namespaces().Patch(fx.ctx, fx.ns, types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		fx.t.Fatal(err)
	}
}

// create makes the objects in the test's namespace; pods are bound to the test's virtual node.
func (fx *fixture) create(c kubernetes.Interface, objs []runtime.Object) {
	fx.t.Helper()
	for _, obj := range objs {
		var err error
		switch o := obj.DeepCopyObject().(type) {
		case *corev1.ConfigMap:
			o.Namespace = fx.ns
			_, err = c.CoreV1().ConfigMaps(fx.ns).Create(fx.ctx, o, metav1.CreateOptions{})
		case *corev1.Secret:
			o.Namespace = fx.ns
			_, err = c.CoreV1().Secrets(fx.ns).Create(fx.ctx, o, metav1.CreateOptions{})
		case *corev1.Service:
			o.Namespace = fx.ns
			_, err = c.CoreV1().Services(fx.ns).Create(fx.ctx, o, metav1.CreateOptions{})
		case *networkingv1.Ingress:
			o.Namespace = fx.ns
			_, err = c.NetworkingV1().Ingresses(fx.ns).Create(fx.ctx, o, metav1.CreateOptions{})
		case *corev1.Pod:
			o.Namespace, o.Spec.NodeName = fx.ns, fx.node
			_, err = c.CoreV1().Pods(fx.ns).Create(fx.ctx, o, metav1.CreateOptions{})
		default:
			fx.t.Fatalf("cannot create a %T", obj)
		}
		if err != nil {
			fx.t.Fatal(err)
		}
	}
}

// expectEvent fails unless an Event with the given reason and message part reaches the management cluster
// for the named object.
func (fx *fixture) expectEvent(object, reason, part string) {
	fx.t.Helper()
	lab.Poll(fx.t, limit, "a "+reason+" event on "+object, func() (bool, error) {
		list, err := fx.management.CoreV1().Events(fx.ns).List(fx.ctx, metav1.ListOptions{
			FieldSelector: fields.OneTermEqualSelector("involvedObject.name", object).String()})
		if err != nil {
			return false, err
		}
		for _, e := range list.Items {
			if e.Reason == reason && strings.Contains(e.Message, part) {
				return true, nil
			}
		}
		return false, nil
	})
}

// teeRecorder records each Event with both recorders.
type teeRecorder struct {
	real record.EventRecorder
	fake *record.FakeRecorder
}

func (r *teeRecorder) Event(obj runtime.Object, eventtype, reason, message string) {
	r.real.Event(obj, eventtype, reason, message)
	r.fake.Event(obj, eventtype, reason, message)
}

func (r *teeRecorder) Eventf(obj runtime.Object, eventtype, reason, messageFmt string, args ...any) {
	r.real.Eventf(obj, eventtype, reason, messageFmt, args...)
	r.fake.Eventf(obj, eventtype, reason, messageFmt, args...)
}

func (r *teeRecorder) AnnotatedEventf(obj runtime.Object, annotations map[string]string, eventtype, reason, messageFmt string, args ...any) {
	r.real.AnnotatedEventf(obj, annotations, eventtype, reason, messageFmt, args...)
	r.fake.AnnotatedEventf(obj, annotations, eventtype, reason, messageFmt, args...)
}

// countWrites wraps a transport to count its write requests.
func countWrites(writes *atomic.Int64) func(http.RoundTripper) http.RoundTripper {
	return func(rt http.RoundTripper) http.RoundTripper {
		return roundTripper(func(r *http.Request) (*http.Response, error) {
			if r.Method != http.MethodGet && r.Method != http.MethodHead {
				writes.Add(1)
			}
			return rt.RoundTrip(r)
		})
	}
}

// flotillaClientWith is a client with flotilla's own identity from the lab whose transport wrap, when set,
// wraps.
func flotillaClientWith(t *testing.T, kubeconfig string, wrap func(http.RoundTripper) http.RoundTripper) kubernetes.Interface {
	t.Helper()
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	return clientWith(t, cfg, wrap)
}

// clientWith is a client of cfg whose transport the wraps, when set, wrap (the first innermost).
func clientWith(t *testing.T, cfg *rest.Config, wraps ...func(http.RoundTripper) http.RoundTripper) kubernetes.Interface {
	t.Helper()
	cfg = rest.CopyConfig(cfg)
	cfg.QPS, cfg.Burst = 100, 200
	for _, wrap := range wraps {
		if wrap != nil {
			cfg.Wrap(wrap)
		}
	}
	c, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// confinedIdentity makes, in the lab's workload cluster, flotilla's identity as `flotilla join` makes it:
// the ServiceAccount tenancy.WorkloadAccount(managementID, node) in tenancy.IdentityNamespace, bound cluster
// wide to deploy's ClusterRole flotilla-workload (and nothing else); deploy's admission policy
// flotilla-workload-owner confines it as in production. It returns a client configuration with a token of
// that ServiceAccount, and the ServiceAccount as the tenancy gate's Reader. Both go when the test ends.
func confinedIdentity(t *testing.T, ctx context.Context, admin kubernetes.Interface, managementID, node string) (*rest.Config, *rbacv1.Subject) {
	t.Helper()
	name := tenancy.WorkloadAccount(managementID, node)
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: tenancy.IdentityNamespace, Name: name}}
	if _, err := admin.CoreV1().ServiceAccounts(tenancy.IdentityNamespace).Create(ctx, sa, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	subject := rbacv1.Subject{Kind: rbacv1.ServiceAccountKind, Namespace: tenancy.IdentityNamespace, Name: name}
	binding := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "flotilla-workload"},
		Subjects:   []rbacv1.Subject{subject},
	}
	if _, err := admin.RbacV1().ClusterRoleBindings().Create(ctx, binding, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = admin.RbacV1().ClusterRoleBindings().Delete(context.Background(), name, metav1.DeleteOptions{})
		_ = admin.CoreV1().ServiceAccounts(tenancy.IdentityNamespace).Delete(context.Background(), name, metav1.DeleteOptions{})
	})
	token, err := admin.CoreV1().ServiceAccounts(tenancy.IdentityNamespace).CreateToken(ctx, name, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: new(int64(3600))},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cfg := rest.AnonymousClientConfig(shared.Workload(workloadName).Config)
	cfg.BearerToken = token.Status.Token
	return cfg, &subject
}

type roundTripper func(*http.Request) (*http.Response, error)

func (f roundTripper) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
