package tracing

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/sirupsen/logrus"
	"go.opentelemetry.io/contrib/exporters/autoexport"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// ServiceName is the service.name of flotilla's spans unless OTEL_SERVICE_NAME or OTEL_RESOURCE_ATTRIBUTES
// say otherwise.
const ServiceName = "flotilla"

// shutdownTimeout bounds the flush of the spans still buffered when flotilla stops.
const shutdownTimeout = 5 * time.Second

// Setup installs, when the OTEL_* environment variables ask for traces (see Enabled), the global
// TracerProvider: OpenTelemetry's SDK with the exporter autoexport picks (OTLP over http/protobuf or gRPC
// per OTEL_EXPORTER_OTLP_PROTOCOL, to OTEL_EXPORTER_OTLP_ENDPOINT; or OTEL_TRACES_EXPORTER's), the sampler
// of OTEL_TRACES_SAMPLER (parent-based, always on, by default), and a resource naming the service, the
// workload cluster and the virtual node, which OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES override.
// virtual-kubelet's spans go to it too (its OpenTelemetry adapter uses the global provider). Otherwise it
// installs nothing: the global provider stays OpenTelemetry's no-op one, and a span costs a context lookup.
// stop flushes the spans still buffered and shuts the provider down; call it once flotilla has stopped.
func Setup(ctx context.Context, cluster, node string) (stop func(), err error) {
	tp, err := newProvider(ctx, os.LookupEnv, cluster, node)
	if err != nil || tp == nil {
		return func() {}, err
	}
	otel.SetTracerProvider(tp)
	otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}))
	// An export that fails (the collector away) is told in flotilla's log, in its format.
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) { logrus.WithError(err).Warn("OpenTelemetry") }))
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
		defer cancel()
		if err := tp.Shutdown(ctx); err != nil {
			logrus.WithError(err).Warn("flushing the last spans")
		}
	}, nil
}

// newProvider is the TracerProvider the environment (lookup) asks for, nil for none.
func newProvider(ctx context.Context, lookup func(string) (string, bool), cluster, node string) (*sdktrace.TracerProvider, error) {
	if !Enabled(lookup) {
		return nil, nil
	}
	exporter, err := autoexport.NewSpanExporter(ctx)
	if err != nil {
		exporterName, _ := lookup(envTracesExporter)
		protocol, _ := lookup(envProtocol)
		return nil, fmt.Errorf("traces exporter (%s=%q, %s=%q): %w", envTracesExporter, exporterName, envProtocol, protocol, err)
	}
	if autoexport.IsNoneSpanExporter(exporter) {
		return nil, nil
	}
	// Later options win: the environment's service name and attributes over flotilla's defaults.
	res, err := resource.New(ctx,
		resource.WithTelemetrySDK(),
		resource.WithAttributes(attribute.String("service.name", ServiceName),
			attribute.String(AttrCluster, cluster), attribute.String(AttrNode, node)),
		resource.WithFromEnv(),
	)
	if err != nil {
		_ = exporter.Shutdown(ctx)
		return nil, fmt.Errorf("trace resource (OTEL_RESOURCE_ATTRIBUTES, OTEL_SERVICE_NAME): %w", err)
	}
	return sdktrace.NewTracerProvider(sdktrace.WithBatcher(exporter), sdktrace.WithResource(res)), nil
}
