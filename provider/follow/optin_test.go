package follow

import (
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/flotilla-io/flotilla/tenancy"
	"github.com/flotilla-io/flotilla/test/lab"
)

// TestNotEnabledNamespace: the proxies of a namespace that is not enabled for delegation (bound to the
// virtual node all the same, by a preset nodeName) bring nothing to the workload cluster, not even the
// namespace; labelling the namespace makes what they need follow them; removing the label again takes away
// only what proxies without a delegate needed, while what a proxy with a delegate needs stays (an opt-out is
// never an outage).
func TestNotEnabledNamespace(t *testing.T) {
	lbService := func(name string) *corev1.Service {
		return &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: corev1.ServiceSpec{
			Type: corev1.ServiceTypeLoadBalancer, Selector: map[string]string{"app": name}, Ports: []corev1.ServicePort{{Port: 80}}}}
	}
	secret := func(name string) *corev1.Secret {
		return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name}, Data: map[string][]byte{"p": []byte("s3cret")}}
	}
	// A proxy of app=<name> that needs ConfigMap <name> (env) and Secret <name>-creds (volume).
	proxy := func(name string) *corev1.Pod {
		spec := envFrom(name, false)
		spec.Volumes = []corev1.Volume{{Name: "creds", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: name + "-creds"}}}}
		return proxyPod(name+"-1", map[string]string{"app": name}, spec)
	}
	fx := newFixtureWith(t, fixtureOptions{notEnabled: true, management: []runtime.Object{
		configMap("web", map[string]string{"a": "1"}), secret("web-creds"), lbService("web"), proxy("web"),
	}})
	fx.run()
	workload := fx.workload.CoreV1()

	// EnsureFor refuses to copy for it, should anyone ask.
	pod, err := fx.management.CoreV1().Pods(fx.ns).Get(fx.ctx, "web-1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fx.f.EnsureFor(fx.ctx, pod); !isRefusedFor(err, tenancy.ReasonNamespaceNotEnabled) {
		t.Errorf("EnsureFor = %v, want the namespace not enabled", err)
	}
	// The followers, which see every pod bound to the node, copy nothing either.
	time.Sleep(3 * time.Second)
	if n := fx.writes.Load(); n != 0 {
		t.Errorf("%d writes to the workload cluster for a namespace that is not enabled", n)
	}
	if _, err := workload.Namespaces().Get(fx.ctx, fx.ns, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("the workload namespace exists: %v", err)
	}

	// Labelled: what the proxy needs follows it.
	fx.setEnabled(true)
	expectCopies(t, fx, true, "web")
	// The proxy's delegate starts (flotilla copies startTime from it); a second proxy comes, whose delegate
	// never started.
	pod, err = fx.management.CoreV1().Pods(fx.ns).Get(fx.ctx, "web-1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pod.Status.StartTime = &metav1.Time{Time: time.Now()}
	if _, err := fx.management.CoreV1().Pods(fx.ns).UpdateStatus(fx.ctx, pod, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	fx.create(fx.management, []runtime.Object{configMap("late", map[string]string{"b": "2"}), secret("late-creds"), lbService("late"), proxy("late")})
	expectCopies(t, fx, true, "late")

	// The label goes: what only the proxy without a delegate needed goes too; the rest stays.
	fx.setEnabled(false)
	expectCopies(t, fx, false, "late")
	time.Sleep(time.Second)
	expectCopies(t, fx, true, "web")
}

// expectCopies waits until the workload cluster holds (or, with want false, no longer holds) the copies of
// ConfigMap <name>, Secret <name>-creds and Service <name> of the fixture's namespace.
func expectCopies(t *testing.T, fx *fixture, want bool, name string) {
	t.Helper()
	workload := fx.workload.CoreV1()
	lab.Poll(t, limit, fmt.Sprintf("copies of %s there: %v", name, want), func() (bool, error) {
		_, cmErr := workload.ConfigMaps(fx.ns).Get(fx.ctx, name, metav1.GetOptions{})
		_, secretErr := workload.Secrets(fx.ns).Get(fx.ctx, name+"-creds", metav1.GetOptions{})
		_, svcErr := workload.Services(fx.ns).Get(fx.ctx, name, metav1.GetOptions{})
		for _, err := range []error{cmErr, secretErr, svcErr} {
			if (err == nil) != want {
				return false, fmt.Errorf("ConfigMap: %v, Secret: %v, Service: %v", cmErr, secretErr, svcErr)
			}
		}
		return true, nil
	})
}

func isRefusedFor(err error, reason string) bool {
	r, ok := tenancy.IsRefused(err)
	return ok && r.Reason == reason
}
