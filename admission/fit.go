package admission

import (
	"slices"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	resourcehelper "k8s.io/component-helpers/resource"

	"github.com/flotilla-io/flotilla/node"
)

// fitOps is the JSON Patch that keeps a pod off the virtual nodes whose largest single workload node cannot
// take its requests (node.LabelMaxPodCPU, node.LabelMaxPodMemory), without keeping it off any other node.
// A virtual node's allocatable is its cluster's free capacity summed over the cluster's nodes, so the
// management scheduler alone would send a pod to a cluster where no one node fits it.
//
// A pod created with spec.nodeName set gets nothing: no scheduler places it.
//
// The pod's effective requests (the larger of its init containers and the sum of its containers, plus
// overhead, or its pod-level resources, as the scheduler counts them) of CPU and memory are what count; a
// pod that requests neither gets nothing. Every required nodeSelectorTerm T (nodeSelectorTerms are ORed,
// expressions within a term ANDed) becomes two:
//
//	T ∧ flotilla.io/cluster DoesNotExist                                   (any node that is not virtual)
//	T ∧ flotilla.io/max-pod-cpu Gt <mCPU-1> ∧ flotilla.io/max-pod-memory Gt <MiB-1>  (virtual nodes that fit)
//
// and a pod with no required node affinity gets the two terms alone. A term that already requires the cluster
// label (In, Exists) gets no DoesNotExist twin, one that forbids it (DoesNotExist) no fitting twin: either
// could match no node. A term that already carries the guard is left as it is, so a pod patched once is not
// patched again (nil). Gt compares integers, so requests are in millicores and MiB, rounded up.
func fitOps(pod *corev1.Pod) []patchOp {
	if pod.Spec.NodeName != "" {
		return nil // placed by its creator: no scheduler reads the affinity, and a kubelet would refuse a mismatch
	}
	fits := fitRequirements(pod)
	if len(fits) == 0 {
		return nil
	}
	var terms []corev1.NodeSelectorTerm
	if a := pod.Spec.Affinity; a != nil && a.NodeAffinity != nil && a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution != nil {
		terms = a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms
	}
	if len(terms) > 0 && !slices.ContainsFunc(terms, unguarded) {
		return nil
	}
	if len(terms) == 0 {
		terms = []corev1.NodeSelectorTerm{{}}
	}
	var guarded []corev1.NodeSelectorTerm
	for _, t := range terms {
		if !unguarded(t) {
			guarded = append(guarded, t)
			continue
		}
		if !requiresCluster(t) {
			guarded = append(guarded, withExpressions(t, corev1.NodeSelectorRequirement{Key: node.LabelCluster, Operator: corev1.NodeSelectorOpDoesNotExist}))
		}
		if !forbidsCluster(t) {
			guarded = append(guarded, withExpressions(t, fits...))
		}
	}
	// The scheduler refuses a required node selector with no terms as matching nothing; with every term
	// impossible the pod could run nowhere anyway, so keep what the user asked for.
	if len(guarded) == 0 {
		return nil
	}
	selector := &corev1.NodeSelector{NodeSelectorTerms: guarded}
	switch {
	case pod.Spec.Affinity == nil:
		return []patchOp{{Op: "add", Path: "/spec/affinity", Value: &corev1.Affinity{
			NodeAffinity: &corev1.NodeAffinity{RequiredDuringSchedulingIgnoredDuringExecution: selector}}}}
	case pod.Spec.Affinity.NodeAffinity == nil:
		return []patchOp{{Op: "add", Path: "/spec/affinity/nodeAffinity", Value: &corev1.NodeAffinity{
			RequiredDuringSchedulingIgnoredDuringExecution: selector}}}
	default:
		// "add" on an existing member replaces it.
		return []patchOp{{Op: "add", Path: "/spec/affinity/nodeAffinity/requiredDuringSchedulingIgnoredDuringExecution", Value: selector}}
	}
}

// fitRequirements are the expressions a virtual node must match to fit the pod's CPU and memory requests;
// none when it requests neither.
func fitRequirements(pod *corev1.Pod) []corev1.NodeSelectorRequirement {
	requests := resourcehelper.PodRequests(pod, resourcehelper.PodResourcesOptions{})
	var reqs []corev1.NodeSelectorRequirement
	if cpu := requests.Cpu().MilliValue(); cpu > 0 {
		reqs = append(reqs, gt(node.LabelMaxPodCPU, cpu-1))
	}
	if mem := requests.Memory().Value(); mem > 0 {
		mib := (mem + 1<<20 - 1) >> 20
		reqs = append(reqs, gt(node.LabelMaxPodMemory, mib-1))
	}
	return reqs
}

func gt(key string, v int64) corev1.NodeSelectorRequirement {
	return corev1.NodeSelectorRequirement{Key: key, Operator: corev1.NodeSelectorOpGt, Values: []string{strconv.FormatInt(v, 10)}}
}

// unguarded says whether a term lacks both halves of the guard: a DoesNotExist on the cluster label, and an
// expression on either max-pod label.
func unguarded(t corev1.NodeSelectorTerm) bool {
	return !forbidsCluster(t) && !slices.ContainsFunc(t.MatchExpressions, func(r corev1.NodeSelectorRequirement) bool {
		return r.Key == node.LabelMaxPodCPU || r.Key == node.LabelMaxPodMemory
	})
}

func requiresCluster(t corev1.NodeSelectorTerm) bool {
	return slices.ContainsFunc(t.MatchExpressions, func(r corev1.NodeSelectorRequirement) bool {
		return r.Key == node.LabelCluster && (r.Operator == corev1.NodeSelectorOpIn || r.Operator == corev1.NodeSelectorOpExists)
	})
}

func forbidsCluster(t corev1.NodeSelectorTerm) bool {
	return slices.ContainsFunc(t.MatchExpressions, func(r corev1.NodeSelectorRequirement) bool {
		return r.Key == node.LabelCluster && r.Operator == corev1.NodeSelectorOpDoesNotExist
	})
}

// withExpressions is a copy of t with more expressions ANDed to it.
func withExpressions(t corev1.NodeSelectorTerm, more ...corev1.NodeSelectorRequirement) corev1.NodeSelectorTerm {
	out := *t.DeepCopy()
	out.MatchExpressions = append(out.MatchExpressions, more...)
	return out
}
