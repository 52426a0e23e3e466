package bench

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/flotilla-io/flotilla/provider"
	"github.com/flotilla-io/flotilla/tenancy"
	"github.com/flotilla-io/flotilla/test/bench/benchdoc"
	"github.com/flotilla-io/flotilla/test/lab"
)

const (
	chaosReplicas = 1000
	// chaosSettle is how long after the last fault the fleet has to be whole again.
	chaosSettle = 60 * time.Second
	// chaosFreeze is how long one workload apiserver stays frozen: longer than --failover-after (20 s), so
	// its cluster is declared lost and its pods are replaced elsewhere, then comes back.
	chaosFreeze = 30 * time.Second
)

// BenchmarkChaosRollout rolls out 1,000 replicas over four clusters while, during the rollout, three
// flotilla processes of different clusters are killed (SIGKILL, started again 3 s later as a supervisor
// would), one workload apiserver is frozen for 30 s, and the management apiserver is restarted. It prints the
// time-line, then fails unless, within 60 s of the last fault, the fleet is whole: exactly 1,000 Running
// proxies and 1,000 Running delegates, one per proxy UID on the proxy's cluster, no orphaned or duplicate
// delegate, and no proxy left Pending or Terminating.
func BenchmarkChaosRollout(b *testing.B) {
	// Room for the whole Deployment on any three clusters, so losing one never leaves replicas unplaced.
	rec := record(b)
	roomy := lab.NodeAllocatable.DeepCopy()
	roomy[corev1.ResourcePods] = resource.MustParse("200")
	workloads := lab.DefaultWorkloads()
	for i := range workloads {
		workloads[i].Allocatable = roomy
	}
	l := lab.ForTest(b, lab.Options{Workloads: workloads, Flotilla: true})
	mc := l.Management.Client
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	const frozen = "eu-west-3-1"
	killed := []string{"us-west-2-0", "us-west-2-1", "eu-west-3-0"}

	for i := 0; i < b.N; i++ {
		ns := fmt.Sprintf("chaos-%d", i)
		prepareNamespace(b, ctx, mc, ns, tenancy.LabelEnabled)
		start := time.Now()
		logf := func(format string, args ...any) {
			b.Logf("+%6.2fs  %s", time.Since(start).Seconds(), fmt.Sprintf(format, args...))
		}
		if _, err := mc.AppsV1().Deployments(ns).Create(ctx, pauseDeployment(ns, "chaos", map[string]string{"app": "chaos"}, chaosReplicas), metav1.CreateOptions{}); err != nil {
			b.Fatal(err)
		}
		logf("Deployment of %d replicas created", chaosReplicas)

		for _, name := range killed {
			time.Sleep(2 * time.Second)
			if err := l.KillFlotilla(name); err != nil {
				b.Fatal(err)
			}
			logf("flotilla of %s killed", name)
			go func() {
				time.Sleep(3 * time.Second)
				if err := l.StartFlotilla(name); err != nil {
					b.Errorf("starting the flotilla of %s again: %v", name, err)
				}
			}()
		}
		if err := l.Workload(frozen).FreezeAPIServer(); err != nil {
			b.Fatal(err)
		}
		logf("apiserver of %s frozen", frozen)
		thawed := time.After(chaosFreeze)

		time.Sleep(5 * time.Second)
		if err := l.Management.KillAPIServer(); err != nil {
			b.Fatal(err)
		}
		logf("management apiserver killed")
		if err := l.Management.StartAPIServer(ctx); err != nil {
			b.Fatal(err)
		}
		logf("management apiserver ready again")

		<-thawed
		if err := l.Workload(frozen).ResumeAPIServer(); err != nil {
			b.Fatal(err)
		}
		lastFault := time.Now()
		logf("apiserver of %s resumed: the last fault", frozen)

		var state fleetState
		last := ""
		err := wait.PollUntilContextTimeout(ctx, time.Second, chaosSettle, true, func(ctx context.Context) (bool, error) {
			s, err := readFleet(ctx, l, ns)
			if err != nil {
				return false, nil // an apiserver still catching up
			}
			state = s
			if line := s.String(); line != last {
				logf("%s", line)
				last = line
			}
			return s.whole(chaosReplicas), nil
		})
		if err != nil {
			b.Fatalf("%s after the last fault the fleet is not whole: %s", chaosSettle, state)
		}
		settled := time.Since(lastFault)
		rec.metric(settled.Seconds(), benchdoc.UnitSettledAfterFaults, fmt.Sprintf("seconds from the last fault to the fleet whole again: %d Running proxies and delegates, no orphan, no duplicate (limit: %.0f)", chaosReplicas, chaosSettle.Seconds()))
		logf("whole %.1f s after the last fault", settled.Seconds())
		lab.DeleteNamespace(mc, ns)
		for _, w := range l.Workloads {
			lab.DeleteNamespace(w.Client, ns)
		}
	}
}

// fleetState counts what the invariants of the chaos run are about.
type fleetState struct {
	proxies, runningProxies, pendingProxies, terminatingProxies int
	delegates, runningDelegates                                 int
	orphans                                                     []string // delegates of no live proxy bound to their cluster
	duplicates                                                  []string // proxy UIDs with more than one delegate
}

func (s fleetState) whole(replicas int) bool {
	return s.proxies == replicas && s.runningProxies == replicas && s.pendingProxies == 0 && s.terminatingProxies == 0 &&
		s.delegates == replicas && s.runningDelegates == replicas && len(s.orphans) == 0 && len(s.duplicates) == 0
}

func (s fleetState) String() string {
	return fmt.Sprintf("proxies %d (Running %d, Pending %d, Terminating %d); delegates %d (Running %d); orphans %d %s; duplicates %d %s",
		s.proxies, s.runningProxies, s.pendingProxies, s.terminatingProxies, s.delegates, s.runningDelegates,
		len(s.orphans), sample(s.orphans), len(s.duplicates), sample(s.duplicates))
}

// sample names up to three items, for a readable line.
func sample(items []string) string {
	if len(items) == 0 {
		return ""
	}
	sort.Strings(items)
	return "[" + strings.Join(items[:min(3, len(items))], " ") + "]"
}

// readFleet lists the namespace's proxies in the management cluster and its delegates in every workload
// cluster, and checks them against each other.
func readFleet(ctx context.Context, l *lab.Lab, ns string) (fleetState, error) {
	var s fleetState
	proxies, err := l.Management.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return s, err
	}
	liveOn := map[string]string{} // proxy UID -> its virtual node, for proxies not terminating
	for _, p := range proxies.Items {
		s.proxies++
		switch {
		case p.DeletionTimestamp != nil:
			s.terminatingProxies++
		case p.Status.Phase == corev1.PodRunning:
			s.runningProxies++
		case p.Status.Phase == corev1.PodPending:
			s.pendingProxies++
		}
		if p.DeletionTimestamp == nil {
			liveOn[string(p.UID)] = p.Spec.NodeName
		}
	}
	seen := map[string]int{}
	for _, w := range l.Workloads {
		delegates, err := w.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return s, err
		}
		for _, d := range delegates.Items {
			s.delegates++
			if d.Status.Phase == corev1.PodRunning && d.DeletionTimestamp == nil {
				s.runningDelegates++
			}
			parent := d.Labels[provider.LabelParentUID]
			if seen[parent]++; seen[parent] == 2 {
				s.duplicates = append(s.duplicates, parent)
			}
			if liveOn[parent] != w.Name {
				s.orphans = append(s.orphans, w.Name+"/"+d.Name)
			}
		}
	}
	return s, nil
}
