package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	"github.com/flotilla-io/flotilla/node"
	"github.com/flotilla-io/flotilla/provider"
	"github.com/flotilla-io/flotilla/test/lab"
)

// Re-placement (issue 11, item 2): a cluster whose nodes each have 1 CPU free has 3 CPU free summed, which
// its virtual node's allocatable shows, yet no single node takes a pod of 2 CPU.
const (
	filledCluster = "us-west-2-1"
	roomyCluster  = "eu-west-3-0"
)

// fillCluster leaves 1 CPU free on each of the cluster's nodes, with pods the workload cluster's admin
// creates directly, pinned by nodeName, and waits until the virtual node advertises it.
func fillCluster(t *testing.T, ctx context.Context, cluster string) {
	t.Helper()
	c := shared.Workload(cluster)
	ns := namespace(t, c.Client)
	for i := range c.Workload.Nodes {
		filler := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("filler-%d", i), Namespace: ns},
			Spec: corev1.PodSpec{
				NodeName: lab.NodeName(cluster, i),
				Containers: []corev1.Container{{Name: "filler", Image: "pause", Resources: corev1.ResourceRequirements{
					Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("3")}}}},
			},
		}
		if _, err := c.Client.CoreV1().Pods(ns).Create(ctx, filler, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, 30*time.Second, "the filled cluster's virtual node advertising 1 CPU per pod", func(ctx context.Context) (bool, string) {
		n, err := shared.Management.Client.CoreV1().Nodes().Get(ctx, cluster, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		return n.Labels[node.LabelMaxPodCPU] == "1000", fmt.Sprintf("%s=%q, allocatable cpu %s",
			node.LabelMaxPodCPU, n.Labels[node.LabelMaxPodCPU], n.Status.Allocatable.Cpu())
	})
}

// bigContainer requests 2 CPU: more than any node of the filled cluster has left, less than its sum.
func bigContainer() corev1.Container {
	c := webContainer()
	c.Resources.Requests[corev1.ResourceCPU] = resource.MustParse("2")
	return c
}

// TestReplacement fills one cluster once for its three cases.
func TestReplacement(t *testing.T) {
	fillCluster(t, testContext(t, time.Minute), filledCluster)
	t.Run("FitsWhereItCan", testFitsWhereItCan)
	t.Run("EvictsControlledPod", testEvictsControlledPod)
	t.Run("KeepsBarePod", testKeepsBarePod)
}

// testFitsWhereItCan: a Deployment's pod of 2 CPU allowed on the filled cluster and on another, and
// preferring the filled one (so only the fit rule keeps it away), ends Running in the other.
func testFitsWhereItCan(t *testing.T) {
	ns := fleetNamespace(t)
	ctx := testContext(t, 3*time.Minute)

	labels := map[string]string{"app": "big"}
	d := createDeployment(ctx, t, &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "big", Namespace: ns},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To(int32(1)),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					Affinity: &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{
						RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{{
							MatchExpressions: []corev1.NodeSelectorRequirement{{Key: node.LabelCluster, Operator: corev1.NodeSelectorOpIn,
								Values: []string{filledCluster, roomyCluster}}}}}},
						PreferredDuringSchedulingIgnoredDuringExecution: []corev1.PreferredSchedulingTerm{{Weight: 100,
							Preference: corev1.NodeSelectorTerm{MatchExpressions: []corev1.NodeSelectorRequirement{{
								Key: node.LabelCluster, Operator: corev1.NodeSelectorOpIn, Values: []string{filledCluster}}}}}},
					}},
					Tolerations: []corev1.Toleration{tolerateVirtualNodes},
					Containers:  []corev1.Container{bigContainer()},
				},
			},
		},
	})
	took := eventually(t, 2*time.Minute, "the pod Running in "+roomyCluster, func(ctx context.Context) (bool, string) {
		pods, err := shared.Management.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, err.Error()
		}
		var seen []string
		for _, p := range pods.Items {
			if p.DeletionTimestamp == nil && p.Spec.NodeName == roomyCluster && p.Status.Phase == corev1.PodRunning {
				return true, ""
			}
			seen = append(seen, fmt.Sprintf("%s on %q: %s %s", p.Name, p.Spec.NodeName, p.Status.Phase, p.Status.Message))
		}
		return false, fmt.Sprint(seen)
	})
	t.Logf("%s Running in %s after %s", d.Name, roomyCluster, took)
	// It never went to the filled cluster: no delegate there, no re-placement needed.
	events, err := shared.Management.Client.CoreV1().Events(ns).List(ctx, metav1.ListOptions{
		FieldSelector: fields.Set{"reason": provider.ReasonUnschedulableInCluster}.AsSelector().String()})
	if err != nil {
		t.Fatal(err)
	}
	if len(events.Items) > 0 {
		t.Errorf("%d %s events, want none: the fit rule should have kept the pod off %s", len(events.Items),
			provider.ReasonUnschedulableInCluster, filledCluster)
	}
}

