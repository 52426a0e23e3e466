package provider

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/util/workqueue"

	"github.com/flotilla-io/flotilla/provider/follow"
	"github.com/flotilla-io/flotilla/tenancy"
	"github.com/flotilla-io/flotilla/test/lab"
)

// These tests drive the tenancy contract (DESIGN.md, "Tenancy") against the lab: what the workload apiserver
// decides (Pod Security admission, ServiceAccounts, namespaces someone else holds) and what flotilla leaves
// untouched.

// labelManagementNamespace sets (value non-nil) or removes a label of the test's management namespace and
// waits until the provider's namespace cache has the change.
func (h *harness) labelManagementNamespace(namespace, key string, value *string) {
	h.t.Helper()
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{"labels": map[string]*string{key: value}}})
	if err != nil {
		h.t.Fatal(err)
	}
	if _, err := h.mgmt.CoreV1().Namespaces().Patch(h.ctx, namespace, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		h.t.Fatal(err)
	}
	h.poll("the namespace label in the provider's cache", func() (bool, error) {
		ns, err := h.namespaces.Get(namespace)
		if err != nil {
			return false, nil
		}
		got, has := ns.Labels[key]
		return (value == nil && !has) || (value != nil && has && got == *value), nil
	})
}

// workloadNS is the workload namespace of that name, nil if there is none.
func (h *harness) workloadNS(name string) *corev1.Namespace {
	h.t.Helper()
	ns, err := h.workload.CoreV1().Namespaces().Get(h.ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		h.t.Fatal(err)
	}
	return ns
}

// createWorkloadNamespace makes a workload namespace with the given labels, as the workload admin or another
// flotilla would, and removes it when the test ends.
func (h *harness) createWorkloadNamespace(name string, labels map[string]string) *corev1.Namespace {
	h.t.Helper()
	ns, err := h.workload.CoreV1().Namespaces().Create(h.ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}, metav1.CreateOptions{})
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(func() { lab.DeleteNamespace(h.workload, name) })
	return ns
}

// expectNothingDelegated fails if the workload cluster holds the test's namespace or the named pod.
func (h *harness) expectNothingDelegated(name string) {
	h.t.Helper()
	if ns := h.workloadNS(h.ns); ns != nil {
		h.t.Errorf("workload namespace %s created: %v", h.ns, ns.Labels)
	}
	if h.workloadPod(h.ns, name) != nil {
		h.t.Errorf("delegate %s created", name)
	}
}

// drain empties a queue no worker serves.
func drain(q workqueue.TypedRateLimitingInterface[string]) {
	for q.Len() > 0 {
		key, _ := q.Get()
		q.Done(key)
	}
}

