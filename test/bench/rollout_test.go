// Package bench measures flotilla beside the direct, single-cluster path, on the lab's real control
// planes. Benchmarks print numbers; they never pass or fail on speed. One also checks a safety property under
// its load (BenchmarkBogusTokenFlood: heartbeats and pod work never wait on authentication) and fails, saying
// so, when it breaks.
package bench

import (
	"cmp"
	"context"
	"flag"
	"fmt"
	"maps"
	"net/url"
	"slices"
	"strconv"
	"strings"
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
	"github.com/flotilla-io/flotilla/provider"
	"github.com/flotilla-io/flotilla/tenancy"
	"github.com/flotilla-io/flotilla/test/bench/benchdoc"
	"github.com/flotilla-io/flotilla/test/lab"
)

// fleet is one size of the like-for-like rollout: replicas spread evenly over clusters. apart puts the
// management cluster (its control plane and the flotillas) on CPUs of its own, away from the workload
// clusters' (lab.SplitCPUs), as a fleet runs it on machines of its own.
type fleet struct {
	replicas, clusters int
	apart              bool
	// pinned makes the run through flotilla one management Deployment per cluster, kept to its virtual node
	// by a nodeSelector, as the direct run has one Deployment per cluster, rather than one Deployment spread
	// over them all. A ReplicaSet's controller reads all of its pods at every sync: one ReplicaSet of 10,000
	// replicas is a load of its own, in any cluster, which the direct run, of ReplicaSets of 1,000, does not
	// carry.
	pinned bool
}

func (f fleet) String() string {
	name := fmt.Sprintf("%dx%d", f.replicas, f.clusters)
	if f.apart {
		name += "-apart"
	}
	return name
}

// BenchmarkDeploymentRollout creates the same pods directly in all workload clusters at once (one Deployment
// of replicas/clusters in each) and through flotilla (one management Deployment of replicas spread evenly over
// the virtual nodes, or one per virtual node: see fleet.pinned), in one lab, and reports the ratio of their times to all pods Running. It also reports
// flotilla's own share of the delegation path (proxy bound -> delegate Running -> proxy Running), its API
// requests per pod on each side (create -> Running -> delete), its CPU time and its memory per 2,500 pods.
//
// 1000x4 lets every process compete for every CPU: on a small machine, always busy, its ratio is mostly the CPU
// the management control plane spends on every pod a second time. The "-apart" fleets give the management
// cluster CPUs of its own, as a fleet gives it machines of its own, and leave the workload clusters the same
// CPUs in both runs: their ratio is the time flotilla and the management cluster add to a rollout.
//
// The 10,000-pod fleet runs eleven control planes; on a small machine select it alone, with
// -bench 'DeploymentRollout/10000'.
func BenchmarkDeploymentRollout(b *testing.B) {
	for _, f := range []fleet{{replicas: 1000, clusters: 4}, {replicas: 1000, clusters: 4, apart: true}, {replicas: 10000, clusters: 10, apart: true, pinned: true}} {
		b.Run(f.String(), func(b *testing.B) { benchmarkRollout(b, f) })
	}
}

