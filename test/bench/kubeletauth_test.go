package bench

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/flotilla-io/flotilla/node"
	"github.com/flotilla-io/flotilla/test/lab"
)

const (
	// bogusTokens is the flood: that many requests at once, each with a token of its own.
	bogusTokens = 5000
	// quietSpell is how long the heartbeats are watched without a flood: four Lease renewals at least.
	quietSpell = 45 * time.Second
	// leaseRenewal is virtual-kubelet's Lease renew interval (a quarter of its 40 s lease, as a kubelet's);
	// leaseSlack what a renewal may lag behind it before it counts as late.
	leaseRenewal, leaseSlack = 10 * time.Second, 3 * time.Second
	// podSyncLimit is how long a proxy pod may take to Running during the flood before pod work counts as
	// held up by authentication (a quiet one takes a second or two).
	podSyncLimit = 15 * time.Second
)

// BenchmarkBogusTokenFlood sends 5,000 requests at once to one flotilla's kubelet API, each with a bogus
// token of its own (so each costs a TokenReview), and prints, beside a quiet spell of the same watch: the
// virtual node's Lease renewal intervals (max, p50), how long a proxy pod created meanwhile takes to Running,
// the flood's duration and answers, the management apiserver's TokenReview rate, and flotilla's CPU time and
// peak memory. Authentication has a management client of its own, so heartbeats and pod work never wait on
// it: the benchmark fails, saying so, if the node is ever not Ready, a renewal comes later than its
// interval plus 3 s, or the pod takes longer than 15 s.
func BenchmarkBogusTokenFlood(b *testing.B) {
	rec := record(b)
	l := lab.ForTest(b, lab.Options{Workloads: []lab.WorkloadSpec{lab.Workload("us-west-2-0", "us-west-2")}, Flotilla: true})
	cluster := l.Workloads[0].Name
	mc := l.Management.Client
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	beats, err := l.WatchHeartbeats(ctx, cluster)
	if err != nil {
		b.Fatal(err)
	}
	const ns = "flood"
	lab.Namespace(b, mc, ns)

	for i := 0; i < b.N; i++ {
		quietStart := time.Now()
		quietPod := timeToRunning(b, ctx, mc, ns, fmt.Sprintf("quiet-%d", i), cluster)
		time.Sleep(time.Until(quietStart.Add(quietSpell)))
		quietIntervals := beats.Intervals(quietStart, time.Now())

		reviewsBefore, usageBefore := floodCost(b, ctx, l, cluster)
		flooded := make(chan lab.Flood, 1)
		go func() {
			f, err := l.FloodKubeletAPI(ctx, cluster, bogusTokens)
			if err != nil {
				b.Error(err)
			}
			flooded <- f
		}()
		time.Sleep(5 * time.Second) // well into the flood: every connection is open, the reviews queue
		floodPod := timeToRunning(b, ctx, mc, ns, fmt.Sprintf("flood-%d", i), cluster)
		f := <-flooded
		floodTime := f.End.Sub(f.Start)
		reviewsAfter, usageAfter := floodCost(b, ctx, l, cluster)
		// The renewal due last during the flood may come just after it: wait for it, and count it.
		time.Sleep(leaseRenewal + leaseSlack)
		floodIntervals := beats.Intervals(f.Start, f.End.Add(leaseRenewal+leaseSlack))

		reviewRate := (reviewsAfter - reviewsBefore) / floodTime.Seconds()
		rec.metric(floodTime.Seconds(), "flood-s", fmt.Sprintf("seconds until all %d requests with bogus tokens were answered", bogusTokens))
		rec.metric(reviewRate, "tokenreviews/s", "TokenReviews per second the flood cost the management apiserver")
		rec.metric(maxOf(quietIntervals).Seconds(), "quiet-renewal-max-s", "longest interval between the virtual node's Lease renewals without a flood, seconds")
		rec.metric(maxOf(floodIntervals).Seconds(), "flood-renewal-max-s", fmt.Sprintf("the same during the flood, seconds (limit: %.0f)", (leaseRenewal+leaseSlack).Seconds()))
		rec.metric(quietPod.Seconds(), "quiet-pod-running-s", "seconds for a proxy pod to Running without a flood")
		rec.metric(floodPod.Seconds(), "flood-pod-running-s", fmt.Sprintf("seconds for a proxy pod created during the flood to Running (limit: %.0f)", podSyncLimit.Seconds()))
		fmt.Printf("quiet: %d Lease renewals over %s, interval max %s p50 %s; a proxy pod Running in %s\n",
			len(quietIntervals), quietSpell, round(maxOf(quietIntervals)), round(lab.Quantile(quietIntervals, 0.5)), round(quietPod))
		fmt.Printf("flood: %d requests with bogus tokens at once, all answered in %s (%s); %.0f TokenReviews (%.1f per second)\n",
			bogusTokens, round(floodTime), answers(f), reviewsAfter-reviewsBefore, reviewRate)
		fmt.Printf("flood: %d Lease renewals, interval max %s p50 %s; a proxy pod created 5 s in Running in %s\n",
			len(floodIntervals), round(maxOf(floodIntervals)), round(lab.Quantile(floodIntervals, 0.5)), round(floodPod))
		fmt.Printf("flotilla during the flood: %s CPU, peak RSS %d MiB (before it %d MiB)\n",
			round(usageAfter.CPU-usageBefore.CPU), usageAfter.PeakRSS>>20, usageBefore.PeakRSS>>20)

		// Safety, not speed: a flood of bogus tokens must not cost the node its heartbeat or hold up pods.
		if lapses := beats.Lapses(); len(lapses) > 0 {
			b.Errorf("the virtual node lapsed: %s", strings.Join(lapses, "; "))
		}
		for what, intervals := range map[string][]time.Duration{"quiet": quietIntervals, "flood": floodIntervals} {
			if len(intervals) < 2 || maxOf(intervals) > leaseRenewal+leaseSlack {
				b.Errorf("%s: Lease renewal intervals %v; want at least 2, none above %s", what, intervals, leaseRenewal+leaseSlack)
			}
		}
		if floodPod > podSyncLimit {
			b.Errorf("flood: a proxy pod took %s to Running (quiet: %s); want at most %s", round(floodPod), round(quietPod), podSyncLimit)
		}
		// Every answer refuses the token; a request that got no answer at all (a connection the machine could
		// not open) is counted in the answers printed above, not held against flotilla.
		if len(f.Statuses) != 1 || f.Statuses[http.StatusUnauthorized] == 0 {
			b.Errorf("flood: answers %s; want 401 only", answers(f))
		}
	}
}

