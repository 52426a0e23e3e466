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
	for _, tc := range []struct {
		name          string
		ready         corev1.NodeCondition
		lost, decided bool
	}{
		{"ready for long", corev1.NodeCondition{Status: corev1.ConditionTrue, LastTransitionTime: since(time.Hour)}, false, true},
		{"ready just now", corev1.NodeCondition{Status: corev1.ConditionTrue, LastTransitionTime: since(0)}, false, true},
		{"not ready briefly", corev1.NodeCondition{Status: corev1.ConditionFalse, LastTransitionTime: since(19 * time.Second)}, false, false},
		{"not ready for exactly the delay", corev1.NodeCondition{Status: corev1.ConditionFalse, LastTransitionTime: since(20 * time.Second)}, true, true},
		{"not ready for long", corev1.NodeCondition{Status: corev1.ConditionFalse, LastTransitionTime: since(time.Hour)}, true, true},
		{"unknown for long", corev1.NodeCondition{Status: corev1.ConditionUnknown, LastTransitionTime: since(time.Hour)}, true, true},
		{"never derived", corev1.NodeCondition{Status: corev1.ConditionUnknown}, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lost, decided := clusterLost(tc.ready, 20*time.Second, now)
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
