package lab

import (
	"slices"
	"testing"
	"time"
)

func TestComponentOf(t *testing.T) {
	for _, tc := range []struct{ process, want string }{
		{"management/kube-apiserver", "management kube-apiserver"},
		{"management/kube-controller-manager", "management kube-controller-manager"},
		{"us-west-2-0/kube-apiserver", "kube-apiserver"},
		{"eu-west-3-1/kwok", "kwok"},
		{"us-west-2-0/flotilla", "flotilla"},
		{"us-west-2-0/flotilla-b", "flotilla"},
		{"us-west-2-0/metrics-server", "metrics-server"},
		{"kubelet/echo-server", "echo-server"},
		{"etcd", "etcd"},
	} {
		if got := componentOf(tc.process, "management"); got != tc.want {
			t.Errorf("componentOf(%q) = %q, want %q", tc.process, got, tc.want)
		}
	}
}

func TestBusyTimes(t *testing.T) {
	// user nice system idle iowait irq softirq steal guest guest_nice, in hundredths of a second.
	stat := `cpu  300 0 100 5000 40 0 0 0 0 0
cpu0 200 0 50 2000 20 0 0 0 0 0
cpu1 100 0 50 3000 20 0 0 0 0 0
intr 12345 0 0
ctxt 999
`
	busy, byCore := busyTimes(stat)
	if busy != 4*time.Second {
		t.Errorf("busy %s, want 4s (user and system, not idle or iowait)", busy)
	}
	if want := []time.Duration{2500 * time.Millisecond, 1500 * time.Millisecond}; !slices.Equal(byCore, want) {
		t.Errorf("by core %v, want %v", byCore, want)
	}
}
