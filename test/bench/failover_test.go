package bench

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/informers"
	"k8s.io/utils/ptr"

	"github.com/flotilla-io/flotilla/node"
	"github.com/flotilla-io/flotilla/provider"
	"github.com/flotilla-io/flotilla/tenancy"
	"github.com/flotilla-io/flotilla/test/bench/benchdoc"
	"github.com/flotilla-io/flotilla/test/lab"
)

const (
	failoverReplicas = 10
	// notReadyToleration is how long the replicas tolerate a not-ready or unreachable node: the issue's
	// promise is that such pods run elsewhere within twice that of their cluster's loss.
	notReadyToleration = 5
)

// BenchmarkFailoverTimeline freezes the workload apiserver of a cluster running every replica of a regional
// Deployment whose pods tolerate not-ready and unreachable nodes for 5 s, and prints when each phase of the
// failover was first and last seen, from the freeze: the virtual node NotReady (flotilla's probe), the
// not-ready taint (the management node lifecycle controller), the evictions (the taint manager, after the
// toleration), the replacements bound to the region's other cluster (ReplicaSet controller and scheduler),
// their delegates Running there and the proxies Running (flotilla), and the cluster-lost taint (flotilla,
// after --failover-after).
func BenchmarkFailoverTimeline(b *testing.B) {
	rec := record(b)
	const lost, other = "us-west-2-0", "us-west-2-1"
	l := lab.ForTest(b, lab.Options{Workloads: []lab.WorkloadSpec{lab.Workload(lost, "us-west-2"), lab.Workload(other, "us-west-2")}, Flotilla: true})
	mc := l.Management.Client
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	for i := 0; i < b.N; i++ {
		ns := fmt.Sprintf("failover-%d", i)
		prepareNamespace(b, ctx, mc, ns, tenancy.LabelEnabled)

		// Every replica on the cluster to lose: the other one cordoned until they run.
		setUnschedulable(b, ctx, l, other, true)
		deploy := pauseDeployment(ns, "web", map[string]string{"app": "web"}, failoverReplicas)
		spec := &deploy.Spec.Template.Spec
		spec.NodeSelector = map[string]string{corev1.LabelTopologyRegion: "us-west-2"}
		for _, key := range []string{corev1.TaintNodeNotReady, corev1.TaintNodeUnreachable} {
			spec.Tolerations = append(spec.Tolerations, corev1.Toleration{
				Key: key, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute, TolerationSeconds: ptr.To[int64](notReadyToleration),
			})
		}
		if _, err := mc.AppsV1().Deployments(ns).Create(ctx, deploy, metav1.CreateOptions{}); err != nil {
			b.Fatal(err)
		}
		proxies := startPodClock(ctx, b, mc, ns, podUID)
		waitRunningClocks(b, ctx, failoverReplicas, proxies)
		setUnschedulable(b, ctx, l, other, false)
		original := proxies.snapshot(runningAt, nil)
		delegates := startPodClock(ctx, b, l.Workload(other).Client, ns, func(p *corev1.Pod) string { return p.Labels[provider.LabelParentUID] })
		lostNode := startNodeClock(ctx, b, l, lost)

		allowed, err := l.FlotillaValues(lost, "flotilla_workload_allowed_silence_seconds", "cluster")
		if err != nil {
			b.Fatal(err)
		}
		frozen := time.Now()
		if err := l.Workload(lost).FreezeAPIServer(); err != nil {
			b.Fatal(err)
		}
		replacement := func(key, nodeName string) bool { _, old := original[key]; return !old && nodeName == other }
		if err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 3*time.Minute, true, func(context.Context) (bool, error) {
			return len(proxies.snapshot(runningAt, replacement)) >= failoverReplicas && lostNode.seen(node.LostTaintKey), nil
		}); err != nil {
			b.Fatalf("after the freeze: %d replacements Running on %s", len(proxies.snapshot(runningAt, replacement)), other)
		}
		if err := l.Workload(lost).ResumeAPIServer(); err != nil {
			b.Fatal(err)
		}

		evicted := proxies.snapshot(deletingAt, func(key, _ string) bool { _, old := original[key]; return old })
		bound := proxies.snapshot(boundAt, replacement)
		running := proxies.snapshot(runningAt, replacement)
		phases := []struct {
			what, whose string
			at          []time.Time
		}{
			{"virtual node NotReady", "flotilla: workload health probe", lostNode.at(nodeNotReady)},
			{"not-ready taint", "management node lifecycle controller", lostNode.at(corev1.TaintNodeNotReady)},
			{"evicted", fmt.Sprintf("taint manager, after the %d s toleration", notReadyToleration), values(evicted)},
			{"replacement bound to " + other, "management ReplicaSet controller and scheduler", values(bound)},
			{"delegate Running in " + other, "flotilla and the workload cluster", values(delegates.snapshot(runningAt, func(key, _ string) bool { _, ok := bound[key]; return ok }))},
			{"proxy Running", "flotilla", values(running)},
			{node.LostTaintKey + " taint", "flotilla: --failover-after", lostNode.at(node.LostTaintKey)},
		}
		b.Logf("failover time-line of %d replicas tolerating not-ready for %d s, from %s's apiserver frozen (its flotilla allowed it %.0f s of silence then):",
			failoverReplicas, notReadyToleration, lost, allowed[lost])
		var timeline []benchdoc.Phase
		for _, p := range phases {
			first, last := bounds(p.at, frozen)
			b.Logf("  %-34s first +%6.2fs  last +%6.2fs  (%s)", p.what, first.Seconds(), last.Seconds(), p.whose)
			timeline = append(timeline, benchdoc.Phase{What: p.what, Whose: p.whose, Seen: len(p.at) > 0, First: first.Seconds(), Last: last.Seconds()})
		}
		rec.timeline(lost+"'s apiserver frozen", timeline)
		_, allRunning := bounds(values(running), frozen)
		rec.metric(allRunning.Seconds(), benchdoc.UnitAllRunningSeconds,
			fmt.Sprintf("seconds from the freeze to all %d replacements Running on %s (target: %d)", failoverReplicas, other, 2*notReadyToleration))
		b.Logf("all %d replicas Running on %s %.2f s after the freeze (target: %d s)", failoverReplicas, other, allRunning.Seconds(), 2*notReadyToleration)
		rec.metric(allowed[lost], "allowed-silence-s", "seconds of silence the lost cluster's flotilla allowed its apiserver at the freeze (the probe timeout unless it stuttered)")
		lab.DeleteNamespace(mc, ns)
	}
}

