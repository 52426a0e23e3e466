package provider

import (
	"slices"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/component-helpers/scheduling/corev1/nodeaffinity"

	"github.com/flotilla-io/flotilla/node"
)

// placeInWorkload rewrites the node constraints of a proxy's spec for the workload scheduler. The
// management scheduler has already chosen this virtual node; requirements on what only the virtual node has
// (its name and its base labels: hostname, type, role, cluster; its max-pod labels) mean nothing to workload nodes and would
// leave the delegate unschedulable, while requirements on labels real nodes carry (region, zone, instance
// type) still choose among the workload nodes and are kept. Topology spread constraints and pod
// (anti-)affinity terms over a topology only virtual nodes have (cluster, type, role) were enforced by the
// management scheduler; no workload node carries that key, so the workload scheduler would find none
// eligible, and they go too.
func placeInWorkload(s *corev1.PodSpec, vnode *corev1.Node) {
	virtualTopology := func(key string) bool {
		_, ok := vnode.Labels[key]
		// Every real node has a hostname: a constraint per hostname spreads over the workload's nodes.
		return ok && key != corev1.LabelHostname
	}
	s.TopologySpreadConstraints = slices.DeleteFunc(s.TopologySpreadConstraints, func(c corev1.TopologySpreadConstraint) bool {
		return virtualTopology(c.TopologyKey)
	})
	if len(s.TopologySpreadConstraints) == 0 {
		s.TopologySpreadConstraints = nil
	}
	if a := s.Affinity; a != nil {
		if a.PodAffinity != nil && !podTermsInWorkload(&a.PodAffinity.RequiredDuringSchedulingIgnoredDuringExecution,
			&a.PodAffinity.PreferredDuringSchedulingIgnoredDuringExecution, virtualTopology) {
			a.PodAffinity = nil
		}
		if a.PodAntiAffinity != nil && !podTermsInWorkload(&a.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution,
			&a.PodAntiAffinity.PreferredDuringSchedulingIgnoredDuringExecution, virtualTopology) {
			a.PodAntiAffinity = nil
		}
	}
	placeByNode(s, vnode)
	if s.Affinity != nil && *s.Affinity == (corev1.Affinity{}) {
		s.Affinity = nil
	}
}

// podTermsInWorkload drops the pod (anti-)affinity terms whose topology only virtual nodes have, and
// reports whether any term is left.
func podTermsInWorkload(required *[]corev1.PodAffinityTerm, preferred *[]corev1.WeightedPodAffinityTerm, virtual func(string) bool) bool {
	*required = slices.DeleteFunc(*required, func(t corev1.PodAffinityTerm) bool { return virtual(t.TopologyKey) })
	*preferred = slices.DeleteFunc(*preferred, func(t corev1.WeightedPodAffinityTerm) bool { return virtual(t.PodAffinityTerm.TopologyKey) })
	return len(*required)+len(*preferred) > 0
}

// placeByNode rewrites the node selector and node affinity.
func placeByNode(s *corev1.PodSpec, vnode *corev1.Node) {
	// nodeSelector is a conjunction the virtual node satisfied: its entries on base labels hold, drop them.
	for k := range s.NodeSelector {
		if _, ok := vnode.Labels[k]; ok {
			delete(s.NodeSelector, k)
		}
	}
	if len(s.NodeSelector) == 0 {
		s.NodeSelector = nil
	}
	if s.Affinity == nil || s.Affinity.NodeAffinity == nil {
		return
	}
	na := s.Affinity.NodeAffinity
	if na.RequiredDuringSchedulingIgnoredDuringExecution != nil {
		na.RequiredDuringSchedulingIgnoredDuringExecution = requiredInWorkload(na.RequiredDuringSchedulingIgnoredDuringExecution, vnode)
	}
	na.PreferredDuringSchedulingIgnoredDuringExecution = preferredInWorkload(na.PreferredDuringSchedulingIgnoredDuringExecution, vnode)
	if na.RequiredDuringSchedulingIgnoredDuringExecution == nil && len(na.PreferredDuringSchedulingIgnoredDuringExecution) == 0 {
		s.Affinity.NodeAffinity = nil
	}
}

// requiredInWorkload rewrites required node affinity, whose terms are alternatives. A term the virtual node
// fails on its own labels cannot be why the pod is here and selects no workload node either: it goes. A
// term the virtual node satisfies keeps its requirements on real node labels; if it has none left, that
// alternative holds on every workload node, so the whole requirement is dropped (keeping the other
// alternatives alone would wrongly narrow the choice). nil means no requirement.
func requiredInWorkload(req *corev1.NodeSelector, vnode *corev1.Node) *corev1.NodeSelector {
	var terms []corev1.NodeSelectorTerm
	for _, t := range req.NodeSelectorTerms {
		if isEmptyTerm(t) {
			continue // an empty term matches no node
		}
		virtual, rest := splitTerm(t, vnode)
		if !holds(virtual, vnode) {
			continue
		}
		if isEmptyTerm(rest) {
			return nil
		}
		terms = append(terms, rest)
	}
	if len(terms) == 0 {
		return nil
	}
	return &corev1.NodeSelector{NodeSelectorTerms: terms}
}

// preferredInWorkload rewrites preferred node affinity the same way; a preference left with no requirement
// on real node labels weighs all workload nodes alike and goes.
func preferredInWorkload(prefs []corev1.PreferredSchedulingTerm, vnode *corev1.Node) []corev1.PreferredSchedulingTerm {
	var out []corev1.PreferredSchedulingTerm
	for _, p := range prefs {
		virtual, rest := splitTerm(p.Preference, vnode)
		if !holds(virtual, vnode) || isEmptyTerm(rest) {
			continue
		}
		out = append(out, corev1.PreferredSchedulingTerm{Weight: p.Weight, Preference: rest})
	}
	return out
}

// splitTerm separates the requirements of a term on the virtual node itself (its base labels, and node
// fields, which can only name the node) from those on labels real nodes carry.
//
// Requirements on the virtual node's max-pod labels (the webhook's fit affinity) go from both: they held when
// the management scheduler bound the pod here, their values have moved since, and no workload node has them.
func splitTerm(t corev1.NodeSelectorTerm, vnode *corev1.Node) (virtual, rest corev1.NodeSelectorTerm) {
	for _, r := range t.MatchExpressions {
		if r.Key == node.LabelMaxPodCPU || r.Key == node.LabelMaxPodMemory {
			continue
		}
		if _, ok := vnode.Labels[r.Key]; ok {
			virtual.MatchExpressions = append(virtual.MatchExpressions, r)
		} else {
			rest.MatchExpressions = append(rest.MatchExpressions, r)
		}
	}
	virtual.MatchFields = t.MatchFields
	return virtual, rest
}

// holds reports whether the virtual node satisfies every requirement of t (vacuously true for none).
func holds(t corev1.NodeSelectorTerm, vnode *corev1.Node) bool {
	if isEmptyTerm(t) {
		return true
	}
	sel, err := nodeaffinity.NewNodeSelector(&corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{t}})
	return err == nil && sel.Match(vnode)
}

func isEmptyTerm(t corev1.NodeSelectorTerm) bool {
	return len(t.MatchExpressions) == 0 && len(t.MatchFields) == 0
}
