package provider

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/virtual-kubelet/virtual-kubelet/errdefs"
	"github.com/virtual-kubelet/virtual-kubelet/node/api"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/portforward"
	"k8s.io/client-go/tools/remotecommand"
	"k8s.io/client-go/transport/spdy"
	clientexec "k8s.io/client-go/util/exec"
	statsv1alpha1 "k8s.io/kubelet/pkg/apis/stats/v1alpha1"
	metricsv1beta1 "k8s.io/metrics/pkg/apis/metrics/v1beta1"
	utilexec "k8s.io/utils/exec"
)

// This file serves the kubelet API (kubectl logs, exec, attach, port-forward, and the stats the metrics
// pipeline scrapes) for proxies, by asking the workload apiserver about their delegates. Each call first
// checks the delegate is this node's, so the management cluster never reaches a workload pod flotilla does
// not own.

// GetContainerLogs streams a delegate container's log.
func (p *Provider) GetContainerLogs(ctx context.Context, namespace, podName, containerName string, opts api.ContainerLogOpts) (io.ReadCloser, error) {
	if err := p.ownedDelegate(ctx, namespace, podName); err != nil {
		return nil, err
	}
	return p.cfg.Workload.CoreV1().Pods(namespace).GetLogs(podName, logOptions(containerName, opts)).Stream(ctx)
}

// logOptions translates the kubelet API's log options to the pods/log request's; zero means unset.
func logOptions(container string, o api.ContainerLogOpts) *corev1.PodLogOptions {
	l := &corev1.PodLogOptions{Container: container, Follow: o.Follow, Previous: o.Previous, Timestamps: o.Timestamps}
	if o.Tail > 0 {
		l.TailLines = new(int64(o.Tail))
	}
	if o.LimitBytes > 0 {
		l.LimitBytes = new(int64(o.LimitBytes))
	}
	if o.SinceSeconds > 0 {
		l.SinceSeconds = new(int64(o.SinceSeconds))
	}
	if !o.SinceTime.IsZero() {
		l.SinceTime = new(metav1.NewTime(o.SinceTime))
	}
	return l
}

// RunInContainer runs a command in a delegate container through the workload apiserver's pods/exec.
func (p *Provider) RunInContainer(ctx context.Context, namespace, podName, containerName string, cmd []string, attach api.AttachIO) error {
	return p.stream(ctx, namespace, podName, "exec", &corev1.PodExecOptions{
		Container: containerName, Command: cmd,
		Stdin: attach.Stdin() != nil, Stdout: attach.Stdout() != nil, Stderr: attach.Stderr() != nil, TTY: attach.TTY(),
	}, attach)
}

// AttachToContainer attaches to a delegate container through the workload apiserver's pods/attach.
func (p *Provider) AttachToContainer(ctx context.Context, namespace, podName, containerName string, attach api.AttachIO) error {
	return p.stream(ctx, namespace, podName, "attach", &corev1.PodAttachOptions{
		Container: containerName,
		Stdin:     attach.Stdin() != nil, Stdout: attach.Stdout() != nil, Stderr: attach.Stderr() != nil, TTY: attach.TTY(),
	}, attach)
}

// stream runs an exec or attach session against the workload apiserver.
func (p *Provider) stream(ctx context.Context, namespace, podName, subresource string, opts runtime.Object, attach api.AttachIO) error {
	if err := p.canStream(ctx, namespace, podName); err != nil {
		return err
	}
	url := p.cfg.Workload.CoreV1().RESTClient().Post().Namespace(namespace).Resource("pods").Name(podName).
		SubResource(subresource).VersionedParams(opts, scheme.ParameterCodec).URL()
	exec, err := remotecommand.NewSPDYExecutor(p.cfg.WorkloadConfig, http.MethodPost, url)
	if err != nil {
		return err
	}
	so := remotecommand.StreamOptions{Stdin: attach.Stdin(), Stdout: attach.Stdout(), Stderr: attach.Stderr(), Tty: attach.TTY()}
	if attach.TTY() && attach.Resize() != nil {
		so.TerminalSizeQueue = sizeQueue{ctx: ctx, sizes: attach.Resize()}
	}
	// Returned unwrapped: see the ExitError assertion below.
	return exec.StreamWithContext(ctx, so)
}

