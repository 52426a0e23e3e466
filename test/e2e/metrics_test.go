package e2e

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/flotilla-io/flotilla/node"
	"github.com/flotilla-io/flotilla/test/lab"
)

// Usage through flotilla: kwok simulates each delegate's usage from its annotations (which a delegate takes
// from its proxy), the workload cluster's metrics-server measures it, flotilla's kubelet API reports it, and
// the management cluster's metrics-server scrapes the virtual node like any node.

// kubectlAt runs the lab's kubectl against a cluster of the lab.
func kubectlAt(c *lab.Cluster, args ...string) (string, error) {
	bins, err := lab.Binaries()
	if err != nil {
		return "", err
	}
	out, err := exec.Command(bins["kubectl"], append([]string{"--kubeconfig", c.Kubeconfig}, args...)...).CombinedOutput()
	return string(out), err
}

// topRows runs `kubectl top` and returns its rows by name: CPU and memory as kubectl prints them.
func topRows(c *lab.Cluster, args ...string) (map[string][2]resource.Quantity, string, error) {
	out, err := kubectlAt(c, append(append([]string{"top"}, args...), "--no-headers")...)
	if err != nil {
		return nil, out, fmt.Errorf("kubectl top %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(out))
	}
	rows := map[string][2]resource.Quantity{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.Fields(line)
		if len(f) < 3 {
			continue
		}
		// pods: NAME CPU MEMORY; nodes: NAME CPU CPU% MEMORY MEMORY%
		mem := f[2]
		if len(f) >= 5 {
			mem = f[3]
		}
		cpu, err1 := resource.ParseQuantity(f[1])
		memory, err2 := resource.ParseQuantity(mem)
		if err1 != nil || err2 != nil {
			return nil, out, fmt.Errorf("unreadable row %q", line)
		}
		rows[f[0]] = [2]resource.Quantity{cpu, memory}
	}
	return rows, out, nil
}

// near says whether q is within tolerance of want (both in the same unit: millicores or bytes).
func near(q resource.Quantity, want, tolerance int64, milli bool) bool {
	v := q.Value()
	if milli {
		v = q.MilliValue()
	}
	return v >= want-tolerance && v <= want+tolerance
}

// usageDeployment is a Deployment on one workload cluster whose pods use what its annotations say.
func usageDeployment(ns, name, cluster string, replicas int32, cpu, memory string) *appsv1.Deployment {
	labels := map[string]string{"app": name}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To(replicas),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels, Annotations: map[string]string{
					lab.UsageCPUAnnotation: cpu, lab.UsageMemoryAnnotation: memory,
				}},
				Spec: corev1.PodSpec{
					NodeSelector: map[string]string{node.LabelCluster: cluster},
					Tolerations:  []corev1.Toleration{tolerateVirtualNodes},
					Containers:   []corev1.Container{webContainer()},
				},
			},
		},
	}
}

// TestTop: `kubectl top pod` on proxies shows their delegates' usage and `kubectl top node` on a virtual node
// its workload cluster's, both through the management apiserver.
func TestTop(t *testing.T) {
	ctx := testContext(t, 5*time.Minute)
	cluster := shared.Workloads[0]
	ns := namespace(t, shared.Management.Client)
	createDeployment(ctx, t, usageDeployment(ns, "busy", cluster.Name, 2, "250m", "100Mi"))

	var rows map[string][2]resource.Quantity
	took := eventually(t, 3*time.Minute, "kubectl top pod showing both proxies' usage", func(context.Context) (bool, string) {
		var out string
		var err error
		if rows, out, err = topRows(shared.Management, "pod", "-n", ns); err != nil {
			return false, err.Error()
		}
		if len(rows) != 2 {
			return false, out
		}
		for _, r := range rows {
			if !near(r[0], 250, 10, true) || !near(r[1], 100<<20, 1<<20, false) {
				return false, out
			}
		}
		return true, ""
	})
	out, _ := kubectlAt(shared.Management, "top", "pod", "-n", ns)
	t.Logf("kubectl top pod -n %s (%s after the Deployment):\n%s", ns, took.Round(time.Second), out)
	// The same numbers the workload cluster's own metrics API gives for the delegates.
	direct, out, err := topRows(cluster, "pod", "-n", ns)
	if err != nil {
		t.Fatal(err)
	}
	for name := range rows {
		if _, ok := direct[name]; !ok {
			t.Errorf("proxy %s has no delegate in workload cluster %s's metrics:\n%s", name, cluster.Name, out)
		}
	}

	// The virtual node: the workload cluster's nodes summed, read from both sides at about the same time.
	eventually(t, 2*time.Minute, "kubectl top node showing the workload cluster's usage", func(context.Context) (bool, string) {
		virtual, vout, err := topRows(shared.Management, "node", cluster.Name)
		if err != nil {
			return false, err.Error()
		}
		nodes, nout, err := topRows(cluster, "node")
		if err != nil {
			return false, err.Error()
		}
		var cpu, memory int64
		for _, r := range nodes {
			cpu += r[0].MilliValue()
			memory += r[1].Value()
		}
		v := virtual[cluster.Name]
		// Other tests' pods come and go in the cluster between the two reads.
		if !near(v[0], cpu, cpu/5+10, true) || !near(v[1], memory, memory/5, false) || cpu < 500 {
			return false, fmt.Sprintf("virtual node:\n%sworkload nodes:\n%s", vout, nout)
		}
		t.Logf("virtual node:\n%sworkload cluster's nodes:\n%s", vout, nout)
		return true, ""
	})
}

