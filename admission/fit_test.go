package admission

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/flotilla-io/flotilla/node"
)

func requesting(pairs ...string) corev1.ResourceList {
	list := corev1.ResourceList{}
	for i := 0; i < len(pairs); i += 2 {
		list[corev1.ResourceName(pairs[i])] = resource.MustParse(pairs[i+1])
	}
	return list
}

func podRequesting(requests corev1.ResourceList, opts ...func(*corev1.Pod)) *corev1.Pod {
	p := podWith()
	p.Spec.Containers[0].Resources.Requests = requests
	for _, o := range opts {
		o(p)
	}
	return p
}

func requiring(terms ...corev1.NodeSelectorTerm) *corev1.NodeSelector {
	return &corev1.NodeSelector{NodeSelectorTerms: terms}
}

func term(exprs ...corev1.NodeSelectorRequirement) corev1.NodeSelectorTerm {
	return corev1.NodeSelectorTerm{MatchExpressions: exprs}
}

func expr(key string, op corev1.NodeSelectorOperator, values ...string) corev1.NodeSelectorRequirement {
	return corev1.NodeSelectorRequirement{Key: key, Operator: op, Values: values}
}

func TestFitPatch(t *testing.T) {
	notVirtual := expr(node.LabelCluster, corev1.NodeSelectorOpDoesNotExist)
	cpu := func(v string) corev1.NodeSelectorRequirement {
		return expr(node.LabelMaxPodCPU, corev1.NodeSelectorOpGt, v)
	}
	mem := func(v string) corev1.NodeSelectorRequirement {
		return expr(node.LabelMaxPodMemory, corev1.NodeSelectorOpGt, v)
	}
	zone := expr("topology.kubernetes.io/zone", corev1.NodeSelectorOpIn, "a", "b")
	withAffinity := func(a *corev1.Affinity) func(*corev1.Pod) { return func(p *corev1.Pod) { p.Spec.Affinity = a } }
	required := func(s *corev1.NodeSelector) *corev1.Affinity {
		return &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{RequiredDuringSchedulingIgnoredDuringExecution: s}}
	}
	preferred := []corev1.PreferredSchedulingTerm{{Weight: 1, Preference: term(zone)}}
	podAntiAffinity := &corev1.PodAntiAffinity{RequiredDuringSchedulingIgnoredDuringExecution: []corev1.PodAffinityTerm{{TopologyKey: "kubernetes.io/hostname"}}}

	for _, tc := range []struct {
		name string
		pod  *corev1.Pod
		want *corev1.Affinity // nil: the pod's affinity unchanged
	}{
		{name: "no requests: nothing", pod: podRequesting(nil)},
		{name: "already placed (nodeName): nothing", pod: podRequesting(requesting("cpu", "2"), func(p *corev1.Pod) { p.Spec.NodeName = "us-west-2-1" })},
		{name: "only other resources: nothing", pod: podRequesting(requesting("ephemeral-storage", "1Gi"))},
		{
			name: "CPU and memory, no affinity: the two terms alone",
			pod:  podRequesting(requesting("cpu", "2", "memory", "100Mi")),
			want: required(requiring(term(notVirtual), term(cpu("1999"), mem("99")))),
		},
		{
			name: "CPU only",
			pod:  podRequesting(requesting("cpu", "250m")),
			want: required(requiring(term(notVirtual), term(cpu("249")))),
		},
		{
			name: "memory rounds up to MiB",
			pod:  podRequesting(requesting("memory", "1")),
			want: required(requiring(term(notVirtual), term(mem("0")))),
		},
		{
			name: "effective request: the larger of init containers and the sum of containers, plus overhead",
			pod: podRequesting(requesting("cpu", "1"), func(p *corev1.Pod) {
				p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: "side",
					Resources: corev1.ResourceRequirements{Requests: requesting("cpu", "500m")}})
				p.Spec.InitContainers = []corev1.Container{{Name: "init",
					Resources: corev1.ResourceRequirements{Requests: requesting("cpu", "3", "memory", "1Gi")}}}
				p.Spec.Overhead = requesting("cpu", "100m")
			}),
			want: required(requiring(term(notVirtual), term(cpu("3099"), mem("1023")))),
		},
		{
			name: "each required term is split in two",
			pod: podRequesting(requesting("cpu", "1"), withAffinity(required(requiring(
				term(zone), term(expr("disk", corev1.NodeSelectorOpExists)))))),
			want: required(requiring(
				term(zone, notVirtual), term(zone, cpu("999")),
				term(expr("disk", corev1.NodeSelectorOpExists), notVirtual), term(expr("disk", corev1.NodeSelectorOpExists), cpu("999")))),
		},
		{
			name: "matchFields are kept in both halves",
			pod: podRequesting(requesting("cpu", "1"), withAffinity(required(requiring(corev1.NodeSelectorTerm{
				MatchFields: []corev1.NodeSelectorRequirement{expr("metadata.name", corev1.NodeSelectorOpIn, "n1")}})))),
			want: required(requiring(
				corev1.NodeSelectorTerm{MatchExpressions: []corev1.NodeSelectorRequirement{notVirtual},
					MatchFields: []corev1.NodeSelectorRequirement{expr("metadata.name", corev1.NodeSelectorOpIn, "n1")}},
				corev1.NodeSelectorTerm{MatchExpressions: []corev1.NodeSelectorRequirement{cpu("999")},
					MatchFields: []corev1.NodeSelectorRequirement{expr("metadata.name", corev1.NodeSelectorOpIn, "n1")}})),
		},
		{
			name: "a term that requires a cluster gets no non-virtual twin",
			pod: podRequesting(requesting("cpu", "2"), withAffinity(required(requiring(
				term(expr(node.LabelCluster, corev1.NodeSelectorOpIn, "us-west-2", "eu-west-3")))))),
			want: required(requiring(term(expr(node.LabelCluster, corev1.NodeSelectorOpIn, "us-west-2", "eu-west-3"), cpu("1999")))),
		},
		{
			name: "preferred terms and pod affinity are kept",
			pod: podRequesting(requesting("cpu", "1"), withAffinity(&corev1.Affinity{
				NodeAffinity:    &corev1.NodeAffinity{PreferredDuringSchedulingIgnoredDuringExecution: preferred},
				PodAntiAffinity: podAntiAffinity,
			})),
			want: &corev1.Affinity{
				NodeAffinity: &corev1.NodeAffinity{
					RequiredDuringSchedulingIgnoredDuringExecution:  requiring(term(notVirtual), term(cpu("999"))),
					PreferredDuringSchedulingIgnoredDuringExecution: preferred,
				},
				PodAntiAffinity: podAntiAffinity,
			},
		},
		{
			name: "pod affinity only: node affinity added beside it",
			pod:  podRequesting(requesting("cpu", "1"), withAffinity(&corev1.Affinity{PodAntiAffinity: podAntiAffinity})),
			want: &corev1.Affinity{
				NodeAffinity:    &corev1.NodeAffinity{RequiredDuringSchedulingIgnoredDuringExecution: requiring(term(notVirtual), term(cpu("999")))},
				PodAntiAffinity: podAntiAffinity,
			},
		},
		{
			name: "already guarded: unchanged",
			pod:  podRequesting(requesting("cpu", "2"), withAffinity(required(requiring(term(notVirtual), term(cpu("1999")))))),
		},
		{
			name: "kept off virtual nodes by the user: unchanged",
			pod:  podRequesting(requesting("cpu", "2"), withAffinity(required(requiring(term(notVirtual))))),
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			patch, err := PodPatch(tc.pod, node.Taint())
			if err != nil {
				t.Fatal(err)
			}
			got := apply(t, tc.pod, patch)
			want := tc.pod.Spec.Affinity
			if tc.want != nil {
				want = tc.want
			}
			if diff := cmp.Diff(want, got.Spec.Affinity); diff != "" {
				t.Errorf("affinity after %s (-want +got):\n%s", patch, diff)
			}
			again, err := PodPatch(got, node.Taint())
			if err != nil {
				t.Fatal(err)
			}
			if again != nil {
				t.Errorf("patching the patched pod again: %s, want nothing", again)
			}
		})
	}
}