// A workload kubelet's non-zero exit code reaches the client because client-go reports it as a
// CodeExitError, which virtual-kubelet's exec handler recognises (by type assertion, hence unwrapped) as a
// k8s.io/utils/exec.ExitError and answers with the protocol's NonZeroExitCode.
var _ utilexec.ExitError = clientexec.CodeExitError{}

// sizeQueue passes terminal resizes on until the session's context ends (the kubelet API never closes its
// channel, and a queue that never returns nil would keep the executor's resize loop alive).
type sizeQueue struct {
	ctx   context.Context
	sizes <-chan api.TermSize
}

func (q sizeQueue) Next() *remotecommand.TerminalSize {
	select {
	case s := <-q.sizes:
		return &remotecommand.TerminalSize{Width: s.Width, Height: s.Height}
	case <-q.ctx.Done():
		return nil
	}
}

// PortForward connects stream to a port of a delegate through the workload apiserver's pods/portforward,
// speaking the same protocol as kubectl port-forward does for one connection.
func (p *Provider) PortForward(ctx context.Context, namespace, podName string, port int32, stream io.ReadWriteCloser) error {
	if err := p.canStream(ctx, namespace, podName); err != nil {
		return err
	}
	transport, upgrader, err := spdy.RoundTripperFor(p.cfg.WorkloadConfig)
	if err != nil {
		return err
	}
	url := p.cfg.Workload.CoreV1().RESTClient().Post().Namespace(namespace).Resource("pods").Name(podName).
		SubResource("portforward").URL()
	conn, _, err := spdy.NewDialer(upgrader, &http.Client{Transport: transport}, http.MethodPost, url).Dial(portforward.PortForwardProtocolV1Name)
	if err != nil {
		return err
	}
	defer conn.Close()
	stopClosing := context.AfterFunc(ctx, func() { conn.Close() })
	defer stopClosing()

	headers := http.Header{}
	headers.Set(corev1.StreamType, corev1.StreamTypeError)
	headers.Set(corev1.PortHeader, strconv.Itoa(int(port)))
	headers.Set(corev1.PortForwardRequestIDHeader, "0")
	errorStream, err := conn.CreateStream(headers)
	if err != nil {
		return err
	}
	errorStream.Close() // nothing is written to it
	remoteErr := make(chan error, 1)
	go func() {
		message, err := io.ReadAll(errorStream)
		if err == nil && len(message) > 0 {
			err = fmt.Errorf("forwarding port %d of %s/%s: %s", port, namespace, podName, message)
		}
		remoteErr <- err
	}()

	headers.Set(corev1.StreamType, corev1.StreamTypeData)
	data, err := conn.CreateStream(headers)
	if err != nil {
		return err
	}
	// The kubelet API hands PortForward a context that never ends (virtual-kubelet's port-forward handler
	// passes context.Background()): the forward ends when its bytes stop. Once either direction has ended,
	// the other gets portForwardLinger to finish, as containerd's port-forward gives it, so that a client's
	// half-close still receives the answer, and a client gone for good (its connection closed) does not
	// leave the workload side open, waiting on a pod that never closes its end.
	copied := make(chan struct{}, 2)
	go func() {
		_, _ = io.Copy(data, stream)
		_ = data.Close() // tells the remote end nothing more is coming
		copied <- struct{}{}
	}()
	go func() {
		_, _ = io.Copy(stream, data)
		copied <- struct{}{}
	}()
	<-copied
	select {
	case <-copied:
	case <-time.After(portForwardLinger):
	}
	_ = data.Reset() // drop unsent data so the error stream can finish
	select {
	case err := <-remoteErr:
		return err
	case <-time.After(portForwardLinger):
		return nil // the deferred close of the connection ends the error stream's reader
	}
}

// portForwardLinger is how long a port-forward's remaining direction may run once the other has ended, and
// how long its workload side may take to report an error once the data stopped.
const portForwardLinger = time.Second

// canStream checks that streaming is configured and that the pod is this node's.
func (p *Provider) canStream(ctx context.Context, namespace, podName string) error {
	if p.cfg.WorkloadConfig == nil {
		return errdefs.InvalidInput("exec, attach and port-forward are not configured on this flotilla (no workload REST config)")
	}
	return p.ownedDelegate(ctx, namespace, podName)
}

