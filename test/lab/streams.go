package lab

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/httpstream"
	apispdy "k8s.io/apimachinery/pkg/util/httpstream/spdy"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/portforward"
	"k8s.io/client-go/tools/remotecommand"
	"k8s.io/client-go/transport/spdy"
)

// The kubelet API's streams as kubectl opens them through a cluster's apiserver: exec and attach over
// websocket with a fallback to SPDY, port-forward over SPDY tunnelled in websocket with the same fallback.
// Tests and benchmarks open them on the management cluster (through flotilla) and on a workload cluster
// (directly) alike.

// Session is what a pod's exec or attach connects to the client's side.
type Session struct {
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	TTY            bool
	// Silent opens the session over SPDY without keep-alive pings, as clients other than client-go's do
	// (client-go's ping every few seconds): a session quiet on both sides is then idle for every server it
	// passes.
	Silent bool
}

// Exec runs command in a container of a pod, as `kubectl exec` does.
func (c *Cluster) Exec(ctx context.Context, namespace, pod, container string, command []string, s Session) error {
	return c.stream(ctx, namespace, pod, "exec", &corev1.PodExecOptions{
		Container: container, Command: command,
		Stdin: s.Stdin != nil, Stdout: s.Stdout != nil, Stderr: s.Stderr != nil, TTY: s.TTY,
	}, s)
}

// Attach attaches to a container of a pod, as `kubectl attach` does.
func (c *Cluster) Attach(ctx context.Context, namespace, pod, container string, s Session) error {
	return c.stream(ctx, namespace, pod, "attach", &corev1.PodAttachOptions{
		Container: container, Stdin: s.Stdin != nil, Stdout: s.Stdout != nil, Stderr: s.Stderr != nil, TTY: s.TTY,
	}, s)
}

func (c *Cluster) stream(ctx context.Context, namespace, pod, subresource string, opts runtime.Object, s Session) error {
	url := c.Client.CoreV1().RESTClient().Post().Namespace(namespace).Resource("pods").Name(pod).SubResource(subresource).
		VersionedParams(opts, scheme.ParameterCodec).URL()
	so := remotecommand.StreamOptions{Stdin: s.Stdin, Stdout: s.Stdout, Stderr: s.Stderr, Tty: s.TTY}
	if s.Silent {
		transport, upgrader, err := c.silentSPDY()
		if err != nil {
			return err
		}
		exec, err := remotecommand.NewSPDYExecutorForTransports(transport, upgrader, http.MethodPost, url)
		if err != nil {
			return err
		}
		return exec.StreamWithContext(ctx, so)
	}
	spdyExec, err := remotecommand.NewSPDYExecutor(c.Config, http.MethodPost, url)
	if err != nil {
		return err
	}
	// A websocket handshake is a GET (RFC 6455).
	wsExec, err := remotecommand.NewWebSocketExecutor(c.Config, http.MethodGet, url.String())
	if err != nil {
		return err
	}
	exec, err := remotecommand.NewFallbackExecutor(wsExec, spdyExec, upgradeRefused)
	if err != nil {
		return err
	}
	return exec.StreamWithContext(ctx, so)
}

// silentSPDY is client-go's SPDY transport for the cluster (spdy.RoundTripperFor) without its keep-alive
// pings.
func (c *Cluster) silentSPDY() (http.RoundTripper, spdy.Upgrader, error) {
	tlsConfig, err := rest.TLSConfigFor(c.Config)
	if err != nil {
		return nil, nil, err
	}
	upgrader, err := apispdy.NewRoundTripperWithConfig(apispdy.RoundTripperConfig{TLS: tlsConfig, Proxier: http.ProxyFromEnvironment})
	if err != nil {
		return nil, nil, err
	}
	transport, err := rest.HTTPWrappersForConfig(c.Config, upgrader)
	return transport, upgrader, err
}

// PortForward forwards a local loopback port to a port of a pod, as `kubectl port-forward` does, until stop
// is called; addr is the local address to connect to.
func (c *Cluster) PortForward(namespace, pod string, port int) (addr string, stop func(), err error) {
	url := c.portForwardURL(namespace, pod)
	transport, upgrader, err := spdy.RoundTripperFor(c.Config)
	if err != nil {
		return "", nil, err
	}
	tunnel, err := portforward.NewSPDYOverWebsocketDialer(url, c.Config)
	if err != nil {
		return "", nil, err
	}
	dialer := portforward.NewFallbackDialer(tunnel, spdy.NewDialer(upgrader, &http.Client{Transport: transport}, http.MethodPost, url), upgradeRefused)
	return forward(dialer, namespace, pod, port)
}

