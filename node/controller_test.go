package node

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/flotilla-io/flotilla/internal/reachability"
)

// workload stands in for the workload apiserver's /readyz and /version.
type workload struct {
	mu       sync.Mutex
	err      error
	delay    time.Duration // how long /readyz takes to answer
	asking   int           // requests awaiting their answer
	mostAsks int           // the most that ever awaited theirs at once
}

// fail makes /readyz fail with err without an answer, as when the apiserver cannot be reached; nil heals it.
func (w *workload) fail(err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.err = err
}

// slow makes /readyz answer after d.
func (w *workload) slow(d time.Duration) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.delay = d
}

// readyz answers once the request is as old as the delay, which a test may shorten meanwhile, as an
// apiserver thawed after a freeze answers what it was asked.
func (w *workload) readyz(ctx context.Context) (bool, error) {
	sent := time.Now()
	w.mu.Lock()
	w.asking++
	w.mostAsks = max(w.mostAsks, w.asking)
	w.mu.Unlock()
	defer func() {
		w.mu.Lock()
		w.asking--
		w.mu.Unlock()
	}()
	for {
		w.mu.Lock()
		err, delay := w.err, w.delay
		w.mu.Unlock()
		if time.Since(sent) >= delay {
			return err == nil, err
		}
		select {
		case <-ctx.Done():
			return false, ctx.Err()
		case <-time.After(time.Millisecond):
		}
	}
}

func (w *workload) mostAsking() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.mostAsks
}

// harness runs a Controller against a fake workload cluster and collects what it hands virtual-kubelet.
type harness struct {
	c      *Controller
	client *fake.Clientset
	api    *workload
	sent   chan *corev1.Node
	done   chan error
}

