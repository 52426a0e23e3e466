// Package metrics is what flotilla tells Prometheus: its own measurements, made with the OpenTelemetry
// metric SDK and read through its Prometheus exporter, beside client-go's work queue, REST client and
// leader election metrics (component-base's Prometheus adapters, registered in component-base's global
// registry when this package is loaded, so before any queue or client exists). Serve serves them on /metrics.
//
// flotilla's own metrics (DESIGN.md, "Metrics" has the contract):
//
//   - flotilla_delegation_duration_seconds{cluster,step}: from a proxy's binding to this node to each step
//     of its delegation (see Step), for proxies bound while this flotilla serves the node.
//   - flotilla_follow_duration_seconds{cluster,kind}: from a change of a followed management object to the
//     write of its copy in the workload cluster.
//   - flotilla_workload_reachable{cluster}: 1 while the workload apiserver answers the health probe, 0 while not.
//   - flotilla_workload_unreachable_total{cluster}: times it turned 0, each a spell of the virtual node
//     NotReady (ClusterUnreachable).
//   - flotilla_workload_allowed_silence_seconds{cluster}: how long the workload apiserver may now be silent
//     before it counts as unreachable (longer than the probe timeout for a while after it stuttered).
//   - flotilla_delegation_refusals_total{cluster,reason}: proxies that got a reason they have no delegate.
//   - flotilla_failovers_total{cluster,node,reason}: cluster-lost taints this flotilla set.
//   - flotilla_fencing_deletions_total{cluster,reason}: delegates deleted because their proxy is gone,
//     evicted or another pod's.
//   - flotilla_proxy_status_writes_total{cluster,change}: proxy status writes sent to the management
//     apiserver, by what they change (the Status... constants).
//   - flotilla_api_requests_total{role,method}: requests sent to each cluster's apiserver.
//   - flotilla_apiserver_info{role,host}: which apiserver (the host label of client-go's rest_client_*
//     metrics) plays which role, to join them by.
//
// Every method of a nil *Recorder does nothing, so the packages it instruments run without one in tests.
package metrics

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel/attribute"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/metric"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"k8s.io/client-go/rest"
	"k8s.io/component-base/metrics/legacyregistry"

	// client-go's work queue, REST client and leader election metrics, into legacyregistry.
	_ "k8s.io/component-base/metrics/prometheus/clientgo"
)

// Recorder makes flotilla's measurements of one workload cluster and gathers them with client-go's.
type Recorder struct {
	cluster  attribute.KeyValue
	registry *prometheus.Registry
	meter    metric.Meter

	requests    metric.Int64Counter
	apiservers  metric.Int64Gauge
	delegation  metric.Float64Histogram
	follow      metric.Float64Histogram
	reachable   metric.Int64Gauge
	unreachable metric.Int64Counter
	refusals    metric.Int64Counter
	failovers   metric.Int64Counter
	fencing     metric.Int64Counter
	statuses    metric.Int64Counter

	delegations delegations
	changes     changes
}

// durationBuckets are the histograms' bucket bounds in seconds: a delegation or follow takes from tens of
// milliseconds (both apiservers near) to minutes (a workload cluster that scales up for the pod).
var durationBuckets = []float64{0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300}

