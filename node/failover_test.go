package node

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestClusterLost(t *testing.T) {
	now := time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)
	since := func(d time.Duration) metav1.Time { return metav1.NewTime(now.Add(-d)) }
	ready := func(status corev1.ConditionStatus, d time.Duration) corev1.NodeCondition {
		return corev1.NodeCondition{Type: corev1.NodeReady, Status: status, LastTransitionTime: since(d)}
	}
	unreachable := func(d time.Duration) corev1.NodeCondition {
		c := ready(corev1.ConditionFalse, d)
		c.Reason = ReasonClusterUnreachable
		return c
	}
	for _, tc := range []struct {
		name          string
		ready         corev1.NodeCondition
		observed      bool
		after         time.Duration
		lost, decided bool
		// answered is how long ago the apiserver last answered; zero means an hour, negative never.
		answered time.Duration
	}{
		{"ready for long", ready(corev1.ConditionTrue, time.Hour), true, 20 * time.Second, false, true, 0},
		{"ready just now", ready(corev1.ConditionTrue, 0), true, 20 * time.Second, false, true, 0},
		{"not ready briefly", ready(corev1.ConditionFalse, 19*time.Second), true, 20 * time.Second, false, false, 0},
		{"not ready for exactly the delay", ready(corev1.ConditionFalse, 20*time.Second), true, 20 * time.Second, true, true, 0},
		{"not ready for long", ready(corev1.ConditionFalse, time.Hour), true, 20 * time.Second, true, true, 0},
		{"unknown for long", ready(corev1.ConditionUnknown, time.Hour), true, 20 * time.Second, true, true, 0},
		{"not observed yet, for long", ready(corev1.ConditionFalse, time.Hour), false, 20 * time.Second, false, false, 0},
		{"not observed yet, though ready", ready(corev1.ConditionTrue, time.Hour), false, 20 * time.Second, false, false, 0},
		{"failover off: not ready for long decides nothing", ready(corev1.ConditionFalse, time.Hour), true, 0, false, false, 0},
		{"failover off: ready still removes", ready(corev1.ConditionTrue, time.Hour), true, 0, false, true, 0},
		{"unreachable, silent for the delay", unreachable(time.Hour), true, 20 * time.Second, true, true, 20 * time.Second},
		{"unreachable for long but answered late just now: slow, not lost", unreachable(time.Hour), true, 20 * time.Second, false, false, time.Second},
		{"unreachable for long, last answer just within the delay", unreachable(time.Hour), true, 20 * time.Second, false, false, 19 * time.Second},
		{"unreachable, never answered", unreachable(time.Hour), true, 20 * time.Second, true, true, -1},
		{"not ready for another reason though answering: lost", ready(corev1.ConditionFalse, time.Hour), true, 20 * time.Second, true, true, time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			answered := now.Add(-time.Hour)
			switch {
			case tc.answered > 0:
				answered = now.Add(-tc.answered)
			case tc.answered < 0:
				answered = time.Time{}
			}
			lost, decided := clusterLost(tc.ready, tc.observed, answered, tc.after, now)
			if lost != tc.lost || decided != tc.decided {
				t.Errorf("clusterLost = %v, %v; want %v, %v", lost, decided, tc.lost, tc.decided)
			}
		})
	}
}

