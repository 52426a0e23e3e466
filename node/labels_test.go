package node

import (
	"maps"
	"regexp"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

func TestNodeLabels(t *testing.T) {
	const (
		region = "topology.kubernetes.io/region"
		zone   = "topology.kubernetes.io/zone"
	)
	base := BaseLabels("vn", "cl")
	with := func(kv ...string) map[string]string {
		m := maps.Clone(base)
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	for _, tc := range []struct {
		name    string
		nodes   []*corev1.Node
		exclude *regexp.Regexp
		want    map[string]string
	}{
		{
			name: "one region in three zones keeps region, drops zone",
			nodes: []*corev1.Node{
				wnode("a", labelled(region, "us-west-2", zone, "us-west-2a")),
				wnode("b", labelled(region, "us-west-2", zone, "us-west-2b")),
				wnode("c", labelled(region, "us-west-2", zone, "us-west-2c")),
			},
			want: with(region, "us-west-2"),
		},
		{
			name: "one zone keeps zone",
			nodes: []*corev1.Node{
				wnode("a", labelled(region, "us-west-2", zone, "us-west-2a")),
				wnode("b", labelled(region, "us-west-2", zone, "us-west-2a")),
			},
			want: with(region, "us-west-2", zone, "us-west-2a"),
		},
		{
			name: "a conflict among three stays dropped when a later node agrees with the first",
			nodes: []*corev1.Node{
				wnode("a", labelled(zone, "x")),
				wnode("b", labelled(zone, "y")),
				wnode("c", labelled(zone, "x")),
			},
			want: base,
		},
		{
			name: "NotReady nodes don't vote",
			nodes: []*corev1.Node{
				wnode("a", labelled(region, "eu-west-3")),
				wnode("b", labelled(region, "eu-west-1"), notReady),
			},
			want: with(region, "eu-west-3"),
		},
		{
			name: "cordoned Ready nodes vote",
			nodes: []*corev1.Node{
				wnode("a", labelled(region, "eu-west-3")),
				wnode("b", labelled(region, "eu-west-1"), cordoned),
			},
			want: base,
		},
		{
			name: "a label only some nodes carry counts when they agree",
			nodes: []*corev1.Node{
				wnode("a", labelled("nvidia.com/gpu.present", "true")),
				wnode("b"),
			},
			want: with("nvidia.com/gpu.present", "true"),
		},
		{
			name: "an empty value is a value",
			nodes: []*corev1.Node{
				wnode("a", labelled("gpu", "")),
				wnode("b", labelled("gpu", "true")),
			},
			want: base,
		},
		{
			name: "default exclusions",
			nodes: []*corev1.Node{wnode("a", labelled(
				"kubernetes.io/hostname", "a",
				"node-role.kubernetes.io/control-plane", "",
				"beta.kubernetes.io/os", "linux",
				"kubernetes.io/os", "linux",
				"flotilla.io/other", "spoof",
			))},
			want: with("kubernetes.io/os", "linux"),
		},
		{
			name: "base labels win, even with no exclusions",
			nodes: []*corev1.Node{wnode("a", labelled(
				"type", "real", "kubernetes.io/role", "worker", LabelCluster, "spoof", "kubernetes.io/hostname", "a",
			))},
			exclude: regexp.MustCompile(`^$`),
			want:    base,
		},
		{
			name: "labels NodeRestriction keeps a node from setting on itself",
			nodes: []*corev1.Node{wnode("a", labelled(
				"node-restriction.kubernetes.io/pool", "a",
				"example.k8s.io/x", "y",
				"kubernetes.io/role", "worker",
				"node.kubernetes.io/instance-type", "m5.xlarge",
				"kubelet.kubernetes.io/x", "y",
				"example.com/team", "t",
			))},
			exclude: regexp.MustCompile(`^$`),
			want:    with("node.kubernetes.io/instance-type", "m5.xlarge", "kubelet.kubernetes.io/x", "y", "example.com/team", "t"),
		},
		{
			name:    "operator exclusion",
			nodes:   []*corev1.Node{wnode("a", labelled(region, "r", zone, "z"))},
			exclude: regexp.MustCompile(`^topology\.kubernetes\.io/zone$`),
			want:    with(region, "r"),
		},
		{
			name:  "no Ready node leaves the base labels",
			nodes: []*corev1.Node{wnode("a", labelled(region, "r"), notReady)},
			want:  base,
		},
		{
			name: "no nodes leaves the base labels",
			want: base,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			exclude := tc.exclude
			if exclude == nil {
				exclude = DefaultExcludeLabels
			}
			if got := nodeLabels("vn", "cl", tc.nodes, exclude); !maps.Equal(got, tc.want) {
				t.Errorf("nodeLabels =\n %v\nwant\n %v", got, tc.want)
			}
		})
	}
}