func benchmarkRollout(b *testing.B, f fleet) {
	rec := record(b)
	perCluster := f.replicas / f.clusters
	// Room for every cluster's share on any one node, so the schedulers never run out of pods.
	big := lab.NodeAllocatable.DeepCopy()
	big[corev1.ResourcePods] = *resource.NewQuantity(int64(perCluster), resource.DecimalSI)
	var workloads []lab.WorkloadSpec
	for i := range f.clusters {
		region := []string{"us-west-2", "eu-west-3"}[i%2]
		w := lab.Workload(fmt.Sprintf("%s-%d", region, i/2), region)
		w.Allocatable = big
		workloads = append(workloads, w)
	}
	opts := lab.Options{Workloads: workloads, Flotilla: true}
	if f.apart {
		placeApart(b, &opts)
	}
	l := lab.ForTest(b, opts)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	// What the lab spends doing nothing (heartbeats, leases, probes), to tell it apart from what the pods
	// cost: the run through flotilla lasts longer and pays more of it.
	// The probe first: it builds its 64 MiB chase on its first start, under a second of CPU the reading at rest
	// must not count.
	restSpeed := startSpeedProbe(speedInterval)
	rest := readCPU(b, l)
	time.Sleep(restSeconds * time.Second)
	b.Logf("CPU of the lab at rest, %d s: %s", restSeconds, readCPU(b, l).since(rest))
	b.Logf("CPU time of fixed work at rest, median: %s", restSpeed.Stop())

	var ratios []float64 // one per pair of runs, direct then through flotilla
	for i := 0; i < b.N; i++ {
		// Direct: each workload cluster's own share, all at once.
		ns := fmt.Sprintf("direct-%d", i)
		var direct []*podClock
		for _, w := range l.Workloads {
			prepareNamespace(b, ctx, w.Client, ns, tenancy.LabelOpen)
			direct = append(direct, startPodClock(ctx, b, w.Client, ns, podUID))
		}
		directProfile := profileAPIServer(b, ctx, l.Workloads[0], "directly", profileSeconds(f))
		directCPU := readCPU(b, l)
		directSpeed := startSpeedProbe(speedInterval)
		directStart := time.Now()
		for _, w := range l.Workloads {
			if _, err := w.Client.AppsV1().Deployments(ns).Create(ctx, pauseDeployment(ns, "rollout", map[string]string{"app": "rollout"}, int32(perCluster)), metav1.CreateOptions{}); err != nil {
				b.Fatal(err)
			}
		}
		directTime := waitRunningClocks(b, ctx, f.replicas, direct...).Sub(directStart)
		// Taken before the namespace goes: while it is deleted, ReplicaSets still replace the pods deleted
		// under them, and those would count as more pods Running.
		directRunning := mergeRunning(direct)
		directCPU = readCPU(b, l).since(directCPU)
		directSpeeds := directSpeed.Stop()
		directProfile()
		// Gone before the run through flotilla starts, so that it does not pay for this cleanup.
		for _, w := range l.Workloads {
			lab.DeleteNamespace(w.Client, ns)
		}
		for _, w := range l.Workloads {
			if err := lab.WaitNamespaceGone(ctx, w.Client, ns); err != nil {
				b.Fatalf("direct pods of %s not gone: %v", w.Name, err)
			}
		}

		// Through flotilla: one management Deployment over every virtual node, or one per virtual node.
		ns = fmt.Sprintf("flotilla-%d", i)
		prepareNamespace(b, ctx, l.Management.Client, ns, tenancy.LabelEnabled)
		proxies := startPodClock(ctx, b, l.Management.Client, ns, podUID)
		var delegates []*podClock
		for _, w := range l.Workloads {
			delegates = append(delegates, startPodClock(ctx, b, w.Client, ns, func(p *corev1.Pod) string { return p.Labels[provider.LabelParentUID] }))
		}
		profileHeap(b, l, "before the rollout through flotilla")
		before := readFlotillas(b, l)
		serverBefore := readServer(b, ctx, l.Management)
		deployments := f.managementDeployments(ns, l.Workloads)
		cpuProfile := profileCPU(b, l, profileSeconds(f))
		apiserverProfile := profileAPIServer(b, ctx, l.Workloads[0], "through flotilla", profileSeconds(f))
		managementProfile := profileAPIServer(b, ctx, l.Management, "through flotilla", profileSeconds(f))
		flotillaCPU := readCPU(b, l)
		flotillaSpeed := startSpeedProbe(speedInterval)
		start := time.Now()
		for _, d := range deployments {
			if _, err := l.Management.Client.AppsV1().Deployments(ns).Create(ctx, d, metav1.CreateOptions{}); err != nil {
				b.Fatal(err)
			}
		}
		flotillaTime := waitRunningClocks(b, ctx, f.replicas, proxies).Sub(start)
		proxiesRunning := proxies.snapshot(runningAt, nil)
		flotillaCPU = readCPU(b, l).since(flotillaCPU)
		flotillaSpeeds := flotillaSpeed.Stop()
		running := readFlotillas(b, l)
		serverRunning := readServer(b, ctx, l.Management)
		profileHeap(b, l, "with every proxy Running")
		cpuProfile()
		apiserverProfile()
		managementProfile()
		deleteAndWaitGone(b, ctx, l, ns, deployments)
		after := readFlotillas(b, l)
		lab.DeleteNamespace(l.Management.Client, ns)

		ratio := flotillaTime.Seconds() / directTime.Seconds()
		ratios = append(ratios, ratio)
		delegateRunning := make([]map[string]time.Time, len(delegates))
		for j, d := range delegates {
			delegateRunning[j] = d.snapshot(runningAt, nil)
		}
		proxyBound := proxies.snapshot(boundAt, nil)
		toDelegate := spans(proxyBound, delegateRunning...)
		toProxy := spans(proxyBound, proxiesRunning)
		pods := float64(f.replicas)
		rec.metric(directTime.Seconds(), "direct-s", "seconds to all pods Running, created directly in every workload cluster at once (the last pair of runs)")
		rec.metric(flotillaTime.Seconds(), "flotilla-s", "seconds to all pods Running, as management Deployments through flotilla (the last pair of runs)")
		rec.metric(median(ratios), benchdoc.UnitRatio, "through flotilla ÷ direct (1 is as fast as direct), the median over the pairs of runs (-benchtime Nx for N pairs)")
		rec.metric(directCPU.busy.Seconds(), "direct-machine-cpu-s", "CPU seconds the whole machine spent until all pods were Running, directly")
		rec.metric(flotillaCPU.busy.Seconds(), "flotilla-machine-cpu-s", "CPU seconds the whole machine spent until all pods were Running, through flotilla")
		rec.metric(percentile(toDelegate, 0.5).Seconds(), "bound-to-delegate-running-p50-s", "flotilla's share, median: seconds from a proxy's binding to its delegate Running")
		rec.metric(percentile(toProxy, 0.5).Seconds(), "bound-to-proxy-running-p50-s", "flotilla's share, median: seconds from a proxy's binding to the proxy Running")
		rec.metric(percentile(toProxy, 0.99).Seconds(), "bound-to-proxy-running-p99-s", "flotilla's share, 99th percentile: seconds from a proxy's binding to the proxy Running")
		rec.metric(running.requests("management", before)/pods, "management-requests/pod", "flotilla's management API requests per pod, create -> Running")
		rec.metric(running.requests("workload", before)/pods, "workload-requests/pod", "flotilla's workload API requests per pod, create -> Running")
		rec.metric(after.writes("management", before)/pods, benchdoc.UnitManagementWrites, "flotilla's management API writes per pod, whole lifecycle create -> Running -> delete")
		rec.metric(after.writes("workload", before)/pods, "workload-writes/pod", "flotilla's workload API writes per pod, whole lifecycle create -> Running -> delete")
		rec.metric(after.unreachable(before), "unreachable-spells", "times a workload cluster was taken for unreachable (its virtual node NotReady), summed over the clusters, whole lifecycle through flotilla")
		rec.metric(after.cpu(before).Seconds(), "cpu-s", fmt.Sprintf("flotilla CPU seconds over its %d processes, whole lifecycle", f.clusters))
		rec.metric(float64(after.peakRSS()>>20), "peak-rss-MiB", "peak resident memory of the largest flotilla process, MiB")
		if i == 0 { // later pairs start from the memory the first left resident, and would grow less
			rec.metric(running.rssPer2500(before, perCluster, anonymous)/(1<<20), benchdoc.UnitMiBPer2500Pods, "anonymous resident memory growth (heap, stacks) of one flotilla per 2,500 pods it serves, MiB (the largest), in the first pair of runs")
		}
		rec.running("direct", directStart, directRunning)
		rec.running("through flotilla", start, proxiesRunning)
		b.Logf("%d pods over %d clusters to Running: directly in all clusters at once %s, through flotilla %s (ratio %.2f; pair %d of %d, median so far %.2f)",
			f.replicas, f.clusters, directTime.Round(time.Millisecond), flotillaTime.Round(time.Millisecond), ratio, i+1, b.N, median(ratios))
		b.Logf("CPU until all Running, directly: %s", directCPU)
		b.Logf("CPU until all Running, through flotilla: %s", flotillaCPU)
		b.Logf("CPU time of fixed work, median over the run (the CPUs' own speed, waits for a CPU excluded): directly %s; through flotilla %s",
			directSpeeds, flotillaSpeeds)
		b.Logf("flotilla's share, from a proxy's binding: delegate Running p50 %s p99 %s max %s; proxy Running p50 %s p99 %s max %s",
			percentile(toDelegate, 0.5).Round(time.Millisecond), percentile(toDelegate, 0.99).Round(time.Millisecond), percentile(toDelegate, 1).Round(time.Millisecond),
			percentile(toProxy, 0.5).Round(time.Millisecond), percentile(toProxy, 0.99).Round(time.Millisecond), percentile(toProxy, 1).Round(time.Millisecond))
		b.Logf("flotilla requests per pod, create -> Running: management %.2f (writes %.2f), workload %.2f (writes %.2f); whole lifecycle create -> Running -> delete: management writes %.2f, workload writes %.2f",
			running.requests("management", before)/pods, running.writes("management", before)/pods,
			running.requests("workload", before)/pods, running.writes("workload", before)/pods,
			after.writes("management", before)/pods, after.writes("workload", before)/pods)
		b.Logf("where proxies' statuses waited, mean from the rollout's start to all Running: %s", running.meanWaits(before))
		b.Logf("the management apiserver, mean from the rollout's start to all Running: %s", serverRunning.means(serverBefore))
		b.Logf("management writes per pod by answer, create -> Running: %s; whole lifecycle: %s",
			running.answers(before, "management", pods, writeMethods...), after.answers(before, "management", pods, writeMethods...))
		b.Logf("workload requests per pod by answer, create -> Running: %s", running.answers(before, "workload", pods))
		b.Logf("proxy status writes per pod by what they change, create -> Running: %s; whole lifecycle: %s",
			running.statusWrites(before, pods), after.statusWrites(before, pods))
		b.Logf("workload clusters taken for unreachable (NotReady spells), summed over the clusters: create -> Running %.0f, whole lifecycle %.0f",
			running.unreachable(before), after.unreachable(before))
		b.Logf("flotilla CPU %.1f s over %d processes (%.1f ms per pod); peak RSS of the largest process %d MiB; resident growth per 2,500 pods %.0f MiB anonymous (heap, stacks), %.0f MiB with the program's code paged in",
			after.cpu(before).Seconds(), f.clusters, after.cpu(before).Seconds()*1000/pods, after.peakRSS()>>20,
			running.rssPer2500(before, perCluster, anonymous)/(1<<20), running.rssPer2500(before, perCluster, resident)/(1<<20))
	}
}