// testEvictsControlledPod: a ReplicaSet's pod bound to the filled cluster by its template's
// nodeName (so no scheduler keeps it away) is unschedulable there; after --reschedule-after its proxy is
// evicted with a Warning Event, and the ReplicaSet replaces it.
func testEvictsControlledPod(t *testing.T) {
	ns := fleetNamespace(t)
	ctx := testContext(t, 3*time.Minute)

	labels := map[string]string{"app": "pinned"}
	rs := &appsv1.ReplicaSet{
		ObjectMeta: metav1.ObjectMeta{Name: "pinned", Namespace: ns},
		Spec: appsv1.ReplicaSetSpec{
			Replicas: ptr.To(int32(1)),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					NodeName:    filledCluster,
					Tolerations: []corev1.Toleration{tolerateVirtualNodes},
					Containers:  []corev1.Container{bigContainer()},
				},
			},
		},
	}
	if _, err := shared.Management.Client.AppsV1().ReplicaSets(ns).Create(ctx, rs, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var first corev1.Pod
	eventually(t, 30*time.Second, "the first proxy showing the workload scheduler's verdict", func(ctx context.Context) (bool, string) {
		pods, err := shared.Management.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		if err != nil || len(pods.Items) == 0 {
			return false, fmt.Sprint("no pod yet ", err)
		}
		first = pods.Items[0]
		return unschedulableInCluster(&first)
	})
	start := time.Now()
	expectEventWithin(t, lab.RescheduleAfter+30*time.Second, ns, first.Name, provider.ReasonUnschedulableInCluster)
	took := eventually(t, 30*time.Second, "the first proxy gone and a replacement made", func(ctx context.Context) (bool, string) {
		pods, err := shared.Management.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, err.Error()
		}
		var replaced bool
		for _, p := range pods.Items {
			if p.UID == first.UID {
				return false, fmt.Sprintf("%s still there (deleting: %v)", p.Name, p.DeletionTimestamp != nil)
			}
			replaced = replaced || p.DeletionTimestamp == nil
		}
		return replaced, fmt.Sprintf("%d pods", len(pods.Items))
	})
	t.Logf("evicted and replaced %s after the verdict (replacement seen in %s; re-placement delay %s)", time.Since(start), took, lab.RescheduleAfter)
	if v := flotillaSample(t, []string{filledCluster}, "flotilla_fencing_deletions_total", map[string]string{"reason": "evicted"}); v < 1 {
		t.Errorf("flotilla_fencing_deletions_total{reason=evicted} of %s after an eviction: %v, want at least 1", filledCluster, v)
	}
	// The replacement lands on the same full cluster (its template says so): the next eviction waits twice as
	// long, so within one delay it is still there.
	time.Sleep(lab.RescheduleAfter)
	pods, err := shared.Management.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range pods.Items {
		if p.DeletionTimestamp != nil {
			t.Errorf("%s evicted within %s of the first eviction; the second round should wait %s", p.Name,
				lab.RescheduleAfter, 2*lab.RescheduleAfter)
		}
	}
	// Scale to zero, so the ReplicaSet stops replacing while the namespace goes.
	if _, err := shared.Management.Client.AppsV1().ReplicaSets(ns).Patch(ctx, rs.Name, types.MergePatchType,
		[]byte(`{"spec":{"replicas":0}}`), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
}

