package follow

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"

	"github.com/flotilla-io/flotilla/test/lab"
)

// fakeLW answers the list of one Secret when released (with the Secret if it has one, or an error), and a
// watch that never sends. It does not speak watch-list, so the reflector lists.
type fakeLW struct {
	release chan struct{}
	secret  *corev1.Secret
	err     error
	lists   atomic.Int32
}

func (lw *fakeLW) List(metav1.ListOptions) (runtime.Object, error) {
	<-lw.release
	lw.lists.Add(1)
	if lw.err != nil {
		return nil, lw.err
	}
	list := &corev1.SecretList{ListMeta: metav1.ListMeta{ResourceVersion: "1"}}
	if lw.secret != nil {
		list.Items = append(list.Items, *lw.secret)
	}
	return list, nil
}

func (lw *fakeLW) Watch(metav1.ListOptions) (watch.Interface, error) { return watch.NewFake(), nil }

func (lw *fakeLW) IsWatchListSemanticsUnSupported() bool { return true }

// keyLog collects the keys an objectWatches queues.
type keyLog struct {
	mu   sync.Mutex
	keys []string
}

func (l *keyLog) queue(ns, name string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.keys = append(l.keys, ns+"/"+name)
}

func (l *keyLog) has(key string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Contains(l.keys, key)
}

// TestObjectWatches: an object is not known until its watch answered the first list (neither there nor
// missing), then there or missing; its watch starts with the first holder, stops with the last, and its key
// is queued when it synced and when it stopped. A refused list is reported, not retried in a hot loop.
func TestObjectWatches(t *testing.T) {
	lws := map[string]*fakeLW{
		"a/present": {release: make(chan struct{}), secret: &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "a", Name: "present"}}},
		"a/missing": {release: make(chan struct{})},
		"a/refused": {release: make(chan struct{}), err: apierrors.NewForbidden(corev1.Resource("secrets"), "refused", errors.New("no path to a pod"))},
	}
	log := &keyLog{}
	w := newObjectWatches(KindSecret, &corev1.Secret{}, func(ns, name string, _ fields.Selector) cache.ListerWatcher { return lws[ns+"/"+name] }, log.queue)
	var forbidden atomic.Int32
	w.forbidden = func(ns, name string, err error) {
		if ns+"/"+name == "a/refused" && apierrors.IsForbidden(err) {
			forbidden.Add(1)
		}
	}
	defer w.shutdown()

	if _, _, err := w.get("a", "present"); !errors.Is(err, errNotWatched) {
		t.Fatalf("before any holder: %v, want errNotWatched", err)
	}
	if err := w.known("a", "present"); err != nil {
		t.Errorf("known without a holder = %v: nothing names it, so it is not there", err)
	}
	w.set("pod-1", []string{"a/present", "a/missing", "a/refused", "a/present"})
	w.set("pod-2", []string{"a/present"})
	for _, name := range []string{"present", "missing", "refused"} {
		var unknown *unknownObjectError
		if _, found, err := w.get("a", name); found || !errors.As(err, &unknown) {
			t.Errorf("%s before its list answered: found %v, %v; want not known", name, found, err)
		}
	}
	for _, lw := range lws {
		close(lw.release)
	}
	lab.Poll(t, 10*time.Second, "the watches to answer", func() (bool, error) {
		return w.known("a", "present") == nil && w.known("a", "missing") == nil && forbidden.Load() > 0, nil
	})
	if s, found, err := w.get("a", "present"); !found || err != nil || s.Name != "present" {
		t.Errorf("present: %v, %v, %v", s, found, err)
	}
	if _, found, err := w.get("a", "missing"); found || err != nil {
		t.Errorf("missing: found %v, %v; want known to be missing", found, err)
	}
	var unknown *unknownObjectError
	if _, _, err := w.get("a", "refused"); !errors.As(err, &unknown) || !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "may read only") {
		t.Errorf("refused: %v, want not known, Forbidden, with the Node authorizer's rule", err)
	}
	if !log.has("a/present") || !log.has("a/missing") {
		t.Errorf("queued %v, want the synced keys", log.keys)
	}
	if !w.tell("a", "refused", "uid|x") || w.tell("a", "refused", "uid|x") {
		t.Error("a problem is news once per watch")
	}

	// The reflector backs off: a few lists in three seconds, not hundreds.
	time.Sleep(3 * time.Second)
	if n := lws["a/refused"].lists.Load(); n > 5 {
		t.Errorf("%d lists of the refused Secret in about 3 s: no backoff", n)
	}

	// pod-1 lets go: present stays (pod-2 holds it), the others stop and are queued.
	log.keys = nil
	w.set("pod-1", nil)
	if _, found, _ := w.get("a", "present"); !found {
		t.Error("present stopped while pod-2 holds it")
	}
	if _, _, err := w.get("a", "missing"); !errors.Is(err, errNotWatched) || !log.has("a/missing") || !log.has("a/refused") || log.has("a/present") {
		t.Errorf("after pod-1 let go: %v, queued %v", err, log.keys)
	}
	if got := w.keys("a"); !slices.Equal(got, []string{"a/present"}) {
		t.Errorf("keys = %v", got)
	}
}