// placeApart puts the management cluster (its control plane and etcd) and the flotillas on CPUs of their own,
// away from the workload clusters', as a fleet runs it on machines of its own, and skips the benchmark on a
// machine of one CPU.
func placeApart(b *testing.B, opts *lab.Options) {
	b.Helper()
	var ok bool
	if opts.ManagementCPUs, opts.WorkloadCPUs, ok = lab.SplitCPUs(); !ok {
		b.Skip("one CPU cannot be divided between the management and the workload clusters")
	}
	b.Logf("management cluster (its etcd too) and flotilla on CPUs %s, workload clusters on CPUs %s, their etcd on any", opts.ManagementCPUs, opts.WorkloadCPUs)
}

// speedInterval is how often a rollout's speedProbe times its work on each CPU.
const speedInterval = 500 * time.Millisecond

// restSeconds is how long the rollout reads the CPU of the lab at rest before its first run.
const restSeconds = 10

// profileDir, when set, is where the rollout writes profiles of the first workload cluster's flotilla (its
// CPU during the rollout through flotilla and its heap once every proxy is Running), of a workload
// kube-apiserver in both phases and of the management kube-apiserver through flotilla, and the follow benchmark a CPU profile of that flotilla while it copies. Read them with
// `go tool pprof -top FILE`.
var profileDir = flag.String("flotilla-profiles", "", "folder for profiles taken during BenchmarkDeploymentRollout and BenchmarkServicesFollow (none if empty)")

