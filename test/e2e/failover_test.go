package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/flotilla-io/flotilla/node"
)

// TestLostClusterFailsOver: when a workload cluster is lost, its flotilla taints the virtual node
// flotilla.io/cluster-lost:NoExecute after --failover-after (20 s by default), the management cluster evicts
// its pods and their Deployment runs them on the region's other cluster. A pod that tolerates the taint
// stays. When the cluster is back the taint goes, and the evicted pods' delegates are deleted there.
func TestLostClusterFailsOver(t *testing.T) {
	ns := fleetNamespace(t)
	ctx := testContext(t, 5*time.Minute)
	const lost, other = "eu-west-3-0", "eu-west-3-1"
	nodes := shared.Management.Client.CoreV1().Nodes()

	deployAllOn(ctx, t, ns, "eu-west-3", lost, other, 3)
	patient := podOn(ns, "patient", lost)
	patient.Spec.Tolerations = append(patient.Spec.Tolerations,
		corev1.Toleration{Key: node.LostTaintKey, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute})
	if _, err := shared.Management.Client.CoreV1().Pods(ns).Create(ctx, patient, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, rollout, "the patient pod Running on "+lost, func(ctx context.Context) (bool, string) {
		p, err := shared.Management.Client.CoreV1().Pods(ns).Get(ctx, patient.Name, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		return p.Status.Phase == corev1.PodRunning, fmt.Sprintf("phase %s", p.Status.Phase)
	})

	startAPIServer := killAPIServer(t, shared.Workload(lost))
	took := eventually(t, 2*time.Minute, "3 replicas Running on "+other, func(ctx context.Context) (bool, string) {
		return replicasRunningOn(ctx, ns, other, 3)
	})
	t.Logf("replicas Running on %s %s after %s's apiserver was killed", other, took.Round(time.Millisecond), lost)

	n, err := nodes.Get(ctx, lost, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !carriesTaint(n, node.LostTaintKey, corev1.TaintEffectNoExecute) {
		t.Errorf("%s after failover: taints %v, want %s:NoExecute", lost, n.Spec.Taints, node.LostTaintKey)
	}
	// Its flotilla's metrics tell: the cluster unreachable, the failover counted.
	if v := flotillaSample(t, []string{lost}, "flotilla_workload_reachable", map[string]string{"cluster": lost}); v != 0 {
		t.Errorf("flotilla_workload_reachable of %s while its apiserver is down: %v, want 0", lost, v)
	}
	if v := flotillaSample(t, []string{lost}, "flotilla_workload_unreachable_total", map[string]string{"cluster": lost}); v < 1 {
		t.Errorf("flotilla_workload_unreachable_total of %s while its apiserver is down: %v, want at least 1", lost, v)
	}
	if v := flotillaSample(t, []string{lost}, "flotilla_failovers_total", map[string]string{"node": lost, "reason": node.ReasonClusterLost}); v < 1 {
		t.Errorf("flotilla_failovers_total{node=%s,reason=%s}: %v, want at least 1", lost, node.ReasonClusterLost, v)
	}
	eventually(t, 10*time.Second, node.ReasonClusterLost+" event on "+lost, func(ctx context.Context) (bool, string) {
		return followEvent(ctx, metav1.NamespaceDefault, "Node", lost, node.ReasonClusterLost, "")
	})
	p, err := shared.Management.Client.CoreV1().Pods(ns).Get(ctx, patient.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if p.DeletionTimestamp != nil {
		t.Error("the pod tolerating the lost-cluster taint was evicted")
	}

	startAPIServer(ctx)
	took = eventually(t, 2*time.Minute, "taint lifted, evicted pods' delegates gone from "+lost, func(ctx context.Context) (bool, string) {
		// The three replicas on the other cluster and the patient pod, each with its one delegate.
		return recovered(ctx, ns, lost, "eu-west-3", 4)
	})
	t.Logf("settled %s after %s's apiserver came back", took.Round(time.Millisecond), lost)
	if v := flotillaSample(t, []string{lost}, "flotilla_workload_reachable", map[string]string{"cluster": lost}); v != 1 {
		t.Errorf("flotilla_workload_reachable of %s once its apiserver is back: %v, want 1", lost, v)
	}
	eventually(t, 10*time.Second, node.ReasonClusterRecovered+" event on "+lost, func(ctx context.Context) (bool, string) {
		return followEvent(ctx, metav1.NamespaceDefault, "Node", lost, node.ReasonClusterRecovered, "")
	})
}

// TestLostFlotillaFailsOver: when a cluster's flotilla itself is lost (killed here), its node's lease lapses,
// the node lifecycle controller turns the node Unknown, and after --failover-after a peer flotilla taints it
// flotilla.io/cluster-lost:NoExecute, so its pods move to the region's other cluster. When the flotilla is
// back, it finds its cluster Ready, lifts the taint, and deletes the evicted pods' delegates.
func TestLostFlotillaFailsOver(t *testing.T) {
	ns := fleetNamespace(t)
	ctx := testContext(t, 5*time.Minute)
	const lost, other = "us-west-2-1", "us-west-2-0"

	deployAllOn(ctx, t, ns, "us-west-2", lost, other, 2)

	if err := shared.KillFlotilla(lost); err != nil {
		t.Fatal(err)
	}
	restarted := false
	t.Cleanup(func() {
		if !restarted {
			_ = shared.StartFlotilla(lost)
		}
		_ = shared.WaitVirtualNodeReady(context.Background(), lost)
	})
	took := eventually(t, 3*time.Minute, "2 replicas Running on "+other, func(ctx context.Context) (bool, string) {
		return replicasRunningOn(ctx, ns, other, 2)
	})
	t.Logf("replicas Running on %s %s after %s's flotilla was killed", other, took.Round(time.Millisecond), lost)
	eventually(t, 10*time.Second, node.ReasonFlotillaLost+" event on "+lost, func(ctx context.Context) (bool, string) {
		return followEvent(ctx, metav1.NamespaceDefault, "Node", lost, node.ReasonFlotillaLost, "")
	})
	var peers []string
	for _, w := range shared.Workloads {
		if w.Name != lost {
			peers = append(peers, w.Name)
		}
	}
	if v := flotillaSample(t, peers, "flotilla_failovers_total", map[string]string{"node": lost, "reason": node.ReasonFlotillaLost}); v < 1 {
		t.Errorf("flotilla_failovers_total{node=%s,reason=%s} over the peers' flotillas: %v, want at least 1", lost, node.ReasonFlotillaLost, v)
	}

	if err := shared.StartFlotilla(lost); err != nil {
		t.Fatal(err)
	}
	restarted = true
	took = eventually(t, 2*time.Minute, "taint lifted, evicted pods' delegates gone from "+lost, func(ctx context.Context) (bool, string) {
		return recovered(ctx, ns, lost, "us-west-2", 2)
	})
	t.Logf("settled %s after %s's flotilla started again", took.Round(time.Millisecond), lost)
}

// deployAllOn runs the region's web Deployment with all its replicas on the cluster lost, by keeping the
// region's other cluster cordoned until they run.
func deployAllOn(ctx context.Context, t *testing.T, ns, region, lost, other string, replicas int32) {
	t.Helper()
	kubectl(t, "cordon", other)
	t.Cleanup(func() { kubectl(t, "uncordon", other) })
	createDeployment(ctx, t, regionalDeployment(ns, region, replicas))
	eventually(t, rollout, fmt.Sprintf("%d proxies Running on %s", replicas, lost), func(ctx context.Context) (bool, string) {
		return onNode(ctx, ns, lost, int(replicas))
	})
	kubectl(t, "uncordon", other)
}

// replicasRunningOn says whether n web replicas that are not terminating run on the virtual node.
func replicasRunningOn(ctx context.Context, ns, nodeName string, n int) (bool, string) {
	pods, err := shared.Management.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=web"})
	if err != nil {
		return false, err.Error()
	}
	running := 0
	for _, p := range pods.Items {
		if p.DeletionTimestamp == nil && p.Spec.NodeName == nodeName && p.Status.Phase == corev1.PodRunning {
			running++
		}
	}
	return running == n, fmt.Sprintf("%d replicas Running on %s", running, nodeName)
}

// recovered says whether the lost node is free of the lost-cluster taint and the namespace has settled at
// running pods in the region (see settled): no delegate of an evicted pod is left.
func recovered(ctx context.Context, ns, lost, region string, running int) (bool, string) {
	n, err := shared.Management.Client.CoreV1().Nodes().Get(ctx, lost, metav1.GetOptions{})
	if err != nil {
		return false, err.Error()
	}
	if carriesTaint(n, node.LostTaintKey, corev1.TaintEffectNoExecute) {
		return false, "still tainted " + node.LostTaintKey
	}
	return settled(ctx, ns, map[string]int{region: running})
}