// requestLog records the paths and queries of a client's requests.
type requestLog struct {
	mu   sync.Mutex
	reqs []*url.URL
}

func (l *requestLog) wrap(rt http.RoundTripper) http.RoundTripper {
	return roundTripper(func(r *http.Request) (*http.Response, error) {
		if r.Method == http.MethodGet {
			l.mu.Lock()
			l.reqs = append(l.reqs, r.URL)
			l.mu.Unlock()
		}
		return rt.RoundTrip(r)
	})
}

// collectionReads are the list and watch requests of ConfigMaps and Secrets (of a namespace or of all),
// each with its field selector.
func (l *requestLog) collectionReads() (reads []string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, u := range l.reqs {
		parts := strings.Split(strings.Trim(u.Path, "/"), "/") // api v1 [namespaces ns] secrets [name]
		last := parts[len(parts)-1]
		if last == "secrets" || last == "configmaps" {
			reads = append(reads, u.Path+" fieldSelector="+u.Query().Get("fieldSelector"))
		}
	}
	return reads
}

// TestNoClusterWideReads: flotilla never lists or watches ConfigMaps or Secrets but one object at a time
// (field selector metadata.name=<name> in its namespace), as the Node authorizer requires; a referenced
// Secret and ConfigMap are still copied, and a change of the Secret reaches its copy.
func TestNoClusterWideReads(t *testing.T) {
	requests := &requestLog{}
	creds := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "creds"}, Data: map[string][]byte{"p": []byte("v1")}}
	unrelated := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "unrelated"}, Data: map[string][]byte{"p": []byte("x")}}
	spec := envFrom("app", false)
	spec.Volumes = []corev1.Volume{{Name: "creds", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "creds"}}}}
	fx := newFixtureWith(t, fixtureOptions{
		management:          []runtime.Object{configMap("app", map[string]string{"a": "1"}), creds, unrelated},
		managementTransport: requests.wrap,
	})
	fx.run()
	pod := fx.bind(proxyPod("p", nil, spec))
	if drop, err := fx.f.EnsureFor(fx.ctx, pod); err != nil || drop != nil {
		t.Fatalf("EnsureFor = %v, %v", drop, err)
	}
	secrets := fx.workload.CoreV1().Secrets(fx.ns)
	if s, err := secrets.Get(fx.ctx, "creds", metav1.GetOptions{}); err != nil || string(s.Data["p"]) != "v1" {
		t.Fatalf("secret copy = %v, %v", s, err)
	}
	if _, err := fx.workload.CoreV1().ConfigMaps(fx.ns).Get(fx.ctx, "app", metav1.GetOptions{}); err != nil {
		t.Fatalf("configmap copy: %v", err)
	}
	if _, err := fx.management.CoreV1().Secrets(fx.ns).Patch(fx.ctx, "creds", types.MergePatchType, []byte(`{"data":{"p":"djI="}}`), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	lab.Poll(t, limit, "the change of the Secret in its copy", func() (bool, error) {
		s, err := secrets.Get(fx.ctx, "creds", metav1.GetOptions{})
		return err == nil && string(s.Data["p"]) == "v2", nil
	})

	reads := requests.collectionReads()
	want := map[string]bool{
		fmt.Sprintf("/api/v1/namespaces/%s/secrets fieldSelector=metadata.name=creds", fx.ns):  false,
		fmt.Sprintf("/api/v1/namespaces/%s/configmaps fieldSelector=metadata.name=app", fx.ns): false,
	}
	for _, r := range reads {
		if _, ok := want[r]; !ok {
			t.Errorf("a list or watch of more than one referenced object: %s", r)
		}
		want[r] = true
	}
	for r, seen := range want {
		if !seen {
			t.Errorf("no per-object read %s; reads: %q", r, reads)
		}
	}
}

