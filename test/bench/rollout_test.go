// Package bench measures flotilla beside the direct, single-cluster path, on the lab's real control
// planes. Benchmarks print numbers; they never pass or fail on speed. One also checks a safety property under
// its load (BenchmarkBogusTokenFlood: heartbeats and pod work never wait on authentication) and fails, saying
// so, when it breaks.
package bench

import (
	"context"
	"fmt"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/flotilla-io/flotilla/node"
	"github.com/flotilla-io/flotilla/tenancy"
	"github.com/flotilla-io/flotilla/test/lab"
)

const replicas = 500

// BenchmarkDeploymentRollout times a 500-replica Deployment to all pods Running, created directly in one
// workload cluster and then in the management cluster through flotilla (spread over two clusters), and
// reports the ratio and flotilla's CPU time and peak memory.
func BenchmarkDeploymentRollout(b *testing.B) {
	// Nodes big enough that 500 pods fit in one cluster, so both paths place every pod.
	big := lab.NodeAllocatable.DeepCopy()
	big[corev1.ResourcePods] = resource.MustParse("500")
	var workloads []lab.WorkloadSpec
	for _, name := range []string{"us-west-2-0", "us-west-2-1"} {
		w := lab.Workload(name, "us-west-2")
		w.Allocatable = big
		workloads = append(workloads, w)
	}
	l := lab.ForTest(b, lab.Options{Workloads: workloads, Flotilla: true})
	direct := l.Workloads[0].Client
	ctx := context.Background()

	for i := 0; i < b.N; i++ {
		directTime := rollout(b, ctx, direct, fmt.Sprintf("direct-%d", i), tenancy.LabelOpen)

		before := map[string]lab.Usage{}
		for _, w := range l.Workloads {
			before[w.Name], _ = l.FlotillaUsage(w.Name)
		}
		flotillaTime := rollout(b, ctx, l.Management.Client, fmt.Sprintf("flotilla-%d", i), tenancy.LabelEnabled)
		var cpu time.Duration
		var peak int64
		for _, w := range l.Workloads {
			u, err := l.FlotillaUsage(w.Name)
			if err != nil {
				b.Fatal(err)
			}
			cpu += u.CPU - before[w.Name].CPU
			peak = max(peak, u.PeakRSS)
		}
		ratio := flotillaTime.Seconds() / directTime.Seconds()
		b.ReportMetric(directTime.Seconds(), "direct-s")
		b.ReportMetric(flotillaTime.Seconds(), "flotilla-s")
		b.ReportMetric(ratio, "ratio")
		b.ReportMetric(cpu.Seconds(), "flotilla-cpu-s")
		b.ReportMetric(float64(peak>>20), "flotilla-peak-MiB")
		b.Logf("%d replicas to Running: direct in one cluster %s, through flotilla over %d clusters %s (ratio %.2f); flotilla CPU %s (all processes), peak RSS %d MiB (largest process)",
			replicas, directTime.Round(time.Millisecond), len(l.Workloads), flotillaTime.Round(time.Millisecond), ratio, cpu.Round(time.Millisecond), peak>>20)
	}
}

// rollout creates a Deployment in a namespace of its own, labelled tenancyLabel=true (tenancy.LabelEnabled
// in the management cluster, tenancy.LabelOpen in a workload cluster), waits until all its pods are
// Running, and returns how long that took. It deletes the namespace afterwards.
func rollout(b *testing.B, ctx context.Context, c kubernetes.Interface, ns, tenancyLabel string) time.Duration {
	b.Helper()
	namespace := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: map[string]string{tenancyLabel: "true"}}}
	if _, err := c.CoreV1().Namespaces().Create(ctx, namespace, metav1.CreateOptions{}); err != nil {
		b.Fatal(err)
	}
	defer func() { _ = c.CoreV1().Namespaces().Delete(context.Background(), ns, metav1.DeleteOptions{}) }()
	// The default ServiceAccount must exist before pods can be created; it is not part of what we time.
	if err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		_, err := c.CoreV1().ServiceAccounts(ns).Get(ctx, "default", metav1.GetOptions{})
		return err == nil, nil
	}); err != nil {
		b.Fatal(err)
	}

	deploy := pauseDeployment(ns, "rollout", map[string]string{"app": "rollout"}, replicas)
	start := time.Now()
	if _, err := c.AppsV1().Deployments(ns).Create(ctx, deploy, metav1.CreateOptions{}); err != nil {
		b.Fatal(err)
	}
	waitRunning(b, ctx, c, ns, replicas)
	return time.Since(start)
}

// pauseDeployment is a Deployment of pause containers that opts in to the virtual nodes' taint.
func pauseDeployment(ns, name string, labels map[string]string, replicas int32) *appsv1.Deployment {
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To(replicas),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					Containers:  []corev1.Container{{Name: "app", Image: "registry.k8s.io/pause:3.10"}},
					Tolerations: []corev1.Toleration{{Key: node.TaintKey, Operator: corev1.TolerationOpExists}},
				},
			},
		},
	}
}
