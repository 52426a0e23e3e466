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
	"github.com/flotilla-io/flotilla/test/lab"
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
	startAPIServer := killAPIServer(t, c)
	t.Cleanup(func() { _ = shared.StartFlotilla(c.Name) }) // an error if already running: fine
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

	startAPIServer(ctx)
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

// TestPodWhileWorkloadClusterDown: a pod bound to a virtual node whose workload apiserver is down (and
// whose flotilla has just restarted, so knows nothing from before) shows why it waits, and runs once the
// cluster answers.
func TestPodWhileWorkloadClusterDown(t *testing.T) {
	c := shared.Workload("us-west-2-1")
	ns := fleetNamespace(t)
	ctx := testContext(t, 3*time.Minute)
	startAPIServer := killAPIServer(t, c)
	if err := shared.RestartFlotilla(c.Name); err != nil {
		t.Fatal(err)
	}
	pod := podOn(ns, "waits", c.Name)
	pod.Spec.NodeName = c.Name // the node is NotReady, so tainted: bind it as a user pinning a pod would
	// Wait for the cluster however long it is down, rather than fail over.
	pod.Spec.Tolerations = append(pod.Spec.Tolerations,
		corev1.Toleration{Key: node.LostTaintKey, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute})
	if _, err := shared.Management.Client.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	took := eventually(t, 20*time.Second, "the proxy says why it waits", func(ctx context.Context) (bool, string) {
		p, err := shared.Management.Client.CoreV1().Pods(ns).Get(ctx, "waits", metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		return p.Status.Reason == provider.ReasonDelegationFailed && strings.Contains(p.Status.Message, c.Name),
			fmt.Sprintf("phase %s reason %q message %q", p.Status.Phase, p.Status.Reason, p.Status.Message)
	})
	t.Logf("reason shown %s after binding", took.Round(time.Millisecond))

	startAPIServer(ctx)
	took = eventually(t, time.Minute, "the pod Running once the cluster answers", func(ctx context.Context) (bool, string) {
		p, err := shared.Management.Client.CoreV1().Pods(ns).Get(ctx, "waits", metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		return p.Status.Phase == corev1.PodRunning, fmt.Sprintf("phase %s reason %q", p.Status.Phase, p.Status.Reason)
	})
	t.Logf("Running %s after the workload apiserver came back", took.Round(time.Millisecond))
}

// killAPIServer kills a workload cluster's apiserver and returns what starts it again. If the test ends
// first, its cleanup starts it, and waits for the virtual node to be Ready, so the shared lab is left whole.
func killAPIServer(t *testing.T, c *lab.Cluster) (start func(context.Context)) {
	t.Helper()
	if err := c.KillAPIServer(); err != nil {
		t.Fatal(err)
	}
	started := false
	t.Cleanup(func() {
		if !started {
			_ = c.StartAPIServer(context.Background())
		}
		_ = shared.WaitVirtualNodeReady(context.Background(), c.Name)
	})
	return func(ctx context.Context) {
		t.Helper()
		if err := c.StartAPIServer(ctx); err != nil {
			t.Fatal(err)
		}
		started = true
	}
}
