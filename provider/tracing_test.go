package provider

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/sirupsen/logrus"
	"github.com/virtual-kubelet/virtual-kubelet/log"
	vklogrus "github.com/virtual-kubelet/virtual-kubelet/log/logrus"
	"go.opentelemetry.io/otel"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	corev1 "k8s.io/api/core/v1"

	"github.com/flotilla-io/flotilla/tracing"
)

// TestSyncLogLinesNameThePod: a line logged on a proxy's sync path (here a sync that must wait for a stale
// delegate to go, and is retried) names the proxy's key and the workload cluster, as JSON fields; with a
// TracerProvider installed, also the trace and span of the sync, and none without.
func TestSyncLogLinesNameThePod(t *testing.T) {
	h := newHarness(t)
	var out bytes.Buffer
	logger := logrus.New()
	logger.SetOutput(&out)
	logger.SetFormatter(&logrus.JSONFormatter{})
	ctx := log.WithLogger(h.ctx, vklogrus.FromLogrus(logrus.NewEntry(logger)))
	failingSync := func(name string) map[string]any {
		t.Helper()
		proxy := h.bind(h.newProxy(name))
		h.createDelegate(proxy, func(d *corev1.Pod) {
			d.Labels[LabelParentUID] = string(otherUID())
			d.Spec.SchedulerName = "nobody" // unscheduled, so kwok leaves it be
		})
		out.Reset()
		if err := h.p.syncTraced(ctx, h.ns+"/"+name, tracing.SpanSyncDelegate, h.p.syncDelegate); err == nil {
			t.Fatal("the sync should wait for the stale delegate to go")
		}
		var line map[string]any
		for _, l := range strings.Split(strings.TrimSpace(out.String()), "\n") {
			if err := json.Unmarshal([]byte(l), &line); err != nil {
				t.Fatalf("not a JSON line: %q", l)
			}
		}
		if line == nil || line["msg"] != "will retry" {
			t.Fatalf("the sync logged %q, want a last line saying it will retry", out.String())
		}
		if line["pod"] != h.ns+"/"+name || line["cluster"] != workloadName || !strings.Contains(line["error"].(string), "earlier pod") {
			t.Errorf("line %v: want pod %s/%s, cluster %s and the error", line, h.ns, name, workloadName)
		}
		return line
	}

	if line := failingSync("untraced"); line["trace_id"] != nil || line["span_id"] != nil {
		t.Errorf("with no TracerProvider, line %v names a trace", line)
	}

	spans := tracetest.NewSpanRecorder()
	previous := otel.GetTracerProvider()
	otel.SetTracerProvider(sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans)))
	t.Cleanup(func() { otel.SetTracerProvider(previous) })
	line := failingSync("traced")
	var sync sdktrace.ReadOnlySpan
	for _, s := range spans.Ended() {
		if s.Name() == tracing.SpanSyncDelegate {
			sync = s
		}
	}
	if sync == nil {
		t.Fatalf("no %s span", tracing.SpanSyncDelegate)
	}
	if line["trace_id"] != sync.SpanContext().TraceID().String() || line["span_id"] != sync.SpanContext().SpanID().String() {
		t.Errorf("line %v: want trace_id %s and span_id %s of the sync's span", line, sync.SpanContext().TraceID(), sync.SpanContext().SpanID())
	}
}
