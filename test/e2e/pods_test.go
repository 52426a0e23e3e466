package e2e

import (
	"context"
	"fmt"
	"slices"
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
	"github.com/flotilla-io/flotilla/tenancy"
)

// Pods bound to a virtual node (proxies) run as delegate pods in its workload cluster, and their status
// comes back. These tests hold the fleet to "exactly": every proxy that should run is Running with exactly
// one Running delegate in its own cluster, and no delegate runs without its proxy.

// rollout is how long a Deployment of up to twenty pods may take to be Running through flotilla.
const rollout = time.Minute

// tolerateVirtualNodes opts a pod in to the virtual nodes' taint.
var tolerateVirtualNodes = corev1.Toleration{Key: node.TaintKey, Operator: corev1.TolerationOpEqual, Value: node.TaintValue, Effect: corev1.TaintEffectNoSchedule}

// TestRegionalDeployments: the tutorial's two regional Deployments end with four proxies Running on the
// virtual nodes of each region, each with one Running delegate in its cluster.
func TestRegionalDeployments(t *testing.T) {
	ns := fleetNamespace(t)
	ctx := testContext(t, 2*rollout)
	for _, region := range []string{"us-west-2", "eu-west-3"} {
		createDeployment(ctx, t, regionalDeployment(ns, region, 4))
	}
	took := eventually(t, rollout, "4 proxies Running per region, one Running delegate each", func(ctx context.Context) (bool, string) {
		return settled(ctx, ns, map[string]int{"us-west-2": 4, "eu-west-3": 4})
	})
	t.Logf("both regions Running in %s", took)
}

// TestScalingFollows: delegates follow a Deployment scaled up and down to the pod, and none is left once
// it is scaled to zero.
func TestScalingFollows(t *testing.T) {
	ns := fleetNamespace(t)
	ctx := testContext(t, 4*rollout)
	d := createDeployment(ctx, t, regionalDeployment(ns, "eu-west-3", 4))
	for _, replicas := range []int{4, 20, 0} {
		scale(ctx, t, d.Namespace, d.Name, replicas)
		took := eventually(t, rollout, fmt.Sprintf("%d proxies and delegates", replicas), func(ctx context.Context) (bool, string) {
			return settled(ctx, ns, map[string]int{"eu-west-3": replicas})
		})
		t.Logf("%d replicas settled in %s", replicas, took)
	}
}

