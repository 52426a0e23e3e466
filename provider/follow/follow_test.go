package follow

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
)

// These tests drive the mechanism against client-go's fake clientsets (which apply server-side apply with
// field management, but neither validate, default, nor check preconditions); the lab's e2e tests
// (test/e2e/follow_test.go) drive it against real apiservers.

type fixture struct {
	f                    *Followers
	management, workload *fake.Clientset
	events               *record.FakeRecorder
	ctx                  context.Context
}

func newFixture(t *testing.T, management, workload []runtime.Object) *fixture {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	fx := &fixture{management: fake.NewClientset(management...), workload: fake.NewClientset(workload...),
		events: record.NewFakeRecorder(100), ctx: ctx}
	objects := informers.NewSharedInformerFactory(fx.management, 0)
	pods := informers.NewSharedInformerFactory(fx.management, 0).Core().V1().Pods()
	f, err := New(Config{
		NodeName: "eu-west-3-1", OwnerLabels: owner,
		Management: fx.management, Workload: fx.workload,
		ManagementInformers: objects, Proxies: pods, EventRecorder: fx.events,
	})
	if err != nil {
		t.Fatal(err)
	}
	fx.f = f
	objects.Start(ctx.Done())
	go pods.Informer().Run(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), f.referencesSynced...) {
		t.Fatal("caches did not sync")
	}
	return fx
}

// writes counts the write requests sent to a fake clientset.
func writes(c *fake.Clientset) int {
	n := 0
	for _, a := range c.Actions() {
		switch a.(type) {
		case k8stesting.CreateAction, k8stesting.UpdateAction, k8stesting.PatchAction, k8stesting.DeleteAction:
			n++
		}
	}
	return n
}

func configMap(name string, data map[string]string) *corev1.ConfigMap {
	return &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: name}, Data: data}
}

func proxyPod(name string, labels map[string]string, spec corev1.PodSpec) *corev1.Pod {
	spec.NodeName = "eu-west-3-1"
	if len(spec.Containers) == 0 {
		spec.Containers = []corev1.Container{{Name: "c", Image: "nginx"}}
	}
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: name, UID: "uid-" + "name", Labels: labels}, Spec: spec}
}

func envFrom(cm string, optional bool) corev1.PodSpec {
	return corev1.PodSpec{Containers: []corev1.Container{{Name: "c", EnvFrom: []corev1.EnvFromSource{
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
		creds := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "creds"}, Data: map[string][]byte{"p": []byte("s3cret")}}
		fx := newFixture(t, []runtime.Object{configMap("app", map[string]string{"a": "1"}), creds}, nil)
		spec := envFrom("app", false)
		spec.Volumes = []corev1.Volume{secretVolume}
		pod := proxyPod("p", nil, spec)
		if err := fx.f.EnsureFor(fx.ctx, pod); err != nil {
			t.Fatal(err)
		}
		cm, err := fx.workload.CoreV1().ConfigMaps("shop").Get(fx.ctx, "app", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if cm.Data["a"] != "1" || cm.Labels["flotilla.io/node"] != "eu-west-3-1" || cm.Annotations[AnnotationSourceHash] == "" {
			t.Errorf("copy = %+v", cm)
		}
		if s, err := fx.workload.CoreV1().Secrets("shop").Get(fx.ctx, "creds", metav1.GetOptions{}); err != nil || string(s.Data["p"]) != "s3cret" {
			t.Errorf("secret copy = %v, %v", s, err)
		}
		before := writes(fx.workload)
		if err := fx.f.EnsureFor(fx.ctx, pod); err != nil {
			t.Fatal(err)
		}
		if after := writes(fx.workload); after != before {
			t.Errorf("second EnsureFor wrote %d times; the copies were current", after-before)
		}
	})

	t.Run("a missing mandatory reference blocks and copies nothing", func(t *testing.T) {
		fx := newFixture(t, []runtime.Object{configMap("app", nil)}, nil)
		spec := envFrom("app", false)
		spec.Volumes = []corev1.Volume{secretVolume}
		err := fx.f.EnsureFor(fx.ctx, proxyPod("p", nil, spec))
		var missing *MissingReferenceError
		if !errors.As(err, &missing) || missing.Reason != ReasonMandatorySecretNotFound || missing.Kind != KindSecret || missing.Name != "creds" {
			t.Fatalf("EnsureFor = %v, want a missing secret creds", err)
		}
		if err.Error() != `secret "creds" not found` {
			t.Errorf("message = %q, want the kubelet's", err.Error())
		}
		if n := writes(fx.workload); n != 0 {
			t.Errorf("%d writes to the workload cluster", n)
		}
	})

	t.Run("a missing mandatory key blocks", func(t *testing.T) {
		fx := newFixture(t, []runtime.Object{configMap("app", map[string]string{"a": "1"})}, nil)
		spec := corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Env: []corev1.EnvVar{keyRef("app", "b")}}}}
		err := fx.f.EnsureFor(fx.ctx, proxyPod("p", nil, spec))
		var missing *MissingReferenceError
		if !errors.As(err, &missing) || missing.Reason != ReasonMandatoryConfigMapKeyNotFound || missing.Key != "b" {
			t.Fatalf("EnsureFor = %v, want a missing key", err)
		}
	})

	t.Run("a missing optional reference does not block and gets the kubelet's event", func(t *testing.T) {
		fx := newFixture(t, nil, nil)
		spec := envFrom("maybe", true)
		spec.Volumes = []corev1.Volume{{Name: "v", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "s", Optional: &yes}}}}
		if err := fx.f.EnsureFor(fx.ctx, proxyPod("p", nil, spec)); err != nil {
			t.Fatal(err)
		}
		var got []string
		for range 2 {
			select {
			case e := <-fx.events.Events:
				got = append(got, e)
			default:
			}
		}
		if len(got) != 2 || !strings.Contains(got[0], ReasonOptionalConfigMapNotFound) || !strings.Contains(got[1], ReasonOptionalSecretNotFound) {
			t.Errorf("events = %v", got)
		}
	})

	t.Run("a foreign object of the same name is left alone", func(t *testing.T) {
		foreign := configMap("app", map[string]string{"theirs": "x"})
		fx := newFixture(t, []runtime.Object{configMap("app", map[string]string{"a": "1"})}, []runtime.Object{foreign})
		err := fx.f.EnsureFor(fx.ctx, proxyPod("p", nil, envFrom("app", false)))
		var conflict *ConflictError
		if !errors.As(err, &conflict) || conflict.Reason != ReasonNameConflict || conflict.Name != "app" {
			t.Fatalf("EnsureFor = %v, want a conflict", err)
		}
		if n := writes(fx.workload); n != 0 {
			t.Errorf("%d writes to the workload cluster", n)
		}
		select {
		case e := <-fx.events.Events:
			if !strings.Contains(e, ReasonNameConflict) || !strings.Contains(e, "shop/app") {
				t.Errorf("event = %q", e)
			}
		default:
			t.Error("no NameConflict event")
		}
		// A second attempt reports the same conflict without another Event.
		_ = fx.f.EnsureFor(fx.ctx, proxyPod("p", nil, envFrom("app", false)))
		select {
		case e := <-fx.events.Events:
			t.Errorf("second event %q", e)
		default:
		}
	})
}