func TestWithLostTaint(t *testing.T) {
	now := time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)
	earlier := metav1.NewTime(now.Add(-time.Minute))
	provider := Taint()
	notReady := corev1.Taint{Key: corev1.TaintNodeNotReady, Effect: corev1.TaintEffectNoExecute, TimeAdded: &earlier}
	lost := corev1.Taint{Key: LostTaintKey, Effect: corev1.TaintEffectNoExecute, TimeAdded: &earlier}
	lostNoSchedule := corev1.Taint{Key: LostTaintKey, Effect: corev1.TaintEffectNoSchedule} // someone else's
	added := metav1.NewTime(now)
	newLost := corev1.Taint{Key: LostTaintKey, Effect: corev1.TaintEffectNoExecute, TimeAdded: &added}
	for _, tc := range []struct {
		name    string
		taints  []corev1.Taint
		lost    bool
		want    []corev1.Taint
		changed bool
	}{
		{"add to none", nil, true, []corev1.Taint{newLost}, true},
		{"add after others, keeping them", []corev1.Taint{provider, notReady}, true, []corev1.Taint{provider, notReady, newLost}, true},
		{"already there keeps its time", []corev1.Taint{provider, lost}, true, []corev1.Taint{provider, lost}, false},
		{"remove, keeping others in order", []corev1.Taint{provider, lost, notReady}, false, []corev1.Taint{provider, notReady}, true},
		{"nothing to remove", []corev1.Taint{provider}, false, []corev1.Taint{provider}, false},
		{"another effect of the key is not ours", []corev1.Taint{lostNoSchedule}, false, []corev1.Taint{lostNoSchedule}, false},
		{"another effect of the key does not count as ours", []corev1.Taint{lostNoSchedule}, true, []corev1.Taint{lostNoSchedule, newLost}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, changed := withLostTaint(tc.taints, tc.lost, now)
			if changed != tc.changed {
				t.Errorf("changed = %v, want %v", changed, tc.changed)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("taints = %v, want %v", got, tc.want)
			}
			for i := range got {
				if !got[i].MatchTaint(&tc.want[i]) || !got[i].TimeAdded.Equal(tc.want[i].TimeAdded) {
					t.Errorf("taint %d = %v, want %v", i, got[i], tc.want[i])
				}
			}
		})
	}
}

func TestFlotillaLost(t *testing.T) {
	now := time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)
	withReady := func(status corev1.ConditionStatus, d time.Duration) *corev1.Node {
		return &corev1.Node{Status: corev1.NodeStatus{Conditions: []corev1.NodeCondition{
			{Type: corev1.NodeMemoryPressure, Status: corev1.ConditionUnknown, LastTransitionTime: metav1.NewTime(now.Add(-time.Hour))},
			{Type: corev1.NodeReady, Status: status, LastTransitionTime: metav1.NewTime(now.Add(-d))},
		}}}
	}
	publishing := func(after string, n *corev1.Node) *corev1.Node {
		n.Annotations = map[string]string{AnnotationFailoverAfter: after}
		return n
	}
	for _, tc := range []struct {
		name string
		node *corev1.Node
		want bool
	}{
		{"unknown for the delay", withReady(corev1.ConditionUnknown, 20*time.Second), true},
		{"unknown briefly", withReady(corev1.ConditionUnknown, 19*time.Second), false},
		// Not Ready is what a living flotilla reports of an unreachable cluster: its own failover handles it.
		{"not ready for long", withReady(corev1.ConditionFalse, time.Hour), false},
		{"ready", withReady(corev1.ConditionTrue, time.Hour), false},
		{"no Ready condition yet", &corev1.Node{}, false},
		{"its own longer delay not over", publishing("1m", withReady(corev1.ConditionUnknown, 30*time.Second)), false},
		{"its own shorter delay over", publishing("10s", withReady(corev1.ConditionUnknown, 15*time.Second)), true},
		{"failover off for it", publishing("0s", withReady(corev1.ConditionUnknown, time.Hour)), false},
		{"an unreadable delay: ours", publishing("soon", withReady(corev1.ConditionUnknown, 20*time.Second)), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := flotillaLost(tc.node, 20*time.Second, now); got != tc.want {
				t.Errorf("flotillaLost = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestUnknownMost(t *testing.T) {
	node := func(status corev1.ConditionStatus) *corev1.Node {
		return &corev1.Node{Status: corev1.NodeStatus{Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: status}}}}
	}
	ready, unknown, notReady := node(corev1.ConditionTrue), node(corev1.ConditionUnknown), node(corev1.ConditionFalse)
	for _, tc := range []struct {
		name  string
		nodes []*corev1.Node
		want  bool
	}{
		{"one of two", []*corev1.Node{ready, unknown}, false},
		{"one of four", []*corev1.Node{ready, unknown, ready, ready}, false},
		{"two of three", []*corev1.Node{ready, unknown, unknown}, true},
		{"three of four", []*corev1.Node{unknown, unknown, unknown, ready}, true},
		{"not ready is not unknown", []*corev1.Node{ready, notReady, notReady}, false},
		{"none", nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := unknownMost(tc.nodes); got != tc.want {
				t.Errorf("unknownMost = %v, want %v", got, tc.want)
			}
		})
	}
}