// testKeepsBarePod: a bare pod forced onto the filled cluster (nodeName of its virtual node) keeps
// its FailedScheduling reason and is never evicted: nothing would replace it.
func testKeepsBarePod(t *testing.T) {
	ns := fleetNamespace(t)
	ctx := testContext(t, 3*time.Minute)

	pod := podOn(ns, "bare", filledCluster)
	pod.Spec.NodeSelector = nil
	pod.Spec.NodeName = filledCluster
	pod.Spec.Containers = []corev1.Container{bigContainer()}
	created, err := shared.Management.Client.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "the proxy showing the workload scheduler's verdict", func(ctx context.Context) (bool, string) {
		p, err := shared.Management.Client.CoreV1().Pods(ns).Get(ctx, pod.Name, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		return unschedulableInCluster(p)
	})
	expectEvent(t, ns, pod.Name, provider.ReasonFailedScheduling)
	// Three times the re-placement delay: a controlled pod would have been evicted by then.
	time.Sleep(3 * lab.RescheduleAfter)
	p, err := shared.Management.Client.CoreV1().Pods(ns).Get(ctx, pod.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if still, why := unschedulableInCluster(p); p.UID != created.UID || p.DeletionTimestamp != nil || !still {
		t.Errorf("bare pod after %s: uid %s (was %s), deleting %v, %s; want it untouched and still unschedulable",
			3*lab.RescheduleAfter, p.UID, created.UID, p.DeletionTimestamp != nil, why)
	}
	events, err := shared.Management.Client.CoreV1().Events(ns).List(ctx, metav1.ListOptions{
		FieldSelector: fields.Set{"involvedObject.name": pod.Name, "reason": provider.ReasonUnschedulableInCluster}.AsSelector().String()})
	if err != nil {
		t.Fatal(err)
	}
	if len(events.Items) > 0 {
		t.Errorf("%s event on a bare pod: %s", provider.ReasonUnschedulableInCluster, events.Items[0].Message)
	}
}

// unschedulableInCluster says whether the proxy shows its workload scheduler's verdict (PodScheduled False,
// reason Unschedulable, for want of CPU), and what it shows otherwise.
func unschedulableInCluster(p *corev1.Pod) (bool, string) {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodScheduled {
			return c.Status == corev1.ConditionFalse && c.Reason == corev1.PodReasonUnschedulable && strings.Contains(c.Message, "Insufficient cpu"),
				fmt.Sprintf("%s: PodScheduled=%s %s: %s", p.Name, c.Status, c.Reason, c.Message)
		}
	}
	return false, fmt.Sprintf("%s: %s, no PodScheduled condition", p.Name, p.Status.Phase)
}

// expectEventWithin is expectEvent with a limit of one's own.
func expectEventWithin(t *testing.T, limit time.Duration, ns, pod, reason string) {
	t.Helper()
	eventually(t, limit, reason+" event on "+pod, func(ctx context.Context) (bool, string) {
		events, err := shared.Management.Client.CoreV1().Events(ns).List(ctx, metav1.ListOptions{
			FieldSelector: fields.Set{"involvedObject.name": pod, "reason": reason}.AsSelector().String(),
		})
		if err != nil {
			return false, err.Error()
		}
		if len(events.Items) > 0 {
			t.Logf("%s: %s", reason, events.Items[0].Message)
		}
		return len(events.Items) > 0, "none yet"
	})
}