// nodeNotReady is the nodeClock's key for the virtual node's Ready condition turning anything but True.
const nodeNotReady = "NotReady"

// nodeClock records when the benchmark first saw one management node NotReady and each taint on it.
type nodeClock struct {
	mu    sync.Mutex
	first map[string]time.Time
}

func startNodeClock(ctx context.Context, b *testing.B, l *lab.Lab, name string) *nodeClock {
	b.Helper()
	nc := &nodeClock{first: map[string]time.Time{}}
	factory := informers.NewSharedInformerFactoryWithOptions(l.Management.Client, 0, informers.WithTweakListOptions(func(o *metav1.ListOptions) {
		o.FieldSelector = "metadata.name=" + name
	}))
	watch(ctx, b, factory, factory.Core().V1().Nodes().Informer(), func(obj any) {
		n, ok := obj.(*corev1.Node)
		if !ok {
			return
		}
		now := time.Now()
		nc.mu.Lock()
		defer nc.mu.Unlock()
		mark := func(key string) {
			if _, seen := nc.first[key]; !seen {
				nc.first[key] = now
			}
		}
		if !lab.NodeReady(n) {
			mark(nodeNotReady)
		}
		for _, t := range n.Spec.Taints {
			mark(t.Key)
		}
	})
	return nc
}

func (nc *nodeClock) seen(key string) bool { return len(nc.at(key)) > 0 }

func (nc *nodeClock) at(key string) []time.Time {
	nc.mu.Lock()
	defer nc.mu.Unlock()
	if t, ok := nc.first[key]; ok {
		return []time.Time{t}
	}
	return nil
}

// setUnschedulable cordons or uncordons a virtual node, as kubectl does.
func setUnschedulable(b *testing.B, ctx context.Context, l *lab.Lab, name string, unschedulable bool) {
	b.Helper()
	patch := fmt.Sprintf(`{"spec":{"unschedulable":%t}}`, unschedulable)
	if _, err := l.Management.Client.CoreV1().Nodes().Patch(ctx, name, types.StrategicMergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		b.Fatal(err)
	}
}

func values(m map[string]time.Time) []time.Time {
	out := make([]time.Time, 0, len(m))
	for _, t := range m {
		out = append(out, t)
	}
	return out
}

// bounds are the earliest and latest of times, from start; zero when there are none.
func bounds(times []time.Time, start time.Time) (first, last time.Duration) {
	for i, t := range times {
		d := t.Sub(start)
		if i == 0 || d < first {
			first = d
		}
		if i == 0 || d > last {
			last = d
		}
	}
	return first, last
}
