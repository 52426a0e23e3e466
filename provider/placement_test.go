package provider

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
)

func TestPlaceInWorkload(t *testing.T) {
	in := func(key string, values ...string) corev1.NodeSelectorRequirement {
		return corev1.NodeSelectorRequirement{Key: key, Operator: corev1.NodeSelectorOpIn, Values: values}
	}
	notIn := func(key string, values ...string) corev1.NodeSelectorRequirement {
		return corev1.NodeSelectorRequirement{Key: key, Operator: corev1.NodeSelectorOpNotIn, Values: values}
	}
	term := func(rs ...corev1.NodeSelectorRequirement) corev1.NodeSelectorTerm {
		return corev1.NodeSelectorTerm{MatchExpressions: rs}
	}
	required := func(ts ...corev1.NodeSelectorTerm) *corev1.Affinity {
		return &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{
			RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{NodeSelectorTerms: ts}}}
	}
	preferred := func(ps ...corev1.PreferredSchedulingTerm) *corev1.Affinity {
		return &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{PreferredDuringSchedulingIgnoredDuringExecution: ps}}
	}
	gt := func(key, value string) corev1.NodeSelectorRequirement {
		return corev1.NodeSelectorRequirement{Key: key, Operator: corev1.NodeSelectorOpGt, Values: []string{value}}
	}
	region := in("topology.kubernetes.io/region", "eu-west-3")
	zone := in("topology.kubernetes.io/zone", "eu-west-3a")
	hostname := in("kubernetes.io/hostname", "eu-west-3-1")
	otherHost := in("kubernetes.io/hostname", "us-west-2-0")
	cluster := in("flotilla.io/cluster", "eu-west-3-1")
	vk := in("type", "virtual-kubelet")
	byName := corev1.NodeSelectorTerm{MatchFields: []corev1.NodeSelectorRequirement{in("metadata.name", "eu-west-3-1")}}
	podAntiAffinity := &corev1.PodAntiAffinity{RequiredDuringSchedulingIgnoredDuringExecution: []corev1.PodAffinityTerm{{TopologyKey: "kubernetes.io/hostname"}}}

	tests := []struct {
		name string
		spec corev1.PodSpec
		want corev1.PodSpec
	}{
		{name: "no constraints"},
		{
			name: "spread over clusters goes, spread over zones and hosts stays",
			spec: corev1.PodSpec{TopologySpreadConstraints: []corev1.TopologySpreadConstraint{
				{TopologyKey: "flotilla.io/cluster", MaxSkew: 1}, {TopologyKey: "topology.kubernetes.io/zone", MaxSkew: 1},
				{TopologyKey: "kubernetes.io/hostname", MaxSkew: 2}}},
			want: corev1.PodSpec{TopologySpreadConstraints: []corev1.TopologySpreadConstraint{
				{TopologyKey: "topology.kubernetes.io/zone", MaxSkew: 1}, {TopologyKey: "kubernetes.io/hostname", MaxSkew: 2}}},
		},
		{
			name: "spread over clusters alone goes entirely",
			spec: corev1.PodSpec{TopologySpreadConstraints: []corev1.TopologySpreadConstraint{{TopologyKey: "flotilla.io/cluster", MaxSkew: 1}}},
		},
		{
			name: "pod anti-affinity per cluster goes, per host stays",
			spec: corev1.PodSpec{Affinity: &corev1.Affinity{
				PodAffinity: &corev1.PodAffinity{PreferredDuringSchedulingIgnoredDuringExecution: []corev1.WeightedPodAffinityTerm{
					{Weight: 1, PodAffinityTerm: corev1.PodAffinityTerm{TopologyKey: "type"}}}},
				PodAntiAffinity: &corev1.PodAntiAffinity{RequiredDuringSchedulingIgnoredDuringExecution: []corev1.PodAffinityTerm{
					{TopologyKey: "flotilla.io/cluster"}, {TopologyKey: "kubernetes.io/hostname"}}}}},
			want: corev1.PodSpec{Affinity: &corev1.Affinity{PodAntiAffinity: podAntiAffinity}},
		},
		{
			name: "nodeSelector keeps real node labels only",
			spec: corev1.PodSpec{NodeSelector: map[string]string{
				"topology.kubernetes.io/region": "eu-west-3", "type": "virtual-kubelet", "kubernetes.io/role": "cluster",
				"flotilla.io/cluster": "eu-west-3-1", "kubernetes.io/hostname": "eu-west-3-1"}},
			want: corev1.PodSpec{NodeSelector: map[string]string{"topology.kubernetes.io/region": "eu-west-3"}},
		},
		{
			name: "nodeSelector on base labels only goes",
			spec: corev1.PodSpec{NodeSelector: map[string]string{"type": "virtual-kubelet"}},
		},
		{
			name: "required term keeps its real node requirements",
			spec: corev1.PodSpec{Affinity: required(term(vk, region, hostname))},
			want: corev1.PodSpec{Affinity: required(term(region))},
		},
		{
			name: "required term on the virtual node alone drops the requirement",
			spec: corev1.PodSpec{Affinity: required(term(cluster))},
		},
		{
			name: "an alternative satisfied by the virtual node alone drops all alternatives",
			spec: corev1.PodSpec{Affinity: required(term(cluster), term(in("topology.kubernetes.io/region", "us-west-2")))},
		},
		{
			name: "an alternative the virtual node fails goes, the others stay",
			spec: corev1.PodSpec{Affinity: required(term(otherHost, zone), term(region, hostname))},
			want: corev1.PodSpec{Affinity: required(term(region))},
		},
		{
			name: "NotIn on base labels that the virtual node satisfies goes",
			spec: corev1.PodSpec{Affinity: required(term(notIn("kubernetes.io/hostname", "us-west-2-0"), zone))},
			want: corev1.PodSpec{Affinity: required(term(zone))},
		},
		{
			name: "matchFields name the virtual node and go",
			spec: corev1.PodSpec{Affinity: required(byName)},
		},
		{
			name: "an empty required term matches nothing and is ignored",
			spec: corev1.PodSpec{Affinity: required(term(), term(region))},
			want: corev1.PodSpec{Affinity: required(term(region))},
		},
		{
			name: "preferences keep their real node requirements, empty ones go",
			spec: corev1.PodSpec{Affinity: preferred(
				corev1.PreferredSchedulingTerm{Weight: 10, Preference: term(hostname)},
				corev1.PreferredSchedulingTerm{Weight: 20, Preference: term(hostname, zone)},
				corev1.PreferredSchedulingTerm{Weight: 30, Preference: term(otherHost, zone)},
				corev1.PreferredSchedulingTerm{Weight: 40, Preference: term(region)},
			)},
			want: corev1.PodSpec{Affinity: preferred(
				corev1.PreferredSchedulingTerm{Weight: 20, Preference: term(zone)},
				corev1.PreferredSchedulingTerm{Weight: 40, Preference: term(region)},
			)},
		},
		{
			name: "the webhook's fit affinity is the management scheduler's and goes",
			spec: corev1.PodSpec{Affinity: required(
				term(region, corev1.NodeSelectorRequirement{Key: "flotilla.io/cluster", Operator: corev1.NodeSelectorOpDoesNotExist}),
				term(region, gt("flotilla.io/max-pod-cpu", "1999"), gt("flotilla.io/max-pod-memory", "63")))},
			want: corev1.PodSpec{Affinity: required(term(region))},
		},
		{
			name: "fit affinity alone goes entirely",
			spec: corev1.PodSpec{Affinity: required(
				term(corev1.NodeSelectorRequirement{Key: "flotilla.io/cluster", Operator: corev1.NodeSelectorOpDoesNotExist}),
				term(gt("flotilla.io/max-pod-cpu", "1999")))},
		},
		{
			name: "pod (anti-)affinity is the workload scheduler's and stays",
			spec: corev1.PodSpec{Affinity: &corev1.Affinity{
				NodeAffinity:    &corev1.NodeAffinity{RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{term(hostname)}}},
				PodAntiAffinity: podAntiAffinity,
			}},
			want: corev1.PodSpec{Affinity: &corev1.Affinity{PodAntiAffinity: podAntiAffinity}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := *tt.spec.DeepCopy()
			placeInWorkload(&got, testOwner.virtualNode())
			if !equality.Semantic.DeepEqual(got, tt.want) {
				t.Errorf("spec differs (-want +got):\n%s", cmp.Diff(tt.want, got))
			}
		})
	}
}
