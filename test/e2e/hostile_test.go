package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	psaapi "k8s.io/pod-security-admission/api"

	"github.com/flotilla-io/flotilla/node"
	"github.com/flotilla-io/flotilla/provider"
	"github.com/flotilla-io/flotilla/tenancy"
	"github.com/flotilla-io/flotilla/test/lab"
)

// The hostile-input suite (issue 8, item 7): alice, a management user bound to the built-in ClusterRole
// `edit` in namespaces of her own (some enabled for delegation, some not), tries inputs that would let her
// act in workload clusters beyond her rights if flotilla trusted them. Every case names its expected
// outcome, one of:
//   - the management apiserver refuses her request (RBAC, validation, admission);
//   - the proxy shows a readable reason (status or Event) within hostileReasonLimit of being bound;
//   - the pod is delegated, or the object followed, with the dangerous part removed (and an Event).
// Every case is then held to the contract's invariants (docs/DESIGN.md, "Tenancy"): nothing appears in any
// workload cluster beyond what the case allows, no foreign object (one a workload admin made) changes, and
// flotilla keeps serving (virtual nodes Ready, a plain pod delegated at the end).
//
// The cases run concurrently in goroutines of their own, hostileConcurrency at a time: they mostly wait,
// and `go test`'s -parallel would let only GOMAXPROCS (2 on the lab machines) run at once. Each gets
// its own management namespace, so their workload objects never mix; the results are reported as one
// subtest per case and a table.

const (
	hostileUser = "alice"
	// hostileReasonLimit: how long after binding a proxy may take to show its reason, or to be delegated.
	hostileReasonLimit = 5 * time.Second
	// hostileObserve: how long a case keeps looking for an outcome that is late, to report how late it was.
	hostileObserve = 20 * time.Second
	// hostileBindLimit: how long the management scheduler may take to bind a case's pods.
	hostileBindLimit = 30 * time.Second
	// hostileFollowLimit: how long a copy may take to appear in the workload cluster once its pod is placed.
	hostileFollowLimit = 30 * time.Second
	hostileConcurrency = 8
	// hostileCaseLabel marks every pod a case creates, with the case's name, so the observer tells them apart.
	hostileCaseLabel = "hostile.flotilla.io/case"
	// forgedIP is the address alice tries to have written into her Services' and Ingresses' status.
	forgedIP = "203.0.113.7"
)

// Contract reasons (docs/DESIGN.md), spelled out: the packages that record them are being reworked.
const (
	reasonUnsupportedReference   = "UnsupportedReference"
	reasonExternalIPsNotFollowed = "ExternalIPsNotFollowed"
	// virtual-kubelet's, as package follow records it beside CreateContainerConfigError
	reasonMandatorySecretNotFound = "MandatorySecretNotFound"
)

// hostileCase is one row of the table.
type hostileCase struct {
	name string
	// disabled: alice's management namespace is not enabled for delegation (no flotilla.io/enabled).
	disabled bool
	// namespace, when set, is an existing management namespace the case uses instead of one of its own
	// (kube-system).
	namespace string
	// nsLabels are further labels of the case's management namespace, set by its admin.
	nsLabels map[string]string
	// setup is what admins (of the management cluster or of h.target) have in place before alice acts:
	// foreign objects (register them with h.foreign*), an opened workload namespace.
	setup func(ctx context.Context, h *hostile)
	// act is alice's attempt, with her own client; it returns the management apiserver's answer to the
	// request that matters.
	act  func(ctx context.Context, h *hostile) error
	want hostileWant
}

// hostileWant is a case's expected outcome.
type hostileWant struct {
	// outcome names it, for the table.
	outcome string
	// refused: the management apiserver refuses alice's request; is classifies the error and text is part
	// of its message.
	refused func(error) bool
	text    string
	// reason: each of the case's proxies shows this reason (status or Event), with
	// text in its message, within hostileReasonLimit of being bound.
	reason string
	// pods is how many proxies the case makes: 1 when 0, everyNode for one on every virtual node.
	pods int
	// delegated: each of the case's proxies gets a delegate within hostileReasonLimit of being bound.
	delegated bool
	// check holds the rest of the outcome (a delegate's spec, a copy, a status); it runs after the above.
	check func(ctx context.Context, h *hostile)
}

// everyNode: a DaemonSet tolerating everything has a pod on every node of the management cluster.
const everyNode = -1

func refusedByManagement(is func(error) bool, text string) hostileWant {
	return hostileWant{outcome: "management refuses: " + text, refused: is, text: text}
}

func proxyReason(reason, text string) hostileWant {
	outcome := reason
	if text != "" {
		outcome += " (" + text + ")"
	}
	return hostileWant{outcome: outcome, reason: reason, text: text}
}

func delegated(outcome string, check func(ctx context.Context, h *hostile)) hostileWant {
	return hostileWant{outcome: outcome, delegated: true, check: check}
}

// forbidden classifies the management apiserver's refusals: RBAC and admission say Forbidden.
func forbidden(err error) bool { return apierrors.IsForbidden(err) }

// invalid: validation.
func invalid(err error) bool { return apierrors.IsInvalid(err) }

// hostileEnv is what every case shares.
type hostileEnv struct {
	alice        kubernetes.Interface
	aliceConfig  *rest.Config
	obs          *hostileObserver
	managementID string
	// virtualNodes is the number of nodes of the management cluster: a DaemonSet tolerating everything has
	// a pod on each.
	virtualNodes int
}

