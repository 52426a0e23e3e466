package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/flotilla-io/flotilla/node"
	"github.com/flotilla-io/flotilla/provider"
)

// lostClusterShows is how soon after its virtual node turns NotReady (or Ready again) a proxy must show it.
const lostClusterShows = 5 * time.Second

// TestProxiesShowLostCluster: while a workload apiserver is frozen, its virtual node is NotReady and the
// Running proxies on it show Ready=False (PodReady and ContainersReady, reason ClusterNotReady, a message
// naming the cluster) within 5 s, so that EndpointSlices, rollouts and PDBs stop counting them; they stay
// Running and bound. Within 5 s of the node's Ready again they show their delegates' Ready=True again. The
// pod tolerates the lost-cluster taint, so failover never evicts it.
func TestProxiesShowLostCluster(t *testing.T) {
	ns := fleetNamespace(t)
	ctx := testContext(t, 3*time.Minute)
	const lost = "us-west-2-0"
	c := shared.Workload(lost)
	pods := shared.Management.Client.CoreV1().Pods(ns)
	nodes := shared.Management.Client.CoreV1().Nodes()

	patient := podOn(ns, "patient", lost)
	patient.Spec.Tolerations = append(patient.Spec.Tolerations,
		corev1.Toleration{Key: node.LostTaintKey, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute})
	if _, err := pods.Create(ctx, patient, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// readyIs: the pod is Running with PodReady and ContainersReady of this status (and reason, unless "").
	readyIs := func(want corev1.ConditionStatus, reason string) func(ctx context.Context) (bool, string) {
		return func(ctx context.Context) (bool, string) {
			p, err := pods.Get(ctx, patient.Name, metav1.GetOptions{})
			if err != nil {
				return false, err.Error()
			}
			ready, containers := podCondition(p, corev1.PodReady), podCondition(p, corev1.ContainersReady)
			ok := p.Status.Phase == corev1.PodRunning && ready.Status == want && containers.Status == want &&
				(reason == "" || ready.Reason == reason && containers.Reason == reason)
			return ok, fmt.Sprintf("phase %s, %s", p.Status.Phase, podConditions(p))
		}
	}
	nodeReadyIs := func(want corev1.ConditionStatus) func(ctx context.Context) (bool, string) {
		return func(ctx context.Context) (bool, string) {
			n, err := nodes.Get(ctx, lost, metav1.GetOptions{})
			if err != nil {
				return false, err.Error()
			}
			ready := conditionOf(n, corev1.NodeReady)
			return ready.Status == want, fmt.Sprintf("Ready=%s %s: %s", ready.Status, ready.Reason, ready.Message)
		}
	}
	eventually(t, rollout, "the patient pod Running and Ready on "+lost, readyIs(corev1.ConditionTrue, ""))

	resume := freeze(t, c)
	t.Cleanup(func() {
		resume()
		_ = shared.WaitVirtualNodeReady(context.Background(), lost)
	})

	frozen := time.Now()
	nodeAt, podAt := seenBoth(t, nodeUpdate+lostClusterShows, lost+" NotReady", nodeReadyIs(corev1.ConditionFalse),
		"the patient pod Ready=False, reason "+provider.ReasonClusterNotReady, readyIs(corev1.ConditionFalse, provider.ReasonClusterNotReady))
	t.Logf("%s seen NotReady %s after its apiserver was frozen; the proxy seen Ready=False %s after that",
		lost, nodeAt.Sub(frozen).Round(time.Millisecond), podAt.Sub(nodeAt).Round(time.Millisecond))
	if d := podAt.Sub(nodeAt); d > lostClusterShows {
		t.Errorf("the proxy showed Ready=False %s after its node turned NotReady, want within %s", d, lostClusterShows)
	}
	p, err := pods.Get(ctx, patient.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if msg := podCondition(p, corev1.PodReady).Message; !strings.Contains(msg, "workload cluster "+lost) {
		t.Errorf("Ready message %q does not name workload cluster %s", msg, lost)
	}
	if p.DeletionTimestamp != nil || p.Spec.NodeName != lost {
		t.Errorf("the pod tolerating the lost-cluster taint was evicted or moved (node %q, deleting %v)", p.Spec.NodeName, p.DeletionTimestamp)
	}

	resume()
	resumedAt := time.Now()
	nodeAt, podAt = seenBoth(t, nodeUpdate+lostClusterShows, lost+" Ready again", nodeReadyIs(corev1.ConditionTrue),
		"the patient pod Ready=True again", readyIs(corev1.ConditionTrue, ""))
	t.Logf("%s seen Ready %s after its apiserver was resumed; the proxy seen Ready=True %s after that",
		lost, nodeAt.Sub(resumedAt).Round(time.Millisecond), podAt.Sub(nodeAt).Round(time.Millisecond))
	if d := podAt.Sub(nodeAt); d > lostClusterShows {
		t.Errorf("the proxy showed Ready=True %s after its node turned Ready, want within %s", d, lostClusterShows)
	}
}

// seenBoth polls the node's and the pod's conditions together every 100 ms until both hold, and returns
// when each was first seen to hold (the pod may well be seen first: flotilla hands out the node's and the
// proxies' statuses at the same moment); it fails the test unless both hold within limit.
func seenBoth(t *testing.T, limit time.Duration, nodeWhat string, nodeCond func(context.Context) (bool, string),
	podWhat string, podCond func(context.Context) (bool, string)) (nodeAt, podAt time.Time) {
	t.Helper()
	eventually(t, limit, nodeWhat+" and "+podWhat, func(ctx context.Context) (bool, string) {
		nodeSays, podSays := "seen", "seen"
		if nodeAt.IsZero() {
			var ok bool
			if ok, nodeSays = nodeCond(ctx); ok {
				nodeAt = time.Now()
			}
		}
		if podAt.IsZero() {
			var ok bool
			if ok, podSays = podCond(ctx); ok {
				podAt = time.Now()
			}
		}
		return !nodeAt.IsZero() && !podAt.IsZero(), fmt.Sprintf("node: %s; pod: %s", nodeSays, podSays)
	})
	return nodeAt, podAt
}

// podCondition is the pod's condition of the given type, Unknown when it has none.
func podCondition(p *corev1.Pod, kind corev1.PodConditionType) corev1.PodCondition {
	for _, c := range p.Status.Conditions {
		if c.Type == kind {
			return c
		}
	}
	return corev1.PodCondition{Type: kind, Status: corev1.ConditionUnknown, Reason: "NotReported"}
}
