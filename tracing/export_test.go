package tracing_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/flotilla-io/flotilla/tracing"
)

// TestSetupExports: with an OTLP endpoint in the environment, Setup installs a provider whose spans reach
// the collector by stop at the latest, with flotilla's resource (environment attributes added); a request
// made within a span is its child, one made outside any is no span.
func TestSetupExports(t *testing.T) {
	r := startReceiver(t)
	for k, v := range r.environment() {
		t.Setenv(k, v)
	}
	t.Setenv("OTEL_BSP_SCHEDULE_DELAY", "60000") // only stop's flush sends them
	t.Setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment.name=lab")
	stop, err := tracing.Setup(context.Background(), "eu-west-3-1", "vn-1")
	if err != nil {
		t.Fatal(err)
	}
	apiserver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {}))
	defer apiserver.Close()
	client := &http.Client{Transport: tracing.Transport("workload")(http.DefaultTransport)}
	get := func(ctx context.Context) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, apiserver.URL+"/api/v1/namespaces/shop/pods/web-0", nil)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	get(context.Background()) // outside any span: not traced
	ctx, parent := tracing.Start(context.Background(), "test")
	get(ctx)
	parent.End()
	if n := len(r.Spans()); n != 0 {
		t.Fatalf("%d spans exported before stop, with a minute's batching delay", n)
	}
	stop()

	spans := r.Spans()
	if len(spans) != 2 {
		t.Fatalf("want the test's span and one request's, got %+v", spans)
	}
	byName := map[string]span{}
	for _, s := range spans {
		byName[s.Name] = s
		for k, want := range map[string]string{"service.name": "flotilla", tracing.AttrCluster: "eu-west-3-1", tracing.AttrNode: "vn-1", "deployment.environment.name": "lab"} {
			if got := s.Resource[k]; got != want {
				t.Errorf("span %s: resource %s=%q, want %q", s.Name, k, got, want)
			}
		}
	}
	request, ok := byName["workload get pods"]
	if !ok || request.ParentID != byName["test"].SpanID || request.Attributes[tracing.AttrClusterRole] != "workload" {
		t.Errorf("the request's span is not the test span's child with its cluster role: %+v", spans)
	}
}

// TestSetupServiceNameFromEnvironment: OTEL_SERVICE_NAME names the service instead of flotilla.
func TestSetupServiceNameFromEnvironment(t *testing.T) {
	r := startReceiver(t)
	for k, v := range r.environment() {
		t.Setenv(k, v)
	}
	t.Setenv("OTEL_SERVICE_NAME", "flotilla-eu")
	stop, err := tracing.Setup(context.Background(), "eu-west-3-1", "vn-1")
	if err != nil {
		t.Fatal(err)
	}
	_, s := tracing.Start(context.Background(), "test")
	s.End()
	stop()
	if err := wait.PollUntilContextTimeout(context.Background(), 50*time.Millisecond, 5*time.Second, true, func(context.Context) (bool, error) {
		return len(r.Spans()) > 0, nil
	}); err != nil {
		t.Fatal("no span received")
	}
	if got := r.Spans()[0].Resource["service.name"]; got != "flotilla-eu" {
		t.Errorf("service.name %q, want flotilla-eu", got)
	}
}

// TestSetupBadExporter: an OTEL_TRACES_EXPORTER flotilla cannot serve is a readable error naming it.
func TestSetupBadExporter(t *testing.T) {
	t.Setenv("OTEL_TRACES_EXPORTER", "zipkinn")
	_, err := tracing.Setup(context.Background(), "c", "n")
	if err == nil || !strings.Contains(err.Error(), "OTEL_TRACES_EXPORTER") || !strings.Contains(err.Error(), "zipkinn") {
		t.Errorf("error %v, want one naming OTEL_TRACES_EXPORTER and its value", err)
	}
}
