package provider

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestReplaceDecision(t *testing.T) {
	const after = 5 * time.Minute
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	yes := true
	rs := metav1.OwnerReference{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "web-1", UID: "rs-uid", Controller: &yes}
	proxy := func(opts ...func(*corev1.Pod)) *corev1.Pod {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web-1-x", UID: "proxy-uid",
			OwnerReferences: []metav1.OwnerReference{rs}}}
		for _, o := range opts {
			o(p)
		}
		return p
	}
	// delegate is the proxy's delegate, unschedulable since `since` before now.
	delegate := func(since time.Duration, opts ...func(*corev1.Pod)) *corev1.Pod {
		d := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web-1-x", Labels: map[string]string{LabelParentUID: "proxy-uid"},
				CreationTimestamp: metav1.NewTime(now.Add(-since - time.Second))},
			Status: corev1.PodStatus{Phase: corev1.PodPending, Conditions: []corev1.PodCondition{{
				Type: corev1.PodScheduled, Status: corev1.ConditionFalse, Reason: corev1.PodReasonUnschedulable,
				Message: "0/3 nodes are available: 3 Insufficient cpu.", LastTransitionTime: metav1.NewTime(now.Add(-since)),
			}}},
		}
		for _, o := range opts {
			o(d)
		}
		return d
	}
	deleting := func(p *corev1.Pod) { p.DeletionTimestamp = &metav1.Time{Time: now} }
	bare := func(p *corev1.Pod) { p.OwnerReferences = nil }
	daemon := func(p *corev1.Pod) { p.OwnerReferences[0].Kind = "DaemonSet" }
	notController := func(p *corev1.Pod) { p.OwnerReferences[0].Controller = nil }
	scheduled := func(d *corev1.Pod) {
		d.Status.Conditions[0].Status, d.Status.Conditions[0].Reason = corev1.ConditionTrue, ""
	}
	running := func(d *corev1.Pod) { d.Status.Phase = corev1.PodRunning }
	otherParent := func(d *corev1.Pod) { d.Labels[LabelParentUID] = "earlier" }
	noTransitionTime := func(d *corev1.Pod) { d.Status.Conditions[0].LastTransitionTime = metav1.Time{} }
	gated := func(d *corev1.Pod) { d.Status.Conditions[0].Reason = corev1.PodReasonSchedulingGated }

	evict := func(waited time.Duration) replaceVerdict {
		return replaceVerdict{evict: true, unschedulableFor: waited, message: "0/3 nodes are available: 3 Insufficient cpu."}
	}
	recheck := func(d time.Duration) replaceVerdict { return replaceVerdict{recheck: d} }

	for _, tc := range []struct {
		name     string
		proxy    *corev1.Pod
		delegate *corev1.Pod
		notReady bool
		history  replacements
		after    time.Duration
		want     replaceVerdict
	}{
		{name: "unschedulable for the delay: evicted", proxy: proxy(), delegate: delegate(after), want: evict(after)},
		{name: "unschedulable for less: look again when it is due", proxy: proxy(), delegate: delegate(time.Minute), want: recheck(4 * time.Minute)},
		{name: "no transition time: counted from the delegate's creation", proxy: proxy(), delegate: delegate(after, noTransitionTime), want: evict(after + time.Second)},
		{name: "re-placement off", proxy: proxy(), delegate: delegate(time.Hour), after: -1},
		{name: "a bare pod keeps its reason", proxy: proxy(bare), delegate: delegate(time.Hour)},
		{name: "an owner that is not its controller does not count", proxy: proxy(notController), delegate: delegate(time.Hour)},
		{name: "a DaemonSet's pod would come back to this node", proxy: proxy(daemon), delegate: delegate(time.Hour)},
		{name: "scheduled: nothing", proxy: proxy(), delegate: delegate(time.Hour, scheduled)},
		{name: "running: nothing", proxy: proxy(), delegate: delegate(time.Hour, running)},
		{name: "scheduling gates are not the cluster's verdict", proxy: proxy(), delegate: delegate(time.Hour, gated)},
		{name: "no delegate", proxy: proxy()},
		{name: "an earlier proxy's delegate", proxy: proxy(), delegate: delegate(time.Hour, otherParent)},
		{name: "proxy terminating", proxy: proxy(deleting), delegate: delegate(time.Hour)},
		{name: "delegate terminating", proxy: proxy(), delegate: delegate(time.Hour, deleting)},
		{name: "cluster not Ready: judged later", proxy: proxy(), delegate: delegate(time.Hour), notReady: true, want: recheck(after)},
		{
			name: "second round waits twice as long", proxy: proxy(), delegate: delegate(6 * time.Minute),
			history: replacements{rounds: 1, last: now.Add(-10 * time.Minute)}, want: recheck(4 * time.Minute),
		},
		{
			name: "second round after twice the delay", proxy: proxy(), delegate: delegate(10 * time.Minute),
			history: replacements{rounds: 1, last: now.Add(-10 * time.Minute)}, want: evict(10 * time.Minute),
		},
		{
			name: "a sibling evicted moments ago: same round, same wait", proxy: proxy(), delegate: delegate(after),
			history: replacements{rounds: 1, last: now.Add(-time.Second)}, want: evict(after),
		},
		{
			name: "waits are capped", proxy: proxy(), delegate: delegate(8 * after),
			history: replacements{rounds: 20, last: now.Add(-time.Hour)}, want: evict(8 * after),
		},
		{
			name: "a controller quiet for long is forgotten", proxy: proxy(), delegate: delegate(after),
			history: replacements{rounds: 5, last: now.Add(-2*8*after - time.Second)}, want: evict(after),
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := after
			if tc.after != 0 {
				a = tc.after
			}
			got := replaceDecision(tc.proxy, tc.delegate, !tc.notReady, tc.history, now, a)
			if got != tc.want {
				t.Errorf("replaceDecision = %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestReplacementsRecord(t *testing.T) {
	const after = time.Minute
	t0 := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	var h replacements
	steps := []struct {
		at         time.Duration
		wantRounds int
		wantWait   time.Duration // before the next eviction, at the same moment a minute later
	}{
		{0, 1, 2 * after},                // first round; the next waits twice as long
		{10 * time.Second, 1, 2 * after}, // a sibling: same round
		{5 * time.Minute, 2, 4 * after},  // a later round
		{10 * time.Minute, 3, 8 * after}, // and another
		{15 * time.Minute, 4, 8 * after}, // capped
		{60 * time.Minute, 1, 2 * after}, // quiet for more than 16 minutes: forgotten, a first round again
	}
	for _, s := range steps {
		now := t0.Add(s.at)
		h = h.record(now, after)
		if h.rounds != s.wantRounds {
			t.Fatalf("at %s: %d rounds, want %d", s.at, h.rounds, s.wantRounds)
		}
		if w := h.wait(now.Add(after), after); w != s.wantWait {
			t.Errorf("at %s: next wait %s, want %s", s.at, w, s.wantWait)
		}
	}
}