// hostile is one case's run.
type hostile struct {
	*hostileEnv
	c     hostileCase
	index int
	// ns is the case's management namespace; target the workload cluster its pods are placed in.
	ns     string
	target *lab.Cluster

	mu        sync.Mutex
	failures  []string
	observed  []string
	took      time.Duration
	allowed   map[string]bool // cluster/Kind/name that may appear in the case's workload namespace
	foreigns  []*foreignObject
	boundIn   map[string]bool // clusters whose virtual nodes some proxy of the case was bound to
	proxies   map[string]*corev1.Pod
	delegates map[string]*corev1.Pod // by proxy name
	cleanups  []func()
}

// hostileAbort ends a case early, after Fatalf recorded why.
type hostileAbort struct{}

func (h *hostile) Errorf(format string, args ...any) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.failures = append(h.failures, fmt.Sprintf(format, args...))
}

func (h *hostile) Fatalf(format string, args ...any) {
	h.Errorf(format, args...)
	panic(hostileAbort{})
}

// observe records what the case saw, for the table, and how long its outcome took.
func (h *hostile) observe(took time.Duration, format string, args ...any) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.observed = append(h.observed, fmt.Sprintf(format, args...))
	h.took = max(h.took, took)
}

func (h *hostile) cleanup(f func()) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.cleanups = append(h.cleanups, f)
}

// allow lets an object of the kind and name appear in the case's namespace of a workload cluster.
func (h *hostile) allow(c *lab.Cluster, kind, name string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.allowed[c.Name+"/"+kind+"/"+name] = true
}

func (h *hostile) allowedHere(c *lab.Cluster, kind, name string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.allowed[c.Name+"/"+kind+"/"+name]
}

// poll checks cond every 100 ms until it holds or limit passes; it returns how long that took and
// whether it held, and the last explanation cond gave.
func poll(ctx context.Context, limit time.Duration, cond func(ctx context.Context) (bool, string)) (time.Duration, bool, string) {
	start := time.Now()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		ok, why := cond(ctx)
		if ok {
			return time.Since(start), true, why
		}
		if time.Since(start) > limit || ctx.Err() != nil {
			return time.Since(start), false, why
		}
		select {
		case <-ctx.Done():
		case <-tick.C:
		}
	}
}

// must polls cond for up to limit and ends the case if it never holds.
func (h *hostile) must(ctx context.Context, limit time.Duration, what string, cond func(ctx context.Context) (bool, string)) time.Duration {
	took, ok, why := poll(ctx, limit, cond)
	if !ok {
		h.Fatalf("%s: not within %s (last: %s)", what, limit, why)
	}
	return took
}

// sinceBinding polls cond until it holds, for up to hostileObserve after the proxy was bound, and records a
// failure when it took longer than hostileReasonLimit from binding (or never held).
func (h *hostile) sinceBinding(ctx context.Context, p *corev1.Pod, what string, cond func(ctx context.Context) (bool, string)) time.Duration {
	bound := h.obs.boundAt(p)
	_, ok, why := poll(ctx, time.Until(bound.Add(hostileObserve)), cond)
	took := time.Since(bound)
	switch {
	case !ok:
		h.Fatalf("%s: not within %s of binding (last: %s)", what, hostileObserve, why)
	case took > hostileReasonLimit+100*time.Millisecond: // one polling interval of slack
		h.Errorf("%s: %s after binding, limit %s", what, took.Round(100*time.Millisecond), hostileReasonLimit)
	}
	return took
}

// pod is a plain pod of the case: placed on its target cluster, tolerating the virtual nodes' taint,
// then changed by mutate.
func (h *hostile) pod(name string, mutate ...func(*corev1.Pod)) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: h.ns, Labels: map[string]string{hostileCaseLabel: h.c.name}},
		Spec: corev1.PodSpec{
			NodeSelector: map[string]string{node.LabelCluster: h.target.Name},
			Tolerations:  []corev1.Toleration{hostileTolerateVirtualNodes},
			Containers:   []corev1.Container{hostileContainer()},
		},
	}
	for _, m := range mutate {
		m(p)
	}
	return p
}

var (
	hostileTolerateVirtualNodes = corev1.Toleration{Key: node.TaintKey, Operator: corev1.TolerationOpEqual, Value: node.TaintValue, Effect: corev1.TaintEffectNoSchedule}
	// tolerateEverything is the toleration of every node agent: any taint, any effect.
	tolerateEverything = corev1.Toleration{Operator: corev1.TolerationOpExists}
)

func hostileContainer() corev1.Container {
	return corev1.Container{Name: "c", Image: "registry.k8s.io/pause:3.10", Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{
		corev1.ResourceCPU: resource.MustParse("10m"), corev1.ResourceMemory: resource.MustParse("16Mi")}}}
}

// createPod creates a pod as alice.
func (h *hostile) createPod(ctx context.Context, p *corev1.Pod) error {
	_, err := h.alice.CoreV1().Pods(p.Namespace).Create(ctx, p, metav1.CreateOptions{})
	return err
}

// presetNode places the pod on the case's virtual node directly, past the management scheduler (which
// would keep a pod with an unbound claim, or a scheduler of its own, Pending).
func (h *hostile) presetNode(p *corev1.Pod) {
	p.Spec.NodeSelector = nil
	p.Spec.NodeName = h.target.Name
}