// profileSeconds is how long the CPU profiles of a rollout run: at least as long as the rollout through
// flotilla takes on a small machine.
func profileSeconds(f fleet) int { return max(60, f.replicas/f.clusters/4) }

// profileCPU starts a CPU profile of the first workload cluster's flotilla and returns a function that waits
// for it and prints its path; both do nothing without -flotilla-profiles.
func profileCPU(b *testing.B, l *lab.Lab, seconds int) (wait func()) {
	name := l.Workloads[0].Name
	return startProfile(b, name+"'s flotilla", seconds, func(query url.Values) (string, error) {
		return l.FlotillaProfile(name, "profile", query, *profileDir)
	})
}

// profileAPIServer is profileCPU of a cluster's kube-apiserver, in one phase of the rollout. Taken in
// both, for as long as the longer phase lasts, the two cover each phase whole and the same time at rest:
// for a workload apiserver their difference is what it does for flotilla's delegates that it does not for pods
// created directly.
func profileAPIServer(b *testing.B, ctx context.Context, c *lab.Cluster, phase string, seconds int) (wait func()) {
	return startProfile(b, c.Name+"'s kube-apiserver "+phase, seconds, func(query url.Values) (string, error) {
		return c.Profile(ctx, "profile", query, *profileDir)
	})
}