// TestDelegateDeletedInWorkloadClusterIsReplaced: a delegate deleted in its workload cluster by someone
// else ends its proxy, and the ReplicaSet's replacement runs within ten seconds.
func TestDelegateDeletedInWorkloadClusterIsReplaced(t *testing.T) {
	ns := fleetNamespace(t)
	ctx := testContext(t, 2*rollout)
	createDeployment(ctx, t, regionalDeployment(ns, "us-west-2", 2))
	eventually(t, rollout, "2 proxies Running", func(ctx context.Context) (bool, string) {
		return settled(ctx, ns, map[string]int{"us-west-2": 2})
	})
	proxies, err := shared.Management.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	victim := proxies.Items[0]
	if err := shared.Workload(victim.Spec.NodeName).Client.CoreV1().Pods(ns).Delete(ctx, victim.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	took := eventually(t, 10*time.Second, "the deleted delegate's pod replaced and Running", func(ctx context.Context) (bool, string) {
		if ok, why := settled(ctx, ns, map[string]int{"us-west-2": 2}); !ok {
			return false, why
		}
		_, err := shared.Management.Client.CoreV1().Pods(ns).Get(ctx, victim.Name, metav1.GetOptions{})
		return err != nil, fmt.Sprintf("proxy %s still there (%v)", victim.Name, err)
	})
	t.Logf("replaced in %s", took)
	expectEvent(t, ns, victim.Name, provider.ReasonDeletedInWorkloadCluster)
}

// TestQuotaRefusalShowsOnProxy: a delegate the workload cluster's ResourceQuota forbids shows the quota's
// message on its proxy, which stays Pending (not Failed, even with restartPolicy Never) while flotilla
// retries; once the quota is lifted the pod runs.
func TestQuotaRefusalShowsOnProxy(t *testing.T) {
	c := shared.Workload("eu-west-3-0")
	ns := fleetNamespace(t)
	ctx := testContext(t, 2*rollout)
	// The workload admin creates the namespace (to set its quota) and so opens it to flotilla.
	opened := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: map[string]string{tenancy.LabelOpen: "true"}}}
	if _, err := c.Client.CoreV1().Namespaces().Create(ctx, opened, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	quota := &corev1.ResourceQuota{
		ObjectMeta: metav1.ObjectMeta{Name: "no-pods", Namespace: ns},
		Spec:       corev1.ResourceQuotaSpec{Hard: corev1.ResourceList{corev1.ResourcePods: resource.MustParse("0")}},
	}
	if _, err := c.Client.CoreV1().ResourceQuotas(ns).Create(ctx, quota, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// Until the quota controller has counted the namespace, admission refuses with "status unknown".
	eventually(t, 30*time.Second, "quota counted", func(ctx context.Context) (bool, string) {
		q, err := c.Client.CoreV1().ResourceQuotas(ns).Get(ctx, quota.Name, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		return q.Status.Hard != nil, "no status yet"
	})

	pod := podOn(ns, "once", c.Name)
	pod.Spec.RestartPolicy = corev1.RestartPolicyNever
	if _, err := shared.Management.Client.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	took := eventually(t, 10*time.Second, "the quota's refusal on the proxy", func(ctx context.Context) (bool, string) {
		p, err := shared.Management.Client.CoreV1().Pods(ns).Get(ctx, pod.Name, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		s := p.Status
		return s.Phase == corev1.PodPending && s.Reason == provider.ReasonRefused && strings.Contains(s.Message, "exceeded quota"),
			fmt.Sprintf("phase %s, reason %q, message %q", s.Phase, s.Reason, s.Message)
	})
	t.Logf("refusal shown in %s", took)
	expectEvent(t, ns, pod.Name, provider.ReasonRefused)

	// A few retries later the pod is still waiting, not failed for good.
	time.Sleep(3 * time.Second)
	if p, err := shared.Management.Client.CoreV1().Pods(ns).Get(ctx, pod.Name, metav1.GetOptions{}); err != nil || p.Status.Phase != corev1.PodPending {
		t.Fatalf("proxy after retries: %v, %v", p.Status, err)
	}

	if err := c.Client.CoreV1().ResourceQuotas(ns).Delete(ctx, quota.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	// Retries back off to at most 30 s.
	took = eventually(t, 45*time.Second, "the pod Running once the quota is lifted", func(ctx context.Context) (bool, string) {
		p, err := shared.Management.Client.CoreV1().Pods(ns).Get(ctx, pod.Name, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		return p.Status.Phase == corev1.PodRunning, fmt.Sprintf("phase %s, reason %q", p.Status.Phase, p.Status.Reason)
	})
	t.Logf("Running %s after the quota went", took)
}

// TestUnschedulableDelegateShowsWhy: a pod bigger than any one workload node fits the virtual node (the sum
// of its cluster) but not the workload cluster; its proxy shows the workload scheduler's verdict.
func TestUnschedulableDelegateShowsWhy(t *testing.T) {
	c := shared.Workload("us-west-2-1")
	ns := fleetNamespace(t)
	ctx := testContext(t, time.Minute)
	pod := podOn(ns, "big", c.Name)
	// Bound by nodeName: the webhook's fit affinity keeps the management scheduler from sending it there.
	pod.Spec.NodeSelector, pod.Spec.NodeName = nil, c.Name
	pod.Spec.Containers[0].Resources.Requests[corev1.ResourceCPU] = resource.MustParse("5") // nodes have 4
	if _, err := shared.Management.Client.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	took := eventually(t, 10*time.Second, "the workload scheduler's verdict on the proxy", func(ctx context.Context) (bool, string) {
		p, err := shared.Management.Client.CoreV1().Pods(ns).Get(ctx, pod.Name, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		for _, cond := range p.Status.Conditions {
			if cond.Type == corev1.PodScheduled {
				return cond.Status == corev1.ConditionFalse && strings.Contains(cond.Message, "Insufficient cpu"),
					fmt.Sprintf("PodScheduled=%s: %s", cond.Status, cond.Message)
			}
		}
		return false, "no PodScheduled condition"
	})
	t.Logf("verdict shown in %s", took)
	expectEvent(t, ns, pod.Name, provider.ReasonFailedScheduling)
}

// TestRestartMidRollout: flotilla restarted (one gracefully, one killed) in the middle of a 200-replica
// scale-up loses, duplicates and orphans nothing: exactly 200 proxies Running, each with exactly one
// delegate, and none left once scaled to zero.
func TestRestartMidRollout(t *testing.T) {
	const replicas = 200
	ns := fleetNamespace(t)
	ctx := testContext(t, 10*time.Minute)
	d := createDeployment(ctx, t, regionalDeployment(ns, "eu-west-3", 0))
	scale(ctx, t, ns, d.Name, replicas)
	// Mid scale-up: some delegates exist, most do not yet.
	eventually(t, rollout, "the scale-up under way", func(ctx context.Context) (bool, string) {
		pods, err := shared.Workload("eu-west-3-0").Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, err.Error()
		}
		return len(pods.Items) > 0, fmt.Sprintf("%d delegates in eu-west-3-0", len(pods.Items))
	})
	if err := shared.RestartFlotilla("eu-west-3-0"); err != nil {
		t.Fatal(err)
	}
	if err := shared.KillFlotilla("eu-west-3-1"); err != nil {
		t.Fatal(err)
	}
	if err := shared.StartFlotilla("eu-west-3-1"); err != nil {
		t.Fatal(err)
	}
	took := eventually(t, 5*time.Minute, fmt.Sprintf("%d proxies and delegates after the restarts", replicas), func(ctx context.Context) (bool, string) {
		return settled(ctx, ns, map[string]int{"eu-west-3": replicas})
	})
	t.Logf("%d replicas settled %s after the restarts", replicas, took.Round(time.Millisecond))
	scale(ctx, t, ns, d.Name, 0)
	eventually(t, 3*time.Minute, "no proxy and no delegate left at zero", func(ctx context.Context) (bool, string) {
		return settled(ctx, ns, map[string]int{"eu-west-3": 0})
	})
}

// fleetNamespace creates a namespace named after the test in the management cluster and, when the test
// ends, deletes it there and then in every workload cluster (where flotilla created it).
func fleetNamespace(t *testing.T) string {
	t.Helper()
	var ns string
	// Registered first, so it runs last: the proxies, and with them the delegates, are gone by then.
	t.Cleanup(func() {
		for _, c := range shared.Workloads {
			_ = c.Client.CoreV1().Namespaces().Delete(context.Background(), ns, metav1.DeleteOptions{})
		}
	})
	ns = namespace(t, shared.Management.Client)
	return ns
}

// regionalDeployment is the tutorial's Deployment for one region: placed by region, tolerating the virtual
// nodes' taint.
func regionalDeployment(ns, region string, replicas int32) *appsv1.Deployment {
	labels := map[string]string{"app": "web", "region": region}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "web-" + region, Namespace: ns},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To(replicas),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					NodeSelector: map[string]string{regionLabel: region},
					Tolerations:  []corev1.Toleration{tolerateVirtualNodes},
					Containers:   []corev1.Container{webContainer()},
				},
			},
		},
	}
}

