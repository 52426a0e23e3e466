package e2e

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"github.com/flotilla-io/flotilla/test/lab"
)

// TestDrainMovesPodsToTheOtherCluster: `kubectl drain` of a virtual node is cluster maintenance. Its pods
// move to the region's other cluster and no delegate is left in the drained one; a PodDisruptionBudget
// that forbids the move blocks the drain, as it would for a real node.
func TestDrainMovesPodsToTheOtherCluster(t *testing.T) {
	ns := fleetNamespace(t)
	ctx := testContext(t, 5*time.Minute)
	const drained, other = "eu-west-3-1", "eu-west-3-0"

	// Start with every pod on the cluster about to be drained.
	kubectl(t, "cordon", other)
	t.Cleanup(func() { kubectl(t, "uncordon", other, drained) })
	d := createDeployment(ctx, t, regionalDeployment(ns, "eu-west-3", 4))
	eventually(t, rollout, "4 proxies Running on "+drained, func(ctx context.Context) (bool, string) {
		return onNode(ctx, ns, drained, 4)
	})
	kubectl(t, "uncordon", other)

	// A budget that allows no disruption blocks the drain.
	pdb := &policyv1.PodDisruptionBudget{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: ns},
		Spec: policyv1.PodDisruptionBudgetSpec{
			MinAvailable: ptr.To(intstr.FromInt32(4)),
			Selector:     d.Spec.Selector,
		},
	}
	if _, err := shared.Management.Client.PolicyV1().PodDisruptionBudgets(ns).Create(ctx, pdb, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "the budget observed", func(ctx context.Context) (bool, string) {
		got, err := shared.Management.Client.PolicyV1().PodDisruptionBudgets(ns).Get(ctx, "web", metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		return got.Status.ExpectedPods == 4 && got.Status.ObservedGeneration == got.Generation, fmt.Sprintf("status %+v", got.Status)
	})
	out, err := kubectlOutput("drain", drained, "--ignore-daemonsets", "--pod-selector=app=web", "--timeout=10s")
	if err == nil || !strings.Contains(out, "disruption budget") {
		t.Fatalf("drain with a forbidding budget: err=%v, output:\n%s", err, out)
	}
	if ok, why := onNode(ctx, ns, drained, 4); !ok {
		t.Fatalf("a blocked drain moved pods: %s", why)
	}

	// Without the budget, the drain moves every pod to the other cluster.
	if err := shared.Management.Client.PolicyV1().PodDisruptionBudgets(ns).Delete(ctx, "web", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	kubectl(t, "drain", drained, "--ignore-daemonsets", "--timeout=2m")
	t.Logf("drain took %s", time.Since(start).Round(time.Millisecond))
	took := eventually(t, rollout, "4 proxies Running on "+other+", none left in "+drained, func(ctx context.Context) (bool, string) {
		if ok, why := onNode(ctx, ns, other, 4); !ok {
			return false, why
		}
		if ok, why := settled(ctx, ns, map[string]int{"eu-west-3": 4}); !ok {
			return false, why
		}
		left, err := shared.Workload(drained).Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, err.Error()
		}
		return len(left.Items) == 0, fmt.Sprintf("%d delegates left in %s", len(left.Items), drained)
	})
	t.Logf("pods Running on %s %s after the drain", other, took.Round(time.Millisecond))
}

// onNode reports whether exactly n proxies of the namespace are Running, all on the given virtual node.
func onNode(ctx context.Context, ns, nodeName string, n int) (bool, string) {
	pods, err := shared.Management.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return false, err.Error()
	}
	running := 0
	for _, p := range pods.Items {
		if p.DeletionTimestamp != nil {
			return false, "a proxy is still terminating"
		}
		if p.Spec.NodeName == nodeName && p.Status.Phase == corev1.PodRunning {
			running++
		}
	}
	return running == n && len(pods.Items) == n, fmt.Sprintf("%d of %d proxies Running on %s", running, len(pods.Items), nodeName)
}

// kubectl runs the lab's own kubectl against the management cluster and fails the test if it fails.
func kubectl(t *testing.T, args ...string) {
	t.Helper()
	if out, err := kubectlOutput(args...); err != nil {
		t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

func kubectlOutput(args ...string) (string, error) {
	bins, err := lab.Binaries()
	if err != nil {
		return "", err
	}
	out, err := exec.Command(bins["kubectl"], append([]string{"--kubeconfig", shared.Management.Kubeconfig}, args...)...).CombinedOutput()
	return string(out), err
}