// startProfile starts take, a CPU profile of seconds, in the background, and returns a function that waits
// for it and prints the path of its file; both do nothing without -flotilla-profiles.
func startProfile(b *testing.B, whose string, seconds int, take func(query url.Values) (path string, err error)) (wait func()) {
	if *profileDir == "" {
		return func() {}
	}
	done := make(chan struct{})
	var path string
	var err error
	go func() {
		defer close(done)
		path, err = take(url.Values{"seconds": {strconv.Itoa(seconds)}})
	}()
	return func() {
		<-done
		if err != nil {
			b.Fatalf("CPU profile of %s: %v", whose, err)
		}
		b.Logf("CPU profile of %s, %d s: %s", whose, seconds, path)
	}
}

// profileHeap writes a heap profile of the first workload cluster's flotilla, taken after a garbage
// collection, and prints its path and when it was taken; nothing without -flotilla-profiles. The growth
// of its in-use space between two is what the pods cost it, without the heap's headroom.
func profileHeap(b *testing.B, l *lab.Lab, when string) {
	if *profileDir == "" {
		return
	}
	name := l.Workloads[0].Name
	path, err := l.FlotillaProfile(name, "heap", url.Values{"gc": {"1"}}, *profileDir)
	if err != nil {
		b.Fatalf("heap profile of %s's flotilla: %v", name, err)
	}
	b.Logf("heap profile of %s's flotilla %s: %s", name, when, path)
}

// podUID keys a pod by its own UID.
func podUID(p *corev1.Pod) string { return string(p.UID) }

// prepareNamespace creates namespace ns labelled tenancyLabel=true (tenancy.LabelEnabled in the management
// cluster, tenancy.LabelOpen in a workload cluster) and waits for its default ServiceAccount, without which
// no pod can be created; none of it is timed.
func prepareNamespace(b *testing.B, ctx context.Context, c kubernetes.Interface, ns, tenancyLabel string) {
	b.Helper()
	namespace := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: map[string]string{tenancyLabel: "true"}}}
	if _, err := c.CoreV1().Namespaces().Create(ctx, namespace, metav1.CreateOptions{}); err != nil {
		b.Fatal(err)
	}
	if err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		_, err := c.CoreV1().ServiceAccounts(ns).Get(ctx, "default", metav1.GetOptions{})
		return err == nil, nil
	}); err != nil {
		b.Fatal(err)
	}
}

// deleteAndWaitGone deletes the management Deployments of namespace ns and waits until neither their proxies
// nor their delegates are left, which ends a pod's lifecycle for flotilla.
func deleteAndWaitGone(b *testing.B, ctx context.Context, l *lab.Lab, ns string, deployments []*appsv1.Deployment) {
	b.Helper()
	for _, d := range deployments {
		if err := l.Management.Client.AppsV1().Deployments(ns).Delete(ctx, d.Name, metav1.DeleteOptions{PropagationPolicy: ptr.To(metav1.DeletePropagationBackground)}); err != nil {
			b.Fatal(err)
		}
	}
	clients := []kubernetes.Interface{l.Management.Client}
	for _, w := range l.Workloads {
		clients = append(clients, w.Client)
	}
	left, first, profiled := 0, 0, false
	err := wait.PollUntilContextTimeout(ctx, time.Second, 20*time.Minute, true, func(ctx context.Context) (bool, error) {
		left = 0
		for _, c := range clients {
			pods, err := c.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{ResourceVersion: "0"})
			if err != nil {
				return false, nil
			}
			left += len(pods.Items)
		}
		// Deletion is when a flotilla's memory peaks: a heap profile halfway through shows what it holds then.
		if first == 0 {
			first = left
		} else if !profiled && left <= first/2 {
			profileHeap(b, l, "with half the proxies and delegates deleted")
			profiled = true
		}
		return left == 0, nil
	})
	if err != nil {
		b.Fatalf("%d proxies and delegates left after deleting the Deployment", left)
	}
}

// flotillaReadings are every flotilla's request counts and resource usage at one moment.
type flotillaReadings map[string]flotillaReading

type flotillaReading struct {
	requests, writes map[string]float64 // by cluster role
	// answers counts each apiserver's answers by method and code ("PUT 409"), by cluster role.
	answers map[string]map[string]float64
	// statuses counts the proxy status writes by what they change (flotilla_proxy_status_writes_total).
	statuses map[string]float64
	// unreachable counts the times the workload cluster was taken for unreachable
	// (flotilla_workload_unreachable_total): its virtual node's NotReady spells.
	unreachable float64
	// waits are the totals (sum of seconds, count) of the histograms of statusWaits.
	waits map[string][2]float64
	usage lab.Usage
}

