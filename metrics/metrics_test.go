package metrics

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8stypes "k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/cache"
)

// samples gathers r's own registry and returns, for the family, each sample's count (histograms) or value
// by its labels other than otel's scope, as "k=v,k=v".
func samples(t *testing.T, r *Recorder, family string) map[string]float64 {
	t.Helper()
	families, err := r.registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, f := range families {
		if f.GetName() != family {
			continue
		}
		for _, m := range f.GetMetric() {
			out[labelString(m)] = value(m)
		}
	}
	return out
}

func labelString(m *dto.Metric) string {
	var parts []string
	for _, l := range m.GetLabel() {
		if !strings.HasPrefix(l.GetName(), "otel_scope") {
			parts = append(parts, l.GetName()+"="+l.GetValue())
		}
	}
	return strings.Join(parts, ",")
}

func value(m *dto.Metric) float64 {
	switch {
	case m.Histogram != nil:
		return float64(m.GetHistogram().GetSampleCount())
	case m.Counter != nil:
		return m.GetCounter().GetValue()
	default:
		return m.GetGauge().GetValue()
	}
}

func newRecorder(t *testing.T) *Recorder {
	t.Helper()
	r, err := New("eu-1")
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// pod is a proxy of that name (its UID derived from it) in the phase.
func pod(name string, phase corev1.PodPhase) *corev1.Pod {
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{UID: k8stypes.UID("uid-" + name), Namespace: "ns", Name: name}, Status: corev1.PodStatus{Phase: phase}}
}

// TestDelegationSteps: each step is measured once per proxy bound while flotilla watched, never for a proxy
// of the informer's first list, nor after the proxy went.
func TestDelegationSteps(t *testing.T) {
	r := newRecorder(t)
	events := r.ProxyEvents()

	bound := pod("bound", corev1.PodPending)
	events.OnAdd(bound, false)
	r.DelegationStep(bound.UID, DelegateCreated)
	r.DelegationStep(bound.UID, DelegateCreated) // a second create (adoption after a restart): counted once
	r.DelegationStep(bound.UID, DelegateRunning)
	events.OnUpdate(bound, pod("bound", corev1.PodRunning))
	r.DelegationStep(bound.UID, DelegateRunning) // status syncs go on while it runs: nothing more

	old := pod("old", corev1.PodPending) // bound before flotilla started
	events.OnAdd(old, true)
	r.DelegationStep(old.UID, DelegateCreated)
	events.OnUpdate(old, pod("old", corev1.PodRunning))

	gone := pod("gone", corev1.PodPending)
	events.OnAdd(gone, false)
	events.OnDelete(cache.DeletedFinalStateUnknown{Key: "ns/gone", Obj: gone})
	r.DelegationStep(gone.UID, DelegateCreated)

	failed := pod("failed", corev1.PodPending)
	events.OnAdd(failed, false)
	events.OnUpdate(failed, pod("failed", corev1.PodFailed))
	r.DelegationStep(failed.UID, DelegateCreated)

	got := samples(t, r, "flotilla_delegation_duration_seconds")
	want := map[string]float64{
		"cluster=eu-1,step=delegate_created": 1,
		"cluster=eu-1,step=delegate_running": 1,
		"cluster=eu-1,step=proxy_running":    1,
	}
	if len(got) != len(want) {
		t.Errorf("got series %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: got %v samples, want %v (all: %v)", k, got[k], v, got)
		}
	}
	if n := len(r.delegations.pending); n != 0 {
		t.Errorf("%d proxies still tracked after each ran, went or failed", n)
	}
}

// TestFollowLatency: a change is measured from its first update event to the write of the copy; a resync
// (same resourceVersion) starts nothing, and a sync that settles without a write forgets the change.
func TestFollowLatency(t *testing.T) {
	r := newRecorder(t)
	changes := r.FollowChanges("Secret")
	version := func(rv string) *corev1.Secret {
		return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "s", ResourceVersion: rv}}
	}

	changes.OnUpdate(version("1"), version("1")) // resync
	r.FollowWritten("Secret", "ns/s")            // written for another reason (a new proxy needs it)
	changes.OnUpdate(version("1"), version("2"))
	r.FollowSettled("Secret", "ns/s") // a status-only change: no write
	r.FollowWritten("Secret", "ns/s")
	if got := samples(t, r, "flotilla_follow_duration_seconds"); len(got) != 0 {
		t.Fatalf("nothing followed a change yet, got %v", got)
	}

	changes.OnUpdate(version("2"), version("3"))
	time.Sleep(20 * time.Millisecond)
	changes.OnUpdate(version("3"), version("4")) // before the first reached the copy: measured from the first
	r.FollowWritten("Secret", "ns/s")
	r.FollowWritten("ConfigMap", "ns/s") // another kind's object of the same name
	got := samples(t, r, "flotilla_follow_duration_seconds")
	if len(got) != 1 || got["cluster=eu-1,kind=Secret"] != 1 {
		t.Fatalf("want one Secret follow, got %v", got)
	}
	families, _ := r.registry.Gather()
	for _, f := range families {
		if f.GetName() == "flotilla_follow_duration_seconds" {
			if sum := f.GetMetric()[0].GetHistogram().GetSampleSum(); sum < 0.02 {
				t.Errorf("follow measured %.3fs, want at least the 20ms since the first change", sum)
			}
		}
	}
}

