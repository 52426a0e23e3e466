package bench

import (
	"context"
	"maps"
	"slices"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

// podClock records when the benchmark first saw each pod of one namespace of one cluster bound to a node,
// Running and deleting, through a watch, so the phases of many pods are timed to the millisecond without polling
// lists of thousands of pods. key names a pod across clusters: its own UID, or for a delegate its proxy's.
type podClock struct {
	mu       sync.Mutex
	key      func(*corev1.Pod) string
	bound    map[string]time.Time
	running  map[string]time.Time
	deleting map[string]time.Time
	nodes    map[string]string // where each pod was bound
}

// startPodClock watches namespace ns of c until ctx ends.
func startPodClock(ctx context.Context, b *testing.B, c kubernetes.Interface, ns string, key func(*corev1.Pod) string) *podClock {
	b.Helper()
	pc := &podClock{key: key, bound: map[string]time.Time{}, running: map[string]time.Time{}, deleting: map[string]time.Time{}, nodes: map[string]string{}}
	factory := informers.NewSharedInformerFactoryWithOptions(c, 0, informers.WithNamespace(ns))
	watch(ctx, b, factory, factory.Core().V1().Pods().Informer(), func(obj any) {
		if pod, ok := obj.(*corev1.Pod); ok {
			pc.observe(pod, time.Now())
		}
	})
	return pc
}

func (pc *podClock) observe(pod *corev1.Pod, now time.Time) {
	k := pc.key(pod)
	if k == "" {
		return
	}
	pc.mu.Lock()
	defer pc.mu.Unlock()
	if _, seen := pc.bound[k]; !seen && pod.Spec.NodeName != "" {
		pc.bound[k], pc.nodes[k] = now, pod.Spec.NodeName
	}
	if _, seen := pc.running[k]; !seen && pod.Status.Phase == corev1.PodRunning {
		pc.running[k] = now
	}
	if _, seen := pc.deleting[k]; !seen && pod.DeletionTimestamp != nil {
		pc.deleting[k] = now
	}
}

// snapshot copies the clock's records of one phase, restricted to the pods keep accepts (all when nil).
func (pc *podClock) snapshot(phase func(*podClock) map[string]time.Time, keep func(key, node string) bool) map[string]time.Time {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	out := map[string]time.Time{}
	for k, t := range phase(pc) {
		if keep == nil || keep(k, pc.nodes[k]) {
			out[k] = t
		}
	}
	return out
}

// Running is how many pods have been seen Running.
func (pc *podClock) Running() int {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	return len(pc.running)
}

// mergeRunning is every clock's Running records in one map (their keys are distinct pods).
func mergeRunning(clocks []*podClock) map[string]time.Time {
	out := map[string]time.Time{}
	for _, pc := range clocks {
		maps.Copy(out, pc.snapshot(runningAt, nil))
	}
	return out
}

// waitRunningClocks waits until the clocks together have seen n pods Running, and returns when the last one
// was seen.
func waitRunningClocks(b *testing.B, ctx context.Context, n int, clocks ...*podClock) time.Time {
	b.Helper()
	running := 0
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 20*time.Minute, true, func(context.Context) (bool, error) {
		running = 0
		for _, pc := range clocks {
			running += pc.Running()
		}
		return running >= n, nil
	})
	if err != nil {
		b.Fatalf("%d of %d pods Running", running, n)
	}
	var last time.Time
	for _, pc := range clocks {
		pc.mu.Lock()
		for _, t := range pc.running {
			if t.After(last) {
				last = t
			}
		}
		pc.mu.Unlock()
	}
	return last
}

// spans are the durations between two recorded phases of the same pods, from (in one clock or several) to
// (in another), over the keys both have seen.
func spans(from map[string]time.Time, to ...map[string]time.Time) []time.Duration {
	var out []time.Duration
	for k, start := range from {
		for _, m := range to {
			if end, ok := m[k]; ok {
				out = append(out, end.Sub(start))
			}
		}
	}
	slices.Sort(out)
	return out
}

// percentile is the q-quantile (0..1) of sorted durations, nearest rank; zero when there are none.
func percentile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(q*float64(len(sorted))+0.5) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

// median is the middle of values, or the mean of the two middle ones; zero when there are none.
func median(values []float64) float64 {
	if len(values) == 0 {
		return 0
	}
	sorted := slices.Sorted(slices.Values(values))
	mid := len(sorted) / 2
	if len(sorted)%2 == 0 {
		return (sorted[mid-1] + sorted[mid]) / 2
	}
	return sorted[mid]
}

// The phases a podClock records, for snapshot.
func boundAt(pc *podClock) map[string]time.Time    { return pc.bound }
func runningAt(pc *podClock) map[string]time.Time  { return pc.running }
func deletingAt(pc *podClock) map[string]time.Time { return pc.deleting }

// watch hands every object informer adds or updates to record, from its first list until ctx ends.
func watch(ctx context.Context, b *testing.B, factory informers.SharedInformerFactory, informer cache.SharedIndexInformer, record func(obj any)) {
	b.Helper()
	if _, err := informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    record,
		UpdateFunc: func(_, obj any) { record(obj) },
	}); err != nil {
		b.Fatal(err)
	}
	factory.Start(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), informer.HasSynced) {
		b.Fatal("watch did not sync")
	}
}

func TestMedian(t *testing.T) {
	for _, tc := range []struct {
		values []float64
		want   float64
	}{
		{nil, 0},
		{[]float64{1.3}, 1.3},
		{[]float64{1.5, 0.5}, 1},
		{[]float64{1.5, 0.8, 1.1}, 1.1},
		{[]float64{2, 1, 4, 3}, 2.5},
	} {
		if got := median(tc.values); got != tc.want {
			t.Errorf("median(%v) = %v, want %v", tc.values, got, tc.want)
		}
	}
}
