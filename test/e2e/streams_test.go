package e2e

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilexec "k8s.io/client-go/util/exec"
	"k8s.io/utils/ptr"

	"github.com/flotilla-io/flotilla/test/lab"
)

// The kubelet API's streams on a proxy, opened as kubectl opens them through the management apiserver:
// management apiserver -> flotilla's kubelet API -> workload apiserver -> kwok's kubelet API, where logs and
// attach read the lab's log file (a line a second), exec runs the command on this machine, and port-forward
// reaches the lab's echo server.

// streamsCluster is the workload cluster whose proxies these tests stream from.
const streamsCluster = "us-west-2-1"

// streamContainer is the container of podOn's pods.
const streamContainer = "web"

// runningProxy creates a pod on the streams cluster's virtual node and waits until it is Running.
func runningProxy(ctx context.Context, t *testing.T, ns, name string) {
	t.Helper()
	if _, err := shared.Management.Client.CoreV1().Pods(ns).Create(ctx, podOn(ns, name, streamsCluster), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, rollout, name+" Running", func(ctx context.Context) (bool, string) {
		p, err := shared.Management.Client.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		return p.Status.Phase == corev1.PodRunning, string(p.Status.Phase)
	})
}

// followLogs opens `logs -f` on a pod and calls line with each line as it arrives, until the stream ends;
// it returns the error that ended it.
func followLogs(ctx context.Context, c *lab.Cluster, ns, pod string, line func(string)) error {
	logs, err := c.Client.CoreV1().Pods(ns).GetLogs(pod, &corev1.PodLogOptions{Container: streamContainer, Follow: true, TailLines: ptr.To[int64](1)}).Stream(ctx)
	if err != nil {
		return err
	}
	defer logs.Close()
	lines := bufio.NewScanner(logs)
	for lines.Scan() {
		line(lines.Text())
	}
	if err := lines.Err(); err != nil {
		return err
	}
	return io.EOF
}

// arrivals records when lines of a stream arrive.
type arrivals struct {
	mu    sync.Mutex
	times []time.Time
	ended error
}

func (a *arrivals) add() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.times = append(a.times, time.Now())
}

func (a *arrivals) end(err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.ended = err
}

// since counts the lines that arrived since start and the longest wait for one, the wait since the last
// included; ended is what ended the stream, nil while it is open.
func (a *arrivals) since(start time.Time) (n int, longestGap time.Duration, ended error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	last := start
	for _, at := range a.times {
		if at.Before(start) {
			continue
		}
		n++
		longestGap = max(longestGap, at.Sub(last))
		last = at
	}
	return n, max(longestGap, time.Since(last)), a.ended
}

// lineEcho sends a line down a stream and waits for it to come back.
type lineEcho struct {
	w io.Writer
	r *bufio.Reader
}

func (e lineEcho) roundTrip(line string, limit time.Duration) error {
	got := make(chan error, 1)
	go func() {
		if _, err := io.WriteString(e.w, line+"\n"); err != nil {
			got <- fmt.Errorf("sending %q: %w", line, err)
			return
		}
		back, err := e.r.ReadString('\n')
		if err == nil && strings.TrimRight(back, "\r\n") != line {
			err = fmt.Errorf("sent %q, got back %q", line, back)
		}
		got <- err
	}()
	select {
	case err := <-got:
		return err
	case <-time.After(limit):
		return fmt.Errorf("%q not back within %s", line, limit)
	}
}

// execCat runs cat in the pod with stdin held open, from a client that sends no keep-alive pings: a line
// sent comes back. The session ends with ctx.
func execCat(ctx context.Context, c *lab.Cluster, ns, pod string) (lineEcho, <-chan error) {
	stdinR, stdinW := io.Pipe()
	stdoutR, stdoutW := io.Pipe()
	ended := make(chan error, 1)
	go func() {
		err := c.Exec(ctx, ns, pod, streamContainer, []string{"cat"}, lab.Session{Stdin: stdinR, Stdout: stdoutW, Silent: true})
		stdoutW.CloseWithError(fmt.Errorf("exec ended: %v", err))
		ended <- err
	}()
	return lineEcho{w: stdinW, r: bufio.NewReader(stdoutR)}, ended
}

