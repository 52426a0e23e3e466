package follow

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/flotilla-io/flotilla/test/lab"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
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
		if err := fx.f.EnsureFor(fx.ctx, pod); err != nil {
			t.Fatal(err)
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
		if err := fx.f.EnsureFor(fx.ctx, pod); err != nil {
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
		err := fx.f.EnsureFor(fx.ctx, fx.bind(proxyPod("p", nil, spec)))
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
		err := fx.f.EnsureFor(fx.ctx, fx.bind(proxyPod("p", nil, spec)))
		var missing *MissingReferenceError
		if !errors.As(err, &missing) || missing.Reason != ReasonMandatoryConfigMapKeyNotFound || missing.Key != "b" {
			t.Fatalf("EnsureFor = %v, want a missing key", err)
		}
	})

	t.Run("a missing optional reference does not block and gets the kubelet's event", func(t *testing.T) {
		fx := newFixture(t, nil, nil)
		spec := envFrom("maybe", true)
		spec.Volumes = []corev1.Volume{{Name: "v", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "s", Optional: &yes}}}}
		if err := fx.f.EnsureFor(fx.ctx, fx.bind(proxyPod("p", nil, spec))); err != nil {
			t.Fatal(err)
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
		err = fx.f.EnsureFor(fx.ctx, pod)
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
		_ = fx.f.EnsureFor(fx.ctx, pod)
		select {
		case e := <-fx.events.fake.Events:
			t.Errorf("second event %q", e)
		default:
		}
	})
}

// TestServiceFollowsProxies runs the followers: a Service selecting a proxy is copied, its copy's
// load-balancer addresses are published on the management Service and come back as its status, and the copy
// goes when the proxy goes.
func TestServiceFollowsProxies(t *testing.T) {
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "web"}, Spec: corev1.ServiceSpec{
		Type: corev1.ServiceTypeLoadBalancer, Selector: map[string]string{"app": "web"},
		Ports: []corev1.ServicePort{{Port: 80}}}}
	other := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "other"}, Spec: corev1.ServiceSpec{
		Selector: map[string]string{"app": "other"}, Ports: []corev1.ServicePort{{Port: 80}}}}
	proxy := proxyPod("web-1", map[string]string{"app": "web"}, corev1.PodSpec{})
	fx := newFixture(t, []runtime.Object{svc, other, proxy}, nil)
	mgmtServices := fx.management.CoreV1().Services(fx.ns)
	if m, err := mgmtServices.Get(fx.ctx, "web", metav1.GetOptions{}); err != nil || m.Spec.ClusterIP == "" || m.Spec.Ports[0].NodePort == 0 {
		t.Fatalf("the management cluster allocated nothing: %v, %v", m, err)
	}
	done := make(chan error, 1)
	ctx, cancel := context.WithCancel(fx.ctx)
	go func() { done <- fx.f.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})

	services := fx.workload.CoreV1().Services(fx.ns)
	var c *corev1.Service
	lab.Poll(t, limit, "the Service copy", func() (bool, error) {
		var err error
		c, err = services.Get(fx.ctx, "web", metav1.GetOptions{})
		return err == nil, nil
	})
	// The workload cluster allocated its own cluster IP and node port: flotilla set neither.
	if applied := appliedFields(c, FieldManager); applied == "" || !strings.Contains(applied, `"f:selector"`) ||
		strings.Contains(applied, `"f:clusterIP"`) || strings.Contains(applied, `"f:nodePort"`) || c.Labels["flotilla.io/management"] != "m1" {
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
	// Another node has published its own, as its workload apiserver stored it (with ipMode defaulted, as
	// the workload apiserver here defaults this node's).
	patch := `{"metadata":{"annotations":{"` + LBAnnotation("us-west-2-0") + `":"[{\"ip\":\"10.0.1.1\",\"ipMode\":\"VIP\"}]"}}}`
	if _, err := mgmtServices.Patch(fx.ctx, "web", types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	lab.Poll(t, limit, "the union on the management Service", func() (bool, error) {
		m, err := mgmtServices.Get(fx.ctx, "web", metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		ok := m.Annotations[LBAnnotation(fx.node)] == `[{"ip":"10.0.3.1","ipMode":"VIP"}]` &&
			EncodeLB(m.Status.LoadBalancer.Ingress) == `[{"ip":"10.0.1.1","ipMode":"VIP"},{"ip":"10.0.3.1","ipMode":"VIP"}]`
		return ok, fmt.Errorf("annotations %v, status %s", m.Annotations, EncodeLB(m.Status.LoadBalancer.Ingress))
	})

	// The proxy goes (it starts terminating, with no kubelet to finish): so does the copy, and this node's
	// published addresses.
	if err := fx.management.CoreV1().Pods(fx.ns).Delete(fx.ctx, "web-1", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	lab.Poll(t, limit, "the copy to go", func() (bool, error) {
		_, err := services.Get(fx.ctx, "web", metav1.GetOptions{})
		return apierrors.IsNotFound(err), nil
	})
	lab.Poll(t, limit, "this node's addresses to go", func() (bool, error) {
		m, err := mgmtServices.Get(fx.ctx, "web", metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		_, published := m.Annotations[LBAnnotation(fx.node)]
		return !published && EncodeLB(m.Status.LoadBalancer.Ingress) == `[{"ip":"10.0.1.1","ipMode":"VIP"}]`,
			fmt.Errorf("annotations %v, status %s", m.Annotations, EncodeLB(m.Status.LoadBalancer.Ingress))
	})
}

// appliedFields are the fields (FieldsV1 JSON) the manager owns through server-side apply of obj.
func appliedFields(obj metav1.Object, manager string) string {
	for _, m := range obj.GetManagedFields() {
		if m.Manager == manager && m.Operation == metav1.ManagedFieldsOperationApply && m.FieldsV1 != nil {
			return string(m.FieldsV1.Raw)
		}
	}
	return ""
}