// TestServiceFollowsProxies runs the followers: a Service selecting a proxy is copied, its copy's
// load-balancer addresses are published on the management Service and come back as its status, and the copy
// goes when the proxy goes.
func TestServiceFollowsProxies(t *testing.T) {
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web", UID: "svc-uid"}, Spec: corev1.ServiceSpec{
		Type: corev1.ServiceTypeLoadBalancer, Selector: map[string]string{"app": "web"}, ClusterIP: "10.96.0.1",
		Ports: []corev1.ServicePort{{Port: 80, NodePort: 30080}}}}
	other := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "other"}, Spec: corev1.ServiceSpec{
		Selector: map[string]string{"app": "other"}, Ports: []corev1.ServicePort{{Port: 80}}}}
	proxy := proxyPod("web-1", map[string]string{"app": "web"}, corev1.PodSpec{})
	fx := newFixture(t, []runtime.Object{svc, other, proxy}, nil)
	go func() { _ = fx.f.Run(fx.ctx) }()

	services := fx.workload.CoreV1().Services("shop")
	poll(t, "the Service copy", func() (bool, error) {
		c, err := services.Get(fx.ctx, "web", metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return false, nil
		}
		if err == nil && (c.Spec.ClusterIP != "" || c.Spec.Ports[0].NodePort != 0 || c.Labels["flotilla.io/management"] != "m1") {
			t.Fatalf("copy = %+v", c)
		}
		return err == nil, err
	})
	if _, err := services.Get(fx.ctx, "other", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("a Service selecting no proxy was copied: %v", err)
	}

	// A load balancer in the workload cluster gives the copy an address.
	c, _ := services.Get(fx.ctx, "web", metav1.GetOptions{})
	c.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: "10.0.3.1"}}
	if _, err := services.UpdateStatus(fx.ctx, c, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	// Another node has published its own.
	m, _ := fx.management.CoreV1().Services("shop").Get(fx.ctx, "web", metav1.GetOptions{})
	m.Annotations = map[string]string{LBAnnotation("us-west-2-0"): `[{"ip":"10.0.1.1"}]`}
	if _, err := fx.management.CoreV1().Services("shop").Update(fx.ctx, m, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	poll(t, "the union on the management Service", func() (bool, error) {
		m, err := fx.management.CoreV1().Services("shop").Get(fx.ctx, "web", metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		return m.Annotations[LBAnnotation("eu-west-3-1")] == `[{"ip":"10.0.3.1"}]` &&
			EncodeLB(m.Status.LoadBalancer.Ingress) == `[{"ip":"10.0.1.1"},{"ip":"10.0.3.1"}]`, nil
	})

	// The proxy goes: so does the copy, and this node's published addresses.
	if err := fx.management.CoreV1().Pods("shop").Delete(fx.ctx, "web-1", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	poll(t, "the copy to go", func() (bool, error) {
		_, err := services.Get(fx.ctx, "web", metav1.GetOptions{})
		return apierrors.IsNotFound(err), nil
	})
	poll(t, "this node's addresses to go", func() (bool, error) {
		m, err := fx.management.CoreV1().Services("shop").Get(fx.ctx, "web", metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		_, published := m.Annotations[LBAnnotation("eu-west-3-1")]
		return !published && EncodeLB(m.Status.LoadBalancer.Ingress) == `[{"ip":"10.0.1.1"}]`, nil
	})
}

func poll(t *testing.T, what string, cond func() (bool, error)) {
	t.Helper()
	err := wait.PollUntilContextTimeout(context.Background(), 20*time.Millisecond, 5*time.Second, true, func(context.Context) (bool, error) {
		return cond()
	})
	if err != nil {
		t.Fatalf("waiting for %s: %v", what, err)
	}
}