// statusWaits are where a proxy's status waits on its way from the delegate to the management apiserver, by
// the flotilla's own histograms: its status queue (before virtual-kubelet's, which has none), its management
// client's rate limiter, and the management apiserver's answer to its status writes (PUT).
var statusWaits = []struct {
	what, family string
	labels       map[string]string
}{
	{"flotilla's status queue", "workqueue_queue_duration_seconds", map[string]string{"name": "flotilla-statuses"}},
	{"its management client's rate limiter", "rest_client_rate_limiter_duration_seconds", nil},
	{"the management apiserver's answer to PUT", "rest_client_request_duration_seconds", map[string]string{"verb": "PUT"}},
}

// cpuReading is the CPU time the machine and each of the lab's components spent, up to a moment or (after
// since) over a phase, with the phase's length.
type cpuReading struct {
	at         time.Time
	wall, busy time.Duration
	byCore     []time.Duration // busy, core by core
	components map[string]time.Duration
}

func readCPU(b *testing.B, l *lab.Lab) cpuReading {
	b.Helper()
	busy, byCore, err := lab.MachineCPU()
	if err != nil {
		b.Fatal(err)
	}
	components, err := l.CPUByComponent()
	if err != nil {
		b.Fatal(err)
	}
	return cpuReading{at: time.Now(), busy: busy, byCore: byCore, components: components}
}

func (now cpuReading) since(then cpuReading) cpuReading {
	out := cpuReading{wall: now.at.Sub(then.at), busy: now.busy - then.busy, components: map[string]time.Duration{}}
	for k, v := range now.components {
		out.components[k] = v - then.components[k]
	}
	for i, v := range now.byCore {
		if i < len(then.byCore) {
			out.byCore = append(out.byCore, v-then.byCore[i])
		}
	}
	return out
}

// String says how busy the machine was over the phase, and the components' shares, largest first.
func (r cpuReading) String() string {
	names := slices.SortedFunc(maps.Keys(r.components), func(a, b string) int { return cmp.Compare(r.components[b], r.components[a]) })
	var parts []string
	var lab time.Duration
	for _, name := range names {
		lab += r.components[name]
		if r.components[name] >= r.busy/100 {
			parts = append(parts, fmt.Sprintf("%s %.1f", name, r.components[name].Seconds()))
		}
	}
	parts = append(parts, fmt.Sprintf("outside the lab (this benchmark, ...) %.1f", (r.busy-lab).Seconds()))
	var cores []string
	for i, busy := range r.byCore {
		cores = append(cores, fmt.Sprintf("%d %.0f%%", i, 100*busy.Seconds()/r.wall.Seconds()))
	}
	available := r.wall.Seconds() * float64(len(r.byCore))
	return fmt.Sprintf("machine busy %.1f of %.1f core-seconds (%.0f%%; by core %s); by component, core-seconds: %s",
		r.busy.Seconds(), available, 100*r.busy.Seconds()/available, strings.Join(cores, ", "), strings.Join(parts, ", "))
}

// serverHistograms are what the management apiserver says of its own time, from its /metrics: how long it
// took to serve a status write, how long requests waited for a seat in each API Priority and Fairness
// priority level and then ran, and how long each kind of etcd operation took. They tell a management
// apiserver that is short of seats (its flags, its FlowSchemas) from one short of CPU or storage.
var serverHistograms = []struct {
	what, family string
	labels       map[string]string
	by           string
}{
	{"pod status PUT served in", "apiserver_request_duration_seconds", map[string]string{"verb": "PUT", "resource": "pods", "subresource": "status"}, ""},
	{"waited for a seat, by priority level", "apiserver_flowcontrol_request_wait_duration_seconds", nil, "priority_level"},
	{"ran once seated, by priority level", "apiserver_flowcontrol_request_execution_seconds", nil, "priority_level"},
	{"etcd, by operation", "etcd_request_duration_seconds", nil, "operation"},
}

// serverReading holds the totals (sum of seconds, count) of serverHistograms, by histogram and group.
type serverReading map[string]map[string][2]float64

func readServer(b *testing.B, ctx context.Context, c *lab.Cluster) serverReading {
	b.Helper()
	families, err := c.Metrics(ctx)
	if err != nil {
		b.Fatal(err)
	}
	out := serverReading{}
	for _, h := range serverHistograms {
		out[h.what] = lab.HistogramTotalsBy(families, h.family, h.labels, h.by)
	}
	return out
}