// SilentPortForward is PortForward over SPDY without keep-alive pings (see Session.Silent).
func (c *Cluster) SilentPortForward(namespace, pod string, port int) (addr string, stop func(), err error) {
	transport, upgrader, err := c.silentSPDY()
	if err != nil {
		return "", nil, err
	}
	return forward(spdy.NewDialer(upgrader, &http.Client{Transport: transport}, http.MethodPost, c.portForwardURL(namespace, pod)), namespace, pod, port)
}

func (c *Cluster) portForwardURL(namespace, pod string) *url.URL {
	return c.Client.CoreV1().RESTClient().Post().Namespace(namespace).Resource("pods").Name(pod).SubResource("portforward").URL()
}

// forward listens on a local loopback port and forwards its connections through dialer.
func forward(dialer httpstream.Dialer, namespace, pod string, port int) (addr string, stop func(), err error) {
	stopCh, ready := make(chan struct{}), make(chan struct{})
	fw, err := portforward.NewOnAddresses(dialer, []string{"127.0.0.1"}, []string{"0:" + strconv.Itoa(port)}, stopCh, ready, io.Discard, io.Discard)
	if err != nil {
		return "", nil, err
	}
	done := make(chan error, 1)
	go func() { done <- fw.ForwardPorts() }()
	select {
	case <-ready:
	case err := <-done:
		return "", nil, fmt.Errorf("port-forward to %s/%s:%d: %w", namespace, pod, port, err)
	}
	ports, err := fw.GetPorts()
	if err != nil {
		close(stopCh)
		return "", nil, err
	}
	return "127.0.0.1:" + strconv.Itoa(int(ports[0].Local)), func() {
		close(stopCh)
		<-done
	}, nil
}

// upgradeRefused says when kubectl falls back from websocket to SPDY.
func upgradeRefused(err error) bool {
	return httpstream.IsUpgradeFailure(err) || httpstream.IsHTTPSProxyError(err)
}

// FlotillaGoroutines reads go_goroutines from a flotilla's /metrics.
func (l *Lab) FlotillaGoroutines(name string) (float64, error) {
	families, err := l.ScrapeFlotilla(name)
	if err != nil {
		return 0, err
	}
	m := families["go_goroutines"].GetMetric()
	if len(m) == 0 {
		return 0, fmt.Errorf("flotilla of %s reports no go_goroutines", name)
	}
	return m[0].GetGauge().GetValue(), nil
}

// FlotillaSockets counts the sockets a flotilla process holds open (its TCP connections, to clusters and
// from clients, and its listeners).
func (l *Lab) FlotillaSockets(name string) (int, error) {
	p, err := l.flotilla(name)
	if err != nil {
		return 0, err
	}
	dir := fmt.Sprintf("/proc/%d/fd", p.PID)
	fds, err := os.ReadDir(dir)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, fd := range fds {
		if target, err := os.Readlink(filepath.Join(dir, fd.Name())); err == nil && strings.HasPrefix(target, "socket:") {
			n++
		}
	}
	return n, nil
}

// EchoThrough sends n random bytes to an echo server at addr while reading them back, and checks that what
// came back hashes as what went out; it returns how long the bytes took.
func EchoThrough(ctx context.Context, addr string, n int) (time.Duration, error) {
	conn, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	if deadline, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(deadline)
	}
	payload := make([]byte, n)
	if _, err := rand.Read(payload); err != nil {
		return 0, err
	}
	start := time.Now()
	sent := make(chan error, 1)
	go func() {
		_, err := conn.Write(payload)
		sent <- err
	}()
	back := sha256.New()
	if _, err := io.CopyN(back, conn, int64(n)); err != nil {
		return 0, fmt.Errorf("reading back: %w", err)
	}
	took := time.Since(start)
	if err := <-sent; err != nil {
		return 0, fmt.Errorf("sending: %w", err)
	}
	if want := sha256.Sum256(payload); !bytes.Equal(back.Sum(nil), want[:]) {
		return 0, fmt.Errorf("the %d bytes that came back differ from those sent (SHA-256 %x, sent %x)", n, back.Sum(nil), want)
	}
	return took, nil
}
