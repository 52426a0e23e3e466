package provider

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	flotillanode "github.com/flotilla-io/flotilla/node"
)

// TestLostClusterShowsOnProxies: while the virtual node is not Ready (its workload apiserver frozen here),
// Running proxies stay Running but show PodReady and ContainersReady False, reason ClusterNotReady, naming
// the cluster, whether the provider's delegate cache had synced before (it serves the last known status) or
// never could (it starts during the outage). Reporting again writes nothing. Once the node is Ready again,
// the proxies show their delegates' status again. A NotReady shorter than notReadyGrace shows on none, and
// ends with the proxies the management node lifecycle controller marked meanwhile Ready again.
func TestLostClusterShowsOnProxies(t *testing.T) {
	// synced's provider runs before the outage, unsynced's starts during it.
	synced, unsynced := newHarness(t), newHarness(t)
	runningProxy := func(h *harness) *corev1.Pod {
		proxy := h.bind(h.newProxy("web-1"))
		h.running(h.createDelegate(proxy, nil))
		proxy = h.setProxyStatus(proxy, h.status(proxy))
		if !podReady(proxy) {
			t.Fatalf("proxy %s/%s before the outage: %+v, want Running and Ready", proxy.Namespace, proxy.Name, proxy.Status)
		}
		return proxy
	}
	syncedProxy, unsyncedProxy := runningProxy(synced), runningProxy(unsynced)
	run := func(h *harness) {
		ctx, cancel := context.WithCancel(h.ctx)
		done := make(chan error, 1)
		go func() { done <- h.p.Run(ctx) }()
		t.Cleanup(func() { cancel(); <-done })
	}
	run(synced)
	synced.poll("the delegate cache synced", func() (bool, error) { return synced.p.informer.HasSynced(), nil })
	drainNotified(synced)

	// A node NotReady for less than notReadyGrace (one probe answered late) shows on no proxy. The management
	// cluster's node lifecycle controller marks every pod of a node that turns NotReady not ready all the same
	// (within its --node-monitor-period, 1 s in the lab), as here: once the node is Ready again, the proxy shows
	// its delegate, Ready, again.
	unreachable := corev1.NodeCondition{Type: corev1.NodeReady, Status: corev1.ConditionFalse, Reason: flotillanode.ReasonClusterUnreachable}
	ready := corev1.NodeCondition{Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: flotillanode.ReasonClusterReady}
	flapStart := time.Now()
	synced.p.SetClusterReady(unreachable)
	markedNotReady := synced.managementPod(syncedProxy).Status.DeepCopy()
	for i := range markedNotReady.Conditions {
		if c := &markedNotReady.Conditions[i]; c.Type == corev1.PodReady {
			c.Status, c.LastTransitionTime = corev1.ConditionFalse, metav1.Now()
		}
	}
	synced.setProxyStatus(syncedProxy, *markedNotReady)
	if flap := time.Since(flapStart); flap >= notReadyGrace {
		t.Fatalf("marking the proxy not ready took %s, longer than the grace this flap is to end within", flap)
	}
	synced.p.SetClusterReady(ready)
	flapEnds := time.After(notReadyGrace + time.Second)
	restored := false
	for waiting := true; waiting; {
		select {
		case p := <-synced.notified:
			if c := findCondition(p.Status.Conditions, corev1.PodReady); c != nil && c.Reason == ReasonClusterNotReady {
				t.Errorf("node %s: a NotReady shorter than %s showed on proxy %s: %+v", synced.node, notReadyGrace, p.Name, c)
			}
			restored = restored || podReady(p)
		case <-flapEnds:
			waiting = false
		}
	}
	if !restored {
		t.Errorf("node %s: the proxy the node lifecycle controller marked not ready during a short NotReady was not shown Ready again", synced.node)
	}

	w := shared.Workload(workloadName)
	if err := w.FreezeAPIServer(); err != nil {
		t.Fatal(err)
	}
	resumed := false
	resume := func() {
		if !resumed {
			resumed = true
			if err := w.ResumeAPIServer(); err != nil {
				t.Fatal(err)
			}
		}
	}
	t.Cleanup(resume)
	run(unsynced)
	time.Sleep(time.Second) // a frozen apiserver holds the first list: the cache cannot sync
	if unsynced.p.informer.HasSynced() {
		t.Fatal("the delegate cache of a provider started during the outage synced: this test would not show that statuses go without it")
	}

	for _, tc := range []struct {
		h     *harness
		proxy *corev1.Pod
	}{{synced, syncedProxy}, {unsynced, unsyncedProxy}} {
		start := time.Now()
		tc.h.p.SetClusterReady(unreachable)
		got := awaitNotified(t, tc.h, "not Ready, reason "+ReasonClusterNotReady, func(p *corev1.Pod) bool {
			c := findCondition(p.Status.Conditions, corev1.PodReady)
			return c != nil && c.Status == corev1.ConditionFalse && c.Reason == ReasonClusterNotReady
		})
		t.Logf("node %s: proxy not Ready %s after the node turned NotReady", tc.h.node, time.Since(start).Round(time.Millisecond))
		if got.Status.Phase != corev1.PodRunning || got.Status.PodIP != tc.proxy.Status.PodIP {
			t.Errorf("node %s: phase %s, pod IP %q; want Running, %q as before", tc.h.node, got.Status.Phase, got.Status.PodIP, tc.proxy.Status.PodIP)
		}
		for _, ct := range []corev1.PodConditionType{corev1.PodReady, corev1.ContainersReady} {
			c := findCondition(got.Status.Conditions, ct)
			if c == nil || c.Status != corev1.ConditionFalse || c.Reason != ReasonClusterNotReady ||
				!strings.Contains(c.Message, "workload cluster "+workloadName) || !strings.Contains(c.Message, "Running and Ready") {
				t.Errorf("node %s: %s condition %+v, want False %s naming %s and the last known status", tc.h.node, ct, c, ReasonClusterNotReady, workloadName)
			}
		}
		// The pod controller writes it; reporting the proxy again notifies nothing.
		written := tc.h.setProxyStatus(tc.proxy, got.Status)
		if err := tc.h.p.syncStatus(tc.h.ctx, written.Namespace+"/"+written.Name); err != nil {
			t.Fatal(err)
		}
		select {
		case again := <-tc.h.notified:
			t.Errorf("node %s: notified again with nothing changed: %+v", tc.h.node, again.Status)
		case <-time.After(500 * time.Millisecond):
		}
	}

	resume()
	for _, h := range []*harness{synced, unsynced} {
		start := time.Now()
		h.p.SetClusterReady(ready)
		awaitNotified(t, h, "Ready again", podReady)
		t.Logf("node %s: proxy Ready again %s after the node turned Ready", h.node, time.Since(start).Round(time.Millisecond))
	}
}

func podReady(p *corev1.Pod) bool {
	c := findCondition(p.Status.Conditions, corev1.PodReady)
	return p.Status.Phase == corev1.PodRunning && c != nil && c.Status == corev1.ConditionTrue
}

// drainNotified empties the harness's notifications.
func drainNotified(h *harness) {
	for {
		select {
		case <-h.notified:
		default:
			return
		}
	}
}

// awaitNotified returns the first pod notified within 5 s that ok accepts.
func awaitNotified(t *testing.T, h *harness, what string, ok func(*corev1.Pod) bool) *corev1.Pod {
	t.Helper()
	timeout := time.After(5 * time.Second)
	var last *corev1.Pod
	for {
		select {
		case p := <-h.notified:
			if ok(p) {
				return p
			}
			last = p
		case <-timeout:
			t.Fatalf("node %s: no proxy notified %s within 5s (last: %+v)", h.node, what, last)
			return nil
		}
	}
}