// TestCounters: the counters and the gauge carry the cluster and their own labels.
func TestCounters(t *testing.T) {
	r := newRecorder(t)
	r.Refused("Refused")
	r.Refused("Refused")
	r.Refused("NameConflict")
	r.FailedOver("eu-2", "FlotillaLost")
	r.Fenced(FenceEvicted)
	r.StatusWritten(StatusStarted)
	r.StatusWritten(StatusStarted)
	r.StatusWritten(StatusClusterNotReady)
	r.Reachable(true)
	r.Reachable(false)
	if err := r.ObserveAllowedSilence(func() time.Duration { return 6 * time.Second }); err != nil {
		t.Fatal(err)
	}
	for family, want := range map[string]map[string]float64{
		"flotilla_delegation_refusals_total":        {"cluster=eu-1,reason=Refused": 2, "cluster=eu-1,reason=NameConflict": 1},
		"flotilla_failovers_total":                  {"cluster=eu-1,node=eu-2,reason=FlotillaLost": 1},
		"flotilla_fencing_deletions_total":          {"cluster=eu-1,reason=evicted": 1},
		"flotilla_proxy_status_writes_total":        {"change=started,cluster=eu-1": 2, "change=cluster_not_ready,cluster=eu-1": 1},
		"flotilla_workload_reachable":               {"cluster=eu-1": 0},
		"flotilla_workload_unreachable_total":       {"cluster=eu-1": 1},
		"flotilla_workload_allowed_silence_seconds": {"cluster=eu-1": 6},
	} {
		got := samples(t, r, family)
		if len(got) != len(want) {
			t.Errorf("%s: got %v, want %v", family, got, want)
		}
		for k, v := range want {
			if g, ok := got[k]; !ok || g != v {
				t.Errorf("%s{%s}: got %v (present %v), want %v", family, k, g, ok, v)
			}
		}
	}
}

// TestNilRecorder: the instrumented packages run without a Recorder.
func TestNilRecorder(t *testing.T) {
	var r *Recorder
	r.Refused("x")
	r.FailedOver("n", "x")
	r.Fenced("x")
	r.StatusWritten("x")
	r.Reachable(true)
	r.DelegationStep("uid", DelegateCreated)
	r.FollowWritten("Secret", "ns/s")
	r.FollowSettled("Secret", "ns/s")
	r.ProxyEvents().OnAdd(pod("p", corev1.PodPending), false)
	r.FollowChanges("Secret").OnUpdate(&corev1.Secret{}, &corev1.Secret{})
}

func TestIsLoopback(t *testing.T) {
	for _, c := range []struct {
		addr string
		want bool
		err  bool
	}{
		{addr: "127.0.0.1:10255", want: true},
		{addr: "127.3.2.1:10255", want: true},
		{addr: "[::1]:10255", want: true},
		{addr: "localhost:10255", want: true},
		{addr: ":10255"},
		{addr: "0.0.0.0:10255"},
		{addr: "[::]:10255"},
		{addr: "10.0.0.5:10255"},
		{addr: "flotilla.example:10255"},
		{addr: "10255", err: true},
	} {
		got, err := isLoopback(c.addr)
		if (err != nil) != c.err || got != c.want {
			t.Errorf("isLoopback(%q) = %v, %v; want %v (error %v)", c.addr, got, err, c.want, c.err)
		}
	}
}

// TestServeLoopback: on a loopback address /metrics answers anyone over HTTP with flotilla's and client-go's
// metrics, and /debug/pprof/ is served only when profiling is asked for; off loopback without a serving certificate or management client, Serve refuses to start.
func TestServeLoopback(t *testing.T) {
	r := newRecorder(t)
	r.Reachable(true)
	addr := freeLoopback(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := r.Serve(ctx, addr, Access{}, false); err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{"flotilla_workload_reachable{", "go_goroutines "} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if code := statusOf(t, "http://"+addr+"/debug/pprof/heap"); code != http.StatusNotFound {
		t.Errorf("/debug/pprof/heap without profiling: %d, want 404", code)
	}
	profiled := freeLoopback(t)
	if err := r.Serve(ctx, profiled, Access{}, true); err != nil {
		t.Fatal(err)
	}
	if code := statusOf(t, "http://"+profiled+"/debug/pprof/heap"); code != http.StatusOK {
		t.Errorf("/debug/pprof/heap with profiling: %d, want 200", code)
	}
	if err := r.Serve(ctx, "127.0.0.2:0", Access{}, false); err != nil {
		t.Errorf("a loopback address needs no access configuration: %v", err)
	}
	if err := r.Serve(ctx, ":0", Access{}, false); err == nil || !strings.Contains(err.Error(), "management client") {
		t.Errorf("off loopback without a management client: want a refusal, got %v", err)
	}
}

// freeLoopback is an address on 127.0.0.1 whose port is free right now.
func freeLoopback(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// statusOf is the status code of a GET of url.
func statusOf(t *testing.T, url string) int {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}