// run plays the case: set-up, alice's attempt, its expected outcome.
func (h *hostile) run(ctx context.Context) {
	defer func() {
		if r := recover(); r != nil {
			if _, ok := r.(hostileAbort); !ok {
				h.Errorf("panic: %v\n%s", r, debug.Stack())
			}
		}
	}()
	h.createNamespace(ctx)
	if h.c.setup != nil {
		h.c.setup(ctx, h)
	}
	start := time.Now()
	err := h.c.act(ctx, h)
	w := h.c.want
	switch {
	case w.refused != nil:
		if err == nil || !w.refused(err) || !strings.Contains(err.Error(), w.text) {
			h.Fatalf("want the management apiserver to refuse (%s), got %v", w.text, err)
		}
		h.observe(time.Since(start), "refused (%s): %s", apierrors.ReasonForError(err), err)
	case err != nil:
		h.Fatalf("alice's request failed: %v", err)
	}
	pods := w.pods
	if pods == everyNode {
		pods = h.virtualNodes
	}
	if w.reason != "" {
		for _, p := range h.bound(ctx, pods) {
			h.expectReason(ctx, p, w.reason, w.text)
		}
	}
	if w.delegated {
		for _, p := range h.bound(ctx, pods) {
			h.expectDelegate(ctx, p)
		}
	}
	if w.check != nil {
		w.check(ctx, h)
	}
}

// expectReason waits for the proxy to show the reason, with text in its message, within
// hostileReasonLimit of being bound.
func (h *hostile) expectReason(ctx context.Context, p *corev1.Pod, reason, text string) {
	var where string
	took := h.sinceBinding(ctx, p, fmt.Sprintf("reason %s on proxy %s", reason, p.Name), func(ctx context.Context) (bool, string) {
		live := h.obs.pod(p.Namespace, p.Name)
		if live == nil {
			return false, "the proxy is gone"
		}
		ok, seen := h.obs.shows(live, reason, text)
		where = seen
		return ok, seen
	})
	h.observe(took, "%s", where)
}

// bound waits until n (1 when 0) pods of the case are bound to a node, and returns them.
func (h *hostile) bound(ctx context.Context, n int) []*corev1.Pod {
	n = max(n, 1)
	var pods []*corev1.Pod
	h.must(ctx, hostileBindLimit, fmt.Sprintf("%d proxies bound", n), func(context.Context) (bool, string) {
		pods = nil
		var why []string
		for _, p := range h.obs.casePods(h.ns, h.c.name) {
			if p.Spec.NodeName != "" {
				pods = append(pods, p)
			} else {
				why = append(why, fmt.Sprintf("%s unbound (%s)", p.Name, podConditions(p)))
			}
		}
		return len(pods) >= n, fmt.Sprintf("%d bound; %s", len(pods), strings.Join(why, "; "))
	})
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, p := range pods {
		h.boundIn[p.Spec.NodeName] = true
		h.proxies[p.Name] = p
	}
	return pods
}

// boundPod waits for the case's pod of that name to be bound.
func (h *hostile) boundPod(ctx context.Context, name string) *corev1.Pod {
	var p *corev1.Pod
	h.must(ctx, hostileBindLimit, "proxy "+name+" bound", func(context.Context) (bool, string) {
		p = h.obs.pod(h.ns, name)
		if p == nil {
			return false, "not seen yet"
		}
		return p.Spec.NodeName != "", podConditions(p)
	})
	h.mu.Lock()
	defer h.mu.Unlock()
	h.boundIn[p.Spec.NodeName] = true
	h.proxies[p.Name] = p
	return p
}

func podConditions(p *corev1.Pod) string {
	var out []string
	for _, c := range p.Status.Conditions {
		out = append(out, fmt.Sprintf("%s=%s %s", c.Type, c.Status, c.Message))
	}
	return strings.Join(out, ", ")
}

// expectDelegate waits for the delegate of proxy p in the workload cluster of its node, within
// hostileReasonLimit of binding; the delegate may then appear in the case's namespace there.
func (h *hostile) expectDelegate(ctx context.Context, p *corev1.Pod) *corev1.Pod {
	c := shared.Workload(p.Spec.NodeName)
	if c == nil {
		h.Fatalf("proxy %s bound to %q, which is no virtual node", p.Name, p.Spec.NodeName)
	}
	h.allow(c, "Pod", p.Name)
	var d *corev1.Pod
	took := h.sinceBinding(ctx, p, "the delegate of "+p.Name+" in "+c.Name, func(ctx context.Context) (bool, string) {
		var err error
		d, err = c.Client.CoreV1().Pods(p.Namespace).Get(ctx, p.Name, metav1.GetOptions{})
		if err != nil {
			live := h.obs.pod(p.Namespace, p.Name)
			if live != nil {
				_, seen := h.obs.shows(live, "", "")
				return false, fmt.Sprintf("%v; proxy: %s", err, seen)
			}
			return false, err.Error()
		}
		return d.Labels[provider.LabelParentUID] == string(p.UID), fmt.Sprintf("delegate of parent %s", d.Labels[provider.LabelParentUID])
	})
	h.observe(took, "delegated to %s", c.Name)
	h.mu.Lock()
	defer h.mu.Unlock()
	h.delegates[p.Name] = d
	return d
}

