package follow

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"

	"github.com/flotilla-io/flotilla/tenancy"
	"github.com/flotilla-io/flotilla/test/lab"
)

// These tests drive the mechanism against the lab's apiservers (lab_test.go).

func configMap(name string, data map[string]string) *corev1.ConfigMap {
	return &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name}, Data: data}
}

// proxyPod is a pod for the fixture's namespace and virtual node (set by the fixture or by bind).
func proxyPod(name string, labels map[string]string, spec corev1.PodSpec) *corev1.Pod {
	if len(spec.Containers) == 0 {
		spec.Containers = []corev1.Container{{Name: "c", Image: "nginx"}}
	}
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}, Spec: spec}
}

// bind creates the proxy in the management cluster, bound to the fixture's virtual node, and returns it.
func (fx *fixture) bind(pod *corev1.Pod) *corev1.Pod {
	fx.t.Helper()
	pod.Namespace, pod.Spec.NodeName = fx.ns, fx.node
	created, err := fx.management.CoreV1().Pods(fx.ns).Create(fx.ctx, pod, metav1.CreateOptions{})
	if err != nil {
		fx.t.Fatal(err)
	}
	return created
}

func envFrom(cm string, optional bool) corev1.PodSpec {
	return corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "nginx", EnvFrom: []corev1.EnvFromSource{
		{ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: cm}, Optional: &optional}},
	}}}}
}

