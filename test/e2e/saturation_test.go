package e2e

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
	"k8s.io/client-go/tools/cache"

	"github.com/flotilla-io/flotilla/node"
	"github.com/flotilla-io/flotilla/test/lab"
)

// The saturated flotilla's workload client: saturationQPS requests a second, a burst of as many, for
// saturationPods delegates to create; it declares its cluster lost after saturationFailoverAfter.
const (
	saturatedCluster        = "us-west-2-1"
	saturationQPS           = 1
	saturationPods          = 20
	saturationFailoverAfter = 5 * time.Second
)

// TestSaturatedWorkloadClientKeepsClusterAlive replaces one workload cluster's flotilla with one whose
// workload client may send 1 request a second and that declares its cluster lost after 5 s without an
// answer, and scales a Deployment on that cluster from 0 to 20 replicas. Each delegate is at least one
// create, so the client's token bucket stays empty for at least (20-1)/1 = 19 s with the 20 pod workers
// queued on it: a request sharing that bucket would wait up to 20 s, twenty times the health probe's 1 s
// timeout, and the probe would fail for four times the failover delay. The health probe and the node's
// heartbeats have clients of their own: throughout, the virtual node stays Ready, is never tainted
// flotilla.io/cluster-lost, and no proxy is evicted.
func TestSaturatedWorkloadClientKeepsClusterAlive(t *testing.T) {
	ctx := testContext(t, 5*time.Minute)
	cluster := saturatedCluster
	ns := fleetNamespace(t)
	if err := shared.StopFlotilla(cluster); err != nil {
		t.Fatal(err)
	}
	// Cleanups run last first: the slow flotilla stops, the lab's own comes back, then the namespace goes
	// at its usual pace.
	t.Cleanup(func() {
		if err := shared.StartFlotilla(cluster); err != nil {
			t.Error(err)
		} else if err := shared.WaitVirtualNodeReady(context.Background(), cluster); err != nil {
			t.Error(err)
		}
	})
	slow, err := shared.AddReplica(cluster, "saturated", fmt.Sprintf("--workload-qps=%d", saturationQPS),
		fmt.Sprintf("--workload-burst=%d", saturationQPS), "--failover-after="+saturationFailoverAfter.String())
	if err != nil {
		t.Fatal(err)
	}
	if err := slow.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = slow.Stop() })
	eventually(t, time.Minute, "the slow flotilla serving "+cluster, func(ctx context.Context) (bool, string) {
		n, err := shared.Management.Client.CoreV1().Nodes().Get(ctx, cluster, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		served := slices.ContainsFunc(n.Status.Addresses, func(a corev1.NodeAddress) bool { return a.Address == slow.InternalIP })
		ready := conditionOf(n, corev1.NodeReady)
		return served && ready.Status == corev1.ConditionTrue, fmt.Sprintf("addresses %v, Ready=%s", n.Status.Addresses, ready.Status)
	})

	watching, stopWatching := context.WithCancel(ctx)
	defer stopWatching()
	beats, err := shared.WatchHeartbeats(watching, cluster)
	if err != nil {
		t.Fatal(err)
	}
	removals := watchRemovals(watching, t, ns)

	d := pauseDeploymentOn(ns, "saturate", cluster, saturationPods)
	start := time.Now()
	createDeployment(ctx, t, d)
	// Until every proxy runs, or the first lapse or removal, which fails the test below.
	var running int
	err = wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, 4*time.Minute, true, func(ctx context.Context) (bool, error) {
		if len(beats.Lapses()) > 0 || len(removals()) > 0 {
			return true, nil
		}
		pods, err := shared.Management.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, nil
		}
		running = 0
		for _, p := range pods.Items {
			if p.Status.Phase == corev1.PodRunning {
				running++
			}
		}
		return running == saturationPods, nil
	})
	took := time.Since(start)
	if lapses := beats.Lapses(); len(lapses) > 0 {
		t.Errorf("the virtual node lapsed while its workload client was saturated: %s", strings.Join(lapses, "; "))
	}
	if gone := removals(); len(gone) > 0 {
		t.Errorf("proxies evicted or deleted while the workload client was saturated: %s", strings.Join(gone, ", "))
	}
	if err != nil || running != saturationPods {
		t.Fatalf("%d of %d proxies Running after %s: %v", running, saturationPods, took, err)
	}
	t.Logf("%d proxies Running in %s through a workload client of %d requests/s", saturationPods, took.Round(time.Millisecond), saturationQPS)
	if least := time.Duration(saturationPods-saturationQPS) * time.Second / saturationQPS; took < least {
		t.Errorf("%d delegates in %s, less than the %s their creates alone need at %d requests/s: the client was not saturated, and the test shows nothing",
			saturationPods, took, least, saturationQPS)
	}
	if renewals := beats.Intervals(start, time.Now()); len(renewals) == 0 {
		t.Errorf("no Lease renewal of %s seen in %s", cluster, took)
	} else {
		t.Logf("Lease renewals meanwhile: %d, interval max %s", len(renewals), lab.Quantile(renewals, 1).Round(time.Millisecond))
	}
}

// pauseDeploymentOn is a Deployment of pause containers on one workload cluster's virtual node.
func pauseDeploymentOn(ns, name, cluster string, replicas int32) *appsv1.Deployment {
	d := regionalDeployment(ns, "", replicas)
	d.Name = name
	d.Spec.Template.Spec.NodeSelector = map[string]string{node.LabelCluster: cluster}
	d.Spec.Template.Spec.Containers = []corev1.Container{{Name: "app", Image: "registry.k8s.io/pause:3.10"}}
	return d
}

// watchRemovals records, until ctx ends, every pod of namespace ns deleted or marked for deletion; the
// function returned lists them.
func watchRemovals(ctx context.Context, t *testing.T, ns string) func() []string {
	t.Helper()
	var mu sync.Mutex
	var removed []string
	record := func(obj any) {
		if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
			obj = tomb.Obj
		}
		if p, ok := obj.(*corev1.Pod); ok {
			mu.Lock()
			defer mu.Unlock()
			removed = append(removed, p.Name)
		}
	}
	factory := informers.NewSharedInformerFactoryWithOptions(shared.Management.Client, 0, informers.WithNamespace(ns))
	if _, err := factory.Core().V1().Pods().Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		UpdateFunc: func(old, obj any) {
			if p, ok := obj.(*corev1.Pod); ok && p.DeletionTimestamp != nil && old.(*corev1.Pod).DeletionTimestamp == nil {
				record(obj)
			}
		},
		DeleteFunc: record,
	}); err != nil {
		t.Fatal(err)
	}
	factory.Start(ctx.Done())
	factory.WaitForCacheSync(ctx.Done())
	return func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), removed...)
	}
}