// podOn is a bare pod placed on one workload cluster's virtual node.
func podOn(ns, name, cluster string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: corev1.PodSpec{
			NodeSelector: map[string]string{node.LabelCluster: cluster},
			Tolerations:  []corev1.Toleration{tolerateVirtualNodes},
			Containers:   []corev1.Container{webContainer()},
		},
	}
}

func webContainer() corev1.Container {
	return corev1.Container{Name: "web", Image: "nginx:1.27", Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{
		corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: resource.MustParse("64Mi")}}}
}

func createDeployment(ctx context.Context, t *testing.T, d *appsv1.Deployment) *appsv1.Deployment {
	t.Helper()
	created, err := shared.Management.Client.AppsV1().Deployments(d.Namespace).Create(ctx, d, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return created
}

func scale(ctx context.Context, t *testing.T, ns, name string, replicas int) {
	t.Helper()
	patch := fmt.Sprintf(`{"spec":{"replicas":%d}}`, replicas)
	if _, err := shared.Management.Client.AppsV1().Deployments(ns).Patch(ctx, name, types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
}

// settled reports whether the namespace has exactly the given number of Running proxies in each region
// (and no other proxy), each with exactly one Running delegate in its own workload cluster, and no other
// delegate anywhere.
func settled(ctx context.Context, ns string, running map[string]int) (bool, string) {
	proxies, err := shared.Management.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return false, err.Error()
	}
	byCluster := map[string][]corev1.Pod{}
	delegates := 0
	for _, c := range shared.Workloads {
		pods, err := c.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, fmt.Sprintf("%s: %v", c.Name, err)
		}
		byCluster[c.Name] = pods.Items
		delegates += len(pods.Items)
	}
	perRegion := map[string]int{}
	for _, p := range proxies.Items {
		if p.DeletionTimestamp != nil || p.Status.Phase != corev1.PodRunning {
			return false, fmt.Sprintf("proxy %s on %q: %s %s %s", p.Name, p.Spec.NodeName, p.Status.Phase, p.Status.Reason, p.Status.Message)
		}
		c := shared.Workload(p.Spec.NodeName)
		if c == nil {
			return false, fmt.Sprintf("proxy %s on %q, not a virtual node", p.Name, p.Spec.NodeName)
		}
		perRegion[c.Workload.Region]++
		i := slices.IndexFunc(byCluster[c.Name], func(d corev1.Pod) bool { return d.Name == p.Name })
		if i < 0 {
			return false, fmt.Sprintf("proxy %s has no delegate in %s", p.Name, c.Name)
		}
		if d := byCluster[c.Name][i]; d.Labels[provider.LabelParentUID] != string(p.UID) || d.Status.Phase != corev1.PodRunning || d.DeletionTimestamp != nil {
			return false, fmt.Sprintf("delegate %s in %s: parent %s (proxy %s), %s", d.Name, c.Name, d.Labels[provider.LabelParentUID], p.UID, d.Status.Phase)
		}
	}
	want := 0
	for region, n := range running {
		want += n
		if perRegion[region] != n {
			return false, fmt.Sprintf("%d proxies Running in %s, want %d", perRegion[region], region, n)
		}
	}
	if len(proxies.Items) != want || delegates != want {
		return false, fmt.Sprintf("%d proxies and %d delegates, want %d", len(proxies.Items), delegates, want)
	}
	return true, ""
}

// expectEvent fails the test unless an Event of the given reason was recorded on the named pod.
func expectEvent(t *testing.T, ns, pod, reason string) {
	t.Helper()
	eventually(t, 10*time.Second, reason+" event on "+pod, func(ctx context.Context) (bool, string) {
		events, err := shared.Management.Client.CoreV1().Events(ns).List(ctx, metav1.ListOptions{
			FieldSelector: fields.Set{"involvedObject.name": pod, "reason": reason}.AsSelector().String(),
		})
		if err != nil {
			return false, err.Error()
		}
		return len(events.Items) > 0, "none yet"
	})
}