// delegate is the delegate expectDelegate found for the proxy of that name.
func (h *hostile) delegate(name string) *corev1.Pod {
	h.mu.Lock()
	defer h.mu.Unlock()
	d := h.delegates[name]
	if d == nil {
		panic("no delegate of " + name + " was awaited")
	}
	return d
}

// noReference fails the case if the delegate's spec names the object anywhere.
func (h *hostile) noReference(d *corev1.Pod, name string) {
	b, err := json.Marshal(d.Spec)
	if err != nil {
		h.Fatalf("%v", err)
	}
	if strings.Contains(string(b), `"`+name+`"`) {
		h.Errorf("the delegate %s/%s in %s still names %q: %s", d.Namespace, d.Name, h.target.Name, name, b)
	}
}

// createNamespace makes the case's management namespace (enabled unless the case says otherwise) and binds
// alice to the ClusterRole edit in it.
func (h *hostile) createNamespace(ctx context.Context) {
	mc := shared.Management.Client
	if h.c.namespace != "" {
		h.ns = h.c.namespace
		return
	}
	labels := map[string]string{}
	if !h.c.disabled {
		labels[tenancy.LabelEnabled] = "true"
	}
	maps.Copy(labels, h.c.nsLabels)
	if _, err := mc.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: h.ns, Labels: labels}}, metav1.CreateOptions{}); err != nil {
		h.Fatalf("creating namespace %s: %v", h.ns, err)
	}
	h.cleanup(func() { lab.DeleteNamespace(mc, h.ns) })
	if _, err := mc.RbacV1().RoleBindings(h.ns).Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: hostileUser + "-edit", Namespace: h.ns},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: hostileUser}},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "edit"},
	}, metav1.CreateOptions{}); err != nil {
		h.Fatalf("binding %s to edit in %s: %v", hostileUser, h.ns, err)
	}
	// Admission refuses pods until the namespace's default ServiceAccount exists.
	h.must(ctx, 30*time.Second, "the default ServiceAccount of "+h.ns, func(ctx context.Context) (bool, string) {
		_, err := mc.CoreV1().ServiceAccounts(h.ns).Get(ctx, "default", metav1.GetOptions{})
		return err == nil, fmt.Sprint(err)
	})
	// The RBAC authorizer learns of the binding from its informer, a moment after the create returned.
	h.must(ctx, 30*time.Second, hostileUser+" allowed to create pods in "+h.ns, func(ctx context.Context) (bool, string) {
		review, err := h.alice.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, &authorizationv1.SelfSubjectAccessReview{
			Spec: authorizationv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &authorizationv1.ResourceAttributes{
				Namespace: h.ns, Verb: "create", Resource: "pods"}},
		}, metav1.CreateOptions{})
		if err != nil {
			return false, err.Error()
		}
		return review.Status.Allowed, review.Status.Reason
	})
}

// foreignObject is an object a workload admin made, which flotilla must leave as it is.
type foreignObject struct {
	cluster   *lab.Cluster
	kind      string
	namespace string
	name      string
	// get reads it again; fingerprint of what it read must not change.
	get         func(ctx context.Context) (runtime.Object, error)
	fingerprint string
	// volatile: the workload cluster's own controllers write its status (kwok, the quota controller), so
	// only its metadata and spec are compared.
	volatile bool
}

// fingerprintOf is an object's resourceVersion, or for volatile objects its content without status.
func fingerprintOf(obj runtime.Object, volatile bool) string {
	m := obj.(metav1.Object)
	if !volatile {
		return m.GetResourceVersion()
	}
	u, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	if err != nil {
		return "unreadable: " + err.Error()
	}
	delete(u, "status")
	if meta, ok := u["metadata"].(map[string]any); ok {
		delete(meta, "resourceVersion")
		delete(meta, "managedFields")
	}
	b, _ := json.Marshal(u)
	return string(b)
}

// foreign records an object a workload admin created (created is what Create returned).
func (h *hostile) foreign(c *lab.Cluster, kind string, created runtime.Object, volatile bool, get func(ctx context.Context) (runtime.Object, error)) {
	m := created.(metav1.Object)
	h.mu.Lock()
	defer h.mu.Unlock()
	h.foreigns = append(h.foreigns, &foreignObject{cluster: c, kind: kind, namespace: m.GetNamespace(), name: m.GetName(),
		get: get, fingerprint: fingerprintOf(created, volatile), volatile: volatile})
}

func (h *hostile) isForeign(c *lab.Cluster, kind, namespace, name string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.ContainsFunc(h.foreigns, func(f *foreignObject) bool {
		return f.cluster == c && f.kind == kind && f.namespace == namespace && f.name == name
	})
}

// openWorkloadNamespace creates the workload namespace of the case's name in its target cluster, as that
// cluster's admin opening it to flotilla (Pod Security baseline, as the lab's default namespace), with
// further labels.
func (h *hostile) openWorkloadNamespace(ctx context.Context, labels map[string]string) {
	all := map[string]string{tenancy.LabelOpen: "true", psaapi.EnforceLevelLabel: string(psaapi.LevelBaseline)}
	maps.Copy(all, labels)
	h.workloadNamespace(ctx, all)
}

