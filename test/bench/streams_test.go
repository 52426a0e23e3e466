package bench

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/flotilla-io/flotilla/node"
	"github.com/flotilla-io/flotilla/tenancy"
	"github.com/flotilla-io/flotilla/test/bench/benchdoc"
	"github.com/flotilla-io/flotilla/test/lab"
)

const (
	// streamSamples is how many times each timed stream operation runs on each path; the median is reported.
	streamSamples = 15
	// forwardedMiB is what each port-forward sample sends each way.
	forwardedMiB = 32
)

// BenchmarkStreams times the kubelet API's streams on a proxy through flotilla (management apiserver ->
// flotilla -> workload apiserver -> kwok) beside the same operation on its delegate directly in the workload
// cluster (workload apiserver -> kwok): the time to the first line of `logs -f`, an exec's round trip (`true`,
// from request to exit status), and port-forward throughput (32 MiB to the lab's echo server and back, per
// direction), with how many times slower the path through flotilla is.
func BenchmarkStreams(b *testing.B) {
	rec := record(b)
	l := lab.ForTest(b, lab.Options{Workloads: []lab.WorkloadSpec{lab.Workload("us-west-2-0", "us-west-2")}, Flotilla: true, Kubelets: true})
	w := l.Workloads[0]
	ctx := context.Background()
	const ns, pod = "streams", "streams"
	enabled := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: map[string]string{tenancy.LabelEnabled: "true"}}}
	if _, err := l.Management.Client.CoreV1().Namespaces().Create(ctx, enabled, metav1.CreateOptions{}); err != nil {
		b.Fatal(err)
	}
	proxy := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: pod, Namespace: ns},
		Spec: corev1.PodSpec{
			NodeSelector: map[string]string{node.LabelCluster: w.Name},
			Tolerations:  []corev1.Toleration{{Key: node.TaintKey, Operator: corev1.TolerationOpExists}},
			Containers:   []corev1.Container{{Name: "app", Image: "registry.k8s.io/pause:3.10"}},
		},
	}
	if _, err := l.Management.Client.CoreV1().Pods(ns).Create(ctx, proxy, metav1.CreateOptions{}); err != nil {
		b.Fatal(err)
	}
	waitRunning(b, ctx, l.Management.Client, ns, 1)
	paths := []struct {
		name    string
		cluster *lab.Cluster
	}{{"through flotilla", l.Management}, {"direct", w}}

	for i := 0; i < b.N; i++ {
		var firstLine, execTrip, throughput [2]float64
		for p, path := range paths {
			var err error
			if firstLine[p], err = medianMillis(func() (time.Duration, error) { return firstLogLine(ctx, path.cluster, ns, pod) }); err != nil {
				b.Fatalf("logs -f %s: %v", path.name, err)
			}
			if execTrip[p], err = medianMillis(func() (time.Duration, error) { return execRoundTrip(ctx, path.cluster, ns, pod) }); err != nil {
				b.Fatalf("exec %s: %v", path.name, err)
			}
			if throughput[p], err = forwardThroughput(ctx, path.cluster, ns, pod); err != nil {
				b.Fatalf("port-forward %s: %v", path.name, err)
			}
		}
		rec.metric(firstLine[0], "first-log-line-ms", "time to the first line of logs -f through flotilla, ms (median)")
		rec.metric(firstLine[1], "direct-first-log-line-ms", "time to the first line of logs -f directly in the workload cluster, ms (median)")
		rec.metric(execTrip[0], benchdoc.UnitExecMillis, "exec round trip (true) through flotilla, ms (median)")
		rec.metric(execTrip[1], benchdoc.UnitDirectExecMillis, "exec round trip (true) directly in the workload cluster, ms (median)")
		rec.metric(throughput[0], benchdoc.UnitPortForwardMiBs, fmt.Sprintf("port-forward throughput each way through flotilla, MiB/s (best of 3 x %d MiB)", forwardedMiB))
		rec.metric(throughput[1], benchdoc.UnitDirectPortForward, fmt.Sprintf("port-forward throughput each way directly in the workload cluster, MiB/s (best of 3 x %d MiB)", forwardedMiB))
		b.Logf("\n%-34s %16s %12s %8s\n%-34s %14.1fms %10.1fms %7.2fx\n%-34s %14.1fms %10.1fms %7.2fx\n%-34s %11.1fMiB/s %7.1fMiB/s %7.2fx",
			"median of "+fmt.Sprint(streamSamples)+" (port-forward: "+fmt.Sprint(forwardedMiB)+" MiB)", "through flotilla", "direct", "slower",
			"time to first log line (logs -f)", firstLine[0], firstLine[1], firstLine[0]/firstLine[1],
			"exec round trip (true)", execTrip[0], execTrip[1], execTrip[0]/execTrip[1],
			"port-forward throughput each way", throughput[0], throughput[1], throughput[1]/throughput[0])
	}
}

// medianMillis runs a timed operation streamSamples times and returns its median in milliseconds.
func medianMillis(op func() (time.Duration, error)) (float64, error) {
	var samples []time.Duration
	for range streamSamples {
		d, err := op()
		if err != nil {
			return 0, err
		}
		samples = append(samples, d)
	}
	slices.Sort(samples)
	return float64(samples[len(samples)/2].Microseconds()) / 1000, nil
}

// firstLogLine times `logs -f --tail=1` from the request to its first line.
func firstLogLine(ctx context.Context, c *lab.Cluster, ns, pod string) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	start := time.Now()
	logs, err := c.Client.CoreV1().Pods(ns).GetLogs(pod, &corev1.PodLogOptions{Follow: true, TailLines: ptr.To[int64](1)}).Stream(ctx)
	if err != nil {
		return 0, err
	}
	defer logs.Close()
	if _, err := bufio.NewReader(logs).ReadString('\n'); err != nil {
		return 0, err
	}
	return time.Since(start), nil
}

// execRoundTrip times an exec of `true` from the request to its exit status.
func execRoundTrip(ctx context.Context, c *lab.Cluster, ns, pod string) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	start := time.Now()
	if err := c.Exec(ctx, ns, pod, "app", []string{"true"}, lab.Session{Stdout: io.Discard}); err != nil {
		return 0, err
	}
	return time.Since(start), nil
}

// forwardThroughput sends forwardedMiB through a port-forward to the echo server and back, and returns MiB/s
// each way, the best of three (the first warms the connection's windows up).
func forwardThroughput(ctx context.Context, c *lab.Cluster, ns, pod string) (float64, error) {
	addr, stop, err := c.PortForward(ns, pod, 80)
	if err != nil {
		return 0, err
	}
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	var best float64
	for range 3 {
		took, err := lab.EchoThrough(ctx, addr, forwardedMiB<<20)
		if err != nil {
			return 0, err
		}
		best = max(best, forwardedMiB/took.Seconds())
	}
	return best, nil
}