// New prepares the measurements of the workload cluster of that name, in a registry of their own.
func New(cluster string) (*Recorder, error) {
	registry := prometheus.NewRegistry()
	exporter, err := otelprom.New(otelprom.WithRegisterer(registry))
	if err != nil {
		return nil, err
	}
	meter := sdkmetric.NewMeterProvider(sdkmetric.WithReader(exporter)).Meter("github.com/flotilla-io/flotilla")
	r := &Recorder{
		cluster:     attribute.String("cluster", cluster),
		registry:    registry,
		meter:       meter,
		delegations: delegations{pending: map[string]*delegation{}},
		changes:     changes{since: map[string]time.Time{}},
	}
	seconds := func(description string) []metric.Float64HistogramOption {
		return []metric.Float64HistogramOption{metric.WithUnit("s"), metric.WithDescription(description),
			metric.WithExplicitBucketBoundaries(durationBuckets...)}
	}
	errs := make([]error, 10) // one per instrument; the meter refuses only a malformed name
	r.requests, errs[0] = meter.Int64Counter("flotilla.api.requests",
		metric.WithDescription("Requests flotilla sent to a cluster's apiserver, by the cluster's role and HTTP method."))
	r.apiservers, errs[1] = meter.Int64Gauge("flotilla.apiserver.info",
		metric.WithDescription("1 for each apiserver flotilla talks to: its host (as client-go's rest_client_* metrics label it) and role."))
	r.delegation, errs[2] = meter.Float64Histogram("flotilla.delegation.duration",
		seconds("Time from a proxy's binding to this node to each step of its delegation: delegate_created, delegate_running, proxy_running.")...)
	r.follow, errs[3] = meter.Float64Histogram("flotilla.follow.duration",
		seconds("Time from a change of a followed management object to the write of its copy in the workload cluster.")...)
	r.reachable, errs[4] = meter.Int64Gauge("flotilla.workload.reachable",
		metric.WithDescription("1 while the workload apiserver answers flotilla's health probe, 0 while it does not."))
	r.refusals, errs[5] = meter.Int64Counter("flotilla.delegation.refusals",
		metric.WithDescription("Proxies that got a reason they have no delegate (the reason the proxy shows)."))
	r.failovers, errs[6] = meter.Int64Counter("flotilla.failovers",
		metric.WithDescription("Cluster-lost taints this flotilla set on a virtual node, its own (ClusterLost) or a peer's (FlotillaLost)."))
	r.fencing, errs[7] = meter.Int64Counter("flotilla.fencing.deletions",
		metric.WithDescription("Delegates deleted because their proxy is gone, evicted, or another pod's."))
	r.statuses, errs[8] = meter.Int64Counter("flotilla.proxy.status.writes",
		metric.WithDescription("Proxy status writes sent to the management apiserver, by what they change (started, finished, cluster_not_ready, ...)."))
	r.unreachable, errs[9] = meter.Int64Counter("flotilla.workload.unreachable",
		metric.WithDescription("Times the workload apiserver stopped answering flotilla's health probe in time (after answering, or at the first probe): each a spell of the virtual node NotReady, ClusterUnreachable."))
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	// A counter with no series until its first count would hide that first count from increase().
	r.unreachable.Add(context.Background(), 0, metric.WithAttributes(r.cluster))
	return r, nil
}

// Gatherer gathers flotilla's metrics and client-go's (with the Go runtime's and the process's).
func (r *Recorder) Gatherer() prometheus.Gatherer {
	return prometheus.Gatherers{legacyregistry.DefaultGatherer, r.registry}
}

// handler serves what Gatherer gathers in Prometheus' formats.
func (r *Recorder) handler() http.Handler {
	return promhttp.HandlerFor(r.Gatherer(), promhttp.HandlerOpts{})
}

// CountRequests makes every request made with cfg count in flotilla_api_requests_total under role
// ("management" or "workload"), and publishes which apiserver plays that role (flotilla_apiserver_info).
func (r *Recorder) CountRequests(cfg *rest.Config, role string) {
	if r == nil {
		return
	}
	if u, err := url.Parse(cfg.Host); err == nil {
		r.apiservers.Record(context.Background(), 1, metric.WithAttributes(attribute.String("role", role), attribute.String("host", u.Host)))
	}
	cfg.Wrap(func(rt http.RoundTripper) http.RoundTripper {
		return promhttp.RoundTripperFunc(func(req *http.Request) (*http.Response, error) {
			r.requests.Add(req.Context(), 1, metric.WithAttributes(
				attribute.String("role", role), attribute.String("method", req.Method)))
			return rt.RoundTrip(req)
		})
	})
}

// Reachable records whether the workload apiserver answers the health probe, when that changes (and after
// the first probe).
func (r *Recorder) Reachable(reachable bool) {
	if r == nil {
		return
	}
	var v int64
	if reachable {
		v = 1
	} else {
		r.unreachable.Add(context.Background(), 1, metric.WithAttributes(r.cluster))
	}
	r.reachable.Record(context.Background(), v, metric.WithAttributes(r.cluster))
}