// workloadNamespace creates the workload namespace of the case's name in its target cluster, as its admin,
// with exactly these labels, and waits for its default ServiceAccount.
func (h *hostile) workloadNamespace(ctx context.Context, labels map[string]string) {
	c := h.target
	ns, err := c.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: h.ns, Labels: labels}}, metav1.CreateOptions{})
	if err != nil {
		h.Fatalf("creating namespace %s in %s: %v", h.ns, c.Name, err)
	}
	h.foreign(c, "Namespace", ns, false, func(ctx context.Context) (runtime.Object, error) {
		return c.Client.CoreV1().Namespaces().Get(ctx, h.ns, metav1.GetOptions{})
	})
	h.must(ctx, 30*time.Second, "the default ServiceAccount of "+h.ns+" in "+c.Name, func(ctx context.Context) (bool, string) {
		_, err := c.Client.CoreV1().ServiceAccounts(h.ns).Get(ctx, "default", metav1.GetOptions{})
		return err == nil, fmt.Sprint(err)
	})
}

// foreignSecret creates a Secret in the case's namespace of its target cluster, as that cluster's admin.
func (h *hostile) foreignSecret(ctx context.Context, s *corev1.Secret) {
	c := h.target
	s.Namespace = h.ns
	created, err := c.Client.CoreV1().Secrets(h.ns).Create(ctx, s, metav1.CreateOptions{})
	if err != nil {
		h.Fatalf("creating the workload's Secret %s in %s: %v", s.Name, c.Name, err)
	}
	h.foreign(c, "Secret", created, false, func(ctx context.Context) (runtime.Object, error) {
		return c.Client.CoreV1().Secrets(h.ns).Get(ctx, s.Name, metav1.GetOptions{})
	})
}

// foreignConfigMap creates a ConfigMap in the case's namespace of its target cluster, as that cluster's admin.
func (h *hostile) foreignConfigMap(ctx context.Context, cm *corev1.ConfigMap) {
	c := h.target
	cm.Namespace = h.ns
	created, err := c.Client.CoreV1().ConfigMaps(h.ns).Create(ctx, cm, metav1.CreateOptions{})
	if err != nil {
		h.Fatalf("creating the workload's ConfigMap %s in %s: %v", cm.Name, c.Name, err)
	}
	h.foreign(c, "ConfigMap", created, false, func(ctx context.Context) (runtime.Object, error) {
		return c.Client.CoreV1().ConfigMaps(h.ns).Get(ctx, cm.Name, metav1.GetOptions{})
	})
}

// hostileObserver watches the management cluster's pods and Events for every case at once, so that
// polling at 100 ms costs the apiserver nothing, and notes when each pod was first seen bound.
type hostileObserver struct {
	pods, events cache.Indexer
	mu           sync.Mutex
	boundSeen    map[types.UID]time.Time
}

func newHostileObserver(ctx context.Context, c kubernetes.Interface) (*hostileObserver, error) {
	f := informers.NewSharedInformerFactory(c, 0)
	pods := f.Core().V1().Pods().Informer()
	events := f.Core().V1().Events().Informer()
	o := &hostileObserver{pods: pods.GetIndexer(), events: events.GetIndexer(), boundSeen: map[types.UID]time.Time{}}
	note := func(obj any) {
		if p, ok := obj.(*corev1.Pod); ok && p.Spec.NodeName != "" {
			o.mu.Lock()
			if _, seen := o.boundSeen[p.UID]; !seen {
				o.boundSeen[p.UID] = time.Now()
			}
			o.mu.Unlock()
		}
	}
	if _, err := pods.AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: note, UpdateFunc: func(_, obj any) { note(obj) }}); err != nil {
		return nil, err
	}
	f.Start(ctx.Done())
	for typ, ok := range f.WaitForCacheSync(ctx.Done()) {
		if !ok {
			return nil, fmt.Errorf("the %v cache never synced", typ)
		}
	}
	return o, nil
}

// boundAt is when p was first seen bound to a node.
func (o *hostileObserver) boundAt(p *corev1.Pod) time.Time {
	o.mu.Lock()
	defer o.mu.Unlock()
	if t, ok := o.boundSeen[p.UID]; ok {
		return t
	}
	return time.Now()
}

func (o *hostileObserver) pod(ns, name string) *corev1.Pod {
	obj, ok, _ := o.pods.GetByKey(ns + "/" + name)
	if !ok {
		return nil
	}
	return obj.(*corev1.Pod)
}

