package main

import (
	"context"
	"errors"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/sirupsen/logrus"
	vklog "github.com/virtual-kubelet/virtual-kubelet/log"
	vklogrus "github.com/virtual-kubelet/virtual-kubelet/log/logrus"
	vktrace "github.com/virtual-kubelet/virtual-kubelet/trace"
	vkotel "github.com/virtual-kubelet/virtual-kubelet/trace/opentelemetry"
	"go.opentelemetry.io/otel"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/metric"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
)

// telemetry is flotilla's logging and metrics: logrus for logs (virtual-kubelet's too), the OpenTelemetry
// SDK for metrics, read by Prometheus from /metrics.
type telemetry struct {
	requests metric.Int64Counter
	registry *prometheus.Registry
}

func setupTelemetry() (*telemetry, error) {
	vklog.L = vklogrus.FromLogrus(logrus.NewEntry(logrus.StandardLogger()))
	// virtual-kubelet's spans go to whatever OpenTelemetry tracer provider is installed (none by
	// default, so they cost nothing).
	vktrace.T = vkotel.Adapter{}

	registry := prometheus.NewRegistry()
	registry.MustRegister(prometheus.NewGoCollector(), prometheus.NewProcessCollector(prometheus.ProcessCollectorOpts{}))
	exporter, err := otelprom.New(otelprom.WithRegisterer(registry))
	if err != nil {
		return nil, err
	}
	otel.SetMeterProvider(sdkmetric.NewMeterProvider(sdkmetric.WithReader(exporter)))
	requests, err := otel.Meter("flotilla").Int64Counter("flotilla.api.requests",
		metric.WithDescription("Requests flotilla sent to a cluster's apiserver, by cluster role and HTTP method."))
	if err != nil {
		return nil, err
	}
	return &telemetry{requests: requests, registry: registry}, nil
}

// serveMetrics serves /metrics until ctx ends.
func (t *telemetry) serveMetrics(ctx context.Context, addr string) error {
	if addr == "" {
		return nil
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(t.registry, promhttp.HandlerOpts{}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	go func() {
		if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logrus.Errorf("metrics endpoint: %v", err)
		}
	}()
	return nil
}