// ObserveAllowedSilence publishes allowed, read at each scrape, as flotilla_workload_allowed_silence_seconds.
func (r *Recorder) ObserveAllowedSilence(allowed func() time.Duration) error {
	if r == nil {
		return nil
	}
	_, err := r.meter.Float64ObservableGauge("flotilla.workload.allowed_silence", metric.WithUnit("s"),
		metric.WithDescription("How long the workload apiserver may now send nothing before its cluster counts as unreachable: the probe timeout, or longer for ten minutes after it came back from a silence."),
		metric.WithFloat64Callback(func(_ context.Context, o metric.Float64Observer) error {
			o.Observe(allowed().Seconds(), metric.WithAttributes(r.cluster))
			return nil
		}))
	return err
}

// Refused counts a proxy that got a reason it has no delegate (provider's Reason... constants).
func (r *Recorder) Refused(reason string) {
	if r == nil {
		return
	}
	r.refusals.Add(context.Background(), 1, metric.WithAttributes(r.cluster, attribute.String("reason", reason)))
}

// FailedOver counts a cluster-lost taint set on the named virtual node, for the given Event reason.
func (r *Recorder) FailedOver(node, reason string) {
	if r == nil {
		return
	}
	r.failovers.Add(context.Background(), 1, metric.WithAttributes(r.cluster,
		attribute.String("node", node), attribute.String("reason", reason)))
}

// Reasons a delegate is fenced (deleted for its proxy's sake), the reason label of
// flotilla_fencing_deletions_total.
const (
	// FenceProxyGone: the delegate's proxy is gone from the management cluster.
	FenceProxyGone = "proxy_gone"
	// FenceOrphaned: the periodic collection found the delegate's proxy gone.
	FenceOrphaned = "orphaned"
	// FenceEarlierPod: the delegate belongs to an earlier pod of the same name.
	FenceEarlierPod = "earlier_pod"
	// FenceRemoval: virtual-kubelet's removal of a terminated proxy found its delegate untouched.
	FenceRemoval = "removal"
	// FenceEvicted: the proxy was evicted for re-placement.
	FenceEvicted = "evicted"
)

// Fenced counts a delegate deleted for its proxy's sake (reason: one of the Fence... constants).
func (r *Recorder) Fenced(reason string) {
	if r == nil {
		return
	}
	r.fencing.Add(context.Background(), 1, metric.WithAttributes(r.cluster, attribute.String("reason", reason)))
}

// StatusWritten counts a proxy status write sent to the management apiserver (change: one of the Status...
// constants).
func (r *Recorder) StatusWritten(change string) {
	if r == nil {
		return
	}
	r.statuses.Add(context.Background(), 1, metric.WithAttributes(r.cluster, attribute.String("change", change)))
}

// Kinds of proxy status write, by what they change: the change label of flotilla_proxy_status_writes_total,
// which tells the writes a pod's lifecycle needs (its start, its end) from those an unsteady workload
// cluster or a slow delegate adds.
const (
	// StatusStarted: the proxy leaves Pending (the delegate's kubelet reports it started).
	StatusStarted = "started"
	// StatusFinished: the proxy turns Succeeded or Failed.
	StatusFinished = "finished"
	// StatusClusterNotReady: the proxy shows its workload cluster not Ready.
	StatusClusterNotReady = "cluster_not_ready"
	// StatusClusterReady: the proxy stops showing its workload cluster not Ready.
	StatusClusterReady = "cluster_ready"
	// StatusReadiness: a running proxy's readiness changed: its delegate's, or a mark of the management node
	// lifecycle controller's undone.
	StatusReadiness = "readiness"
	// StatusWaiting: a Pending proxy's reason to wait changed (a problem, the workload scheduler's verdict).
	StatusWaiting = "waiting"
	// StatusContainers: only containers' states changed (a restart, say).
	StatusContainers = "containers"
	// StatusOther: anything else, such as conditions management controllers set.
	StatusOther = "other"
)
