package node

import (
	"maps"
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// testConfig is a Config as NewController completes it.
func testConfig() Config {
	return Config{
		NodeName: "vn", ClusterName: "cl", ExcludeLabels: DefaultExcludeLabels,
		InternalIP: "10.0.0.7", KubeletPort: 10250, OwnPods: labels.Nothing(), FailoverAfter: 20 * time.Second,
	}
}

func TestDesiredNode(t *testing.T) {
	const region = "topology.kubernetes.io/region"
	synced := observation{probed: true, version: "v1.35.4", synced: true,
		nodes: []*corev1.Node{
			wnode("a", labelled(region, "eu-west-3")),
			wnode("b", labelled(region, "eu-west-3")),
			wnode("c", labelled(region, "eu-west-1"), notReady),
		},
		pods: []*corev1.Pod{wpod("p", "a", rl("cpu", "1"))},
	}
	zero := rl("cpu", "0", "memory", "0", "pods", "0")

	for _, tc := range []struct {
		name  string
		cfg   func(*Config)
		obs   observation
		check func(t *testing.T, n *corev1.Node)
	}{
		{
			name: "before anything is known: base labels, NotReady, zero capacity",
			check: func(t *testing.T, n *corev1.Node) {
				if !maps.Equal(n.Labels, BaseLabels("vn", "cl")) {
					t.Errorf("labels = %v, want the base labels", n.Labels)
				}
				if c := n.Status.Conditions[0]; c.Status != corev1.ConditionFalse || c.Reason != ReasonClusterUnreachable ||
					c.Message != "waiting for first probe" {
					t.Errorf("Ready = %s %s %q, want False ClusterUnreachable waiting for first probe", c.Status, c.Reason, c.Message)
				}
				if !equalResources(n.Status.Capacity, zero) || !equalResources(n.Status.Allocatable, zero) {
					t.Errorf("capacity %v, allocatable %v, want zero", n.Status.Capacity, n.Status.Allocatable)
				}
				if _, ok := n.Annotations[AnnotationWorkloadNodes]; ok {
					t.Errorf("node count annotated before the nodes were listed")
				}
			},
		},
		{
			name: "reachable but unsynced: still nothing about nodes",
			obs:  observation{probed: true, version: "v1.35.4"},
			check: func(t *testing.T, n *corev1.Node) {
				if !maps.Equal(n.Labels, BaseLabels("vn", "cl")) || !equalResources(n.Status.Allocatable, zero) {
					t.Errorf("labels %v, allocatable %v, want base labels and zero", n.Labels, n.Status.Allocatable)
				}
				if n.Status.NodeInfo.KubeletVersion != "v1.35.4" {
					t.Errorf("kubelet version = %q, want the workload apiserver's", n.Status.NodeInfo.KubeletVersion)
				}
			},
		},
		{
			name: "synced: labels, capacity, counts and Ready from the observation",
			obs:  synced,
			check: func(t *testing.T, n *corev1.Node) {
				if n.Labels[region] != "eu-west-3" || n.Labels[LabelCluster] != "cl" {
					t.Errorf("labels = %v, want region eu-west-3 and the base labels", n.Labels)
				}
				if want := rl("cpu", "7", "memory", "32Gi", "pods", "219", "ephemeral-storage", "200Gi"); !equalResources(n.Status.Allocatable, want) {
					t.Errorf("allocatable = %v, want %v", n.Status.Allocatable, want)
				}
				if n.Annotations[AnnotationWorkloadNodes] != "3" || n.Annotations[AnnotationWorkloadNodesReady] != "2" {
					t.Errorf("annotations = %v, want 3 nodes, 2 Ready", n.Annotations)
				}
				if c := n.Status.Conditions[0]; c.Status != corev1.ConditionTrue {
					t.Errorf("Ready = %s, want True", c.Status)
				}
			},
		},
		{
			name: "where to reach flotilla, and what it is",
			obs:  synced,
			check: func(t *testing.T, n *corev1.Node) {
				want := []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "10.0.0.7"}, {Type: corev1.NodeHostName, Address: "vn"}}
				if !slices.Equal(n.Status.Addresses, want) {
					t.Errorf("addresses = %v, want %v", n.Status.Addresses, want)
				}
				if p := n.Status.DaemonEndpoints.KubeletEndpoint.Port; p != 10250 {
					t.Errorf("kubelet port = %d, want 10250", p)
				}
				if n.Annotations[AnnotationWorkloadServer] != "https://workload:6443" || n.Annotations[AnnotationFailoverAfter] != "20s" {
					t.Errorf("annotations = %v, want the workload server and the failover delay", n.Annotations)
				}
				if n.Name != "vn" || n.Status.Phase != corev1.NodeRunning {
					t.Errorf("name %q phase %q, want vn Running", n.Name, n.Status.Phase)
				}
			},
		},
		{
			name: "no internal IP: hostname only",
			cfg:  func(c *Config) { c.InternalIP = "" },
			check: func(t *testing.T, n *corev1.Node) {
				want := []corev1.NodeAddress{{Type: corev1.NodeHostName, Address: "vn"}}
				if !slices.Equal(n.Status.Addresses, want) {
					t.Errorf("addresses = %v, want %v", n.Status.Addresses, want)
				}
			},
		},
		{
			name: "taint when asked",
			cfg:  func(c *Config) { c.Taint = true },
			check: func(t *testing.T, n *corev1.Node) {
				if !slices.Equal(n.Spec.Taints, []corev1.Taint{Taint()}) {
					t.Errorf("taints = %v, want the flotilla taint", n.Spec.Taints)
				}
			},
		},
		{
			name: "no taint otherwise, and never a cordon",
			obs:  synced,
			check: func(t *testing.T, n *corev1.Node) {
				if len(n.Spec.Taints) != 0 || n.Spec.Unschedulable {
					t.Errorf("spec = %+v, want empty", n.Spec)
				}
			},
		},
		{
			name: "own delegates are not subtracted",
			cfg:  func(c *Config) { c.OwnPods = labels.Everything() },
			obs:  synced,
			check: func(t *testing.T, n *corev1.Node) {
				if want := rl("cpu", "8", "memory", "32Gi", "pods", "220", "ephemeral-storage", "200Gi"); !equalResources(n.Status.Allocatable, want) {
					t.Errorf("allocatable = %v, want %v", n.Status.Allocatable, want)
				}
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig()
			if tc.cfg != nil {
				tc.cfg(&cfg)
			}
			tc.check(t, desiredNode(cfg, "https://workload:6443", tc.obs, nil, time.Now()))
		})
	}
}