// TestReferenceKnownOnlyOnceRead: a mandatory reference to a Secret that does not exist is reported with the
// kubelet's reason once its watch has answered; a Secret created after the proxy is followed as soon as it
// appears.
func TestReferenceKnownOnlyOnceRead(t *testing.T) {
	fx := newFixture(t, nil, nil)
	fx.run()
	spec := corev1.PodSpec{Volumes: []corev1.Volume{{Name: "late", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "late"}}}}}
	pod := fx.bind(proxyPod("p", nil, spec))
	_, err := fx.f.EnsureFor(fx.ctx, pod)
	var missing *MissingReferenceError
	if !errors.As(err, &missing) || missing.Reason != ReasonMandatorySecretNotFound || missing.Name != "late" {
		t.Fatalf("EnsureFor = %v, want the kubelet's MandatorySecretNotFound", err)
	}
	fx.create(fx.management, []runtime.Object{&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "late"}, Data: map[string][]byte{"k": []byte("v")}}})
	lab.Poll(t, limit, "the copy of the Secret that appeared", func() (bool, error) {
		s, err := fx.workload.CoreV1().Secrets(fx.ns).Get(fx.ctx, "late", metav1.GetOptions{})
		return err == nil && string(s.Data["k"]) == "v", nil
	})
	if drop, err := fx.f.EnsureFor(fx.ctx, pod); err != nil || drop != nil {
		t.Errorf("EnsureFor once the Secret exists = %v, %v", drop, err)
	}

	// The proxy goes: the watch stops and the copy goes with it.
	if err := fx.management.CoreV1().Pods(fx.ns).Delete(fx.ctx, "p", *metav1.NewDeleteOptions(0)); err != nil {
		t.Fatal(err)
	}
	lab.Poll(t, limit, "the copy to go with the proxy", func() (bool, error) {
		_, err := fx.workload.CoreV1().Secrets(fx.ns).Get(fx.ctx, "late", metav1.GetOptions{})
		return apierrors.IsNotFound(err), nil
	})
	if keys := fx.f.secretWatches.keys(fx.ns); len(keys) != 0 {
		t.Errorf("watches left: %v", keys)
	}
}

// TestForbiddenReadIsReported: a Secret the management apiserver refuses to let flotilla read (as the Node
// authorizer refuses an Ingress's TLS Secret that no pod of the node references) is a Warning Event on the
// Ingress that needs it, once, naming the Secret and the rule; the Ingress still follows, without it.
func TestForbiddenReadIsReported(t *testing.T) {
	var refusals atomic.Int32
	refuse := func(rt http.RoundTripper) http.RoundTripper {
		return roundTripper(func(r *http.Request) (*http.Response, error) {
			if strings.HasSuffix(r.URL.Path, "/secrets") && r.URL.Query().Get("fieldSelector") == "metadata.name=shop-cert" {
				refusals.Add(1)
				body := `{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"Forbidden","code":403,` +
					`"message":"secrets \"shop-cert\" is forbidden: User \"system:node:vn\" cannot list resource \"secrets\": no relationship found between node 'vn' and this object"}`
				return &http.Response{StatusCode: http.StatusForbidden, Header: http.Header{"Content-Type": {"application/json"}},
					Body: ioNopCloser(body), Request: r}, nil
			}
			return rt.RoundTrip(r)
		})
	}
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "web"}, Spec: corev1.ServiceSpec{
		Selector: map[string]string{"app": "web"}, Ports: []corev1.ServicePort{{Port: 80}}}}
	cert := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "shop-cert"}, Type: corev1.SecretTypeTLS,
		Data: map[string][]byte{corev1.TLSCertKey: []byte("cert"), corev1.TLSPrivateKeyKey: []byte("key")}}
	backend := networkingv1.IngressBackend{Service: &networkingv1.IngressServiceBackend{Name: "web", Port: networkingv1.ServiceBackendPort{Number: 80}}}
	ing := &networkingv1.Ingress{ObjectMeta: metav1.ObjectMeta{Name: "shop"}, Spec: networkingv1.IngressSpec{
		DefaultBackend: &backend, TLS: []networkingv1.IngressTLS{{Hosts: []string{"shop.example.com"}, SecretName: "shop-cert"}}}}
	fx := newFixtureWith(t, fixtureOptions{
		management:          []runtime.Object{svc, cert, ing, proxyPod("web-1", map[string]string{"app": "web"}, corev1.PodSpec{})},
		managementTransport: refuse,
	})
	fx.run()
	fx.expectEvent("shop", ReasonReadForbidden, "may read only the Secrets that pods bound to it reference")
	lab.Poll(t, limit, "the Ingress copy, without the TLS Secret", func() (bool, error) {
		c, err := fx.workload.NetworkingV1().Ingresses(fx.ns).Get(fx.ctx, "shop", metav1.GetOptions{})
		return err == nil && len(c.Spec.TLS) == 1 && c.Spec.TLS[0].SecretName == "", nil
	})
	// Several refused attempts (the watch backs off between them), one Event.
	lab.Poll(t, limit, "a few more refused attempts", func() (bool, error) { return refusals.Load() >= 4, nil })
	time.Sleep(2 * time.Second) // let the recorder send what it would
	list, err := fx.management.CoreV1().Events(fx.ns).List(fx.ctx, metav1.ListOptions{
		FieldSelector: fields.OneTermEqualSelector("involvedObject.name", "shop").String()})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range list.Items {
		if e.Reason == ReasonReadForbidden && e.Count != 1 {
			t.Errorf("event %s counted %d times: %s", e.Reason, e.Count, e.Message)
		}
	}
	if _, err := fx.workload.CoreV1().Secrets(fx.ns).Get(fx.ctx, "shop-cert", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("the refused Secret has a copy: %v", err)
	}
}

func ioNopCloser(s string) io.ReadCloser { return io.NopCloser(strings.NewReader(s)) }