func TestNamespaceNotEnabled(t *testing.T) {
	h := newHarness(t)
	h.labelManagementNamespace(h.ns, tenancy.LabelEnabled, nil)
	proxy := h.bind(h.newProxy("web-1"))

	if err := h.sync(proxy); err != nil {
		t.Errorf("a proxy of a namespace that is not enabled is retried: %v", err)
	}
	h.expectEvent("web-1", ReasonNamespaceNotEnabled, "kubectl label namespace "+h.ns+" flotilla.io/enabled=true")
	s := h.status(proxy)
	if s.Phase != corev1.PodPending || s.Reason != ReasonNamespaceNotEnabled || !strings.Contains(s.Message, "flotilla.io/enabled=true") {
		t.Errorf("proxy status %+v", s)
	}
	h.expectNothingDelegated("web-1")

	// The pod controller writes the status; syncing again (an update of the proxy, say) writes nothing more.
	proxy = h.setProxyStatus(proxy, s)
	drain(h.p.statuses)
	if err := h.sync(proxy); err != nil {
		t.Error(err)
	}
	if n := h.p.statuses.Len(); n > 0 {
		t.Errorf("an unchanged problem queued its status again (%d)", n)
	}
	if got := h.status(proxy); got.Reason != ReasonNamespaceNotEnabled {
		t.Errorf("status after the write %+v", got)
	}
	select {
	case pod := <-h.notified:
		t.Errorf("notified again: %+v", pod.Status)
	default:
	}
	h.expectNothingDelegated("web-1")

	// Labelling the namespace delegates its waiting proxies.
	h.labelManagementNamespace(h.ns, tenancy.LabelEnabled, new("true"))
	drain(h.p.syncs) // leave only what NamespaceChanged queues
	h.p.NamespaceChanged(h.ns)
	if key, _ := h.p.syncs.Get(); key != h.ns+"/web-1" {
		t.Errorf("NamespaceChanged queued %q", key)
	} else {
		h.p.syncs.Done(key)
	}
	if err := h.sync(proxy); err != nil {
		t.Fatal(err)
	}
	if h.workloadPod(h.ns, "web-1") == nil {
		t.Fatal("no delegate once the namespace is enabled")
	}

	// Removing the label stops new delegations only: the delegate keeps following its proxy.
	h.labelManagementNamespace(h.ns, tenancy.LabelEnabled, nil)
	updated, err := h.mgmt.CoreV1().Pods(h.ns).Get(h.ctx, "web-1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	updated.Labels["version"] = "2"
	if updated, err = h.mgmt.CoreV1().Pods(h.ns).Update(h.ctx, updated, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	proxy = h.cached(updated, func(p *corev1.Pod) bool { return p.ResourceVersion == updated.ResourceVersion })
	h.poll("the delegate updated after the opt-out", func() (bool, error) {
		err := h.sync(proxy)
		d := h.workloadPod(h.ns, "web-1")
		return d != nil && d.Labels["version"] == "2", err
	})
	other := h.bind(h.newProxy("web-2"))
	if err := h.sync(other); err != nil {
		t.Error(err)
	}
	if h.workloadPod(h.ns, "web-2") != nil {
		t.Error("a new proxy was delegated after the opt-out")
	}
}

// TestWorkloadNamespaceForbidden: flotilla never puts anything into a workload system namespace or one
// another management cluster holds.
func TestWorkloadNamespaceForbidden(t *testing.T) {
	t.Run("kube-system", func(t *testing.T) {
		h := newHarness(t)
		// A tolerate-everything DaemonSet's pod in the management cluster's kube-system, which someone enabled.
		h.labelManagementNamespace(metav1.NamespaceSystem, tenancy.LabelEnabled, new("true"))
		t.Cleanup(func() { h.labelManagementNamespace(metav1.NamespaceSystem, tenancy.LabelEnabled, nil) })
		pod := h.newProxy(lab.UniqueName("agent", ""))
		pod.Namespace, pod.Spec.ServiceAccountName = metav1.NamespaceSystem, ""
		proxy := h.bind(pod)
		t.Cleanup(func() {
			_ = h.mgmt.CoreV1().Pods(metav1.NamespaceSystem).Delete(h.ctx, proxy.Name, metav1.DeleteOptions{GracePeriodSeconds: new(int64(0))})
		})
		if err := h.sync(proxy); err == nil {
			t.Error("a forbidden namespace should be retried (its admin may open it)")
		}
		s := h.status(proxy)
		if s.Reason != ReasonWorkloadNamespaceForbidden || !strings.Contains(s.Message, "workload cluster eu-west-3-1") || !strings.Contains(s.Message, "kube-system") {
			t.Errorf("proxy status %+v", s)
		}
		if h.workloadPod(metav1.NamespaceSystem, proxy.Name) != nil {
			t.Error("a delegate was created in the workload kube-system")
		}
	})
	t.Run("another management cluster's", func(t *testing.T) {
		h := newHarness(t)
		before := h.createWorkloadNamespace(h.ns, map[string]string{tenancy.LabelManagement: "mgmt-2"})
		proxy := h.bind(h.newProxy("web-1"))
		if err := h.sync(proxy); err == nil {
			t.Error("a forbidden namespace should be retried")
		}
		h.expectEvent("web-1", ReasonWorkloadNamespaceForbidden, "another management cluster (mgmt-2)")
		s := h.status(proxy)
		if s.Reason != ReasonWorkloadNamespaceForbidden || !strings.Contains(s.Message, "flotilla.io/open=true") {
			t.Errorf("proxy status %+v", s)
		}
		if now := h.workloadNS(h.ns); now == nil || now.ResourceVersion != before.ResourceVersion {
			t.Errorf("the other management cluster's namespace was touched: %v", now)
		}
		if h.workloadPod(h.ns, "web-1") != nil {
			t.Error("a delegate was created")
		}
		// Its workload admin opens it to flotilla: the retry delegates.
		before.Labels[tenancy.LabelOpen] = "true"
		if _, err := h.workload.CoreV1().Namespaces().Update(h.ctx, before, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		if err := h.sync(proxy); err != nil {
			t.Fatal(err)
		}
		if h.workloadPod(h.ns, "web-1") == nil {
			t.Error("no delegate in the opened namespace")
		}
	})
}

func TestPodSecurity(t *testing.T) {
	t.Run("a created namespace enforces the stricter of the floor and the management namespace's level", func(t *testing.T) {
		h := newHarness(t)
		h.labelManagementNamespace(h.ns, "pod-security.kubernetes.io/enforce", new("restricted"))
		pod := h.newProxy("web-1")
		pod.Spec.SecurityContext = &corev1.PodSecurityContext{RunAsNonRoot: new(true), SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault}}
		pod.Spec.Containers[0].SecurityContext = &corev1.SecurityContext{AllowPrivilegeEscalation: new(false),
			Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}}}
		proxy := h.bind(pod)
		if err := h.sync(proxy); err != nil {
			t.Fatal(err)
		}
		ns := h.workloadNS(h.ns)
		if ns == nil || ns.Labels["pod-security.kubernetes.io/enforce"] != "restricted" || ns.Labels["pod-security.kubernetes.io/enforce-version"] != "latest" {
			t.Errorf("workload namespace %v", ns)
		}
		if h.workloadPod(h.ns, "web-1") == nil {
			t.Error("a restricted pod was not delegated")
		}
	})
	t.Run("the workload apiserver refuses a privileged delegate", func(t *testing.T) {
		h := newHarness(t)
		pod := h.newProxy("web-1")
		pod.Spec.Containers[0].SecurityContext = &corev1.SecurityContext{Privileged: new(true)}
		proxy := h.bind(pod) // the management namespace enforces nothing
		err := h.sync(proxy)
		if err == nil {
			t.Error("a refusal should be retried")
		}
		ns := h.workloadNS(h.ns)
		if ns == nil || ns.Labels["pod-security.kubernetes.io/enforce"] != "baseline" {
			t.Errorf("workload namespace %v", ns)
		}
		h.expectEvent("web-1", ReasonRefused, `violates PodSecurity "baseline:latest": privileged`)
		s := h.status(proxy)
		if s.Reason != ReasonRefused || !strings.Contains(s.Message, "workload cluster eu-west-3-1 refused the delegate pod") ||
			!strings.Contains(s.Message, `container "app" must not set securityContext.privileged=true`) {
			t.Errorf("proxy status %+v", s)
		}
		t.Logf("the proxy reads: %s", s.Message)
		if !apierrors.IsForbidden(err) || err.Error() != s.Message {
			t.Errorf("the error %q should read as the proxy's message and keep the apiserver's Forbidden: %#v", err, err)
		}
		if h.workloadPod(h.ns, "web-1") != nil {
			t.Error("a privileged delegate exists")
		}
	})
}

