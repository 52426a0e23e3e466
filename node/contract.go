// Package node keeps the virtual node that stands for one workload cluster in the management cluster.
//
// The rules that say what the node looks like (labels, capacity, conditions, the whole object) are pure
// functions over an observation of the workload cluster, each in its own file with a table test. The
// Controller gathers that observation from informer caches and a /readyz prober and hands the result to
// virtual-kubelet's node controller, which registers the node, renews its lease and patches its status.
package node

import (
	"regexp"

	corev1 "k8s.io/api/core/v1"
)

// Names other parts of flotilla, its tests and users' scripts rely on (see DESIGN.md, "Names and labels").
const (
	// LabelCluster names the workload cluster a virtual node stands for.
	LabelCluster = "flotilla.io/cluster"

	// LabelType with value TypeVirtualKubelet is on every virtual node (BaseLabels), whichever flotilla serves
	// it, so it selects them all.
	LabelType          = "type"
	TypeVirtualKubelet = "virtual-kubelet"

	// TaintKey and TaintValue make up the NoSchedule taint a virtual node carries when Config.Taint is set, so
	// that only pods that opt in (by tolerating it) are sent to a workload cluster.
	TaintKey   = "virtual-kubelet.io/provider"
	TaintValue = "flotilla"

	// LostTaintKey is the NoExecute taint a virtual node gets once its workload cluster has not been Ready for
	// the failover delay (see Failover): pods that do not tolerate it are evicted and replaced elsewhere.
	LostTaintKey = "flotilla.io/cluster-lost"

	// AnnotationFailoverAfter is the virtual node's failover delay (a Go duration, "0s" for none), so that
	// its peers fail it over, should its flotilla be lost, on its own terms.
	AnnotationFailoverAfter = "flotilla.io/failover-after"

	// AnnotationWorkloadServer is the workload apiserver's URL, so an operator can tell where a node points.
	AnnotationWorkloadServer = "flotilla.io/workload-server"
	// AnnotationWorkloadNodes and AnnotationWorkloadNodesReady count the workload cluster's nodes, all and
	// Ready; they are absent until the node cache has synced.
	AnnotationWorkloadNodes      = "flotilla.io/workload-nodes"
	AnnotationWorkloadNodesReady = "flotilla.io/workload-nodes-ready"

	// LabelMaxPodCPU and LabelMaxPodMemory are the largest CPU (millicores) and memory (MiB) requests one Ready,
	// schedulable workload node can still take, each on whichever node has most of it, rounded down to
	// MaxPodCPUStep and MaxPodMemoryStep (maxPodLabels). The webhook's node affinity (package admission)
	// compares a pod's requests with them (operator Gt), so the management scheduler never sends a pod to a
	// cluster where no single node fits it, although the node's allocatable, summed over the cluster, does.
	LabelMaxPodCPU    = "flotilla.io/max-pod-cpu"
	LabelMaxPodMemory = "flotilla.io/max-pod-memory"
	// MaxPodCPUStep (millicores) and MaxPodMemoryStep (MiB) are the steps the labels are rounded down to, so
	// pod churn in the workload cluster rarely rewrites the virtual node.
	MaxPodCPUStep    = 100
	MaxPodMemoryStep = 64

	// Reasons of the virtual node's Ready condition.
	ReasonClusterReady       = "ClusterReady"
	ReasonClusterUnreachable = "ClusterUnreachable"
	ReasonNoReadyNodes       = "NoReadyNodes"
)

// DefaultExcludeLabels matches the workload node label keys that must not be copied to the virtual node even
// when all workload nodes agree on them: labels that name one machine (hostname), describe a machine's role
// or its load-balancer membership rather than the cluster's placement, deprecated beta aliases, the
// simulator's own bookkeeping, and flotilla's own domain, so a workload cluster cannot spoof the labels
// flotilla sets.
var DefaultExcludeLabels = regexp.MustCompile(`^(` +
	`kubernetes\.io/hostname` +
	`|node-role\.kubernetes\.io/.*` +
	`|node\.kubernetes\.io/exclude-.*` +
	`|beta\.kubernetes\.io/.*` +
	`|kwok\.x-k8s\.io/.*` +
	`|(.+\.)?flotilla\.io/.*` +
	`)$`)

// LabelRole (`kubectl get nodes` shows it as the node's role) is RoleCluster on every virtual node. NodeRestriction
// keeps a node from setting kubernetes.io/ labels outside the kubelet's own set, so the node registers without
// it and the failover identity adds it (Failover).
const (
	LabelRole   = "kubernetes.io/role"
	RoleCluster = "cluster"
)

// BaseLabels are the labels a virtual node sets on itself whatever its workload nodes say; they win over any
// label copied from the workload cluster. With LabelRole they are the labels every virtual node carries.
func BaseLabels(nodeName, clusterName string) map[string]string {
	return map[string]string{
		LabelType:            TypeVirtualKubelet,
		LabelCluster:         clusterName,
		corev1.LabelHostname: nodeName,
	}
}

// Labels are the labels every virtual node carries: BaseLabels, and LabelRole, which its failover identity
// sets.
func Labels(nodeName, clusterName string) map[string]string {
	labels := BaseLabels(nodeName, clusterName)
	labels[LabelRole] = RoleCluster
	return labels
}

// Lost says whether a virtual node carries the failover taint LostTaintKey: its workload cluster has been
// declared lost.
func Lost(n *corev1.Node) bool {
	for _, t := range n.Spec.Taints {
		if t.Key == LostTaintKey && t.Effect == corev1.TaintEffectNoExecute {
			return true
		}
	}
	return false
}

// Taint is the taint a virtual node is registered with when Config.Taint is set.
func Taint() corev1.Taint {
	return corev1.Taint{Key: TaintKey, Value: TaintValue, Effect: corev1.TaintEffectNoSchedule}
}
