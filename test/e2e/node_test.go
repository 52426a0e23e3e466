package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	"github.com/flotilla-io/flotilla/node"
	"github.com/flotilla-io/flotilla/test/lab"
)

// The virtual node of each workload cluster, as the management cluster sees it. The lab names virtual nodes
// after their clusters.

const (
	regionLabel = "topology.kubernetes.io/region"
	zoneLabel   = "topology.kubernetes.io/zone"
	// nodeUpdate is how long a change in a workload cluster may take to show on its virtual node.
	nodeUpdate = 5 * time.Second
)

// TestVirtualNodeLabels: each virtual node carries its cluster's region, which all its nodes share, and no
// zone, since its nodes sit in three.
func TestVirtualNodeLabels(t *testing.T) {
	ctx := testContext(t, time.Minute)
	for _, c := range shared.Workloads {
		n := virtualNodeOf(ctx, t, c.Name)
		want := map[string]string{
			regionLabel:                        c.Workload.Region,
			"kubernetes.io/os":                 "linux",
			"node.kubernetes.io/instance-type": "m5.xlarge",
			"type":                             "virtual-kubelet",
			"kubernetes.io/role":               "cluster",
			node.LabelCluster:                  c.Name,
			"kubernetes.io/hostname":           c.Name,
		}
		for k, v := range want {
			if got, ok := n.Labels[k]; !ok || got != v {
				t.Errorf("%s: label %s = %q, want %q", c.Name, k, got, v)
			}
		}
		if zone, ok := n.Labels[zoneLabel]; ok {
			t.Errorf("%s: has zone label %q though its nodes sit in three zones", c.Name, zone)
		}
		if got := n.Status.NodeInfo; got.OperatingSystem != "linux" || got.Architecture != "amd64" || got.KubeletVersion == "" {
			t.Errorf("%s: nodeInfo os/arch/version = %q/%q/%q, want linux/amd64 and the workload apiserver's version",
				c.Name, got.OperatingSystem, got.Architecture, got.KubeletVersion)
		}
		if !carriesTaint(n, node.TaintKey, corev1.TaintEffectNoSchedule) {
			t.Errorf("%s: taints %v, want %s", c.Name, n.Spec.Taints, node.TaintKey)
		}
	}
}

// TestVirtualNodeAllocatable: at rest, a virtual node offers exactly what its workload nodes offer.
func TestVirtualNodeAllocatable(t *testing.T) {
	for _, c := range shared.Workloads {
		// "At rest": pods other tests started in the workload cluster may still be going away.
		eventually(t, 30*time.Second, c.Name+" allocatable = sum of its nodes'", func(ctx context.Context) (bool, string) {
			capacity, allocatable, err := sumWorkloadNodes(ctx, c)
			if err != nil {
				return false, err.Error()
			}
			n, err := shared.Management.Client.CoreV1().Nodes().Get(ctx, c.Name, metav1.GetOptions{})
			if err != nil {
				return false, err.Error()
			}
			if !sameResources(n.Status.Capacity, capacity) || !sameResources(n.Status.Allocatable, allocatable) {
				return false, fmt.Sprintf("virtual node capacity %v allocatable %v; workload nodes capacity %v allocatable %v",
					n.Status.Capacity, n.Status.Allocatable, capacity, allocatable)
			}
			return true, ""
		})
	}
}

// TestVirtualNodeFollowsWorkloadPods: a pod started directly in a workload cluster, not through flotilla,
// takes its requests off the virtual node's allocatable, and gives them back when it goes.
func TestVirtualNodeFollowsWorkloadPods(t *testing.T) {
	c := shared.Workload("us-west-2-0")
	ns := namespace(t, c.Client)
	ctx := testContext(t, 2*time.Minute)
	before := allocatableOf(virtualNodeOf(ctx, t, c.Name), corev1.ResourceCPU)

	createWorkloadPod(t, c, ns, "hog", lab.NodeName(c.Name, 0), "1")
	took := awaitAllocatableCPU(t, c.Name, minus(before, "1"))
	t.Logf("a 1-CPU pod showed on the virtual node in %s", took)

	if err := c.Client.CoreV1().Pods(ns).Delete(ctx, "hog", metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)}); err != nil {
		t.Fatal(err)
	}
	took = awaitAllocatableCPU(t, c.Name, before)
	t.Logf("its deletion showed in %s", took)
}