// means says each of serverHistograms' mean since, group by group, for groups with 1% of its samples or
// more.
func (now serverReading) means(since serverReading) string {
	var out []string
	for _, h := range serverHistograms {
		growth := map[string][2]float64{}
		var total float64
		for group, t := range now[h.what] {
			was := since[h.what][group]
			growth[group] = [2]float64{t[0] - was[0], t[1] - was[1]}
			total += t[1] - was[1]
		}
		var parts []string
		for _, group := range slices.Sorted(maps.Keys(growth)) {
			sum, count := growth[group][0], growth[group][1]
			if count == 0 || count < total/100 {
				continue
			}
			mean := time.Duration(sum / count * float64(time.Second)).Round(time.Millisecond)
			parts = append(parts, strings.TrimSpace(fmt.Sprintf("%s %s (%.0f)", group, mean, count)))
		}
		out = append(out, h.what+" "+strings.Join(parts, ", "))
	}
	return strings.Join(out, "; ")
}

var writeMethods = []string{"POST", "PUT", "PATCH", "DELETE"}

func readFlotillas(b *testing.B, l *lab.Lab) flotillaReadings {
	b.Helper()
	out := flotillaReadings{}
	for _, w := range l.Workloads {
		r := flotillaReading{requests: map[string]float64{}, writes: map[string]float64{}}
		for _, role := range []string{"management", "workload"} {
			var err error
			if r.requests[role], err = l.FlotillaRequests(w.Name, role); err != nil {
				b.Fatal(err)
			}
			if r.writes[role], err = l.FlotillaRequests(w.Name, role, writeMethods...); err != nil {
				b.Fatal(err)
			}
		}
		var err error
		r.answers = map[string]map[string]float64{}
		for _, role := range []string{"management", "workload"} {
			if r.answers[role], err = l.FlotillaResponses(w.Name, role); err != nil {
				b.Fatal(err)
			}
		}
		if r.statuses, err = l.FlotillaValues(w.Name, "flotilla_proxy_status_writes_total", "change"); err != nil {
			b.Fatal(err)
		}
		spells, err := l.FlotillaValues(w.Name, "flotilla_workload_unreachable_total", "cluster")
		if err != nil {
			b.Fatal(err)
		}
		r.unreachable = spells[w.Name]
		if r.waits, err = readWaits(l, w.Name); err != nil {
			b.Fatal(err)
		}
		if r.usage, err = l.FlotillaUsage(w.Name); err != nil {
			b.Fatal(err)
		}
		out[w.Name] = r
	}
	return out
}

func (now flotillaReadings) requests(role string, since flotillaReadings) float64 {
	return now.sum(since, func(r flotillaReading) float64 { return r.requests[role] })
}

func (now flotillaReadings) writes(role string, since flotillaReadings) float64 {
	return now.sum(since, func(r flotillaReading) float64 { return r.writes[role] })
}

// unreachable is how many times since a workload cluster was taken for unreachable, over all of them.
func (now flotillaReadings) unreachable(since flotillaReadings) float64 {
	return now.sum(since, func(r flotillaReading) float64 { return r.unreachable })
}

// sum is the growth of one reading since, summed over the flotillas.
func (now flotillaReadings) sum(since flotillaReadings, of func(flotillaReading) float64) float64 {
	var total float64
	for name, r := range now {
		total += of(r) - of(since[name])
	}
	return total
}

// readWaits reads the totals of statusWaits from a flotilla's /metrics.
func readWaits(l *lab.Lab, name string) (map[string][2]float64, error) {
	families, err := l.ScrapeFlotilla(name)
	if err != nil {
		return nil, err
	}
	host, err := lab.APIServerHost(families, "management")
	if err != nil {
		return nil, err
	}
	waits := map[string][2]float64{}
	for _, w := range statusWaits {
		labels := map[string]string{}
		maps.Copy(labels, w.labels)
		if strings.HasPrefix(w.family, "rest_client_") {
			labels["host"] = host
		}
		sum, count := lab.HistogramTotals(families, w.family, labels)
		waits[w.what] = [2]float64{sum, count}
	}
	return waits, nil
}