// streamsLast is how long TestStreamsLast keeps its streams open: past the three minutes issue 10 asks for,
// and past every timeout that could cut a stream (virtual-kubelet's 30-second stream idle timeout among them).
const streamsLast = 3*time.Minute + 10*time.Second

// logGap is the longest a followed log may go without a line: the lab's logger writes one a second.
const logGap = 10 * time.Second

// TestStreamsLast: `logs -f` on a proxy delivers the lab's log line a second for more than three minutes
// without a gap; an exec session (cat, its stdin held open) and a port-forward connection opened beside it
// still carry a line after each minute of silence. Their client sends no keep-alive pings, so the silence is
// idleness for every server on the way (client-go's pings would hide an idle timeout).
func TestStreamsLast(t *testing.T) {
	ns := fleetNamespace(t)
	ctx := testContext(t, streamsLast+2*time.Minute)
	runningProxy(ctx, t, ns, "lasting")

	var logs arrivals
	go func() {
		logs.end(followLogs(ctx, shared.Management, ns, "lasting", func(string) { logs.add() }))
	}()
	cat, execEnded := execCat(ctx, shared.Management, ns, "lasting")
	addr, stop, err := shared.Management.SilentPortForward(ns, "lasting", 80)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	forwarded := lineEcho{w: conn, r: bufio.NewReader(conn)}

	start := time.Now()
	for round := 0; ; round++ {
		if err := cat.roundTrip(fmt.Sprintf("exec %d", round), 10*time.Second); err != nil {
			t.Fatalf("exec after %s: %v", time.Since(start).Round(time.Second), err)
		}
		if err := forwarded.roundTrip(fmt.Sprintf("port-forward %d", round), 10*time.Second); err != nil {
			t.Fatalf("port-forward after %s: %v", time.Since(start).Round(time.Second), err)
		}
		n, gap, ended := logs.since(start)
		t.Logf("after %s: exec and port-forward answer; %d log lines, longest gap %s", time.Since(start).Round(time.Second), n, gap.Round(time.Millisecond))
		if ended != nil || gap > logGap {
			t.Fatalf("logs -f stalled or ended after %s: longest gap %s, ended by %v", time.Since(start).Round(time.Second), gap, ended)
		}
		if time.Since(start) >= streamsLast {
			if want := int(streamsLast.Seconds() * 0.8); n < want {
				t.Errorf("%d log lines in %s, want at least %d (the logger writes one a second)", n, streamsLast, want)
			}
			break
		}
		select {
		case err := <-execEnded:
			t.Fatalf("exec ended after %s: %v", time.Since(start).Round(time.Second), err)
		case <-time.After(min(time.Minute, streamsLast-time.Since(start))):
		}
	}
}

// syncBuffer is a bytes.Buffer that a stream writes while the test reads.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestExecWithTTY: exec with stdin and a TTY, as `kubectl exec -it`, runs an interactive shell command in
// the delegate's container: what is typed reaches it, its answer comes back, and it sees a terminal. A
// failing command's exit code reaches the client.
func TestExecWithTTY(t *testing.T) {
	ns := fleetNamespace(t)
	ctx := testContext(t, 2*time.Minute)
	runningProxy(ctx, t, ns, "shell")

	typed, keyboard := io.Pipe()
	defer keyboard.Close()
	var screen syncBuffer
	done := make(chan error, 1)
	go func() {
		done <- shared.Management.Exec(ctx, ns, "shell", streamContainer,
			[]string{"sh", "-c", `read -r line; echo "got:$line"; test -t 0 && echo "on a terminal"; sleep 1`},
			lab.Session{Stdin: typed, Stdout: &screen, TTY: true})
	}()
	if _, err := io.WriteString(keyboard, "hello flotilla\n"); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("exec -it: %v; the screen showed %q", err, screen.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("exec -it not done within 30s; the screen shows %q", screen.String())
	}
	// A terminal echoes what is typed and ends lines with \r\n. (The sleep lets kwok copy the terminal's last
	// output before the command's end closes the session.)
	for _, want := range []string{"hello flotilla\r\n", "got:hello flotilla\r\n", "on a terminal\r\n"} {
		if !strings.Contains(screen.String(), want) {
			t.Errorf("the screen shows %q, want %q in it", screen.String(), want)
		}
	}
	t.Logf("exec -it screen: %q", screen.String())

	// The exit code, through flotilla and straight from the workload cluster.
	failing := []string{"sh", "-c", "echo before failing; exit 3"}
	var out syncBuffer
	viaFlotilla := shared.Management.Exec(ctx, ns, "shell", streamContainer, failing, lab.Session{Stdout: &out})
	direct := shared.Workload(streamsCluster).Exec(ctx, ns, "shell", streamContainer, failing, lab.Session{Stdout: io.Discard})
	if out.String() != "before failing\n" {
		t.Errorf("the failing command's output came through as %q", out.String())
	}
	if err := exitCodeThrough(viaFlotilla, direct, 3); err != nil {
		t.Error(err)
	}
	t.Logf("exit 3 through flotilla: %v\ndirectly: %v", viaFlotilla, direct)
	if err := shared.Management.Exec(ctx, ns, "shell", streamContainer, []string{"true"}, lab.Session{Stdout: io.Discard}); err != nil {
		t.Errorf("a command that succeeds: %v", err)
	}
}

