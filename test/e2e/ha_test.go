package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/flotilla-io/flotilla/test/lab"
)

// TestStandbyReplicaTakesOver: two replicas of one cluster's flotilla with --leader-elect. One serves the
// virtual node and the other stands by; when the serving one is killed, the standby takes over within the
// leader lease (15 s), before the node lifecycle controller would call the node Unknown, and serves new pods.
func TestStandbyReplicaTakesOver(t *testing.T) {
	const cluster = "eu-west-3-1"
	ns := fleetNamespace(t)
	ctx := testContext(t, 4*time.Minute)
	nodes := shared.Management.Client.CoreV1().Nodes()

	// The lab's own flotilla of the cluster makes way for two replicas.
	if err := shared.StopFlotilla(cluster); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = shared.StartFlotilla(cluster)
		_ = shared.WaitVirtualNodeReady(context.Background(), cluster)
	})
	var replicas []*lab.Replica
	for _, name := range []string{"a", "b"} {
		r, err := shared.AddReplica(cluster, name, "--leader-elect")
		if err != nil {
			t.Fatal(err)
		}
		replicas = append(replicas, r)
		t.Cleanup(func() { _ = r.Stop() })
	}
	servedBy := func(ctx context.Context) (*lab.Replica, string) {
		n, err := nodes.Get(ctx, cluster, metav1.GetOptions{})
		if err != nil {
			return nil, err.Error()
		}
		ready := conditionOf(n, corev1.NodeReady)
		for _, a := range n.Status.Addresses {
			for _, r := range replicas {
				if a.Type == corev1.NodeInternalIP && a.Address == r.InternalIP && ready.Status == corev1.ConditionTrue {
					return r, ""
				}
			}
		}
		return nil, fmt.Sprintf("addresses %v, Ready=%s", n.Status.Addresses, ready.Status)
	}

	if err := replicas[0].Start(); err != nil {
		t.Fatal(err)
	}
	eventually(t, time.Minute, "replica a serving "+cluster, func(ctx context.Context) (bool, string) {
		r, why := servedBy(ctx)
		return r == replicas[0], why
	})
	if err := replicas[1].Start(); err != nil {
		t.Fatal(err)
	}
	runPod := func(name string) time.Duration {
		t.Helper()
		if _, err := shared.Management.Client.CoreV1().Pods(ns).Create(ctx, podOn(ns, name, cluster), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		return eventually(t, time.Minute, name+" Running", func(ctx context.Context) (bool, string) {
			p, err := shared.Management.Client.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return false, err.Error()
			}
			return p.Status.Phase == corev1.PodRunning, fmt.Sprintf("phase %s %s", p.Status.Phase, p.Status.Message)
		})
	}
	runPod("before")
	// Give the standby time to have seen the leader, so what follows is a takeover, not a first election.
	time.Sleep(3 * time.Second)
	if r, why := servedBy(ctx); r != replicas[0] {
		t.Fatalf("after the standby started, the node is not served by replica a: %s", why)
	}

	if err := replicas[0].Kill(); err != nil {
		t.Fatal(err)
	}
	took := eventually(t, time.Minute, "replica b serving "+cluster, func(ctx context.Context) (bool, string) {
		r, why := servedBy(ctx)
		return r == replicas[1], why
	})
	t.Logf("replica b serves %s %s after replica a was killed", cluster, took.Round(time.Millisecond))
	took = runPod("after")
	t.Logf("a new pod Running %s after that", took.Round(time.Millisecond))
	n, err := nodes.Get(ctx, cluster, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if ready := conditionOf(n, corev1.NodeReady); ready.Status != corev1.ConditionTrue {
		t.Errorf("%s Ready=%s after the takeover", cluster, ready.Status)
	}

	// A rolling update: the serving replica is stopped (SIGTERM) and releases the lease, so the standby
	// takes over at its next try (every 2 s) rather than after the lease runs out.
	if err := replicas[0].Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * time.Second)
	if err := replicas[1].Stop(); err != nil {
		t.Fatal(err)
	}
	took = eventually(t, time.Minute, "replica a serving "+cluster+" again", func(ctx context.Context) (bool, string) {
		r, why := servedBy(ctx)
		return r == replicas[0], why
	})
	t.Logf("replica a serves %s %s after replica b was stopped", cluster, took.Round(time.Millisecond))
	if took > leaseDuration {
		t.Errorf("the handover after a clean stop took %s, as long as a lease running out", took)
	}
}

// leaseDuration is flotilla's leader lease (cmd/flotilla/leader.go).
const leaseDuration = 15 * time.Second