// TestCordonedWorkloadNodeLeavesCapacity: a cordoned workload node takes no new pods, so its share leaves
// the virtual node until it is uncordoned.
func TestCordonedWorkloadNodeLeavesCapacity(t *testing.T) {
	c := shared.Workload("eu-west-3-0")
	ctx := testContext(t, 2*time.Minute)
	before := allocatableOf(virtualNodeOf(ctx, t, c.Name), corev1.ResourceCPU)
	workloadNode := lab.NodeName(c.Name, 0)
	wn, err := c.Client.CoreV1().Nodes().Get(ctx, workloadNode, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	share := allocatableOf(wn, corev1.ResourceCPU)

	setUnschedulable(ctx, t, c, workloadNode, true)
	t.Cleanup(func() { setUnschedulable(context.Background(), t, c, workloadNode, false) })
	awaitAllocatableCPU(t, c.Name, minus(before, share.String()))

	setUnschedulable(ctx, t, c, workloadNode, false)
	awaitAllocatableCPU(t, c.Name, before)
}

// TestFrozenWorkloadAPIServer: a workload apiserver that stops answering makes its virtual node NotReady,
// and the management cluster's node lifecycle controller taints it so its pods are evicted; when the
// apiserver answers again the node is Ready again.
func TestFrozenWorkloadAPIServer(t *testing.T) {
	c := shared.Workload("us-west-2-1")
	mgmt := shared.Management.Client.CoreV1().Nodes()
	resume := freeze(t, c)

	took := eventually(t, nodeUpdate, c.Name+" NotReady", func(ctx context.Context) (bool, string) {
		n, err := mgmt.Get(ctx, c.Name, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		ready := conditionOf(n, corev1.NodeReady)
		return ready.Status == corev1.ConditionFalse && ready.Reason == node.ReasonClusterUnreachable,
			fmt.Sprintf("Ready=%s %s: %s", ready.Status, ready.Reason, ready.Message)
	})
	t.Logf("NotReady %s after the freeze", took)

	// The node lifecycle controller looks at nodes every --node-monitor-period (5 s by default).
	eventually(t, 15*time.Second, c.Name+" tainted not-ready:NoExecute", func(ctx context.Context) (bool, string) {
		n, err := mgmt.Get(ctx, c.Name, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		return carriesTaint(n, corev1.TaintNodeNotReady, corev1.TaintEffectNoExecute), fmt.Sprintf("taints %v", n.Spec.Taints)
	})

	resume()
	took = eventually(t, nodeUpdate, c.Name+" Ready again", func(ctx context.Context) (bool, string) {
		n, err := mgmt.Get(ctx, c.Name, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		ready := conditionOf(n, corev1.NodeReady)
		return ready.Status == corev1.ConditionTrue, fmt.Sprintf("Ready=%s %s: %s", ready.Status, ready.Reason, ready.Message)
	})
	t.Logf("Ready %s after the resume", took)
	// Leave the shared lab as found: the lifecycle controller lifts its taint on its next look.
	eventually(t, 15*time.Second, c.Name+" not-ready taint lifted", func(ctx context.Context) (bool, string) {
		n, err := mgmt.Get(ctx, c.Name, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		return !carriesTaint(n, corev1.TaintNodeNotReady, corev1.TaintEffectNoExecute), fmt.Sprintf("taints %v", n.Spec.Taints)
	})
}

// TestHandEditsSurviveStatusUpdates: a label someone adds to a virtual node by hand, and a cordon, stay
// through flotilla's status updates.
func TestHandEditsSurviveStatusUpdates(t *testing.T) {
	c := shared.Workload("eu-west-3-1")
	ns := namespace(t, c.Client)
	ctx := testContext(t, 2*time.Minute)
	mgmt := shared.Management.Client.CoreV1().Nodes()
	const handLabel = "example.com/maintenance-window"

	patchVirtualNode(ctx, t, c.Name, `{"metadata":{"labels":{"`+handLabel+`":"sunday"}},"spec":{"unschedulable":true}}`)
	t.Cleanup(func() {
		patchVirtualNode(context.Background(), t, c.Name, `{"metadata":{"labels":{"`+handLabel+`":null}},"spec":{"unschedulable":null}}`)
	})
	before := allocatableOf(virtualNodeOf(ctx, t, c.Name), corev1.ResourceCPU)

	// A pod in the workload cluster changes the node's capacity: flotilla sends a status update.
	createWorkloadPod(t, c, ns, "nudge", lab.NodeName(c.Name, 1), "500m")
	awaitAllocatableCPU(t, c.Name, minus(before, "500m"))
	if err := c.Client.CoreV1().Pods(ns).Delete(ctx, "nudge", metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)}); err != nil {
		t.Fatal(err)
	}
	awaitAllocatableCPU(t, c.Name, before)

	n, err := mgmt.Get(ctx, c.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if n.Labels[handLabel] != "sunday" {
		t.Errorf("hand-added label gone after status updates: labels %v", n.Labels)
	}
	if !n.Spec.Unschedulable {
		t.Errorf("cordon lifted by status updates")
	}
	if n.Labels[regionLabel] != c.Workload.Region {
		t.Errorf("flotilla's own labels gone: labels %v", n.Labels)
	}
}

// TestVirtualNodeLabelsFollowWorkloadNodes: a label all workload nodes gain appears on the virtual node, and
// disappears once the nodes disagree, while flotilla's other labels stay.
func TestVirtualNodeLabelsFollowWorkloadNodes(t *testing.T) {
	c := shared.Workload("us-west-2-0")
	ctx := testContext(t, 2*time.Minute)
	const rack = "example.com/rack"
	var names []string
	for i := range c.Workload.Nodes {
		names = append(names, lab.NodeName(c.Name, i))
	}
	labelWorkloadNodes := func(ctx context.Context, value string, names ...string) {
		v := "null"
		if value != "" {
			v = `"` + value + `"`
		}
		for _, name := range names {
			patch := []byte(`{"metadata":{"labels":{"` + rack + `":` + v + `}}}`)
			if _, err := c.Client.CoreV1().Nodes().Patch(ctx, name, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
				t.Fatal(err)
			}
		}
	}
	t.Cleanup(func() { labelWorkloadNodes(context.Background(), "", names...) })
	awaitLabel := func(what, want string) {
		eventually(t, nodeUpdate, what, func(ctx context.Context) (bool, string) {
			n, err := shared.Management.Client.CoreV1().Nodes().Get(ctx, c.Name, metav1.GetOptions{})
			if err != nil {
				return false, err.Error()
			}
			return n.Labels[rack] == want && n.Labels[regionLabel] == c.Workload.Region, fmt.Sprintf("labels %v", n.Labels)
		})
	}

	labelWorkloadNodes(ctx, "r1", names...)
	awaitLabel("rack label on the virtual node", "r1")
	labelWorkloadNodes(ctx, "r2", names[0])
	awaitLabel("rack label gone once the nodes disagree", "")
}

// virtualNodeOf returns a workload cluster's virtual node once it is Ready.
func virtualNodeOf(ctx context.Context, t *testing.T, name string) *corev1.Node {
	t.Helper()
	if err := shared.WaitVirtualNodeReady(ctx, name); err != nil {
		t.Fatal(err)
	}
	n, err := shared.Management.Client.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// awaitAllocatableCPU waits until a virtual node's allocatable cpu is want and says how long it took.
func awaitAllocatableCPU(t *testing.T, name string, want resource.Quantity) time.Duration {
	t.Helper()
	return eventually(t, nodeUpdate, fmt.Sprintf("%s allocatable cpu %s", name, want.String()), func(ctx context.Context) (bool, string) {
		n, err := shared.Management.Client.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		got := allocatableOf(n, corev1.ResourceCPU)
		return got.Cmp(want) == 0, "allocatable cpu " + got.String()
	})
}

func allocatableOf(n *corev1.Node, name corev1.ResourceName) resource.Quantity {
	return n.Status.Allocatable[name]
}

func minus(q resource.Quantity, less string) resource.Quantity {
	q = q.DeepCopy()
	q.Sub(resource.MustParse(less))
	return q
}

// sumWorkloadNodes adds up the capacity and allocatable of a workload cluster's Ready, schedulable nodes.
func sumWorkloadNodes(ctx context.Context, c *lab.Cluster) (capacity, allocatable corev1.ResourceList, err error) {
	nodes, err := c.Client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, nil, err
	}
	capacity, allocatable = corev1.ResourceList{}, corev1.ResourceList{}
	add := func(sum, more corev1.ResourceList) {
		for name, q := range more {
			total := sum[name]
			total.Add(q)
			sum[name] = total
		}
	}
	for _, n := range nodes.Items {
		if lab.NodeReady(&n) && !n.Spec.Unschedulable {
			add(capacity, n.Status.Capacity)
			add(allocatable, n.Status.Allocatable)
		}
	}
	return capacity, allocatable, nil
}

// sameResources compares resource lists by value.
func sameResources(a, b corev1.ResourceList) bool {
	if len(a) != len(b) {
		return false
	}
	for name, qa := range a {
		if qb, ok := b[name]; !ok || qa.Cmp(qb) != 0 {
			return false
		}
	}
	return true
}

// createWorkloadPod starts a pod requesting cpu directly on a workload node, bypassing the scheduler so the
// time measured is flotilla's alone. It retries while the new namespace's default ServiceAccount, which
// admission requires, does not exist yet.
func createWorkloadPod(t *testing.T, c *lab.Cluster, ns, name, nodeName, cpu string) {
	t.Helper()
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: corev1.PodSpec{
			NodeName: nodeName,
			Containers: []corev1.Container{{
				Name: "app", Image: "busybox",
				Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(cpu)}},
			}},
		},
	}
	eventually(t, 30*time.Second, "create pod "+name, func(ctx context.Context) (bool, string) {
		_, err := c.Client.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{})
		if err != nil {
			return false, err.Error()
		}
		return true, ""
	})
}

// setUnschedulable cordons or uncordons a workload node, as kubectl cordon does.
func setUnschedulable(ctx context.Context, t *testing.T, c *lab.Cluster, name string, unschedulable bool) {
	t.Helper()
	patch := fmt.Appendf(nil, `{"spec":{"unschedulable":%t}}`, unschedulable)
	if _, err := c.Client.CoreV1().Nodes().Patch(ctx, name, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
}

// patchVirtualNode edits a virtual node as a person with kubectl would.
func patchVirtualNode(ctx context.Context, t *testing.T, name, patch string) {
	t.Helper()
	if _, err := shared.Management.Client.CoreV1().Nodes().Patch(ctx, name, types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
}

func conditionOf(n *corev1.Node, kind corev1.NodeConditionType) corev1.NodeCondition {
	for _, c := range n.Status.Conditions {
		if c.Type == kind {
			return c
		}
	}
	return corev1.NodeCondition{Type: kind, Status: corev1.ConditionUnknown, Reason: "NotReported"}
}

func carriesTaint(n *corev1.Node, key string, effect corev1.TaintEffect) bool {
	for _, taint := range n.Spec.Taints {
		if taint.Key == key && taint.Effect == effect {
			return true
		}
	}
	return false
}