// casePods are the pods of a case in a namespace, by name.
func (o *hostileObserver) casePods(ns, caseName string) []*corev1.Pod {
	objs, _ := o.pods.ByIndex(cache.NamespaceIndex, ns)
	var out []*corev1.Pod
	for _, obj := range objs {
		if p := obj.(*corev1.Pod); p.Labels[hostileCaseLabel] == caseName && p.DeletionTimestamp == nil {
			out = append(out, p)
		}
	}
	slices.SortFunc(out, func(a, b *corev1.Pod) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// eventsOn are the Events of an object (kind and name, and UID when given) in a namespace.
func (o *hostileObserver) eventsOn(ns, kind, name string, uid types.UID) []*corev1.Event {
	objs, _ := o.events.ByIndex(cache.NamespaceIndex, ns)
	var out []*corev1.Event
	for _, obj := range objs {
		e := obj.(*corev1.Event)
		if e.InvolvedObject.Kind == kind && e.InvolvedObject.Name == name && (uid == "" || e.InvolvedObject.UID == "" || e.InvolvedObject.UID == uid) {
			out = append(out, e)
		}
	}
	return out
}

// shows reports whether the proxy shows reason with text in the message, in its status (phase reason, a
// condition, a container's waiting state) or in an Event, and describes what it shows.
func (o *hostileObserver) shows(p *corev1.Pod, reason, text string) (bool, string) {
	type shown struct{ where, reason, message string }
	var all []shown
	all = append(all, shown{"status", p.Status.Reason, p.Status.Message})
	for _, c := range p.Status.Conditions {
		if c.Reason != "" {
			all = append(all, shown{"condition " + string(c.Type), c.Reason, c.Message})
		}
	}
	for _, cs := range append(slices.Clone(p.Status.InitContainerStatuses), p.Status.ContainerStatuses...) {
		if w := cs.State.Waiting; w != nil {
			all = append(all, shown{"container " + cs.Name, w.Reason, w.Message})
		}
	}
	for _, e := range o.eventsOn(p.Namespace, "Pod", p.Name, p.UID) {
		all = append(all, shown{e.Type + " Event", e.Reason, e.Message})
	}
	var seen []string
	for _, s := range all {
		if s.reason == "" {
			continue
		}
		desc := fmt.Sprintf("%s %s: %s", s.where, s.reason, s.message)
		if reason != "" && s.reason == reason && strings.Contains(s.message, text) {
			return true, desc
		}
		seen = append(seen, desc)
	}
	return false, fmt.Sprintf("phase %s; %s", p.Status.Phase, strings.Join(seen, "; "))
}

// objectEvent reports whether an Event of the reason, with text in its message, names the object.
func (o *hostileObserver) objectEvent(ns, kind, name, reason, text string) (bool, string) {
	var seen []string
	for _, e := range o.eventsOn(ns, kind, name, "") {
		if e.Reason == reason && strings.Contains(e.Message, text) {
			return true, e.Type + " " + e.Reason + ": " + e.Message
		}
		seen = append(seen, e.Reason+": "+e.Message)
	}
	return false, fmt.Sprintf("events %v", seen)
}

// snapshot is what a workload cluster holds where no case may put anything: its namespaces and its
// kube-system.
type snapshot map[string]bool

func takeSnapshot(ctx context.Context, c *lab.Cluster) (snapshot, error) {
	s := snapshot{}
	nss, err := c.Client.CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	for _, n := range nss.Items {
		s["Namespace/"+n.Name] = true
	}
	for kind, names := range map[string]func() ([]string, error){
		"Pod": func() ([]string, error) {
			l, err := c.Client.CoreV1().Pods(metav1.NamespaceSystem).List(ctx, metav1.ListOptions{})
			return podNames(l), err
		},
		"Secret": func() ([]string, error) {
			l, err := c.Client.CoreV1().Secrets(metav1.NamespaceSystem).List(ctx, metav1.ListOptions{})
			return secretNames(l), err
		},
		"ServiceAccount": func() ([]string, error) {
			l, err := c.Client.CoreV1().ServiceAccounts(metav1.NamespaceSystem).List(ctx, metav1.ListOptions{})
			return saNames(l), err
		},
	} {
		ns, err := names()
		if err != nil {
			return nil, err
		}
		for _, n := range ns {
			s["kube-system/"+kind+"/"+n] = true
		}
	}
	return s, nil
}

func podNames(l *corev1.PodList) (out []string) {
	if l != nil {
		for _, x := range l.Items {
			out = append(out, x.Name)
		}
	}
	return out
}

func secretNames(l *corev1.SecretList) (out []string) {
	if l != nil {
		for _, x := range l.Items {
			out = append(out, x.Name)
		}
	}
	return out
}

func saNames(l *corev1.ServiceAccountList) (out []string) {
	if l != nil {
		for _, x := range l.Items {
			out = append(out, x.Name)
		}
	}
	return out
}

// sweep holds the case to the invariants: in every workload cluster, its namespace holds nothing the case
// does not allow (a namespace flotilla created only where a proxy was bound, for this management cluster,
// under Pod Security), and every foreign object is as it was.
func (h *hostile) sweep(ctx context.Context) {
	defer func() {
		if r := recover(); r != nil {
			if _, ok := r.(hostileAbort); !ok {
				h.Errorf("panic in sweep: %v\n%s", r, debug.Stack())
			}
		}
	}()
	// Proxies bound since the case's own checks count too (a DaemonSet's).
	for _, p := range h.obs.casePods(h.ns, h.c.name) {
		if p.Spec.NodeName != "" {
			h.mu.Lock()
			h.boundIn[p.Spec.NodeName] = true
			h.mu.Unlock()
		}
	}
	if h.ns != metav1.NamespaceSystem { // the suite checks every workload kube-system itself
		for _, c := range shared.Workloads {
			h.sweepCluster(ctx, c)
		}
	}
	for _, f := range h.foreigns {
		obj, err := f.get(ctx)
		switch {
		case err != nil:
			h.Errorf("the workload's %s %s/%s in %s: %v (flotilla must never delete it)", f.kind, f.namespace, f.name, f.cluster.Name, err)
		case fingerprintOf(obj, f.volatile) != f.fingerprint:
			h.Errorf("the workload's %s %s/%s in %s was changed: was %s, now %s", f.kind, f.namespace, f.name, f.cluster.Name,
				f.fingerprint, fingerprintOf(obj, f.volatile))
		}
	}
}

func (h *hostile) sweepCluster(ctx context.Context, c *lab.Cluster) {
	ns, err := c.Client.CoreV1().Namespaces().Get(ctx, h.ns, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return
	}
	if err != nil {
		h.Errorf("%s: reading namespace %s: %v", c.Name, h.ns, err)
		return
	}
	if !h.isForeign(c, "Namespace", "", h.ns) {
		h.mu.Lock()
		bound := h.boundIn[c.Name]
		h.mu.Unlock()
		switch {
		case h.c.disabled:
			h.Errorf("%s: namespace %s was created for a namespace that is not enabled (labels %v)", c.Name, h.ns, ns.Labels)
		case !bound:
			h.Errorf("%s: namespace %s was created, but no proxy of the case was bound to %s", c.Name, h.ns, c.Name)
		case ns.Labels[tenancy.LabelManagement] != h.managementID:
			h.Errorf("%s: namespace %s lacks %s=%s: labels %v", c.Name, h.ns, tenancy.LabelManagement, h.managementID, ns.Labels)
		}
		if level, err := psaapi.ParseLevel(ns.Labels[psaapi.EnforceLevelLabel]); ns.DeletionTimestamp == nil &&
			(err != nil || psaapi.CompareLevels(level, psaapi.LevelBaseline) < 0 || ns.Labels[psaapi.EnforceVersionLabel] != string(psaapi.VersionLatest)) {
			h.Errorf("%s: namespace %s that flotilla created does not enforce Pod Security baseline or stricter at latest: labels %v", c.Name, h.ns, ns.Labels)
		}
	}
	check := func(kind string, names []string, err error, system ...string) {
		if err != nil {
			h.Errorf("%s: listing %s in %s: %v", c.Name, kind, h.ns, err)
			return
		}
		for _, n := range names {
			if slices.Contains(system, n) || h.isForeign(c, kind, h.ns, n) || h.allowedHere(c, kind, n) {
				continue
			}
			h.Errorf("%s: %s %s/%s appeared, which the case does not allow", c.Name, kind, h.ns, n)
		}
	}
	cl := c.Client.CoreV1()
	pods, err := cl.Pods(h.ns).List(ctx, metav1.ListOptions{})
	check("Pod", podNames(pods), err)
	secrets, err := cl.Secrets(h.ns).List(ctx, metav1.ListOptions{})
	check("Secret", secretNames(secrets), err)
	cms, err := cl.ConfigMaps(h.ns).List(ctx, metav1.ListOptions{})
	var cmNames []string
	if err == nil {
		for _, x := range cms.Items {
			cmNames = append(cmNames, x.Name)
		}
	}
	check("ConfigMap", cmNames, err, "kube-root-ca.crt")
	svcs, err := cl.Services(h.ns).List(ctx, metav1.ListOptions{})
	var svcNames []string
	if err == nil {
		for _, x := range svcs.Items {
			svcNames = append(svcNames, x.Name)
		}
	}
	check("Service", svcNames, err)
	sas, err := cl.ServiceAccounts(h.ns).List(ctx, metav1.ListOptions{})
	check("ServiceAccount", saNames(sas), err, "default")
	ings, err := c.Client.NetworkingV1().Ingresses(h.ns).List(ctx, metav1.ListOptions{})
	var ingNames []string
	if err == nil {
		for _, x := range ings.Items {
			ingNames = append(ingNames, x.Name)
		}
	}
	check("Ingress", ingNames, err)
	pvcs, err := cl.PersistentVolumeClaims(h.ns).List(ctx, metav1.ListOptions{})
	var pvcNames []string
	if err == nil {
		for _, x := range pvcs.Items {
			pvcNames = append(pvcNames, x.Name)
		}
	}
	check("PersistentVolumeClaim", pvcNames, err)
}

// hostileNamespaceName is a management namespace name for a case: readable, unique, a DNS label.
func hostileNamespaceName(index int, caseName string) string {
	part := caseName
	if len(part) > 40 {
		part = strings.Trim(part[:40], "-")
	}
	return fmt.Sprintf("h%02d-%s-%d", index, part, time.Now().UnixNano()%100000)
}

// TestHostile runs the hostile-input table (hostileCases) as alice and holds every case to the tenancy
// contract's invariants.
func TestHostile(t *testing.T) {
	ctx := testContext(t, 8*time.Minute)
	mc := shared.Management.Client
	// Tests before this one stop and start flotillas; the suite measures from a fleet that is all Ready.
	for _, c := range shared.Workloads {
		if err := shared.WaitVirtualNodeReady(ctx, c.Name); err != nil {
			t.Fatal(err)
		}
	}
	alice, aliceConfig, err := shared.UserClient(hostileUser)
	if err != nil {
		t.Fatal(err)
	}
	obs, err := newHostileObserver(ctx, mc)
	if err != nil {
		t.Fatal(err)
	}
	ks, err := mc.CoreV1().Namespaces().Get(ctx, metav1.NamespaceSystem, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	nodes, err := mc.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	env := &hostileEnv{alice: alice, aliceConfig: aliceConfig, obs: obs, managementID: string(ks.UID), virtualNodes: len(nodes.Items)}
	before := map[string]snapshot{}
	for _, c := range shared.Workloads {
		if before[c.Name], err = takeSnapshot(ctx, c); err != nil {
			t.Fatal(err)
		}
	}

	// Virtual nodes must stay Ready throughout. A single probe of a workload apiserver that times out on this
	// busy two-core machine (1 s, node.DefaultProbeTimeout) turns a node NotReady until the next probe 2 s
	// later; such blips are logged, and a node NotReady for notReadyLimit samples in a row fails the suite.
	const notReadyLimit = 4
	var notReady, blips []string
	var notReadyMu sync.Mutex
	inARow := map[string]int{}
	watching, stopWatching := context.WithCancel(ctx)
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			for _, c := range shared.Workloads {
				n, err := mc.CoreV1().Nodes().Get(watching, c.Name, metav1.GetOptions{})
				if watching.Err() != nil {
					return
				}
				if err != nil || !lab.NodeReady(n) {
					why := fmt.Sprint(err)
					if err == nil {
						for _, cond := range n.Status.Conditions {
							if cond.Type == corev1.NodeReady {
								why = fmt.Sprintf("Ready=%s %s: %s (since %s)", cond.Status, cond.Reason, cond.Message, cond.LastTransitionTime.Format(time.TimeOnly))
							}
						}
					}
					notReadyMu.Lock()
					inARow[c.Name]++
					sample := fmt.Sprintf("%s at %s: %s", c.Name, time.Now().Format(time.TimeOnly), why)
					if inARow[c.Name] >= notReadyLimit {
						notReady = append(notReady, sample)
					} else {
						blips = append(blips, sample)
					}
					notReadyMu.Unlock()
				} else {
					notReadyMu.Lock()
					inARow[c.Name] = 0
					notReadyMu.Unlock()
				}
			}
			select {
			case <-watching.Done():
				return
			case <-tick.C:
			}
		}
	}()

	cases := hostileCases()
	runs := make([]*hostile, len(cases))
	names := map[string]bool{}
	for i, c := range cases {
		if names[c.name] {
			t.Fatalf("two cases named %s", c.name)
		}
		names[c.name] = true
		runs[i] = &hostile{hostileEnv: env, c: c, index: i, ns: hostileNamespaceName(i, c.name),
			target: shared.Workloads[i%len(shared.Workloads)], allowed: map[string]bool{}, boundIn: map[string]bool{},
			proxies: map[string]*corev1.Pod{}, delegates: map[string]*corev1.Pod{}}
	}
	// Clean-up after the report: namespaces (management and workload), then whatever a case made elsewhere.
	t.Cleanup(func() {
		for _, h := range runs {
			for i := len(h.cleanups) - 1; i >= 0; i-- {
				h.cleanups[i]()
			}
			if h.c.namespace == "" {
				for _, c := range shared.Workloads {
					_ = c.Client.CoreV1().Namespaces().Delete(context.Background(), h.ns, metav1.DeleteOptions{})
				}
			}
		}
	})

	started := time.Now()
	sem := make(chan struct{}, hostileConcurrency)
	var wg sync.WaitGroup
	for _, h := range runs[:len(runs)-1] {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			h.run(ctx)
		})
	}
	wg.Wait()
	// The last case is a plain pod: flotilla still serves after all the others.
	runs[len(runs)-1].run(ctx)
	t.Logf("%d cases played in %s", len(runs), time.Since(started).Round(time.Second))

	stopWatching()
	<-watched
	for _, n := range blips {
		t.Logf("virtual node not Ready for a moment during the suite: %s", n)
	}
	for _, n := range notReady {
		t.Errorf("virtual node not Ready for %d s in a row during the suite: %s", notReadyLimit, n)
	}
	if !shared.Running() {
		t.Errorf("a process of the lab exited during the suite (a flotilla?); see %s/logs", shared.Dir)
	}
	for _, h := range runs {
		h.sweep(ctx)
	}
	for _, c := range shared.Workloads {
		after, err := takeSnapshot(ctx, c)
		if err != nil {
			t.Fatal(err)
		}
		for k := range after {
			if before[c.Name][k] {
				continue
			}
			if ns, ok := strings.CutPrefix(k, "Namespace/"); ok && slices.ContainsFunc(runs, func(h *hostile) bool { return h.ns == ns }) {
				continue // checked by its case
			}
			t.Errorf("%s: %s appeared during the suite", c.Name, k)
		}
	}

	var table strings.Builder
	fmt.Fprintf(&table, "\n%-40s | %-11s | %-7s | %s | %s\n", "case", "cluster", "seconds", "result", "outcome (expected; observed)")
	for _, h := range runs {
		t.Run(h.c.name, func(t *testing.T) {
			for _, f := range h.failures {
				t.Error(f)
			}
		})
		result := "ok"
		if len(h.failures) > 0 {
			result = "FAIL"
		}
		observed := strings.Join(h.observed, " / ")
		if len(observed) > 240 {
			observed = observed[:240] + "..."
		}
		fmt.Fprintf(&table, "%-40s | %-11s | %7.2f | %-6s | %s; %s\n", h.c.name, h.target.Name, h.took.Seconds(), result, h.c.want.outcome, observed)
	}
	t.Log(table.String())
}
