package node

import (
	"errors"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestReadyCondition(t *testing.T) {
	three := []*corev1.Node{wnode("a"), wnode("b", notReady), wnode("c")}
	for _, tc := range []struct {
		name        string
		obs         observation
		wantStatus  corev1.ConditionStatus
		wantReason  string
		wantMessage string
	}{
		{
			name:        "before the first probe",
			obs:         observation{synced: true, nodes: three},
			wantStatus:  corev1.ConditionFalse,
			wantReason:  ReasonClusterUnreachable,
			wantMessage: "waiting for first probe",
		},
		{
			name:        "apiserver not answering, stale nodes notwithstanding",
			obs:         observation{probed: true, probeErr: errors.New("context deadline exceeded"), synced: true, nodes: three},
			wantStatus:  corev1.ConditionFalse,
			wantReason:  ReasonClusterUnreachable,
			wantMessage: "context deadline exceeded",
		},
		{
			name:        "reachable, nodes not listed yet",
			obs:         observation{probed: true},
			wantStatus:  corev1.ConditionFalse,
			wantReason:  ReasonNoReadyNodes,
			wantMessage: "waiting for",
		},
		{
			name:        "reachable, no Ready node",
			obs:         observation{probed: true, synced: true, nodes: []*corev1.Node{wnode("a", notReady)}},
			wantStatus:  corev1.ConditionFalse,
			wantReason:  ReasonNoReadyNodes,
			wantMessage: "none of the workload cluster's 1 nodes is Ready",
		},
		{
			name:        "reachable, no nodes at all",
			obs:         observation{probed: true, synced: true},
			wantStatus:  corev1.ConditionFalse,
			wantReason:  ReasonNoReadyNodes,
			wantMessage: "0 nodes",
		},
		{
			name:        "reachable with Ready nodes",
			obs:         observation{probed: true, synced: true, nodes: three},
			wantStatus:  corev1.ConditionTrue,
			wantReason:  ReasonClusterReady,
			wantMessage: "2 of 3 nodes are Ready",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := readyCondition(tc.obs)
			if got.Type != corev1.NodeReady || got.Status != tc.wantStatus || got.Reason != tc.wantReason {
				t.Errorf("readyCondition = %s %s %s, want Ready %s %s", got.Type, got.Status, got.Reason, tc.wantStatus, tc.wantReason)
			}
			if !strings.Contains(got.Message, tc.wantMessage) {
				t.Errorf("message %q does not contain %q", got.Message, tc.wantMessage)
			}
		})
	}
}

func TestConditions(t *testing.T) {
	earlier := metav1.NewTime(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	now := metav1.NewTime(earlier.Add(time.Hour))
	readyTrue := corev1.NodeCondition{Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: ReasonClusterReady}
	readyFalse := corev1.NodeCondition{Type: corev1.NodeReady, Status: corev1.ConditionFalse, Reason: ReasonNoReadyNodes}
	stamped := func(c corev1.NodeCondition, at metav1.Time) corev1.NodeCondition {
		c.LastTransitionTime, c.LastHeartbeatTime = at, at
		return c
	}

	for _, tc := range []struct {
		name      string
		ready     corev1.NodeCondition
		prev      []corev1.NodeCondition
		wantReady metav1.Time // Ready's LastTransitionTime
		wantFixed metav1.Time // the fixed conditions' LastTransitionTime
	}{
		{"first derivation", readyFalse, nil, now, now},
		{"unchanged status keeps its time", readyTrue, []corev1.NodeCondition{stamped(readyTrue, earlier)}, earlier, now},
		{"a new message alone is no transition", readyFalse,
			[]corev1.NodeCondition{stamped(corev1.NodeCondition{Type: corev1.NodeReady, Status: corev1.ConditionFalse, Reason: ReasonClusterUnreachable}, earlier)},
			earlier, now},
		{"changed status takes now", readyTrue, []corev1.NodeCondition{stamped(readyFalse, earlier)}, now, now},
		{"fixed conditions keep theirs", readyTrue, []corev1.NodeCondition{
			stamped(readyFalse, earlier),
			stamped(fixedConditions[0], earlier), stamped(fixedConditions[1], earlier),
			stamped(fixedConditions[2], earlier), stamped(fixedConditions[3], earlier),
		}, now, earlier},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := conditions(tc.ready, tc.prev, now)
			wantTypes := []corev1.NodeConditionType{corev1.NodeReady, corev1.NodeMemoryPressure, corev1.NodeDiskPressure,
				corev1.NodePIDPressure, corev1.NodeNetworkUnavailable}
			if len(got) != len(wantTypes) {
				t.Fatalf("got %d conditions, want %d", len(got), len(wantTypes))
			}
			for i, c := range got {
				if c.Type != wantTypes[i] {
					t.Errorf("condition %d is %s, want %s", i, c.Type, wantTypes[i])
				}
				if i > 0 && c.Status != corev1.ConditionFalse {
					t.Errorf("%s = %s, want False", c.Type, c.Status)
				}
				if i > 0 && (c.Reason == "" || c.Message == "") {
					t.Errorf("%s has no reason or message", c.Type)
				}
				if !c.LastHeartbeatTime.Equal(&c.LastTransitionTime) {
					t.Errorf("%s heartbeat %v differs from transition %v", c.Type, c.LastHeartbeatTime, c.LastTransitionTime)
				}
				want := tc.wantFixed
				if i == 0 {
					want = tc.wantReady
				}
				if !c.LastTransitionTime.Equal(&want) {
					t.Errorf("%s LastTransitionTime = %v, want %v", c.Type, c.LastTransitionTime, want)
				}
			}
			if got[0].Status != tc.ready.Status || got[0].Reason != tc.ready.Reason {
				t.Errorf("Ready = %s %s, want %s %s", got[0].Status, got[0].Reason, tc.ready.Status, tc.ready.Reason)
			}
		})
	}
}
