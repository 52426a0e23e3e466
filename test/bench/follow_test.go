package bench

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"

	"github.com/flotilla-io/flotilla/node"
	"github.com/flotilla-io/flotilla/tenancy"
	"github.com/flotilla-io/flotilla/test/bench/benchdoc"
	"github.com/flotilla-io/flotilla/test/lab"
)

const (
	followedServices = 100
	podsPerService   = 10
	// followProfileSeconds is how long the CPU profile of a flotilla copying the Services runs (with
	// -flotilla-profiles): about as long as the copying takes.
	followProfileSeconds = 10
)

// BenchmarkServicesFollow times 100 Services, each selecting 10 pods spread over the four workload clusters,
// from their creation in the management cluster to all 400 copies present, and reports flotilla's API
// writes (POST, PUT, PATCH, DELETE, summed over the four processes) per copy.
//
// As with the rollout, "4" lets every process compete for every CPU, so its time through flotilla also pays
// for the management apiserver creating the sources on the CPUs that make the copies; "4-apart" gives the
// management cluster and the flotillas CPUs of their own, and the workload clusters the same CPUs on both
// paths.
func BenchmarkServicesFollow(b *testing.B) {
	for _, apart := range []bool{false, true} {
		name := fmt.Sprint(len(lab.DefaultWorkloads()))
		if apart {
			name += "-apart"
		}
		b.Run(name, func(b *testing.B) { benchmarkFollow(b, apart) })
	}
}

func benchmarkFollow(b *testing.B, apart bool) {
	rec := record(b)
	opts := lab.Options{Workloads: lab.DefaultWorkloads(), Flotilla: true}
	if apart {
		placeApart(b, &opts)
	}
	l := lab.ForTest(b, opts)
	mc := l.Management.Client
	ctx := context.Background()

	for i := 0; i < b.N; i++ {
		ns := fmt.Sprintf("follow-%d", i)
		enabled := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: map[string]string{tenancy.LabelEnabled: "true"}}}
		if _, err := mc.CoreV1().Namespaces().Create(ctx, enabled, metav1.CreateOptions{}); err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() {
			_ = mc.CoreV1().Namespaces().Delete(context.Background(), ns, metav1.DeleteOptions{})
			for _, w := range l.Workloads {
				_ = w.Client.CoreV1().Namespaces().Delete(context.Background(), ns, metav1.DeleteOptions{})
			}
		})

		// The pods first, and not timed: 100 Deployments of 10, each spread evenly over the virtual nodes.
		for s := range followedServices {
			if _, err := mc.AppsV1().Deployments(ns).Create(ctx, spreadDeployment(ns, s), metav1.CreateOptions{}); err != nil {
				b.Fatal(err)
			}
		}
		waitRunning(b, ctx, mc, ns, followedServices*podsPerService)

		// The direct path: the same Services created by hand in one workload cluster, and in all four at
		// once, which is the same work for the workload clusters as the copies. They go into the namespace of
		// the pods they select there (the delegates), under names of their own, so that each workload cluster
		// also finds their endpoints, as it does for the copies.
		start := time.Now()
		if _, err := createServices(ctx, l.Workloads[0].Client, ns, "direct-one-"); err != nil {
			b.Fatal(err)
		}
		directTime := time.Since(start)
		directAllCPU := readCPU(b, l)
		start = time.Now()
		errs := make(chan error, len(l.Workloads))
		for _, w := range l.Workloads {
			go func() {
				_, err := createServices(ctx, w.Client, ns, "direct-all-")
				errs <- err
			}()
		}
		for range l.Workloads {
			if err := <-errs; err != nil {
				b.Fatal(err)
			}
		}
		directAllTime := time.Since(start)
		directAllCPU = readCPU(b, l).since(directAllCPU)

		// When each copy first appears, to tell the management apiserver's time to create the sources
		// from flotilla's time to copy them.
		copies := &copyClock{seen: map[string]time.Time{}}
		watchCtx, stopWatches := context.WithCancel(ctx)
		defer stopWatches()
		for _, w := range l.Workloads {
			factory := informers.NewSharedInformerFactoryWithOptions(w.Client, 0, informers.WithNamespace(ns))
			watch(watchCtx, b, factory, factory.Core().V1().Services().Informer(), func(obj any) {
				if svc, ok := obj.(*corev1.Service); ok {
					copies.observe(w.Name, svc.Name, time.Now())
				}
			})
		}
		before := readFlotillas(b, l)
		profiled := profileCPU(b, l, followProfileSeconds)
		followCPU := readCPU(b, l)
		start = time.Now()
		created, err := createServices(ctx, mc, ns, copyPrefix)
		if err != nil {
			b.Fatal(err)
		}
		sourcesTime := time.Since(start)
		want := followedServices * len(l.Workloads)
		var present int
		err = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 5*time.Minute, true, func(ctx context.Context) (bool, error) {
			present = 0
			for _, w := range l.Workloads {
				svcs, err := w.Client.CoreV1().Services(ns).List(ctx, metav1.ListOptions{ResourceVersion: "0"})
				if err != nil {
					return false, nil
				}
				for _, svc := range svcs.Items {
					if strings.HasPrefix(svc.Name, copyPrefix) {
						present++
					}
				}
			}
			return present >= want, nil
		})
		took := time.Since(start)
		if err != nil {
			b.Fatalf("%d of %d Service copies after %s", present, want, took)
		}
		followCPU = readCPU(b, l).since(followCPU)
		// Let the last writes (the copies that arrived last) be counted.
		time.Sleep(2 * time.Second)
		after := readFlotillas(b, l)
		writes := after.writes("workload", before) + after.writes("management", before)
		perCopy := writes / float64(want)
		lags := copies.lags(created)
		stopWatches()
		profiled()
		rec.metric(took.Seconds(), benchdoc.UnitFollowSeconds, fmt.Sprintf("seconds from creating %d Services in the management cluster to all %d copies present", followedServices, want))
		rec.metric(directTime.Seconds(), "direct-one-cluster-s", fmt.Sprintf("seconds to create the %d Services directly in one workload cluster", followedServices))
		rec.metric(directAllTime.Seconds(), benchdoc.UnitFollowDirectSeconds, fmt.Sprintf("seconds to create them directly in all %d workload clusters at once", len(l.Workloads)))
		rec.metric(took.Seconds()/directAllTime.Seconds(), benchdoc.UnitRatio, fmt.Sprintf("through flotilla ÷ creating them directly in all %d clusters at once (1 is as fast as direct)", len(l.Workloads)))
		rec.metric(perCopy, "writes/copy", "flotilla API writes per Service copy")
		rec.metric(sourcesTime.Seconds(), "sources-s", fmt.Sprintf("seconds the management apiserver took to create the %d Services, one after another", followedServices))
		rec.metric(percentile(lags, 0.5).Seconds(), "copy-lag-p50-s", "median over the copies: seconds from their source's creation in the management cluster (its create returned) to the copy present")
		b.Logf("the management apiserver created the %d Services in %s; the copies were present after their source's create returned p50 %s p99 %s max %s",
			followedServices, sourcesTime.Round(time.Millisecond), percentile(lags, 0.5).Round(time.Millisecond),
			percentile(lags, 0.99).Round(time.Millisecond), percentile(lags, 1).Round(time.Millisecond))
		b.Logf("flotilla requests per copy by answer: workload %s; management %s",
			after.answers(before, "workload", float64(want)), after.answers(before, "management", float64(want)))
		b.Logf("CPU creating them directly in all clusters at once: %s", directAllCPU)
		b.Logf("CPU until all copies were present: %s", followCPU)
		b.Logf("%d Services x %d clusters: all %d copies present %s after creation (creating them directly: %s in one cluster, %s in all %d at once); flotilla API writes %.0f (%.2f per copy)",
			followedServices, len(l.Workloads), want, took.Round(time.Millisecond), directTime.Round(time.Millisecond),
			directAllTime.Round(time.Millisecond), len(l.Workloads), writes, perCopy)
	}
}

