package node

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// readyCondition says whether the workload cluster can take pods: its apiserver answers /readyz and at least
// one of its nodes is Ready. Being unreachable comes first, since then the node cache is stale. The result
// carries no timestamps; conditions sets them.
func readyCondition(obs observation) corev1.NodeCondition {
	ready := corev1.NodeCondition{Type: corev1.NodeReady, Status: corev1.ConditionFalse}
	switch {
	case !obs.probed:
		ready.Reason, ready.Message = ReasonClusterUnreachable, "waiting for first probe"
	case obs.probeErr != nil:
		ready.Reason = ReasonClusterUnreachable
		ready.Message = fmt.Sprintf("workload apiserver is not ready: %v", obs.probeErr)
	case !obs.synced:
		ready.Reason, ready.Message = ReasonNoReadyNodes, "waiting for the workload cluster's nodes to be listed"
	default:
		n := len(readyNodes(obs.nodes))
		if n == 0 {
			ready.Reason = ReasonNoReadyNodes
			ready.Message = fmt.Sprintf("none of the workload cluster's %d nodes is Ready", len(obs.nodes))
			break
		}
		ready.Status, ready.Reason = corev1.ConditionTrue, ReasonClusterReady
		ready.Message = fmt.Sprintf("workload apiserver is ready and %d of %d nodes are Ready", n, len(obs.nodes))
	}
	return ready
}

// pressureMessage explains the pressure conditions that are always False: pressure on a workload node is the
// workload cluster's to handle (its scheduler avoids the node, its kubelet evicts), and the cluster as a whole
// never is under pressure while it has room, which capacity already says.
const pressureMessage = "the workload cluster's scheduler and kubelets handle pressure on its nodes"

// fixedConditions are the standard conditions besides Ready; the node lifecycle controller and kubectl expect
// them, and for a whole cluster they don't change.
var fixedConditions = []corev1.NodeCondition{
	{Type: corev1.NodeMemoryPressure, Status: corev1.ConditionFalse, Reason: "ClusterHasSufficientMemory", Message: pressureMessage},
	{Type: corev1.NodeDiskPressure, Status: corev1.ConditionFalse, Reason: "ClusterHasNoDiskPressure", Message: pressureMessage},
	{Type: corev1.NodePIDPressure, Status: corev1.ConditionFalse, Reason: "ClusterHasSufficientPID", Message: pressureMessage},
	{Type: corev1.NodeNetworkUnavailable, Status: corev1.ConditionFalse, Reason: "ClusterNetworkReady",
		Message: "delegate pods use the workload cluster's own network"},
}

// conditions is the virtual node's full condition list: ready followed by the fixed ones. A condition keeps
// its LastTransitionTime from prev while its status stays the same, and takes now when it changes.
// LastHeartbeatTime is set equal to LastTransitionTime so that an unchanged cluster derives an identical node
// (virtual-kubelet stamps the real heartbeat on every status update it sends).
func conditions(ready corev1.NodeCondition, prev []corev1.NodeCondition, now metav1.Time) []corev1.NodeCondition {
	all := append([]corev1.NodeCondition{ready}, fixedConditions...)
	for i := range all {
		c := &all[i]
		c.LastTransitionTime = now
		for _, p := range prev {
			if p.Type == c.Type && p.Status == c.Status {
				c.LastTransitionTime = p.LastTransitionTime
			}
		}
		c.LastHeartbeatTime = c.LastTransitionTime
	}
	return all
}