func TestDesiredNodeIsStable(t *testing.T) {
	obs := observation{probed: true, synced: true, nodes: []*corev1.Node{wnode("a")}}
	first := desiredNode(testConfig(), "h", obs, nil, time.Now())
	again := desiredNode(testConfig(), "h", obs, first.Status.Conditions, time.Now().Add(time.Minute))
	for i := range first.Status.Conditions {
		if first.Status.Conditions[i] != again.Status.Conditions[i] {
			t.Errorf("unchanged cluster derived a different condition: %v then %v", first.Status.Conditions[i], again.Status.Conditions[i])
		}
	}
}

func TestPlatform(t *testing.T) {
	reports := func(os, arch string) func(*corev1.Node) {
		return func(n *corev1.Node) { n.Status.NodeInfo.OperatingSystem, n.Status.NodeInfo.Architecture = os, arch }
	}
	for _, tc := range []struct {
		name             string
		nodes            []*corev1.Node
		wantOS, wantArch string
	}{
		{"kubelets agree", []*corev1.Node{wnode("a", reports("linux", "amd64")), wnode("b", reports("linux", "amd64"))}, "linux", "amd64"},
		{"kubelet's report over labels", []*corev1.Node{wnode("a", reports("linux", "arm64"), labelled("kubernetes.io/arch", "amd64"))}, "linux", "arm64"},
		{"labels when kubelets don't say", []*corev1.Node{wnode("a", labelled("kubernetes.io/os", "linux", "kubernetes.io/arch", "amd64"))}, "linux", "amd64"},
		{"mixed architectures report none", []*corev1.Node{wnode("a", reports("linux", "amd64")), wnode("b", reports("linux", "arm64"))}, "linux", ""},
		{"NotReady nodes don't vote", []*corev1.Node{wnode("a", reports("linux", "amd64")), wnode("b", reports("windows", "arm64"), notReady)}, "linux", "amd64"},
		{"nothing known", []*corev1.Node{wnode("a")}, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := desiredNode(testConfig(), "h", observation{probed: true, synced: true, nodes: tc.nodes}, nil, time.Now())
			if info := n.Status.NodeInfo; info.OperatingSystem != tc.wantOS || info.Architecture != tc.wantArch {
				t.Errorf("os/arch = %q/%q, want %q/%q", info.OperatingSystem, info.Architecture, tc.wantOS, tc.wantArch)
			}
		})
	}
}
