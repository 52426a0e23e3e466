package node

import corev1 "k8s.io/api/core/v1"

// Facts about workload nodes and pods that several derivations share, kept in one place so labels, capacity
// and conditions agree on what "Ready" means.

// isReady reports whether a workload node's kubelet says it is Ready; Unknown (a silent kubelet) is not.
func isReady(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// readyNodes keeps the Ready nodes.
func readyNodes(nodes []*corev1.Node) []*corev1.Node {
	var ready []*corev1.Node
	for _, n := range nodes {
		if isReady(n) {
			ready = append(ready, n)
		}
	}
	return ready
}

// isTerminal reports whether a pod has finished for good; the kubelet frees its resources then.
func isTerminal(p *corev1.Pod) bool {
	return p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed
}