func TestForeignServiceAccountIsNameConflict(t *testing.T) {
	h := newHarness(t)
	h.createWorkloadNamespace(h.ns, map[string]string{tenancy.LabelOpen: "true"})
	foreign, err := h.workload.CoreV1().ServiceAccounts(h.ns).Create(h.ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "web"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	proxy := h.bind(h.newProxy("web-1"))
	err = h.sync(proxy)
	if err == nil {
		t.Error("a conflict should be retried")
	}
	if refused, ok := tenancy.IsRefused(err); !ok || refused.Reason != tenancy.ReasonNameConflict {
		t.Errorf("the error does not keep tenancy's refusal: %#v", err)
	}
	h.expectEvent("web-1", ReasonNameConflict, "ServiceAccount "+h.ns+"/web")
	if s := h.status(proxy); s.Reason != ReasonNameConflict || !strings.Contains(s.Message, "workload cluster eu-west-3-1") {
		t.Errorf("proxy status %+v", s)
	}
	if h.workloadPod(h.ns, "web-1") != nil {
		t.Error("a delegate runs as the foreign ServiceAccount")
	}
	if now, err := h.workload.CoreV1().ServiceAccounts(h.ns).Get(h.ctx, "web", metav1.GetOptions{}); err != nil || now.ResourceVersion != foreign.ResourceVersion {
		t.Errorf("the foreign ServiceAccount was touched: %v, %v", now, err)
	}
}

func TestUnsupportedReferenceIsRefused(t *testing.T) {
	h := newHarness(t)
	pod := h.newProxy("web-1")
	pod.Spec.Volumes = []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{
		PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "data-web-1"}}}}
	proxy := h.bind(pod)
	if err := h.sync(proxy); err != nil {
		t.Errorf("a refusal from the pod's spec is retried: %v", err)
	}
	h.expectEvent("web-1", ReasonUnsupportedReference, `PersistentVolumeClaim "data-web-1"`)
	if s := h.status(proxy); s.Phase != corev1.PodPending || s.Reason != ReasonUnsupportedReference || !strings.Contains(s.Message, `volume "data"`) {
		t.Errorf("proxy status %+v", s)
	}
	h.expectNothingDelegated("web-1")
}