// TestHorizontalPodAutoscaler: an HPA on a management Deployment scales it up when its delegates' CPU rises
// and down when it falls. The CPU changes as a user would make a simulated pod busy: by annotating the
// running pods (proxies), whose annotations their delegates follow.
func TestHorizontalPodAutoscaler(t *testing.T) {
	ctx := testContext(t, 10*time.Minute)
	cluster := shared.Workloads[0]
	ns := namespace(t, shared.Management.Client)
	createDeployment(ctx, t, usageDeployment(ns, "scaled", cluster.Name, 1, "10m", "16Mi"))
	hpa := &autoscalingv2.HorizontalPodAutoscaler{
		ObjectMeta: metav1.ObjectMeta{Name: "scaled", Namespace: ns},
		Spec: autoscalingv2.HorizontalPodAutoscalerSpec{
			ScaleTargetRef: autoscalingv2.CrossVersionObjectReference{APIVersion: "apps/v1", Kind: "Deployment", Name: "scaled"},
			MinReplicas:    ptr.To(int32(1)),
			MaxReplicas:    4,
			Metrics: []autoscalingv2.MetricSpec{{Type: autoscalingv2.ResourceMetricSourceType, Resource: &autoscalingv2.ResourceMetricSource{
				Name: corev1.ResourceCPU, Target: autoscalingv2.MetricTarget{Type: autoscalingv2.UtilizationMetricType, AverageUtilization: ptr.To(int32(50))},
			}}},
			// Scale down as soon as the CPU falls, not after the default five minutes.
			Behavior: &autoscalingv2.HorizontalPodAutoscalerBehavior{ScaleDown: &autoscalingv2.HPAScalingRules{StabilizationWindowSeconds: ptr.To(int32(0))}},
		},
	}
	hpas := shared.Management.Client.AutoscalingV2().HorizontalPodAutoscalers(ns)
	if _, err := hpas.Create(ctx, hpa, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// utilization is the HPA's last measurement of the Deployment's CPU, "unknown" before its first.
	utilization := func(ctx context.Context) string {
		h, err := hpas.Get(ctx, "scaled", metav1.GetOptions{})
		if err != nil {
			return err.Error()
		}
		for _, m := range h.Status.CurrentMetrics {
			if m.Resource != nil && m.Resource.Current.AverageUtilization != nil {
				return fmt.Sprintf("%d%%", *m.Resource.Current.AverageUtilization)
			}
		}
		return "unknown"
	}
	replicas := func(ctx context.Context) int32 {
		d, err := shared.Management.Client.AppsV1().Deployments(ns).Get(ctx, "scaled", metav1.GetOptions{})
		if err != nil {
			return -1
		}
		return ptr.Deref(d.Spec.Replicas, 0)
	}
	eventually(t, 3*time.Minute, "the HPA measuring the idle Deployment", func(ctx context.Context) (bool, string) {
		u := utilization(ctx)
		return u != "unknown" && replicas(ctx) == 1, "utilization " + u
	})

	annotate := func(cpu string) {
		if out, err := kubectlAt(shared.Management, "annotate", "pods", "-n", ns, "-l", "app=scaled", "--overwrite", lab.UsageCPUAnnotation+"="+cpu); err != nil {
			t.Fatalf("annotating the pods: %v\n%s", err, out)
		}
	}
	annotate("400m")
	up := eventually(t, 3*time.Minute, "the HPA scaling up", func(ctx context.Context) (bool, string) {
		r := replicas(ctx)
		return r == 4, fmt.Sprintf("%d replicas at %s", r, utilization(ctx))
	})
	t.Logf("scaled up to 4 replicas %s after the CPU rose (utilization %s)", up.Round(time.Second), utilization(ctx))

	annotate("10m")
	down := eventually(t, 3*time.Minute, "the HPA scaling down", func(ctx context.Context) (bool, string) {
		r := replicas(ctx)
		return r == 1, fmt.Sprintf("%d replicas at %s", r, utilization(ctx))
	})
	t.Logf("scaled down to 1 replica %s after the CPU fell (utilization %s)", down.Round(time.Second), utilization(ctx))
}
