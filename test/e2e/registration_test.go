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

// TestStartsWhileWorkloadClusterDown: flotilla started while its workload apiserver is down registers a
// NotReady virtual node, and the node turns Ready once the cluster answers.
func TestStartsWhileWorkloadClusterDown(t *testing.T) {
	c := shared.Workload("eu-west-3-0")
	nodes := shared.Management.Client.CoreV1().Nodes()
	ctx := testContext(t, 3*time.Minute)

	if err := shared.StopFlotilla(c.Name); err != nil {
		t.Fatal(err)
	}
	if err := c.KillAPIServer(); err != nil {
		t.Fatal(err)
	}
	restarted := false
	t.Cleanup(func() {
		if !restarted {
			_ = c.StartAPIServer(context.Background())
		}
		_ = shared.StartFlotilla(c.Name) // no-op error if already running
		_ = shared.WaitVirtualNodeReady(context.Background(), c.Name)
	})
	// Remove the node so that what we see next is flotilla's registration, not the old object.
	if err := nodes.Delete(ctx, c.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := shared.StartFlotilla(c.Name); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, c.Name+" registered NotReady", func(ctx context.Context) (bool, string) {
		n, err := nodes.Get(ctx, c.Name, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		ready := conditionOf(n, corev1.NodeReady)
		return ready.Status == corev1.ConditionFalse && ready.Reason == node.ReasonClusterUnreachable,
			fmt.Sprintf("Ready=%s %s: %s", ready.Status, ready.Reason, ready.Message)
	})

	if err := c.StartAPIServer(ctx); err != nil {
		t.Fatal(err)
	}
	restarted = true
	took := eventually(t, 30*time.Second, c.Name+" Ready once its cluster answers", func(ctx context.Context) (bool, string) {
		n, err := nodes.Get(ctx, c.Name, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		ready := conditionOf(n, corev1.NodeReady)
		return ready.Status == corev1.ConditionTrue && n.Labels[regionLabel] == c.Workload.Region,
			fmt.Sprintf("Ready=%s %s: %s; region %q", ready.Status, ready.Reason, ready.Message, n.Labels[regionLabel])
	})
	t.Logf("Ready with its region label %s after the workload apiserver came back", took)
}

// TestDeletedVirtualNodeIsRegisteredAgain: deleting a virtual node by hand does not lose the cluster.
func TestDeletedVirtualNodeIsRegisteredAgain(t *testing.T) {
	c := shared.Workload("us-west-2-1")
	nodes := shared.Management.Client.CoreV1().Nodes()
	ctx := testContext(t, 3*time.Minute)
	old, err := nodes.Get(ctx, c.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := nodes.Delete(ctx, c.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	took := eventually(t, 10*time.Second, c.Name+" registered again and Ready", func(ctx context.Context) (bool, string) {
		n, err := nodes.Get(ctx, c.Name, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		ready := conditionOf(n, corev1.NodeReady)
		return n.UID != old.UID && ready.Status == corev1.ConditionTrue, fmt.Sprintf("uid %s Ready=%s", n.UID, ready.Status)
	})
	t.Logf("registered again %s after its deletion", took)
}