// exitCodeThrough checks that the exit code of a failing command (code) reaches the client through flotilla
// (viaFlotilla) as well as the workload cluster's kubelet reports it (direct). A kubelet that reports it as
// the remotecommand protocol's NonZeroExitCode gives the client a CodeExitError, which flotilla must pass
// on. kwok v0.8.0 cannot: its local exec wraps the command's *os/exec.ExitError (fmt.Errorf("cmd wait:
// ...: %w")), and the kubelet streaming library it serves with (k8s.io/cri-streaming's ServeExec) recognises
// only a k8s.io/utils/exec.ExitError by type assertion, so it reports an InternalError whose message says
// "exit status <code>"; flotilla must pass that on too.
func exitCodeThrough(viaFlotilla, direct error, code int) error {
	var exit utilexec.CodeExitError
	switch {
	case errors.As(direct, &exit) && exit.Code == code:
		if !errors.As(viaFlotilla, &exit) || exit.Code != code {
			return fmt.Errorf("exit code %d: the workload cluster reports it, flotilla gives %v", code, viaFlotilla)
		}
	case direct != nil && strings.Contains(direct.Error(), fmt.Sprintf("exit status %d", code)):
		if viaFlotilla == nil || !strings.Contains(viaFlotilla.Error(), fmt.Sprintf("exit status %d", code)) {
			return fmt.Errorf("exit code %d: the workload cluster reports %q, flotilla gives %v", code, direct, viaFlotilla)
		}
	default:
		return fmt.Errorf("exit code %d: the workload cluster itself reports %v", code, direct)
	}
	return nil
}

// TestAttach: attach to a proxy's container shows its output as it is written (kwok's attach follows the
// lab's log file), until the client leaves.
func TestAttach(t *testing.T) {
	ns := fleetNamespace(t)
	ctx := testContext(t, 2*time.Minute)
	runningProxy(ctx, t, ns, "attached")

	attachCtx, detach := context.WithCancel(ctx)
	defer detach()
	var out syncBuffer
	done := make(chan error, 1)
	go func() {
		done <- shared.Management.Attach(attachCtx, ns, "attached", streamContainer, lab.Session{Stdout: &out})
	}()
	eventually(t, 30*time.Second, "three lines of output through attach", func(context.Context) (bool, string) {
		select {
		case err := <-done:
			t.Fatalf("attach ended: %v (output %q)", err, out.String())
		default:
		}
		return strings.Count(out.String(), "lab log line") >= 3, fmt.Sprintf("%q", out.String())
	})
	detach()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Errorf("attach still running 10s after the client left")
	}
	t.Logf("attach output: %q", out.String())
}

// forwardedMiB is what TestPortForwardCarriesBytes sends each way.
const forwardedMiB = 10

