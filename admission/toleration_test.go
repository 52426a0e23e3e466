package admission

import (
	"encoding/json"
	"testing"

	"github.com/google/go-cmp/cmp"
	jsonpatch "gopkg.in/evanphx/json-patch.v4"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/flotilla-io/flotilla/node"
)

// want is the toleration the webhook adds for the virtual nodes' taint.
var want = corev1.Toleration{Key: node.TaintKey, Operator: corev1.TolerationOpEqual, Value: node.TaintValue, Effect: corev1.TaintEffectNoSchedule}

// notReady is a toleration a pod may carry that has nothing to do with virtual nodes.
var notReady = corev1.Toleration{Key: corev1.TaintNodeNotReady, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute}

func podWith(tolerations ...corev1.Toleration) *corev1.Pod {
	return &corev1.Pod{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "shop"},
		Spec: corev1.PodSpec{
			Containers:  []corev1.Container{{Name: "web", Image: "nginx"}},
			Tolerations: tolerations,
		},
	}
}

// apply applies a JSON Patch to the pod as the apiserver does, to its JSON.
func apply(t *testing.T, pod *corev1.Pod, patch []byte) *corev1.Pod {
	t.Helper()
	if patch == nil {
		return pod.DeepCopy()
	}
	p, err := jsonpatch.DecodePatch(patch)
	if err != nil {
		t.Fatalf("patch %s: %v", patch, err)
	}
	doc, err := json.Marshal(pod)
	if err != nil {
		t.Fatal(err)
	}
	patched, err := p.Apply(doc)
	if err != nil {
		t.Fatalf("applying %s to %s: %v", patch, doc, err)
	}
	out := &corev1.Pod{}
	if err := json.Unmarshal(patched, out); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestTolerationPatch(t *testing.T) {
	for _, tc := range []struct {
		name string
		pod  *corev1.Pod
		// want is the pod's tolerations after the patch; added says whether there was a patch at all.
		want  []corev1.Toleration
		added bool
	}{
		{name: "a pod without tolerations gets the one toleration", pod: podWith(), want: []corev1.Toleration{want}, added: true},
		{name: "an empty list is a list without tolerations", pod: podWith([]corev1.Toleration{}...), want: []corev1.Toleration{want}, added: true},
		{name: "existing tolerations are kept, the new one comes last", pod: podWith(notReady),
			want: []corev1.Toleration{notReady, want}, added: true},
		{name: "the same toleration: nothing to add", pod: podWith(notReady, want), want: []corev1.Toleration{notReady, want}},
		{name: "Exists for the key tolerates any value",
			pod:  podWith(corev1.Toleration{Key: node.TaintKey, Operator: corev1.TolerationOpExists}),
			want: []corev1.Toleration{{Key: node.TaintKey, Operator: corev1.TolerationOpExists}}},
		{name: "Exists with an empty key tolerates everything",
			pod:  podWith(corev1.Toleration{Operator: corev1.TolerationOpExists}),
			want: []corev1.Toleration{{Operator: corev1.TolerationOpExists}}},
		{name: "an empty effect matches every effect",
			pod:  podWith(corev1.Toleration{Key: node.TaintKey, Value: node.TaintValue}),
			want: []corev1.Toleration{{Key: node.TaintKey, Value: node.TaintValue}}},
		{name: "another effect does not tolerate NoSchedule",
			pod: podWith(corev1.Toleration{Key: node.TaintKey, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute}),
			want: []corev1.Toleration{
				{Key: node.TaintKey, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute}, want,
			}, added: true},
		{name: "tolerating everything for another effect is not enough",
			pod:  podWith(corev1.Toleration{Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute}),
			want: []corev1.Toleration{{Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute}, want}, added: true},
		{name: "another value does not tolerate the taint",
			pod:  podWith(corev1.Toleration{Key: node.TaintKey, Operator: corev1.TolerationOpEqual, Value: "other"}),
			want: []corev1.Toleration{{Key: node.TaintKey, Operator: corev1.TolerationOpEqual, Value: "other"}, want}, added: true},
		{name: "another key does not tolerate the taint",
			pod:  podWith(corev1.Toleration{Key: "example.com/gpu", Operator: corev1.TolerationOpExists}),
			want: []corev1.Toleration{{Key: "example.com/gpu", Operator: corev1.TolerationOpExists}, want}, added: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := tc.pod.DeepCopy()
			patch, err := TolerationPatch(tc.pod, node.Taint())
			if err != nil {
				t.Fatal(err)
			}
			if added := patch != nil; added != tc.added {
				t.Errorf("patch %s, want one: %v", patch, tc.added)
			}
			if diff := cmp.Diff(before, tc.pod); diff != "" {
				t.Errorf("TolerationPatch changed its input (-before +after):\n%s", diff)
			}
			got := apply(t, tc.pod, patch)
			if diff := cmp.Diff(tc.want, got.Spec.Tolerations); diff != "" {
				t.Errorf("tolerations after the patch (-want +got):\n%s", diff)
			}
			// Nothing but the tolerations changes.
			got.Spec.Tolerations, before.Spec.Tolerations = nil, nil
			if diff := cmp.Diff(before, got); diff != "" {
				t.Errorf("the patch changed more than the tolerations (-before +after):\n%s", diff)
			}
			// Idempotent: a second pass (the apiserver's reinvocation, a re-created pod) adds nothing.
			again, err := TolerationPatch(apply(t, tc.pod, patch), node.Taint())
			if err != nil || again != nil {
				t.Errorf("second pass: patch %s, error %v; want none", again, err)
			}
		})
	}
}

// TestTolerationFollowsTaint: the toleration is built from the taint it is given, not spelled twice.
func TestTolerationFollowsTaint(t *testing.T) {
	if got := Toleration(node.Taint()); got != want {
		t.Errorf("Toleration(node.Taint()) = %+v, want %+v", got, want)
	}
	other := corev1.Taint{Key: "example.com/fleet", Value: "blue", Effect: corev1.TaintEffectPreferNoSchedule}
	got := apply(t, podWith(), mustPatch(t, podWith(), other)).Spec.Tolerations
	if diff := cmp.Diff([]corev1.Toleration{{Key: other.Key, Operator: corev1.TolerationOpEqual, Value: "blue", Effect: other.Effect}}, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func mustPatch(t *testing.T, pod *corev1.Pod, taint corev1.Taint) []byte {
	t.Helper()
	patch, err := TolerationPatch(pod, taint)
	if err != nil {
		t.Fatal(err)
	}
	return patch
}
