package lab

import (
	"context"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestLabLifecycle starts a one-workload lab without flotilla, exercises freezing, killing and
// restarting an apiserver, and checks Stop leaves no process behind.
func TestLabLifecycle(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real control planes")
	}
	l := ForTest(t, Options{Workloads: []WorkloadSpec{Workload("w-0", "us-east-1")}})
	c := l.Workload("w-0")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	nodes, err := c.Client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(nodes.Items) != 3 {
		t.Fatalf("workload cluster has %d nodes, want 3", len(nodes.Items))
	}
	for _, n := range nodes.Items {
		if !NodeReady(&n) || n.Labels["topology.kubernetes.io/region"] != "us-east-1" {
			t.Errorf("node %s: ready=%v labels=%v", n.Name, NodeReady(&n), n.Labels)
		}
	}

	if err := c.FreezeAPIServer(); err != nil {
		t.Fatal(err)
	}
	short, cancelShort := context.WithTimeout(ctx, time.Second)
	_, err = c.Client.CoreV1().Nodes().List(short, metav1.ListOptions{})
	cancelShort()
	if err == nil {
		t.Error("a frozen apiserver answered")
	}
	if err := c.ResumeAPIServer(); err != nil {
		t.Fatal(err)
	}
	if err := c.waitReady(ctx); err != nil {
		t.Fatal(err)
	}

	if err := c.KillAPIServer(); err != nil {
		t.Fatal(err)
	}
	if c.APIServer.running() {
		t.Fatal("killed apiserver still running")
	}
	if err := c.StartAPIServer(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Client.CoreV1().Nodes().List(ctx, metav1.ListOptions{}); err != nil {
		t.Errorf("restarted apiserver: %v", err)
	}

	if err := l.Stop(); err != nil {
		t.Fatal(err)
	}
	for _, p := range l.processes() {
		if p.running() {
			t.Errorf("%s (pid %d) still running after Stop", p.Name, p.PID)
		}
	}
}

func TestProcState(t *testing.T) {
	for _, tc := range []struct {
		stat  string
		state byte
		ok    bool
	}{
		{"123 (kube-apiserver) S 1 123 123 0", 'S', true},
		{"123 (odd) name) T 1 123", 'T', true},
		{"123 (a b) Z 1", 'Z', true},
		{"123 (cut", 0, false},
		{"", 0, false},
	} {
		state, ok := procState([]byte(tc.stat))
		if state != tc.state || ok != tc.ok {
			t.Errorf("procState(%q) = %q, %v; want %q, %v", tc.stat, state, ok, tc.state, tc.ok)
		}
	}
}
