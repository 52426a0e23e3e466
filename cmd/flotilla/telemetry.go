package main

import (
	"github.com/sirupsen/logrus"
	vklog "github.com/virtual-kubelet/virtual-kubelet/log"
	vklogrus "github.com/virtual-kubelet/virtual-kubelet/log/logrus"
	vktrace "github.com/virtual-kubelet/virtual-kubelet/trace"
	vkotel "github.com/virtual-kubelet/virtual-kubelet/trace/opentelemetry"
)

// setupTelemetry sets up flotilla's logging and traces: logrus for logs (virtual-kubelet's too). Metrics are
// package metrics'.
func setupTelemetry() {
	vklog.L = vklogrus.FromLogrus(logrus.NewEntry(logrus.StandardLogger()))
	// virtual-kubelet's spans go to whatever OpenTelemetry tracer provider is installed (none by
	// default, so they cost nothing).
	vktrace.T = vkotel.Adapter{}
}