func TestEnsureFor(t *testing.T) {
	yes := true
	secretVolume := corev1.Volume{Name: "creds", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "creds"}}}
	keyRef := func(cm, key string) corev1.EnvVar {
		return corev1.EnvVar{Name: "K", ValueFrom: &corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{
			LocalObjectReference: corev1.LocalObjectReference{Name: cm}, Key: key}}}
	}

	t.Run("copies what the pod references, once", func(t *testing.T) {
		creds := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "creds"}, Data: map[string][]byte{"p": []byte("s3cret")}}
		fx := newFixture(t, []runtime.Object{configMap("app", map[string]string{"a": "1"}), creds}, nil)
		spec := envFrom("app", false)
		spec.Volumes = []corev1.Volume{secretVolume}
		pod := fx.bind(proxyPod("p", nil, spec))
		if drop, err := fx.f.EnsureFor(fx.ctx, pod); err != nil || drop != nil {
			t.Fatalf("EnsureFor = %v, %v", drop, err)
		}
		cm, err := fx.workload.CoreV1().ConfigMaps(fx.ns).Get(fx.ctx, "app", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if cm.Data["a"] != "1" || cm.Labels["flotilla.io/node"] != fx.node || cm.Annotations[AnnotationSourceHash] == "" {
			t.Errorf("copy = %+v", cm)
		}
		if s, err := fx.workload.CoreV1().Secrets(fx.ns).Get(fx.ctx, "creds", metav1.GetOptions{}); err != nil || string(s.Data["p"]) != "s3cret" {
			t.Errorf("secret copy = %v, %v", s, err)
		}
		// A repeated server-side apply of the same content would leave the copies' resourceVersions alone:
		// count the requests instead.
		before := fx.writes.Load()
		if _, err := fx.f.EnsureFor(fx.ctx, pod); err != nil {
			t.Fatal(err)
		}
		if after := fx.writes.Load(); after != before {
			t.Errorf("second EnsureFor wrote %d times; the copies were current", after-before)
		}
	})

	t.Run("a missing mandatory reference blocks and copies nothing", func(t *testing.T) {
		fx := newFixture(t, []runtime.Object{configMap("app", nil)}, nil)
		spec := envFrom("app", false)
		spec.Volumes = []corev1.Volume{secretVolume}
		_, err := fx.f.EnsureFor(fx.ctx, fx.bind(proxyPod("p", nil, spec)))
		var missing *MissingReferenceError
		if !errors.As(err, &missing) || missing.Reason != ReasonMandatorySecretNotFound || missing.Kind != KindSecret || missing.Name != "creds" {
			t.Fatalf("EnsureFor = %v, want a missing secret creds", err)
		}
		if err.Error() != `secret "creds" not found` {
			t.Errorf("message = %q, want the kubelet's", err.Error())
		}
		if n := fx.writes.Load(); n != 0 {
			t.Errorf("%d writes to the workload cluster", n)
		}
		if _, err := fx.workload.CoreV1().ConfigMaps(fx.ns).Get(fx.ctx, "app", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Errorf("the ConfigMap was copied: %v", err)
		}
	})

	t.Run("a missing mandatory key blocks", func(t *testing.T) {
		fx := newFixture(t, []runtime.Object{configMap("app", map[string]string{"a": "1"})}, nil)
		spec := corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "nginx", Env: []corev1.EnvVar{keyRef("app", "b")}}}}
		_, err := fx.f.EnsureFor(fx.ctx, fx.bind(proxyPod("p", nil, spec)))
		var missing *MissingReferenceError
		if !errors.As(err, &missing) || missing.Reason != ReasonMandatoryConfigMapKeyNotFound || missing.Key != "b" {
			t.Fatalf("EnsureFor = %v, want a missing key", err)
		}
	})

	t.Run("a missing optional reference does not block, is dropped and gets the kubelet's event", func(t *testing.T) {
		fx := newFixture(t, nil, nil)
		spec := envFrom("maybe", true)
		spec.Volumes = []corev1.Volume{{Name: "v", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "s", Optional: &yes}}}}
		drop, err := fx.f.EnsureFor(fx.ctx, fx.bind(proxyPod("p", nil, spec)))
		if err != nil {
			t.Fatal(err)
		}
		if want := []Reference{{Kind: KindConfigMap, Name: "maybe", Optional: true}, {Kind: KindSecret, Name: "s", Optional: true}}; !reflect.DeepEqual(drop, want) {
			t.Errorf("drop = %+v, want %+v", drop, want)
		}
		var got []string
		for range 2 {
			select {
			case e := <-fx.events.fake.Events:
				got = append(got, e)
			default:
			}
		}
		if len(got) != 2 || !strings.Contains(got[0], ReasonOptionalConfigMapNotFound) || !strings.Contains(got[1], ReasonOptionalSecretNotFound) {
			t.Errorf("events = %v", got)
		}
		fx.expectEvent("p", ReasonOptionalConfigMapNotFound, `"maybe"`)
		fx.expectEvent("p", ReasonOptionalSecretNotFound, `"s"`)
	})

	t.Run("a foreign object of the same name is left alone", func(t *testing.T) {
		foreign := configMap("app", map[string]string{"theirs": "x"})
		fx := newFixture(t, []runtime.Object{configMap("app", map[string]string{"a": "1"})}, []runtime.Object{foreign})
		before, err := fx.workload.CoreV1().ConfigMaps(fx.ns).Get(fx.ctx, "app", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		pod := fx.bind(proxyPod("p", nil, envFrom("app", false)))
		_, err = fx.f.EnsureFor(fx.ctx, pod)
		var conflict *ConflictError
		if !errors.As(err, &conflict) || conflict.Reason != ReasonNameConflict || conflict.Name != "app" {
			t.Fatalf("EnsureFor = %v, want a conflict", err)
		}
		if n := fx.writes.Load(); n != 0 {
			t.Errorf("%d writes to the workload cluster", n)
		}
		if now, err := fx.workload.CoreV1().ConfigMaps(fx.ns).Get(fx.ctx, "app", metav1.GetOptions{}); err != nil || now.ResourceVersion != before.ResourceVersion {
			t.Errorf("the foreign ConfigMap changed: %v, %v", now, err)
		}
		select {
		case e := <-fx.events.fake.Events:
			if !strings.Contains(e, ReasonNameConflict) || !strings.Contains(e, fx.ns+"/app") {
				t.Errorf("event = %q", e)
			}
		default:
			t.Error("no NameConflict event")
		}
		// On the management ConfigMap, whose copy it blocks.
		fx.expectEvent("app", ReasonNameConflict, fx.ns+"/app")
		// A second attempt reports the same conflict without another Event.
		_, _ = fx.f.EnsureFor(fx.ctx, pod)
		select {
		case e := <-fx.events.fake.Events:
			t.Errorf("second event %q", e)
		default:
		}
	})

	t.Run("ServiceAccount token Secrets never follow: optional ones are dropped, mandatory ones unsupported", func(t *testing.T) {
		creds := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "creds"}, Data: map[string][]byte{"p": []byte("s3cret")}}
		fx := newFixture(t, []runtime.Object{creds, tokenSecret("token")}, nil)
		tokenVolume := func(optional bool) corev1.Volume {
			return corev1.Volume{Name: "token", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "token", Optional: &optional}}}
		}
		optional := corev1.PodSpec{Volumes: []corev1.Volume{secretVolume, tokenVolume(true)}}
		drop, err := fx.f.EnsureFor(fx.ctx, fx.bind(proxyPod("optional", nil, optional)))
		if err != nil {
			t.Fatal(err)
		}
		if want := []Reference{{Kind: KindSecret, Name: "token", Optional: true}}; !reflect.DeepEqual(drop, want) {
			t.Errorf("drop = %+v, want %+v", drop, want)
		}
		if _, err := fx.workload.CoreV1().Secrets(fx.ns).Get(fx.ctx, "creds", metav1.GetOptions{}); err != nil {
			t.Errorf("the ordinary Secret was not copied: %v", err)
		}

		mandatory := corev1.PodSpec{Volumes: []corev1.Volume{tokenVolume(false)}}
		_, err = fx.f.EnsureFor(fx.ctx, fx.bind(proxyPod("mandatory", nil, mandatory)))
		var unsupported *UnsupportedReferenceError
		if !errors.As(err, &unsupported) || unsupported.Reason != ReasonUnsupportedReference || unsupported.Name != "token" {
			t.Fatalf("EnsureFor = %v, want an unsupported reference", err)
		}
		if _, err := fx.workload.CoreV1().Secrets(fx.ns).Get(fx.ctx, "token", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Errorf("the token Secret was copied: %v", err)
		}
	})

	t.Run("a workload namespace flotilla may not use gets no copy", func(t *testing.T) {
		fx := newFixtureWith(t, fixtureOptions{
			management:        []runtime.Object{configMap("app", map[string]string{"a": "1"})},
			workloadNamespace: map[string]string{"team": "someone-else"},
		})
		_, err := fx.f.EnsureFor(fx.ctx, fx.bind(proxyPod("p", nil, envFrom("app", false))))
		r, ok := tenancy.IsRefused(err)
		if !ok || r.Reason != tenancy.ReasonWorkloadNamespaceForbidden {
			t.Fatalf("EnsureFor = %v, want the namespace refused", err)
		}
		if _, err := fx.workload.CoreV1().ConfigMaps(fx.ns).Get(fx.ctx, "app", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Errorf("the ConfigMap was copied: %v", err)
		}
		fx.expectEvent("app", tenancy.ReasonWorkloadNamespaceForbidden, "was not opened to flotilla")
	})

	t.Run("a copy the workload cluster refuses is an Event and the error", func(t *testing.T) {
		quota := &corev1.ResourceQuota{ObjectMeta: metav1.ObjectMeta{Name: "no-configmaps"}, Spec: corev1.ResourceQuotaSpec{
			Hard: corev1.ResourceList{"count/configmaps": resource.MustParse("0")}}}
		fx := newFixtureWith(t, fixtureOptions{
			management:        []runtime.Object{configMap("app", map[string]string{"a": "1"})},
			workloadNamespace: map[string]string{tenancy.LabelOpen: "true"},
		})
		quota.Namespace = fx.ns
		if _, err := fx.workload.CoreV1().ResourceQuotas(fx.ns).Create(fx.ctx, quota, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		// Quota admission enforces a quota once the quota controller has computed its status.
		lab.Poll(t, 30*time.Second, "the quota's status", func() (bool, error) {
			q, err := fx.workload.CoreV1().ResourceQuotas(fx.ns).Get(fx.ctx, quota.Name, metav1.GetOptions{})
			return err == nil && q.Status.Hard != nil, err
		})
		_, err := fx.f.EnsureFor(fx.ctx, fx.bind(proxyPod("p", nil, envFrom("app", false))))
		var refused *RefusedCopyError
		if !errors.As(err, &refused) || refused.Reason != ReasonRefused || !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "quota") {
			t.Fatalf("EnsureFor = %v, want the copy refused by the quota", err)
		}
		fx.expectEvent("app", ReasonRefused, "quota")
	})

	t.Run("a name taken between the check and the create is left alone", func(t *testing.T) {
		var foreign *corev1.ConfigMap
		var fx *fixture
		var once sync.Once
		fx = newFixtureWith(t, fixtureOptions{
			management:        []runtime.Object{configMap("app", map[string]string{"a": "1"})},
			workloadNamespace: map[string]string{tenancy.LabelOpen: "true"},
			// Someone creates the object right after flotilla found the name free: just before flotilla's
			// Create reaches the apiserver.
			workloadTransport: func(rt http.RoundTripper) http.RoundTripper {
				return roundTripper(func(r *http.Request) (*http.Response, error) {
					if r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/namespaces/"+fx.ns+"/configmaps") {
						var err error
						once.Do(func() {
							foreign, err = fx.workload.CoreV1().ConfigMaps(fx.ns).Create(r.Context(), configMap("app", map[string]string{"theirs": "x"}), metav1.CreateOptions{})
						})
						if err != nil {
							return nil, err
						}
					}
					return rt.RoundTrip(r)
				})
			},
		})
		_, err := fx.f.EnsureFor(fx.ctx, fx.bind(proxyPod("p", nil, envFrom("app", false))))
		var conflict *ConflictError
		if !errors.As(err, &conflict) || conflict.Reason != ReasonNameConflict {
			t.Fatalf("EnsureFor = %v, want a conflict", err)
		}
		now, err := fx.workload.CoreV1().ConfigMaps(fx.ns).Get(fx.ctx, "app", metav1.GetOptions{})
		if err != nil || now.ResourceVersion != foreign.ResourceVersion || now.Data["theirs"] != "x" || now.Labels != nil {
			t.Errorf("the foreign ConfigMap changed: %+v, %v", now, err)
		}
		fx.expectEvent("app", ReasonNameConflict, fx.ns+"/app")
	})

	t.Run("what the source loses leaves a copy made by Create, which costs one write", func(t *testing.T) {
		fx := newFixture(t, []runtime.Object{configMap("app", map[string]string{"a": "1", "b": "2"})}, nil)
		pod := fx.bind(proxyPod("p", nil, envFrom("app", false)))
		if _, err := fx.f.EnsureFor(fx.ctx, pod); err != nil {
			t.Fatal(err)
		}
		cm, err := fx.workload.CoreV1().ConfigMaps(fx.ns).Get(fx.ctx, "app", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		// Create alone: its fields go to server-side apply at the copy's first change.
		if !createdFields(cm) || len(cm.ManagedFields) != 1 || !strings.Contains(ownedFields(cm, FieldManager), `"f:b"`) {
			t.Fatalf("the new copy was written more than once: %+v", cm.ManagedFields)
		}
		src, err := fx.management.CoreV1().ConfigMaps(fx.ns).Get(fx.ctx, "app", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		delete(src.Data, "b")
		if _, err := fx.management.CoreV1().ConfigMaps(fx.ns).Update(fx.ctx, src, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		lab.Poll(t, limit, "the copy to lose key b", func() (bool, error) {
			if _, err := fx.f.EnsureFor(fx.ctx, pod); err != nil {
				return false, err
			}
			cm, err := fx.workload.CoreV1().ConfigMaps(fx.ns).Get(fx.ctx, "app", metav1.GetOptions{})
			if err != nil {
				return false, err
			}
			_, has := cm.Data["b"]
			return !has && cm.Data["a"] == "1" && !createdFields(cm), fmt.Errorf("copy data %v, fields %+v", cm.Data, cm.ManagedFields)
		})
	})
}

// tokenSecret is a ServiceAccount token Secret of the namespace's default ServiceAccount (the management
// cluster's token controller fills it in).
func tokenSecret(name string) *corev1.Secret {
	return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: map[string]string{corev1.ServiceAccountNameKey: "default"}},
		Type: corev1.SecretTypeServiceAccountToken}
}