// TestPortForwardCarriesBytes: 10 MiB of random bytes sent through a port-forward to a proxy come back
// intact from the echo server behind it (same SHA-256), sent and received concurrently.
func TestPortForwardCarriesBytes(t *testing.T) {
	ns := fleetNamespace(t)
	ctx := testContext(t, 2*time.Minute)
	runningProxy(ctx, t, ns, "forwarded")
	addr, stop, err := shared.Management.PortForward(ns, "forwarded", 8080)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	took, err := lab.EchoThrough(ctx, addr, forwardedMiB<<20)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d MiB each way through flotilla in %s (%.1f MiB/s each way)", forwardedMiB, took.Round(time.Millisecond), forwardedMiB/took.Seconds())
}

// The streams TestConcurrentStreams opens at once, by kind: twenty in all.
const (
	concurrentLogs     = 7
	concurrentExecs    = 7
	concurrentForwards = 6
)

// streamsSettle is how soon after its clients close flotilla must be back to the goroutines and sockets it
// had before the streams.
const streamsSettle = 10 * time.Second

// TestConcurrentStreams: twenty streams on one virtual node (logs -f, execs printing a line a second,
// port-forwards echoing a line a second) all keep flowing together; meanwhile a new pod on the node becomes
// Running promptly and the node's Lease is renewed on time. Once the clients close, flotilla's goroutines and
// sockets come back to what they were before: no stream lives on in flotilla or towards the workload
// cluster.
func TestConcurrentStreams(t *testing.T) {
	ns := fleetNamespace(t)
	ctx := testContext(t, 5*time.Minute)
	runningProxy(ctx, t, ns, "busy")
	time.Sleep(2 * time.Second) // the pod's own start-up work done
	before := flotillaLoad(t)
	t.Logf("before the streams: %s", before)

	streamsCtx, closeClients := context.WithCancel(ctx)
	defer closeClients()
	var streams []*arrivals
	open := func(kind string, run func(a *arrivals) error) {
		a := &arrivals{}
		streams = append(streams, a)
		go func() {
			err := run(a)
			if streamsCtx.Err() == nil {
				a.end(fmt.Errorf("%s: %v", kind, err))
			}
		}()
	}
	for range concurrentLogs {
		open("logs -f", func(a *arrivals) error {
			return followLogs(streamsCtx, shared.Management, ns, "busy", func(string) { a.add() })
		})
	}
	for range concurrentExecs {
		open("exec", func(a *arrivals) error {
			return shared.Management.Exec(streamsCtx, ns, "busy", streamContainer,
				[]string{"sh", "-c", `i=0; while [ $i -lt 300 ]; do echo tick $i; i=$((i+1)); sleep 1; done`},
				lab.Session{Stdout: arrivalWriter{a}})
		})
	}
	var stops []func()
	for i := range concurrentForwards {
		addr, stop, err := shared.Management.PortForward(ns, "busy", 80)
		if err != nil {
			t.Fatal(err)
		}
		stops = append(stops, stop)
		open("port-forward", func(a *arrivals) error {
			conn, err := net.Dial("tcp", addr)
			if err != nil {
				return err
			}
			defer conn.Close()
			context.AfterFunc(streamsCtx, func() { conn.Close() })
			echo := lineEcho{w: conn, r: bufio.NewReader(conn)}
			for round := 0; ; round++ {
				if err := echo.roundTrip(fmt.Sprintf("forward %d round %d", i, round), 10*time.Second); err != nil {
					return err
				}
				a.add()
				time.Sleep(time.Second)
			}
		})
	}
	opened := time.Now()
	eventually(t, 30*time.Second, "all twenty streams flowing", func(context.Context) (bool, string) {
		flowing := 0
		for _, a := range streams {
			n, _, ended := a.since(opened)
			if ended != nil {
				t.Fatalf("a stream ended: %v", ended)
			}
			if n > 0 {
				flowing++
			}
		}
		return flowing == len(streams), fmt.Sprintf("%d of %d flowing", flowing, len(streams))
	})
	during := flotillaLoad(t)
	t.Logf("with %d streams open: %s", len(streams), during)
	if during.goroutines < before.goroutines+float64(len(streams)) {
		t.Fatalf("flotilla's goroutines did not rise with %d streams open (%s, before %s): the measurement does not see them", len(streams), during, before)
	}

	// Under the streams: a pod sync and the node's heartbeats.
	window := time.Now()
	heartbeats := watchLease(ctx, streamsCluster, 40*time.Second)
	latecomer := time.Now()
	runningProxy(ctx, t, ns, "latecomer")
	if took := time.Since(latecomer); took > 15*time.Second {
		t.Errorf("a pod created under %d streams took %s to be Running", len(streams), took)
	} else {
		t.Logf("a pod created under %d streams Running in %s", len(streams), took.Round(time.Millisecond))
	}
	renewals, longest := (<-heartbeats).summary()
	t.Logf("the node's Lease renewed %d times in 40s under the streams, longest between renewals %s", renewals, longest.Round(time.Millisecond))
	if longest > 15*time.Second || renewals < 3 {
		t.Errorf("the node's Lease renewed %d times in 40s, longest %s between renewals (virtual-kubelet renews it every 10s)", renewals, longest)
	}
	for i, a := range streams {
		n, gap, ended := a.since(window)
		if ended != nil || gap > logGap {
			t.Errorf("stream %d: %d lines in the last %s, longest gap %s, ended by %v", i, n, time.Since(window).Round(time.Second), gap, ended)
		}
	}

	// The clients leave.
	closeClients()
	for _, stop := range stops {
		stop()
	}
	closed := time.Now()
	var after load
	eventually(t, streamsSettle, "flotilla back to its goroutines and sockets of before the streams", func(context.Context) (bool, string) {
		after = flotillaLoad(t)
		return after.goroutines <= before.goroutines+10 && after.sockets <= before.sockets+2, after.String()
	})
	t.Logf("%s after the clients closed: %s", time.Since(closed).Round(time.Millisecond), after)
}