// copyPrefix begins the names of the Services created in the management cluster, and so of their copies.
const copyPrefix = "svc-"

// createServices creates the benchmark's Services, named prefix and a number, each selecting one
// Deployment's pods, one after another, and returns when each create returned, by name.
func createServices(ctx context.Context, c kubernetes.Interface, ns, prefix string) (map[string]time.Time, error) {
	created := map[string]time.Time{}
	for s := range followedServices {
		svc := &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("%s%03d", prefix, s)},
			Spec: corev1.ServiceSpec{Selector: map[string]string{"svc": fmt.Sprint(s)},
				Ports: []corev1.ServicePort{{Port: 80}}},
		}
		if _, err := c.CoreV1().Services(ns).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
			return nil, err
		}
		created[svc.Name] = time.Now()
	}
	return created, nil
}

// copyClock records when each Service copy was first seen, by workload cluster and name.
type copyClock struct {
	mu   sync.Mutex
	seen map[string]time.Time // "cluster/name"
}

func (cc *copyClock) observe(cluster, name string, now time.Time) {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	if _, ok := cc.seen[cluster+"/"+name]; !ok {
		cc.seen[cluster+"/"+name] = now
	}
}

// lags are, sorted, the times from each source's creation to each of its copies first seen.
func (cc *copyClock) lags(created map[string]time.Time) []time.Duration {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	var out []time.Duration
	for key, seen := range cc.seen {
		_, name, _ := strings.Cut(key, "/")
		if at, ok := created[name]; ok {
			out = append(out, seen.Sub(at))
		}
	}
	slices.Sort(out)
	return out
}

// spreadDeployment runs podsPerService pods labelled svc=<s>, spread evenly over the virtual nodes.
func spreadDeployment(ns string, s int) *appsv1.Deployment {
	labels := map[string]string{"svc": fmt.Sprint(s)}
	d := pauseDeployment(ns, fmt.Sprintf("app-%03d", s), labels, podsPerService)
	d.Spec.Template.Spec.TopologySpreadConstraints = []corev1.TopologySpreadConstraint{{
		MaxSkew: 1, TopologyKey: node.LabelCluster, WhenUnsatisfiable: corev1.DoNotSchedule,
		LabelSelector: &metav1.LabelSelector{MatchLabels: labels},
	}}
	return d
}

// waitRunning waits until n pods of the namespace are Running.
func waitRunning(b *testing.B, ctx context.Context, c kubernetes.Interface, ns string, n int) {
	b.Helper()
	var running int
	err := wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, 10*time.Minute, true, func(ctx context.Context) (bool, error) {
		pods, err := c.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{ResourceVersion: "0"})
		if err != nil {
			return false, nil
		}
		running = 0
		for _, p := range pods.Items {
			if p.Status.Phase == corev1.PodRunning {
				running++
			}
		}
		return running >= n, nil
	})
	if err != nil {
		b.Fatalf("%s: %d of %d pods Running", ns, running, n)
	}
}