// TestServiceFollowsProxies runs the followers: a Service selecting a proxy is copied, its copy's
// load-balancer addresses are published on this node's virtual node and come back as its status together
// with a peer node's, nothing written on the management Service counts, a peer node that goes takes its
// addresses along, and the copy and this node's addresses go when the proxy goes. A Service nobody follows
// keeps the status its own load-balancer controller wrote.
func TestServiceFollowsProxies(t *testing.T) {
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "web"}, Spec: corev1.ServiceSpec{
		Type: corev1.ServiceTypeLoadBalancer, Selector: map[string]string{"app": "web"},
		Ports: []corev1.ServicePort{{Port: 80}}}}
	other := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "other"}, Spec: corev1.ServiceSpec{
		Type: corev1.ServiceTypeLoadBalancer, Selector: map[string]string{"app": "other"}, Ports: []corev1.ServicePort{{Port: 80}}}}
	proxy := proxyPod("web-1", map[string]string{"app": "web"}, corev1.PodSpec{})
	fx := newFixture(t, []runtime.Object{svc, other, proxy}, nil)
	mgmtServices := fx.management.CoreV1().Services(fx.ns)
	if m, err := mgmtServices.Get(fx.ctx, "web", metav1.GetOptions{}); err != nil || m.Spec.ClusterIP == "" || m.Spec.Ports[0].NodePort == 0 {
		t.Fatalf("the management cluster allocated nothing: %v, %v", m, err)
	}
	// A load-balancer controller of the management cluster serves "other".
	realLB := setStatus(t, fx.ctx, mgmtServices, "other", []corev1.LoadBalancerIngress{{IP: "198.51.100.1"}})
	// A user who may edit Services forges flotilla's ownership of the status in a plain update, as if
	// flotilla had written it.
	forgeStatusOwnership(t, fx.ctx, mgmtServices, "other")
	fx.run()

	services := fx.workload.CoreV1().Services(fx.ns)
	var c *corev1.Service
	lab.Poll(t, limit, "the Service copy", func() (bool, error) {
		var err error
		c, err = services.Get(fx.ctx, "web", metav1.GetOptions{})
		return err == nil, nil
	})
	// The workload cluster allocated its own cluster IP and node port: flotilla set neither.
	if applied := ownedFields(c, FieldManager); applied == "" || !strings.Contains(applied, `"f:selector"`) ||
		strings.Contains(applied, `"f:clusterIP"`) || strings.Contains(applied, `"f:nodePort"`) || c.Labels["flotilla.io/management"] != "m1" ||
		!maps.Equal(c.Spec.Selector, map[string]string{"app": "web", "flotilla.io/management": "m1"}) {
		t.Fatalf("copy = %+v, flotilla's fields %s", c, applied)
	}
	if _, err := services.Get(fx.ctx, "other", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("a Service selecting no proxy was copied: %v", err)
	}

	// A load balancer in the workload cluster gives the copy an address.
	c.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: "10.0.3.1"}}
	if _, err := services.UpdateStatus(fx.ctx, c, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	// A peer virtual node publishes its own copy's, as its workload apiserver stored it (with ipMode
	// defaulted, as the workload apiserver here defaults this node's).
	peer := lab.UniqueName("peer", "")
	lab.StandInNode(t, fx.management, peer, virtualNodeLabels(peer), nil)
	publish(t, fx.ctx, fx.management, peer, `{"Service/`+fx.ns+`/web":[{"ip":"10.0.1.1","ipMode":"VIP"}]}`)
	// A user who may edit Services forges addresses on both Services, in the old form and the new.
	forged := `{"metadata":{"annotations":{"lb.flotilla.io/x":"[{\"ip\":\"203.0.113.7\"}]",` +
		`"flotilla.io/load-balancers":"{\"Service/` + fx.ns + `/web\":[{\"ip\":\"203.0.113.8\"}]}"}}}`
	for _, name := range []string{"web", "other"} {
		if _, err := mgmtServices.Patch(fx.ctx, name, types.MergePatchType, []byte(forged), metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	ownWant := `{"Service/` + fx.ns + `/web":[{"ip":"10.0.3.1","ipMode":"VIP"}]}`
	lab.Poll(t, limit, "this node's addresses on its node, and the union on the management Service", func() (bool, error) {
		n, err := fx.management.CoreV1().Nodes().Get(fx.ctx, fx.node, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		m, err := mgmtServices.Get(fx.ctx, "web", metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		ok := n.Annotations[AnnotationLoadBalancers] == ownWant &&
			EncodeLB(m.Status.LoadBalancer.Ingress) == `[{"ip":"10.0.1.1","ipMode":"VIP"},{"ip":"10.0.3.1","ipMode":"VIP"}]`
		return ok, fmt.Errorf("node publishes %s, Service annotations %v, status %s", n.Annotations[AnnotationLoadBalancers], m.Annotations, EncodeLB(m.Status.LoadBalancer.Ingress))
	})

	// The peer node is deleted: its addresses leave the union.
	if err := fx.management.CoreV1().Nodes().Delete(fx.ctx, peer, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	expectStatus(t, fx.ctx, mgmtServices, "web", `[{"ip":"10.0.3.1","ipMode":"VIP"}]`)

	// The proxy goes (it starts terminating, with no kubelet to finish): so does the copy, and this node's
	// published addresses, and with them the status flotilla wrote.
	if err := fx.management.CoreV1().Pods(fx.ns).Delete(fx.ctx, "web-1", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	lab.Poll(t, limit, "the copy to go", func() (bool, error) {
		_, err := services.Get(fx.ctx, "web", metav1.GetOptions{})
		return apierrors.IsNotFound(err), nil
	})
	lab.Poll(t, limit, "this node's addresses to go", func() (bool, error) {
		n, err := fx.management.CoreV1().Nodes().Get(fx.ctx, fx.node, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		_, published := n.Annotations[AnnotationLoadBalancers]
		return !published, fmt.Errorf("node publishes %s", n.Annotations[AnnotationLoadBalancers])
	})
	expectStatus(t, fx.ctx, mgmtServices, "web", "")

	// All along, the Service nobody follows kept its own controller's status, the forgeries notwithstanding.
	m, err := mgmtServices.Get(fx.ctx, "other", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if EncodeLB(m.Status.LoadBalancer.Ingress) != EncodeLB(realLB) {
		t.Errorf("status of a Service nobody follows = %s, want its controller's %s", EncodeLB(m.Status.LoadBalancer.Ingress), EncodeLB(realLB))
	}
}

// forgeStatusOwnership adds to the object's managedFields, in a plain update, an entry that says flotilla
// wrote its load-balancer status, as anyone who may update the object can.
func forgeStatusOwnership(t *testing.T, ctx context.Context, services corev1client.ServiceInterface, name string) {
	t.Helper()
	s, err := services.Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	s.ManagedFields = append(s.ManagedFields, metav1.ManagedFieldsEntry{
		Manager: FieldManager, Operation: metav1.ManagedFieldsOperationApply, APIVersion: "v1", FieldsType: "FieldsV1",
		Subresource: "status", Time: &metav1.Time{Time: time.Now()},
		FieldsV1: metav1.NewFieldsV1(`{"f:status":{"f:loadBalancer":{"f:ingress":{}}}}`),
	})
	if _, err := services.Update(ctx, s, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	s, err = services.Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !appliedStatus(s, FieldManager) {
		t.Fatalf("the forgery did not take: %+v", s.ManagedFields)
	}
}

// appliedStatus says whether the manager owns part of obj's status through server-side apply.
func appliedStatus(obj metav1.Object, manager string) bool {
	for _, m := range obj.GetManagedFields() {
		if m.Manager == manager && m.Subresource == "status" && m.Operation == metav1.ManagedFieldsOperationApply {
			return true
		}
	}
	return false
}

// TestExternalIPsDoNotFollow: a Service with externalIPs is copied without them, and the management Service
// gets one Warning Event per change of them.
func TestExternalIPsDoNotFollow(t *testing.T) {
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "web"}, Spec: corev1.ServiceSpec{
		Selector: map[string]string{"app": "web"}, Ports: []corev1.ServicePort{{Port: 80}}, ExternalIPs: []string{"203.0.113.7"}}}
	fx := newFixture(t, []runtime.Object{svc, proxyPod("web-1", map[string]string{"app": "web"}, corev1.PodSpec{})}, nil)
	fx.run()
	t.Cleanup(func() {
		if t.Failed() {
			for len(fx.events.fake.Events) > 0 {
				t.Log(<-fx.events.fake.Events)
			}
		}
	})
	var c *corev1.Service
	lab.Poll(t, limit, "the Service copy", func() (bool, error) {
		var err error
		c, err = fx.workload.CoreV1().Services(fx.ns).Get(fx.ctx, "web", metav1.GetOptions{})
		return err == nil, nil
	})
	if len(c.Spec.ExternalIPs) > 0 {
		t.Errorf("the copy has externalIPs %v", c.Spec.ExternalIPs)
	}
	fx.expectEvent("web", ReasonExternalIPsNotFollowed, "[203.0.113.7]")
	// Other changes of the Service make no new Event; new addresses do.
	patch := func(p string) {
		if _, err := fx.management.CoreV1().Services(fx.ns).Patch(fx.ctx, "web", types.MergePatchType, []byte(p), metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	patch(`{"metadata":{"labels":{"tier":"front"}}}`)
	patch(`{"spec":{"externalIPs":["203.0.113.9"]}}`)
	fx.expectEvent("web", ReasonExternalIPsNotFollowed, "[203.0.113.9]")
	lab.Poll(t, limit, "the copy to take the label", func() (bool, error) {
		c, err := fx.workload.CoreV1().Services(fx.ns).Get(fx.ctx, "web", metav1.GetOptions{})
		return err == nil && c.Labels["tier"] == "front" && len(c.Spec.ExternalIPs) == 0, err
	})
	var notices []string
	for len(fx.events.fake.Events) > 0 {
		if e := <-fx.events.fake.Events; strings.Contains(e, ReasonExternalIPsNotFollowed) {
			notices = append(notices, e)
		}
	}
	if len(notices) != 2 {
		t.Errorf("ExternalIPsNotFollowed events = %q, want one per set of addresses", notices)
	}
}

// TestIngressTLSSecretsFollow: the Secrets a followed Ingress names for TLS follow with it, and go when it
// no longer names them; a ServiceAccount token Secret never follows, neither for TLS nor for a proxy, and a
// TLS entry whose Secret has no copy names none in the Ingress copy.
func TestIngressTLSSecretsFollow(t *testing.T) {
	yes := true
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "web"}, Spec: corev1.ServiceSpec{
		Selector: map[string]string{"app": "web"}, Ports: []corev1.ServicePort{{Port: 80}}}}
	cert := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "shop-cert"}, Type: corev1.SecretTypeTLS,
		Data: map[string][]byte{corev1.TLSCertKey: []byte("cert"), corev1.TLSPrivateKeyKey: []byte("key")}}
	backend := networkingv1.IngressBackend{Service: &networkingv1.IngressServiceBackend{Name: "web", Port: networkingv1.ServiceBackendPort{Number: 80}}}
	ing := &networkingv1.Ingress{ObjectMeta: metav1.ObjectMeta{Name: "shop"}, Spec: networkingv1.IngressSpec{
		DefaultBackend: &backend,
		TLS: []networkingv1.IngressTLS{
			{Hosts: []string{"shop.example.com"}, SecretName: "shop-cert"},
			{Hosts: []string{"api.example.com"}, SecretName: "token"},
			{Hosts: []string{"new.example.com"}, SecretName: "not-yet"},
		}}}
	// The proxy also references the token Secret, optionally: it does not follow that way either.
	proxy := proxyPod("web-1", map[string]string{"app": "web"}, corev1.PodSpec{Volumes: []corev1.Volume{{Name: "t",
		VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "token", Optional: &yes}}}}})
	fx := newFixture(t, []runtime.Object{svc, cert, tokenSecret("token"), ing, proxy}, nil)
	fx.run()

	secrets, ingresses := fx.workload.CoreV1().Secrets(fx.ns), fx.workload.NetworkingV1().Ingresses(fx.ns)
	lab.Poll(t, limit, "the TLS Secret's copy, and the Ingress copy naming it", func() (bool, error) {
		s, err := secrets.Get(fx.ctx, "shop-cert", metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		c, err := ingresses.Get(fx.ctx, "shop", metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		names := []string{c.Spec.TLS[0].SecretName, c.Spec.TLS[1].SecretName, c.Spec.TLS[2].SecretName}
		return string(s.Data[corev1.TLSCertKey]) == "cert" && slices.Equal(names, []string{"shop-cert", "", ""}),
			fmt.Errorf("Ingress copy names %q", names)
	})
	if _, err := secrets.Get(fx.ctx, "token", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("the ServiceAccount token Secret was copied: %v", err)
	}

	// The Secret that was missing appears: the Ingress copy names it once its copy exists.
	fx.create(fx.management, []runtime.Object{&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "not-yet"}, Type: corev1.SecretTypeTLS,
		Data: map[string][]byte{corev1.TLSCertKey: []byte("c2"), corev1.TLSPrivateKeyKey: []byte("k2")}}})
	lab.Poll(t, limit, "the Ingress copy to name the new Secret", func() (bool, error) {
		c, err := ingresses.Get(fx.ctx, "shop", metav1.GetOptions{})
		return err == nil && c.Spec.TLS[2].SecretName == "not-yet", err
	})

	// The Ingress stops naming shop-cert: its copy goes; the other stays.
	patch := `{"spec":{"tls":[{"hosts":["new.example.com"],"secretName":"not-yet"}]}}`
	if _, err := fx.management.NetworkingV1().Ingresses(fx.ns).Patch(fx.ctx, "shop", types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	lab.Poll(t, limit, "the TLS Secret's copy to go", func() (bool, error) {
		_, err := secrets.Get(fx.ctx, "shop-cert", metav1.GetOptions{})
		return apierrors.IsNotFound(err), nil
	})
	if _, err := secrets.Get(fx.ctx, "not-yet", metav1.GetOptions{}); err != nil {
		t.Errorf("the Secret the Ingress still names went: %v", err)
	}
	if _, err := secrets.Get(fx.ctx, "token", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("the ServiceAccount token Secret was copied: %v", err)
	}
}

// publish sets a node's published load-balancer addresses, as its flotilla would.
func publish(t *testing.T, ctx context.Context, c kubernetes.Interface, node, value string) {
	t.Helper()
	b, _ := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]string{AnnotationLoadBalancers: value}}})
	if _, err := c.CoreV1().Nodes().Patch(ctx, node, types.MergePatchType, b, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
}

// setStatus writes a Service's load-balancer status, as a load-balancer controller would, and returns it as
// stored (defaults set).
func setStatus(t *testing.T, ctx context.Context, services corev1client.ServiceInterface, name string, list []corev1.LoadBalancerIngress) []corev1.LoadBalancerIngress {
	t.Helper()
	s, err := services.Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	s.Status.LoadBalancer.Ingress = list
	s, err = services.UpdateStatus(ctx, s, metav1.UpdateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return s.Status.LoadBalancer.Ingress
}

// expectStatus waits for a Service's load-balancer status (EncodeLB form).
func expectStatus(t *testing.T, ctx context.Context, services corev1client.ServiceInterface, name, want string) {
	t.Helper()
	lab.Poll(t, limit, "status "+want+" on Service "+name, func() (bool, error) {
		m, err := services.Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		got := EncodeLB(m.Status.LoadBalancer.Ingress)
		return got == want, fmt.Errorf("status %s", got)
	})
}

// ownedFields are the fields (FieldsV1 JSON) the manager owns of obj, status aside, however it wrote them
// (Create, server-side apply).
func ownedFields(obj metav1.Object, manager string) string {
	var owned []string
	for _, m := range obj.GetManagedFields() {
		if m.Manager == manager && m.Subresource == "" && m.FieldsV1 != nil {
			owned = append(owned, m.FieldsV1.GetRawString())
		}
	}
	return strings.Join(owned, " ")
}
