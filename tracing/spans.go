// Package tracing is flotilla's OpenTelemetry tracing: the TracerProvider the OTEL_* environment variables
// configure (off when they are unset), the spans of a proxy's delegation and of each follow, and client-go
// requests as child spans. Span names and attributes are a contract, listed in docs/DESIGN.md ("Traces").
package tracing

import (
	"context"
	"sync"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// Span names.
const (
	// SpanSyncDelegate is one sync of a proxy with its delegate in the workload cluster: the namespace,
	// ServiceAccount and followed ConfigMaps and Secrets it needs, the delegate's create, update or delete.
	SpanSyncDelegate = "flotilla.syncDelegate"
	// SpanSyncStatus is one reading of a delegate's status for its proxy, handed to the pod controller.
	SpanSyncStatus = "flotilla.syncStatus"
	// SpanUpdateProxyStatus is the management cluster's write of a proxy's status.
	SpanUpdateProxyStatus = "flotilla.updateProxyStatus"
	// SpanReplaceUnschedulable is one look at a Pending delegate for whether its proxy should be evicted to
	// be placed again (--reschedule-after), and the eviction.
	SpanReplaceUnschedulable = "flotilla.replaceUnschedulable"
	// SpanFollow is one write of an object that follows proxies (ConfigMap, Secret, Service, Ingress) to
	// its workload copy.
	SpanFollow = "flotilla.follow"
)

// Attribute keys. Pods and objects use OpenTelemetry's Kubernetes conventions; the rest are flotilla's.
const (
	AttrNamespace = "k8s.namespace.name"
	AttrPodName   = "k8s.pod.name"
	AttrPodUID    = "k8s.pod.uid"
	// AttrCluster is the workload cluster's name (--cluster-name), on pod spans and on the resource.
	AttrCluster = "flotilla.cluster"
	// AttrNode is the virtual node's name (--node-name), on the resource.
	AttrNode = "flotilla.node"
	// AttrClusterRole is "management" or "workload", on the span of each API request.
	AttrClusterRole = "flotilla.cluster.role"
	// AttrKind and AttrName name a followed object (its namespace is AttrNamespace).
	AttrKind = "flotilla.object.kind"
	AttrName = "flotilla.object.name"
)

// scope is the instrumentation scope of flotilla's spans.
const scope = "github.com/flotilla-io/flotilla"

// tracer is flotilla's, from the TracerProvider installed now (asked each time, as virtual-kubelet's adapter
// does, rather than bound once to the provider installed first).
func tracer() trace.Tracer { return otel.Tracer(scope) }

// Start starts a span of flotilla's under ctx's span.
func Start(ctx context.Context, name string, attrs ...attribute.KeyValue) (context.Context, trace.Span) {
	return tracer().Start(ctx, name, trace.WithAttributes(attrs...))
}

// PodAttributes are the attributes of a span about a proxy (the pod's namespace, name and UID) in workload
// cluster cluster.
func PodAttributes(pod metav1.Object, cluster string) []attribute.KeyValue {
	return []attribute.KeyValue{
		attribute.String(AttrNamespace, pod.GetNamespace()), attribute.String(AttrPodName, pod.GetName()),
		attribute.String(AttrPodUID, string(pod.GetUID())), attribute.String(AttrCluster, cluster),
	}
}

// SetPodUID records the UID of the proxy ctx's span is about, once it is known (a span started from a key
// has the pod's namespace and name only).
func SetPodUID(ctx context.Context, uid types.UID) {
	trace.SpanFromContext(ctx).SetAttributes(attribute.String(AttrPodUID, string(uid)))
}

// ObjectAttributes are the attributes of a span about a followed object of that kind.
func ObjectAttributes(kind string, obj metav1.Object) []attribute.KeyValue {
	return []attribute.KeyValue{
		attribute.String(AttrKind, kind), attribute.String(AttrNamespace, obj.GetNamespace()), attribute.String(AttrName, obj.GetName()),
	}
}

// End ends span, marked failed with err unless err is nil.
func End(span trace.Span, err error) {
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}

// LogFields are trace_id and span_id of ctx's span for a log line, none when ctx has no span (tracing off).
func LogFields(ctx context.Context) map[string]any {
	sc := trace.SpanContextFromContext(ctx)
	if !sc.IsValid() {
		return nil
	}
	return map[string]any{"trace_id": sc.TraceID().String(), "span_id": sc.SpanID().String()}
}

// Delegations remembers, per proxy (namespace/name), the span that asked for its delegation:
// virtual-kubelet's pod controller's, when it hands the provider a new pod. The provider's own queues and
// the pod controller's status queue work the proxy later, in other goroutines, with contexts of their own;
// their spans are made children of the remembered one, so that a delegation is one trace from the pod
// controller's sync to the proxy's Running status. With tracing off, contexts carry no span and nothing is
// remembered. The zero value is ready to use.
type Delegations struct {
	mu      sync.Mutex
	parents map[string]trace.SpanContext
}

// Begin remembers ctx's span as key's delegation, if ctx has one.
func (d *Delegations) Begin(ctx context.Context, key string) {
	sc := trace.SpanContextFromContext(ctx)
	if !sc.IsValid() {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.parents == nil {
		d.parents = map[string]trace.SpanContext{}
	}
	d.parents[key] = sc
}

// Start starts a span of flotilla's for key's proxy: a child of key's delegation span when it has one (with
// ctx's own span, a virtual-kubelet queue's, as a link), else of ctx's span.
func (d *Delegations) Start(ctx context.Context, key, name string, attrs ...attribute.KeyValue) (context.Context, trace.Span) {
	d.mu.Lock()
	parent, ok := d.parents[key]
	d.mu.Unlock()
	if !ok {
		return Start(ctx, name, attrs...)
	}
	opts := []trace.SpanStartOption{trace.WithAttributes(attrs...)}
	if own := trace.SpanContextFromContext(ctx); own.IsValid() {
		opts = append(opts, trace.WithLinks(trace.Link{SpanContext: own}))
	}
	return tracer().Start(trace.ContextWithSpanContext(ctx, parent), name, opts...)
}

// End forgets key's delegation: its proxy is running or finished, or gone.
func (d *Delegations) End(key string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.parents, key)
}

// Delegated says whether a proxy whose status is status has reached the end of its delegation: Running, or
// finished.
func Delegated(status *corev1.PodStatus) bool {
	switch status.Phase {
	case corev1.PodRunning, corev1.PodSucceeded, corev1.PodFailed:
		return true
	}
	return false
}