// floodCost reads what a flood costs, so far: the management apiserver's TokenReviews and the flotilla of
// cluster's CPU time and memory.
func floodCost(b *testing.B, ctx context.Context, l *lab.Lab, cluster string) (tokenReviews float64, flotilla lab.Usage) {
	b.Helper()
	tokenReviews, err := l.Management.Requests(ctx, "tokenreviews", "POST")
	if err != nil {
		b.Fatal(err)
	}
	if flotilla, err = l.FlotillaUsage(cluster); err != nil {
		b.Fatal(err)
	}
	return tokenReviews, flotilla
}

// timeToRunning creates a pod on cluster's virtual node and returns how long its proxy took to Running.
func timeToRunning(b *testing.B, ctx context.Context, mc kubernetes.Interface, ns, name, cluster string) time.Duration {
	b.Helper()
	running, err := mc.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		b.Fatal(err)
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: corev1.PodSpec{
			NodeSelector: map[string]string{node.LabelCluster: cluster},
			Containers:   []corev1.Container{{Name: "app", Image: "registry.k8s.io/pause:3.10"}},
			Tolerations:  []corev1.Toleration{{Key: node.TaintKey, Operator: corev1.TolerationOpExists}},
		},
	}
	start := time.Now()
	if _, err := mc.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		b.Fatal(err)
	}
	waitRunning(b, ctx, mc, ns, len(running.Items)+1)
	return time.Since(start)
}

func answers(f lab.Flood) string {
	var out []string
	for code, n := range f.Statuses {
		out = append(out, fmt.Sprintf("%d × %d", n, code))
	}
	for err, n := range f.Errors {
		out = append(out, fmt.Sprintf("%d × %s", n, err))
	}
	return strings.Join(out, ", ")
}

func maxOf(ds []time.Duration) time.Duration { return lab.Quantile(ds, 1) }

func round(d time.Duration) time.Duration { return d.Round(time.Millisecond) }
