package node

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
)

func TestBaseLabels(t *testing.T) {
	got := BaseLabels("eu-west-3-1", "eu-west-3")
	want := map[string]string{
		"type":                   "virtual-kubelet",
		"flotilla.io/cluster":    "eu-west-3",
		"kubernetes.io/hostname": "eu-west-3-1",
	}
	if len(got) != len(want) {
		t.Fatalf("BaseLabels = %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("BaseLabels[%q] = %q, want %q", k, got[k], v)
		}
	}
}

func TestTaint(t *testing.T) {
	want := corev1.Taint{Key: "virtual-kubelet.io/provider", Value: "flotilla", Effect: corev1.TaintEffectNoSchedule}
	if got := Taint(); got != want {
		t.Errorf("Taint = %v, want %v", got, want)
	}
}

func TestDefaultExcludeLabels(t *testing.T) {
	for key, excluded := range map[string]bool{
		"kubernetes.io/hostname":                                  true,
		"node-role.kubernetes.io/control-plane":                   true,
		"node-role.kubernetes.io/worker":                          true,
		"node.kubernetes.io/exclude-from-external-load-balancers": true,
		"beta.kubernetes.io/arch":                                 true,
		"beta.kubernetes.io/instance-type":                        true,
		"kwok.x-k8s.io/node":                                      true,
		"flotilla.io/cluster":                                     true,
		"sub.flotilla.io/anything":                                true,
		"topology.kubernetes.io/region":                           false,
		"topology.kubernetes.io/zone":                             false,
		"kubernetes.io/os":                                        false,
		"kubernetes.io/arch":                                      false,
		"node.kubernetes.io/instance-type":                        false,
		"nvidia.com/gpu.present":                                  false,
		"example.com/kubernetes.io/hostname-like":                 false,
		"notflotilla.io/x":                                        false,
	} {
		if got := DefaultExcludeLabels.MatchString(key); got != excluded {
			t.Errorf("DefaultExcludeLabels matches %q = %v, want %v", key, got, excluded)
		}
	}
}

func TestLost(t *testing.T) {
	for _, tc := range []struct {
		name   string
		taints []corev1.Taint
		want   bool
	}{
		{"no taints", nil, false},
		{"the failover taint", []corev1.Taint{{Key: LostTaintKey, Effect: corev1.TaintEffectNoExecute}}, true},
		{"the key with another effect", []corev1.Taint{{Key: LostTaintKey, Effect: corev1.TaintEffectNoSchedule}}, false},
		{"the virtual node's own taint", []corev1.Taint{Taint()}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Lost(&corev1.Node{Spec: corev1.NodeSpec{Taints: tc.taints}}); got != tc.want {
				t.Errorf("Lost = %v, want %v", got, tc.want)
			}
		})
	}
}