func newHarness(t *testing.T, probeErr error, objs ...corev1.Node) *harness {
	t.Helper()
	client := fake.NewClientset()
	for i := range objs {
		if _, err := client.CoreV1().Nodes().Create(context.Background(), &objs[i], metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	c, err := NewController(Config{
		NodeName: "vn", ClusterName: "cl", Taint: true, InternalIP: "10.0.0.7", KubeletPort: 10250,
		ProbeInterval: 50 * time.Millisecond, ProbeTimeout: 20 * time.Millisecond,
		OwnPods: labels.SelectorFromSet(labels.Set{"flotilla.io/node": "vn"}),
	}, client, "https://admin:secret@workload:6443")
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{c: c, client: client, api: &workload{err: probeErr}, sent: make(chan *corev1.Node, 100), done: make(chan error, 1)}
	c.readyz = h.api.readyz
	c.serverVersion = func(context.Context) (string, error) { return "v1.35.4", nil }
	return h
}

// run starts the controller; the test stops it and checks Run returned nil promptly.
func (h *harness) run(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	go func() { h.done <- h.c.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-h.done:
			if err != nil {
				t.Errorf("Run = %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Errorf("Run did not return after its context was cancelled")
		}
	})
}

// unreachableTimes has the controller tell when it finds the cluster unreachable, on the returned channel.
func (h *harness) unreachableTimes() <-chan time.Time {
	times := make(chan time.Time, 10)
	h.c.cfg.Reachability = func(reachable bool) {
		if !reachable {
			times <- time.Now()
		}
	}
	return times
}

func (h *harness) notify() {
	h.c.NotifyNodeStatus(context.Background(), func(n *corev1.Node) { h.sent <- n })
}

// await returns the first node handed over that satisfies ok.
func (h *harness) await(t *testing.T, what string, ok func(*corev1.Node) bool) *corev1.Node {
	t.Helper()
	timeout := time.After(5 * time.Second)
	for {
		select {
		case n := <-h.sent:
			if ok(n) {
				return n
			}
		case <-timeout:
			t.Fatalf("no node %s within 5s; last derived: %+v", what, h.c.Node().Status)
		}
	}
}

func readyIs(status corev1.ConditionStatus, reason string) func(*corev1.Node) bool {
	return func(n *corev1.Node) bool {
		c := n.Status.Conditions[0]
		return c.Type == corev1.NodeReady && c.Status == status && c.Reason == reason
	}
}

func cpuIs(cpu string) func(*corev1.Node) bool {
	return func(n *corev1.Node) bool {
		q := n.Status.Allocatable[corev1.ResourceCPU]
		return readyIs(corev1.ConditionTrue, ReasonClusterReady)(n) && q.Cmp(resource.MustParse(cpu)) == 0
	}
}

func TestControllerFollowsTheWorkloadCluster(t *testing.T) {
	ctx := context.Background()
	region := labelled("topology.kubernetes.io/region", "eu-west-3")
	h := newHarness(t, nil, *wnode("a", region), *wnode("b", region), *wnode("c", region))

	registered := h.c.Node()
	if !readyIs(corev1.ConditionFalse, ReasonClusterUnreachable)(registered) || len(registered.Spec.Taints) != 1 {
		t.Fatalf("node to register = %+v, want NotReady and tainted", registered)
	}
	if err := h.c.Ping(ctx); err != nil {
		t.Errorf("Ping = %v, want nil", err)
	}

	h.notify()
	h.run(t)
	n := h.await(t, "Ready with the three nodes' cpu", cpuIs("12"))
	if n.Labels["topology.kubernetes.io/region"] != "eu-west-3" || n.Status.NodeInfo.KubeletVersion != "v1.35.4" {
		t.Errorf("labels %v, version %q: want the region and the workload version", n.Labels, n.Status.NodeInfo.KubeletVersion)
	}
	if got := n.Annotations[AnnotationWorkloadServer]; got != "https://workload:6443" {
		t.Errorf("workload server annotation = %q, want it without credentials", got)
	}

	pods := h.client.CoreV1().Pods("default")
	foreign := wpod("foreign", "a", rl("cpu", "1"))
	if _, err := pods.Create(ctx, foreign, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	h.await(t, "lowered by a foreign pod", cpuIs("11"))

	own := wpod("own", "a", rl("cpu", "2"), func(p *corev1.Pod) { p.Labels["flotilla.io/node"] = "vn" })
	if _, err := pods.Create(ctx, own, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := pods.Delete(ctx, "foreign", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	h.await(t, "restored, own delegate not subtracted", cpuIs("12"))

	b, err := h.client.CoreV1().Nodes().Get(ctx, "b", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	b.Spec.Unschedulable = true
	if _, err := h.client.CoreV1().Nodes().Update(ctx, b, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	h.await(t, "without the cordoned node", cpuIs("8"))

	h.api.fail(errors.New("connection refused"))
	n = h.await(t, "unreachable", readyIs(corev1.ConditionFalse, ReasonClusterUnreachable))
	if !strings.Contains(n.Status.Conditions[0].Message, "connection refused") {
		t.Errorf("message %q does not say why", n.Status.Conditions[0].Message)
	}
	h.api.fail(nil)
	h.await(t, "Ready again", cpuIs("8"))
	if !readyIs(corev1.ConditionTrue, ReasonClusterReady)(h.c.Node()) {
		t.Errorf("Node() = %+v, want the current Ready node", h.c.Node().Status.Conditions[0])
	}
}

func TestControllerSendsOnlyChanges(t *testing.T) {
	h := newHarness(t, nil, *wnode("a"))
	h.notify()
	h.run(t)
	n := h.await(t, "Ready", cpuIs("4"))

	// virtual-kubelet stamps heartbeats into the node it is given; that must not touch the controller's.
	n.Status.Conditions[0].LastHeartbeatTime = metav1.NewTime(time.Now().Add(time.Hour))
	n.Labels["scribble"] = "x"

	// A workload change that doesn't show on the virtual node (a kubelet's heartbeat, say), then twenty probes
	// and more than one settling period with nothing else changing.
	ctx := context.Background()
	a, err := h.client.CoreV1().Nodes().Get(ctx, "a", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	a.Annotations = map[string]string{"heartbeat": "1"}
	if _, err := h.client.CoreV1().Nodes().Update(ctx, a, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	select {
	case again := <-h.sent:
		t.Errorf("sent an unchanged node again: %+v", again.Status.Conditions[0])
	case <-time.After(time.Second):
	}
	if cur := h.c.Node(); cur.Labels["scribble"] != "" || cur.Status.Conditions[0].LastHeartbeatTime.After(time.Now()) {
		t.Errorf("the node handed over shares memory with the controller's")
	}
}

func TestControllerStartsWithTheClusterDown(t *testing.T) {
	h := newHarness(t, errors.New("i/o timeout"), *wnode("a"))
	var told reachabilityLog
	h.c.cfg.Reachability = told.record
	if _, observed := h.c.Ready(); observed {
		t.Error("Ready() claims an observation before the first probe")
	}
	h.notify()
	h.run(t)
	n := h.await(t, "unreachable after a probe", readyIs(corev1.ConditionFalse, ReasonClusterUnreachable))
	if ready, observed := h.c.Ready(); !observed || ready.Status != corev1.ConditionFalse {
		t.Errorf("Ready() after a failed probe = %s, observed %v; want False, observed", ready.Status, observed)
	}
	if msg := n.Status.Conditions[0].Message; !strings.Contains(msg, "i/o timeout") {
		t.Errorf("message %q, want the probe's error", msg)
	}
	select {
	case err := <-h.done:
		t.Fatalf("Run returned %v while the cluster was down", err)
	default:
	}
	if got := told.get(); !slices.Equal(got, []bool{false}) {
		t.Errorf("told %v while the cluster was down, want [false]", got)
	}
	h.api.fail(nil)
	h.await(t, "Ready once the cluster answers", cpuIs("4"))
	if got := told.get(); !slices.Equal(got, []bool{false, true}) {
		t.Errorf("told %v once the cluster answered, want [false true]", got)
	}
}

// TestControllerTellsSlowFromSilent: an apiserver slower than the probe timeout makes the node unreachable,
// but its late answers count as answers (LastAnswer), and it is asked one probe at a time; one that does not
// answer at all leaves LastAnswer where it was.
func TestControllerTellsSlowFromSilent(t *testing.T) {
	h := newHarness(t, nil, *wnode("a"))
	h.notify()
	h.run(t)
	h.await(t, "Ready", cpuIs("4"))
	if h.c.LastAnswer().IsZero() {
		t.Fatal("LastAnswer is zero although the apiserver answered")
	}

	h.api.slow(4 * h.c.cfg.ProbeTimeout)
	n := h.await(t, "unreachable while slow", readyIs(corev1.ConditionFalse, ReasonClusterUnreachable))
	if msg := n.Status.Conditions[0].Message; !strings.Contains(msg, "no answer to /readyz within 20ms") {
		t.Errorf("message %q, want the probe timeout", msg)
	}
	slowSince := time.Now()
	deadline := time.Now().Add(5 * time.Second)
	for !h.c.LastAnswer().After(slowSince) {
		if time.Now().After(deadline) {
			t.Fatal("the slow apiserver's late answers never counted")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if most := h.api.mostAsking(); most != 1 {
		t.Errorf("%d probes awaited their answer at once, want 1", most)
	}

	h.api.slow(time.Hour)
	time.Sleep(2 * h.c.cfg.ProbeTimeout * 4) // the last late answer comes in
	silentSince := h.c.LastAnswer()
	time.Sleep(10 * h.c.cfg.ProbeInterval)
	if got := h.c.LastAnswer(); !got.Equal(silentSince) {
		t.Errorf("LastAnswer moved from %s to %s while the apiserver was silent", silentSince, got)
	}

	h.api.slow(0)
	h.await(t, "Ready once the apiserver answers in time", cpuIs("4"))
}

// TestControllerExcusesAnOverloadedApiserver: a probe that goes unanswered while the apiserver still sends
// on other requests keeps the cluster Ready; once it falls silent too, or answers with an error, it is not.
func TestControllerExcusesAnOverloadedApiserver(t *testing.T) {
	h := newHarness(t, nil, *wnode("a"))
	var silent atomic.Bool
	h.c.cfg.LastHeard = func() time.Time {
		if silent.Load() {
			return time.Now().Add(-h.c.cfg.ProbeTimeout)
		}
		return time.Now()
	}
	h.notify()
	h.run(t)
	h.await(t, "Ready", cpuIs("4"))

	h.api.slow(4 * h.c.cfg.ProbeTimeout)
	for range 20 {
		time.Sleep(h.c.cfg.ProbeInterval)
		if ready, _ := h.c.Ready(); ready.Status != corev1.ConditionTrue {
			t.Fatalf("Ready = %s (%s) while the apiserver was slow but still sending", ready.Status, ready.Message)
		}
	}
	silent.Store(true)
	n := h.await(t, "unreachable once silent", readyIs(corev1.ConditionFalse, ReasonClusterUnreachable))
	if msg := n.Status.Conditions[0].Message; !strings.Contains(msg, "no answer to /readyz") {
		t.Errorf("message %q, want the probe timeout", msg)
	}

	silent.Store(false)
	h.api.slow(0)
	h.await(t, "Ready again", cpuIs("4"))
	h.api.fail(errors.New("connection refused"))
	h.await(t, "unreachable when refused though still sending", readyIs(corev1.ConditionFalse, ReasonClusterUnreachable))
}

// TestControllerFindsASilentApiserverOnTime: an apiserver that falls silent while a probe waits excused is
// unreachable ProbeTimeout after the last thing it sent, not at the next probe a probe interval later.
func TestControllerFindsASilentApiserverOnTime(t *testing.T) {
	h := newHarness(t, nil, *wnode("a"))
	h.c.cfg.ProbeInterval, h.c.cfg.ProbeTimeout = 2*time.Second, 100*time.Millisecond
	if took := unreachableAfterSilence(t, h); took > 3*h.c.cfg.ProbeTimeout {
		t.Errorf("unreachable %s after the apiserver fell silent, want about the probe timeout (%s)", took, h.c.cfg.ProbeTimeout)
	}
}

// TestControllerAllowsASilenceItCameBackFrom: an apiserver that recently came back from a silence longer than
// the probe timeout is unreachable once it has been silent for twice that, not at the probe timeout.
func TestControllerAllowsASilenceItCameBackFrom(t *testing.T) {
	h := newHarness(t, nil, *wnode("a"))
	h.c.cfg.ProbeInterval, h.c.cfg.ProbeTimeout, h.c.cfg.ProbeTimeoutMax = 200*time.Millisecond, 100*time.Millisecond, time.Second
	const cameBackFrom, allowed = 300 * time.Millisecond, 600 * time.Millisecond
	h.c.cfg.Silences = func() []reachability.Silence {
		return []reachability.Silence{{Length: cameBackFrom, Ended: time.Now().Add(-time.Second)}}
	}
	if took := unreachableAfterSilence(t, h); took < allowed || took > allowed+3*h.c.cfg.ProbeTimeout {
		t.Errorf("unreachable %s after the apiserver fell silent, want about twice the %s silence it came back from (%s)", took, cameBackFrom, allowed)
	}
}

// unreachableAfterSilence runs h's controller until Ready, makes its apiserver slow while it still sends, so
// that a probe waits excused past its deadline, then silent, and returns how long after it fell silent the
// cluster was unreachable.
func unreachableAfterSilence(t *testing.T, h *harness) time.Duration {
	t.Helper()
	var silentSince atomic.Int64 // Unix nanoseconds; zero while the apiserver still sends
	h.c.cfg.LastHeard = func() time.Time {
		if n := silentSince.Load(); n != 0 {
			return time.Unix(0, n)
		}
		return time.Now()
	}
	unreachable := h.unreachableTimes()
	h.notify()
	h.run(t)
	h.await(t, "Ready", cpuIs("4"))

	h.api.slow(time.Hour)
	time.Sleep(h.c.cfg.ProbeInterval + 5*h.c.cfg.ProbeTimeout) // the next probe waits, excused, past its deadline
	silent := time.Now()
	silentSince.Store(silent.UnixNano())
	select {
	case at := <-unreachable:
		if at.Before(silent) {
			t.Fatalf("unreachable %s before the apiserver fell silent, while it still sent", silent.Sub(at))
		}
		return at.Sub(silent)
	case <-time.After(5 * time.Second):
		t.Fatal("never unreachable after the apiserver fell silent")
		return 0
	}
}

// TestControllerHandsOverUnreachableAtOnce: a cluster turning unreachable reaches the node without waiting out
// the settling that coalesces informer events.
func TestControllerHandsOverUnreachableAtOnce(t *testing.T) {
	h := newHarness(t, nil, *wnode("a"))
	told := h.unreachableTimes()
	h.notify()
	h.run(t)
	h.await(t, "Ready", cpuIs("4"))
	h.api.fail(errors.New("connection refused"))
	h.await(t, "unreachable", readyIs(corev1.ConditionFalse, ReasonClusterUnreachable))
	if took := time.Since(<-told); took >= settleDelay/2 {
		t.Errorf("the unreachable node was handed over %s after the probe found it, want well under the %s of settling", took, settleDelay)
	}
}

func TestControllerToldReachabilityOnlyWhenItChanges(t *testing.T) {
	h := newHarness(t, nil, *wnode("a"))
	var told reachabilityLog
	h.c.cfg.Reachability = told.record
	h.notify()
	h.run(t)
	h.await(t, "Ready", cpuIs("4"))
	time.Sleep(200 * time.Millisecond) // several more probes
	if got := told.get(); !slices.Equal(got, []bool{true}) {
		t.Errorf("told %v with the cluster up all along, want [true]", got)
	}
}

// TestControllerToldReadyChanges: the Ready condition's changes of status or reason are told once each, in
// order, only once they rest on an observation: nothing before the first probe, nothing for a change of
// message alone (another probe error, another count of Ready nodes).
func TestControllerToldReadyChanges(t *testing.T) {
	h := newHarness(t, errors.New("i/o timeout"), *wnode("a"), *wnode("b"))
	var told readyChanges
	h.c.cfg.ReadyChanged = told.record
	h.notify()
	h.run(t)
	h.await(t, "unreachable", readyIs(corev1.ConditionFalse, ReasonClusterUnreachable))
	h.api.fail(errors.New("connection refused")) // another message, the same reason
	time.Sleep(200 * time.Millisecond)
	h.api.fail(nil)
	h.await(t, "Ready", cpuIs("8"))
	setReady(t, h, "a", corev1.ConditionFalse) // 1 of 2 nodes Ready: another message, still Ready
	h.await(t, "Ready with one node", cpuIs("4"))
	setReady(t, h, "b", corev1.ConditionFalse)
	h.await(t, "no Ready nodes", readyIs(corev1.ConditionFalse, ReasonNoReadyNodes))
	setReady(t, h, "b", corev1.ConditionTrue)
	h.await(t, "Ready again", cpuIs("4"))
	want := []string{"False/" + ReasonClusterUnreachable, "True/" + ReasonClusterReady, "False/" + ReasonNoReadyNodes, "True/" + ReasonClusterReady}
	if got := told.get(); !slices.Equal(got, want) {
		t.Errorf("told %v, want %v", got, want)
	}
}

// setReady sets the Ready condition of the fake workload node name.
func setReady(t *testing.T, h *harness, name string, status corev1.ConditionStatus) {
	t.Helper()
	ctx := context.Background()
	n, err := h.client.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range n.Status.Conditions {
		if n.Status.Conditions[i].Type == corev1.NodeReady {
			n.Status.Conditions[i].Status = status
		}
	}
	if _, err := h.client.CoreV1().Nodes().UpdateStatus(ctx, n, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// readyChanges records what a Controller tells of its Ready condition, as status/reason.
type readyChanges struct {
	mu   sync.Mutex
	told []string
}

func (r *readyChanges) record(c corev1.NodeCondition) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.told = append(r.told, string(c.Status)+"/"+c.Reason)
}

func (r *readyChanges) get() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.told)
}

// reachabilityLog records what a Controller says of its cluster's reachability.
type reachabilityLog struct {
	mu   sync.Mutex
	told []bool
}

func (r *reachabilityLog) record(reachable bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.told = append(r.told, reachable)
}

func (r *reachabilityLog) get() []bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.told)
}

func TestControllerSendsToALateCallback(t *testing.T) {
	h := newHarness(t, nil, *wnode("a"))
	h.run(t)
	deadline := time.Now().Add(5 * time.Second)
	for !readyIs(corev1.ConditionTrue, ReasonClusterReady)(h.c.Node()) {
		if time.Now().After(deadline) {
			t.Fatal("node never became Ready")
		}
		time.Sleep(50 * time.Millisecond)
	}
	h.notify()
	h.await(t, "current node on registration", cpuIs("4"))
}

func TestNewControllerRejects(t *testing.T) {
	client := fake.NewClientset()
	for _, tc := range []struct {
		name   string
		cfg    Config
		client *fake.Clientset
	}{
		{"no node name", Config{}, client},
		{"no client", Config{NodeName: "vn"}, nil},
		{"bad internal IP", Config{NodeName: "vn", InternalIP: "not-an-ip"}, client},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var err error
			if tc.client == nil {
				_, err = NewController(tc.cfg, nil, "h")
			} else {
				_, err = NewController(tc.cfg, tc.client, "h")
			}
			if err == nil {
				t.Error("NewController accepted it")
			}
		})
	}
}

func TestNewControllerDefaults(t *testing.T) {
	c, err := NewController(Config{NodeName: "vn"}, fake.NewClientset(), "h")
	if err != nil {
		t.Fatal(err)
	}
	if c.cfg.ClusterName != "vn" || c.cfg.ExcludeLabels != DefaultExcludeLabels ||
		c.cfg.ProbeInterval != DefaultProbeInterval || c.cfg.ProbeTimeout != DefaultProbeTimeout ||
		c.cfg.OwnPods.Matches(labels.Set{}) {
		t.Errorf("config = %+v, want defaults filled in", c.cfg)
	}
	if got := c.Node().Labels[LabelCluster]; got != "vn" {
		t.Errorf("cluster label = %q, want the node name", got)
	}
	if len(c.Node().Spec.Taints) != 0 {
		t.Errorf("tainted without Config.Taint")
	}
}

func TestWithoutCredentials(t *testing.T) {
	for in, want := range map[string]string{
		"https://admin:secret@10.0.0.1:6443": "https://10.0.0.1:6443",
		"https://token@host/prefix":          "https://host/prefix",
		"https://10.0.0.1:6443":              "https://10.0.0.1:6443",
		"10.0.0.1:6443":                      "10.0.0.1:6443",
		"":                                   "",
	} {
		if got := withoutCredentials(in); got != want {
			t.Errorf("withoutCredentials(%q) = %q, want %q", in, got, want)
		}
	}
}