// arrivalWriter records each write of a stream's output as an arrival.
type arrivalWriter struct{ a *arrivals }

func (w arrivalWriter) Write(p []byte) (int, error) {
	w.a.add()
	return len(p), nil
}

// load is what a flotilla process holds: goroutines (go_goroutines of its /metrics) and open sockets.
type load struct {
	goroutines float64
	sockets    int
}

func (l load) String() string {
	return fmt.Sprintf("%.0f goroutines, %d sockets", l.goroutines, l.sockets)
}

// flotillaLoad reads the load of the streams cluster's flotilla.
func flotillaLoad(t *testing.T) load {
	t.Helper()
	g, err := shared.FlotillaGoroutines(streamsCluster)
	if err != nil {
		t.Fatal(err)
	}
	s, err := shared.FlotillaSockets(streamsCluster)
	if err != nil {
		t.Fatal(err)
	}
	return load{goroutines: g, sockets: s}
}

// leaseRenewals are the renew times of a node's Lease seen over a window.
type leaseRenewals struct {
	start, end time.Time
	renewed    []time.Time
}

// summary counts the renewals and the longest time without one, from the window's start to its end.
func (r leaseRenewals) summary() (n int, longest time.Duration) {
	last := r.start
	for _, at := range r.renewed {
		longest = max(longest, at.Sub(last))
		last = at
	}
	return len(r.renewed), max(longest, r.end.Sub(last))
}

// watchLease polls a virtual node's Lease for a while and delivers the renewals it saw.
func watchLease(ctx context.Context, nodeName string, window time.Duration) <-chan leaseRenewals {
	out := make(chan leaseRenewals, 1)
	leases := shared.Management.Client.CoordinationV1().Leases(corev1.NamespaceNodeLease)
	go func() {
		r := leaseRenewals{start: time.Now()}
		var last metav1.MicroTime
		for time.Since(r.start) < window && ctx.Err() == nil {
			if l, err := leases.Get(ctx, nodeName, metav1.GetOptions{}); err == nil && l.Spec.RenewTime != nil && !l.Spec.RenewTime.Equal(&last) {
				if !last.IsZero() {
					r.renewed = append(r.renewed, time.Now())
				}
				last = *l.Spec.RenewTime
			}
			time.Sleep(200 * time.Millisecond)
		}
		r.end = time.Now()
		out <- r
	}()
	return out
}
