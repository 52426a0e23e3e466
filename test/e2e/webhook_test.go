package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/flotilla-io/flotilla/node"
)

// The admission webhook (`flotilla webhook`, registered by the lab as the chart's MutatingWebhookConfiguration
// with the management apiserver): pods created in enabled namespaces get the virtual nodes'
// toleration and nothing else, whatever the workload clusters and their flotillas do. The pods of these tests
// select no node, so they stay Pending and the webhook's work is all there is to see.

// webhookToleration is what the webhook adds, as the tenancy contract spells it.
var webhookToleration = corev1.Toleration{Key: node.TaintKey, Operator: corev1.TolerationOpEqual, Value: node.TaintValue, Effect: corev1.TaintEffectNoSchedule}

// TestWebhookAddsToleration: a pod without tolerations created in an enabled namespace comes out of
// admission with exactly the virtual nodes' toleration added to what the same pod gets in a namespace that
// is not enabled, which is nothing of flotilla's.
func TestWebhookAddsToleration(t *testing.T) {
	enabled, plain := namespace(t, shared.Management.Client), plainNamespace(t)

	reference := createPod(t, unscheduledPod(plain, "bare"))
	if i := virtualTolerations(reference); len(i) != 0 {
		t.Errorf("a pod in the unlabelled namespace %s got %v", plain, i)
	}
	got := createPod(t, unscheduledPod(enabled, "bare"))
	added := virtualTolerations(got)
	if len(added) != 1 || got.Spec.Tolerations[added[0]] != webhookToleration {
		t.Fatalf("tolerations %+v: want %+v once", got.Spec.Tolerations, webhookToleration)
	}
	// Nothing else differs: without the added toleration the pod is the one the unlabelled namespace got.
	spec := got.Spec.DeepCopy()
	spec.Tolerations = append(spec.Tolerations[:added[0]:added[0]], spec.Tolerations[added[0]+1:]...)
	if diff := cmp.Diff(reference.Spec, *spec); diff != "" {
		t.Errorf("the webhook changed more than the tolerations (-unlabelled namespace +enabled namespace):\n%s", diff)
	}
	if !cmp.Equal(reference.Labels, got.Labels) || !cmp.Equal(reference.Annotations, got.Annotations) {
		t.Errorf("labels or annotations changed: %v %v, want %v %v", got.Labels, got.Annotations, reference.Labels, reference.Annotations)
	}
}

// TestWebhookKeepsToleratingPods: a pod that tolerates every taint already gets nothing added.
func TestWebhookKeepsToleratingPods(t *testing.T) {
	enabled := namespace(t, shared.Management.Client)
	everything := []corev1.Toleration{{Operator: corev1.TolerationOpExists}}
	pod := unscheduledPod(enabled, "tolerates-everything")
	pod.Spec.Tolerations = everything
	got := createPod(t, pod)
	if diff := cmp.Diff(everything, got.Spec.Tolerations); diff != "" {
		t.Errorf("tolerations changed (-created +admitted):\n%s", diff)
	}
}

// TestWebhookWithoutFlotilla: with a workload cluster's flotilla gone, pods are still created in enabled
// namespaces, at once and with the toleration: the webhook is no part of any flotilla.
func TestWebhookWithoutFlotilla(t *testing.T) {
	const lost = "eu-west-3-1"
	ctx := testContext(t, 2*time.Minute)
	enabled := namespace(t, shared.Management.Client)
	createPod(t, unscheduledPod(enabled, "before")) // the namespace is ready for pods (default ServiceAccount)

	if err := shared.KillFlotilla(lost); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := shared.StartFlotilla(lost); err != nil {
			t.Errorf("starting %s's flotilla again: %v", lost, err)
		}
		if err := shared.WaitVirtualNodeReady(context.Background(), lost); err != nil {
			t.Error(err)
		}
	})
	start := time.Now()
	got, err := shared.Management.Client.CoreV1().Pods(enabled).Create(ctx, unscheduledPod(enabled, "after"), metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("creating a pod with %s's flotilla killed: %v", lost, err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("creating a pod took %s with %s's flotilla killed", took, lost)
	}
	if added := virtualTolerations(got); len(added) != 1 || got.Spec.Tolerations[added[0]] != webhookToleration {
		t.Errorf("tolerations %+v: want %+v once", got.Spec.Tolerations, webhookToleration)
	}
}

// unscheduledPod is a pod no node can take (it stays Pending, nothing is delegated) and without a
// ServiceAccount token volume, whose name is random: two such pods differ only by what admission did.
func unscheduledPod(ns, name string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: map[string]string{"app": "webhook-test"}},
		Spec: corev1.PodSpec{
			NodeSelector:                 map[string]string{"e2e.flotilla.io/webhook": "no-such-node"},
			AutomountServiceAccountToken: ptr.To(false),
			Containers:                   []corev1.Container{{Name: "app", Image: "registry.k8s.io/pause:3.10"}},
		},
	}
}

// createPod creates a pod in the management cluster, retrying while the namespace's default ServiceAccount,
// which admission requires, is not there yet.
func createPod(t *testing.T, pod *corev1.Pod) *corev1.Pod {
	t.Helper()
	var got *corev1.Pod
	eventually(t, 30*time.Second, fmt.Sprintf("pod %s/%s created", pod.Namespace, pod.Name), func(ctx context.Context) (bool, string) {
		var err error
		got, err = shared.Management.Client.CoreV1().Pods(pod.Namespace).Create(ctx, pod, metav1.CreateOptions{})
		if err != nil {
			return false, err.Error()
		}
		return true, ""
	})
	return got
}

// virtualTolerations are the indexes of a pod's tolerations of the virtual nodes' taint key.
func virtualTolerations(pod *corev1.Pod) []int {
	var out []int
	for i, t := range pod.Spec.Tolerations {
		if t.Key == node.TaintKey {
			out = append(out, i)
		}
	}
	return out
}

// plainNamespace creates a management namespace that is not enabled for delegation and deletes it
// afterwards.
func plainNamespace(t *testing.T) string {
	t.Helper()
	name := strings.ToLower(strings.NewReplacer("/", "-", "_", "-").Replace(t.Name()))
	if len(name) > 40 {
		name = name[:40]
	}
	name = strings.Trim(name, "-") + fmt.Sprintf("-plain-%d", time.Now().UnixNano()%100000)
	c := shared.Management.Client.CoreV1().Namespaces()
	if _, err := c.Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating namespace %s: %v", name, err)
	}
	t.Cleanup(func() { _ = c.Delete(context.Background(), name, metav1.DeleteOptions{}) })
	return name
}