// meanWaits says the mean of each of statusWaits since, over every flotilla.
func (now flotillaReadings) meanWaits(since flotillaReadings) string {
	var out []string
	for _, w := range statusWaits {
		sum := now.sum(since, func(r flotillaReading) float64 { return r.waits[w.what][0] })
		count := now.sum(since, func(r flotillaReading) float64 { return r.waits[w.what][1] })
		mean := time.Duration(0)
		if count > 0 {
			mean = time.Duration(sum / count * float64(time.Second))
		}
		out = append(out, fmt.Sprintf("%s %s (%.0f samples)", w.what, mean.Round(time.Millisecond), count))
	}
	return strings.Join(out, ", ")
}

// answers is the growth since of an apiserver's answers to flotilla (role "management" or "workload"), by
// method and code, per pod, for the given methods (all if none): which requests a lifecycle costs, and how
// many of them were refused.
func (now flotillaReadings) answers(since flotillaReadings, role string, pods float64, methods ...string) string {
	return now.breakdown(since, pods, func(r flotillaReading) map[string]float64 { return r.answers[role] }, func(k string) bool {
		method, _, _ := strings.Cut(k, " ")
		return len(methods) == 0 || slices.Contains(methods, method)
	})
}

// statusWrites is the growth since of the flotillas' proxy status writes, by what they change, per pod: which
// of them a pod's start and end need, and which an unsteady cluster or slow delegate adds.
func (now flotillaReadings) statusWrites(since flotillaReadings, pods float64) string {
	return now.breakdown(since, pods, func(r flotillaReading) map[string]float64 { return r.statuses }, func(string) bool { return true })
}

// breakdown is the growth since of counts kept by key (of reads them from a reading), summed over the
// flotillas, per pod, for the keys keep accepts that grew.
func (now flotillaReadings) breakdown(since flotillaReadings, pods float64, of func(flotillaReading) map[string]float64, keep func(string) bool) string {
	keys := map[string]bool{}
	for _, r := range now {
		for k := range of(r) {
			keys[k] = keep(k)
		}
	}
	var out []string
	for _, k := range slices.Sorted(maps.Keys(keys)) {
		if !keys[k] {
			continue
		}
		if n := now.sum(since, func(r flotillaReading) float64 { return of(r)[k] }); n > 0 {
			out = append(out, fmt.Sprintf("%s %.2f", k, n/pods))
		}
	}
	return strings.Join(out, ", ")
}

func (now flotillaReadings) cpu(since flotillaReadings) time.Duration {
	var sum time.Duration
	for name, r := range now {
		sum += r.usage.CPU - since[name].usage.CPU
	}
	return sum
}

func (now flotillaReadings) peakRSS() int64 {
	var peak int64
	for _, r := range now {
		peak = max(peak, r.usage.PeakRSS)
	}
	return peak
}

// rssPer2500 is the largest growth of one process's memory since, as memory reads it from lab.Usage (anonymous
// or resident), scaled from the pods it serves to 2,500. The anonymous growth is what the pods cost; the rest
// of the resident growth is the program's code paged in as the rollout first runs it, once.
func (now flotillaReadings) rssPer2500(since flotillaReadings, podsEach int, memory func(lab.Usage) int64) float64 {
	var worst float64
	for name, r := range now {
		worst = max(worst, float64(memory(r.usage)-memory(since[name].usage)))
	}
	return worst / float64(podsEach) * 2500
}

// anonymous and resident read a process's anonymous and whole resident memory, for rssPer2500.
var (
	anonymous = func(u lab.Usage) int64 { return u.Anonymous }
	resident  = func(u lab.Usage) int64 { return u.Resident }
)

// managementDeployments are the Deployments of the run through flotilla: one of all the replicas, spread
// evenly over the virtual nodes, or, pinned, one per workload cluster of its share, on its virtual node.
func (f fleet) managementDeployments(ns string, workloads []*lab.Cluster) []*appsv1.Deployment {
	if !f.pinned {
		d := pauseDeployment(ns, "rollout", map[string]string{"app": "rollout"}, int32(f.replicas))
		d.Spec.Template.Spec.TopologySpreadConstraints = []corev1.TopologySpreadConstraint{{
			MaxSkew: 1, TopologyKey: corev1.LabelHostname, WhenUnsatisfiable: corev1.DoNotSchedule,
			LabelSelector: d.Spec.Selector,
		}}
		return []*appsv1.Deployment{d}
	}
	var out []*appsv1.Deployment
	for _, w := range workloads {
		d := pauseDeployment(ns, "rollout-"+w.Name, map[string]string{"app": "rollout-" + w.Name}, int32(f.replicas/f.clusters))
		d.Spec.Template.Spec.NodeSelector = map[string]string{node.LabelCluster: w.Name}
		out = append(out, d)
	}
	return out
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
