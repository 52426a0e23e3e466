package tracing

import (
	"net/http"
	"strings"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/attribute"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/trace"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/apiserver/pkg/endpoints/request"
)

// Transport makes each request to a cluster's apiserver a span (OpenTelemetry's otelhttp, as Kubernetes'
// own components trace their clients), named by APISpanName, with the cluster's role (management or
// workload) as AttrClusterRole. Use it as a rest.Config's Wrap. Only a request made within a span gets one:
// informers' lists and watches, made outside any, would otherwise each start a trace of their own. The
// W3C trace context goes with the request, so an apiserver that traces continues the trace.
func Transport(role string) func(http.RoundTripper) http.RoundTripper {
	return func(rt http.RoundTripper) http.RoundTripper {
		return otelhttp.NewTransport(rt,
			otelhttp.WithFilter(func(r *http.Request) bool { return trace.SpanContextFromContext(r.Context()).IsValid() }),
			otelhttp.WithSpanNameFormatter(func(_ string, r *http.Request) string { return APISpanName(role, r) }),
			otelhttp.WithSpanOptions(trace.WithAttributes(attribute.String(AttrClusterRole, role))),
			// Request metrics are package metrics' business; this transport only traces.
			otelhttp.WithMeterProvider(metricnoop.NewMeterProvider()),
		)
	}
}

// apiRequests reads Kubernetes API paths as the apiserver does.
var apiRequests = &request.RequestInfoFactory{APIPrefixes: sets.NewString("api", "apis"), GrouplessAPIPrefixes: sets.NewString("api")}

// APISpanName names the span of a request to a cluster's apiserver "<role> <verb> <resource>[/<subresource>]"
// ("workload create pods", "management update pods/status"), or "<role> <METHOD> <path>" for a path that is
// not a resource's (/version, /healthz): names without object names or namespaces, so they stay few.
func APISpanName(role string, r *http.Request) string {
	info, err := apiRequests.NewRequestInfo(r)
	if err != nil || !info.IsResourceRequest {
		return role + " " + r.Method + " " + r.URL.Path
	}
	resource := info.Resource
	if info.Subresource != "" {
		resource += "/" + info.Subresource
	}
	return strings.Join([]string{role, info.Verb, resource}, " ")
}