// ownedDelegate fails with NotFound unless the pod has a delegate of this node.
func (p *Provider) ownedDelegate(ctx context.Context, namespace, podName string) error {
	d, err := p.delegate(ctx, namespace, podName)
	if err != nil {
		return err
	}
	if d == nil {
		return errdefs.NotFoundf("pod %s/%s has no delegate in workload cluster %s", namespace, podName, p.cfg.ClusterName)
	}
	return nil
}

// GetStatsSummary lists the node and the pods it runs, with their containers, and the usage the workload
// cluster's metrics API reports for them (see usage.go): the cluster's nodes summed for the node, each
// delegate's for its proxy. Without a metrics API it lists them without usage rather than made-up zeros.
func (p *Provider) GetStatsSummary(ctx context.Context) (*statsv1alpha1.Summary, error) {
	ds, err := p.ownDelegates(ctx)
	if err != nil {
		return nil, err
	}
	pods := make([]statsv1alpha1.PodStats, 0, len(ds))
	for _, d := range ds {
		ps := statsv1alpha1.PodStats{PodRef: statsv1alpha1.PodReference{Namespace: d.Namespace, Name: d.Name, UID: string(parentUID(d))}}
		if d.Status.StartTime != nil {
			ps.StartTime = *d.Status.StartTime
		}
		for _, c := range d.Spec.Containers {
			ps.Containers = append(ps.Containers, statsv1alpha1.ContainerStats{Name: c.Name})
		}
		pods = append(pods, ps)
	}
	s := &statsv1alpha1.Summary{
		Node: statsv1alpha1.NodeStats{NodeName: p.cfg.NodeName, StartTime: metav1.NewTime(p.started)},
		Pods: pods,
	}
	u, err := p.usage(ctx, ds)
	if err != nil {
		return nil, err
	}
	withUsage(s, u)
	return s, nil
}

// GetMetricsResource reports the node's and its delegates' usage as the kubelet's /metrics/resource does,
// from the workload cluster's metrics API; without one it reports no metric families.
func (p *Provider) GetMetricsResource(ctx context.Context) ([]*dto.MetricFamily, error) {
	ds, err := p.ownDelegates(ctx)
	if err != nil {
		return nil, err
	}
	u, err := p.usage(ctx, ds)
	if err != nil {
		return nil, err
	}
	return resourceMetrics(u), nil
}

// usage reads the workload cluster's NodeMetrics and the PodMetrics of this node's delegates (ds) and
// advances the CPU counters. A cluster without a metrics API (none registered: NotFound) has no usage to
// report; one that fails otherwise fails the request, as a kubelet whose stats provider fails does, so
// scrapers keep their last good point rather than take zeros.
func (p *Provider) usage(ctx context.Context, ds []*corev1.Pod) (nodeUsage, error) {
	if p.cfg.WorkloadMetrics == nil {
		return nodeUsage{}, nil
	}
	m := p.cfg.WorkloadMetrics.MetricsV1beta1()
	nodes, err := m.NodeMetricses().List(ctx, metav1.ListOptions{})
	if apierrors.IsNotFound(err) {
		return nodeUsage{}, nil
	}
	if err != nil {
		return nodeUsage{}, fmt.Errorf("reading node metrics of workload cluster %s: %w", p.cfg.ClusterName, err)
	}
	var pods []metricsv1beta1.PodMetrics
	if len(ds) > 0 {
		list, err := m.PodMetricses(metav1.NamespaceAll).List(ctx, metav1.ListOptions{
			LabelSelector: OwnDelegates(p.cfg.ManagementID, p.cfg.NodeName).String(),
		})
		if err != nil {
			return nodeUsage{}, fmt.Errorf("reading pod metrics of workload cluster %s: %w", p.cfg.ClusterName, err)
		}
		pods = list.Items
	}
	uids := make(map[string]string, len(ds))
	for _, d := range ds {
		uids[d.Namespace+"/"+d.Name] = string(parentUID(d))
	}
	p.usageMu.Lock()
	defer p.usageMu.Unlock()
	u, next := clusterUsage(p.counters, nodes.Items, pods, uids)
	p.counters = next
	return u, nil
}