// TestCollectTenancy: the collector deletes the workload namespaces and ServiceAccounts flotilla created
// for this management cluster once nothing uses them and they are older than tenancy.CollectionGrace, and
// nothing else.
func TestCollectTenancy(t *testing.T) {
	h := newHarness(t)
	ours := map[string]string{tenancy.LabelManagement: managementID}
	name := func(what string) string { return lab.UniqueName(what, "") }

	// The test's own namespace: a management pod is bound to the virtual node, its delegate not made yet.
	h.bind(h.newProxy("web-1"))
	h.createWorkloadNamespace(h.ns, ours)
	unused := h.createWorkloadNamespace(name("unused"), ours)
	opened := h.createWorkloadNamespace(name("opened"), map[string]string{tenancy.LabelManagement: managementID, tenancy.LabelOpen: "true"})
	others := h.createWorkloadNamespace(name("others"), map[string]string{tenancy.LabelManagement: "mgmt-2"})
	unlabelled := h.createWorkloadNamespace(name("theirs"), nil)
	// A delegate of another virtual node of this management cluster, whose proxy this node cannot see.
	busy := h.createWorkloadNamespace(name("busy"), ours)
	delegate := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: busy.Name, Name: "d", Labels: OwnerLabels(managementID, "another-node")},
		Spec:       corev1.PodSpec{SchedulerName: "nobody", Containers: []corev1.Container{{Name: "x", Image: "x"}}},
	}
	h.poll("the default ServiceAccount of "+busy.Name, func() (bool, error) {
		_, err := h.workload.CoreV1().ServiceAccounts(busy.Name).Get(h.ctx, "default", metav1.GetOptions{})
		return err == nil, nil
	})
	if _, err := h.workload.CoreV1().Pods(busy.Name).Create(h.ctx, delegate, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// Someone's pod in a namespace flotilla created: it would go with the namespace.
	foreign := h.createWorkloadNamespace(name("foreign"), ours)
	h.poll("the default ServiceAccount of "+foreign.Name, func() (bool, error) {
		_, err := h.workload.CoreV1().ServiceAccounts(foreign.Name).Get(h.ctx, "default", metav1.GetOptions{})
		return err == nil, nil
	})
	stranger := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: foreign.Name, Name: "stranger"},
		Spec:       corev1.PodSpec{SchedulerName: "nobody", Containers: []corev1.Container{{Name: "x", Image: "x"}}},
	}
	if _, err := h.workload.CoreV1().Pods(foreign.Name).Create(h.ctx, stranger, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// ServiceAccounts in the opened namespace: flotilla's, one a pod runs as, someone else's.
	for _, sa := range []*corev1.ServiceAccount{
		{ObjectMeta: metav1.ObjectMeta{Name: "idle", Labels: ours}},
		{ObjectMeta: metav1.ObjectMeta{Name: "used", Labels: ours}},
		{ObjectMeta: metav1.ObjectMeta{Name: "admins"}},
	} {
		if _, err := h.workload.CoreV1().ServiceAccounts(opened.Name).Create(h.ctx, sa, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	user := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: opened.Name, Name: "user"},
		Spec:       corev1.PodSpec{SchedulerName: "nobody", ServiceAccountName: "used", Containers: []corev1.Container{{Name: "x", Image: "x"}}},
	}
	if _, err := h.workload.CoreV1().Pods(opened.Name).Create(h.ctx, user, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	// Everything was just created: a sync may be about to create the delegate that uses it.
	h.p.collectTenancy(h.ctx, time.Now())
	if ns := h.workloadNS(unused.Name); ns == nil || ns.DeletionTimestamp != nil {
		t.Errorf("namespace %s deleted within the grace period", unused.Name)
	}
	if _, err := h.workload.CoreV1().ServiceAccounts(opened.Name).Get(h.ctx, "idle", metav1.GetOptions{}); err != nil {
		t.Errorf("ServiceAccount idle deleted within the grace period: %v", err)
	}

	// Once the grace period is over.
	h.p.collectTenancy(h.ctx, time.Now().Add(tenancy.CollectionGrace))
	for _, tc := range []struct {
		ns   *corev1.Namespace
		kept bool
	}{
		{ns: h.workloadNS(h.ns), kept: true}, {ns: unused}, {ns: opened, kept: true}, {ns: others, kept: true},
		{ns: unlabelled, kept: true}, {ns: busy, kept: true}, {ns: foreign, kept: true},
	} {
		now := h.workloadNS(tc.ns.Name)
		if kept := now != nil && now.DeletionTimestamp == nil; kept != tc.kept {
			t.Errorf("namespace %s %v kept = %v, want %v", tc.ns.Name, tc.ns.Labels, kept, tc.kept)
		}
	}
	for sa, want := range map[string]bool{"idle": false, "used": true, "admins": true, "default": true} {
		_, err := h.workload.CoreV1().ServiceAccounts(opened.Name).Get(h.ctx, sa, metav1.GetOptions{})
		if got := err == nil; got != want {
			t.Errorf("ServiceAccount %s kept = %v (%v), want %v", sa, got, err, want)
		}
	}
}

// dropping is a ReferenceFollower that copies nothing and drops the given references, as package follow does
// for optional references the management cluster does not hold.
type dropping []follow.Reference

func (d dropping) EnsureFor(context.Context, *corev1.Pod) ([]follow.Reference, error) { return d, nil }

// TestDroppedReferencesDoNotResolve: a workload Secret of the name of an optional Secret the management
// cluster does not hold is never what the delegate gets, and the workload apiserver accepts what is left.
func TestDroppedReferencesDoNotResolve(t *testing.T) {
	h := newHarness(t)
	h.p.cfg.References = dropping{{Kind: follow.KindSecret, Name: "shadow", Optional: true}}
	h.setUpWorkloadNamespace()
	if _, err := h.workload.CoreV1().Secrets(h.ns).Create(h.ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "shadow"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	pod := h.newProxy("web-1")
	pod.Spec.Volumes = []corev1.Volume{
		{Name: "plain", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "shadow", Optional: new(true)}}},
		{Name: "projected", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{Sources: []corev1.VolumeProjection{
			{Secret: &corev1.SecretProjection{LocalObjectReference: corev1.LocalObjectReference{Name: "shadow"}, Optional: new(true)}},
		}}}},
	}
	pod.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "plain", MountPath: "/plain"}, {Name: "projected", MountPath: "/projected"}}
	pod.Spec.Containers[0].Env = []corev1.EnvVar{{Name: "TOKEN", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
		LocalObjectReference: corev1.LocalObjectReference{Name: "shadow"}, Key: "token", Optional: new(true)}}}}
	pod.Spec.ImagePullSecrets = []corev1.LocalObjectReference{{Name: "shadow"}}
	proxy := h.bind(pod)
	if err := h.sync(proxy); err != nil {
		t.Fatal(err)
	}
	d := h.workloadPod(h.ns, "web-1")
	if d == nil {
		t.Fatal("no delegate")
	}
	for _, v := range d.Spec.Volumes {
		switch {
		case v.Name == "plain" && v.EmptyDir == nil:
			t.Errorf("volume plain is %+v, want an emptyDir", v.VolumeSource)
		case v.Name == "projected" && (v.Projected == nil || len(v.Projected.Sources) != 0):
			t.Errorf("volume projected is %+v, want no sources", v.VolumeSource)
		}
	}
	if len(d.Spec.Containers[0].Env) != 0 || len(d.Spec.ImagePullSecrets) != 0 {
		t.Errorf("env %v, image pull secrets %v", d.Spec.Containers[0].Env, d.Spec.ImagePullSecrets)
	}
}

// TestDelegatesReadTenancyFromTheCache: once the workload cache holds the namespace and ServiceAccount a
// delegate needs, the next delegate reads neither from the apiserver (its create is its one request).
func TestDelegatesReadTenancyFromTheCache(t *testing.T) {
	h := newHarness(t)
	if err := h.sync(h.bind(h.newProxy("web-1"))); err != nil {
		t.Fatal(err)
	}
	var reads int64
	// The cache holds what the first delegate made once its watches have seen it.
	err := wait.PollUntilContextTimeout(h.ctx, 50*time.Millisecond, limit, true, func(context.Context) (bool, error) {
		proxy := h.bind(h.newProxy(lab.UniqueName("web", "")))
		before := h.tenancyReads.Load()
		if err := h.sync(proxy); err != nil {
			return false, err
		}
		reads = h.tenancyReads.Load() - before
		return reads == 0, nil
	})
	if err != nil {
		t.Fatalf("each delegate still read %d namespaces or ServiceAccounts from the apiserver: %v", reads, err)
	}
}
