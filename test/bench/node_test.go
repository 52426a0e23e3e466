package bench

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/utils/ptr"

	"github.com/flotilla-io/flotilla/tenancy"
	"github.com/flotilla-io/flotilla/test/lab"
)

// BenchmarkCapacityPropagation measures how long a change of free capacity in a workload cluster (a pod
// requesting 1 CPU created directly there) takes to show on its virtual node, over 20 samples, and
// flotilla's API requests per minute at rest against each cluster.
func BenchmarkCapacityPropagation(b *testing.B) {
	rec := record(b)
	l := lab.ForTest(b, lab.Options{Workloads: []lab.WorkloadSpec{lab.Workload("us-west-2-0", "us-west-2")}, Flotilla: true})
	w := l.Workloads[0]
	ctx := context.Background()
	// Created by the workload admin, so opened to flotilla (it only reads the pods here).
	opened := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "bench", Labels: map[string]string{tenancy.LabelOpen: "true"}}}
	if _, err := w.Client.CoreV1().Namespaces().Create(ctx, opened, metav1.CreateOptions{}); err != nil {
		b.Fatal(err)
	}

	// At rest: nothing changes for a minute; count what flotilla asks of each cluster meanwhile.
	const rest = time.Minute
	before := map[string]float64{}
	for _, role := range []string{"management", "workload"} {
		before[role], _ = l.FlotillaRequests(w.Name, role)
	}
	time.Sleep(rest)
	for _, role := range []string{"management", "workload"} {
		after, err := l.FlotillaRequests(w.Name, role)
		if err != nil {
			b.Fatal(err)
		}
		perMinute := (after - before[role]) / rest.Minutes()
		rec.metric(perMinute, role+"-req/min", "flotilla's API requests per minute at rest to the "+role+" cluster")
		b.Logf("at rest: %.0f requests per minute to the %s cluster", perMinute, role)
	}

	for i := 0; i < b.N; i++ {
		var samples []time.Duration
		for j := range 20 {
			pod := &corev1.Pod{
				ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("cpu-%d-%d", i, j), Namespace: "bench"},
				Spec: corev1.PodSpec{
					NodeName:                      lab.NodeName(w.Name, 0),
					TerminationGracePeriodSeconds: ptr.To[int64](0),
					Containers: []corev1.Container{{Name: "app", Image: "app", Resources: corev1.ResourceRequirements{
						Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1")}}}},
				},
			}
			baseline := virtualCPU(b, l, w.Name)
			start := time.Now()
			if _, err := w.Client.CoreV1().Pods("bench").Create(ctx, pod, metav1.CreateOptions{}); err != nil {
				b.Fatal(err)
			}
			waitVirtualCPU(b, l, w.Name, baseline-1000)
			samples = append(samples, time.Since(start))
			if err := w.Client.CoreV1().Pods("bench").Delete(ctx, pod.Name, metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)}); err != nil {
				b.Fatal(err)
			}
			waitVirtualCPU(b, l, w.Name, baseline)
		}
		slices.Sort(samples)
		median := samples[len(samples)/2]
		rec.metric(median.Seconds(), "median-s", fmt.Sprintf("seconds from a capacity change in the workload cluster to the virtual node showing it, median of %d", len(samples)))
		rec.metric(samples[len(samples)-1].Seconds(), "max-s", fmt.Sprintf("the same, slowest of %d", len(samples)))
		b.Logf("capacity change to virtual node over %d samples: median %s, min %s, max %s",
			len(samples), median.Round(time.Millisecond), samples[0].Round(time.Millisecond), samples[len(samples)-1].Round(time.Millisecond))
	}
}

// virtualCPU is the virtual node's allocatable CPU in millicores.
func virtualCPU(b *testing.B, l *lab.Lab, name string) int64 {
	n, err := l.Management.Client.CoreV1().Nodes().Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		b.Fatal(err)
	}
	return n.Status.Allocatable.Cpu().MilliValue()
}

// waitVirtualCPU polls (every 20 ms, so the measurement's own resolution stays small) until the virtual
// node's allocatable CPU equals want.
func waitVirtualCPU(b *testing.B, l *lab.Lab, name string, want int64) {
	err := wait.PollUntilContextTimeout(context.Background(), 20*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		return virtualCPU(b, l, name) == want, nil
	})
	if err != nil {
		b.Fatalf("virtual node %s allocatable cpu never reached %dm", name, want)
	}
}
