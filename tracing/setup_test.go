package tracing

import (
	"context"
	"testing"
)

// TestNoEnvironmentNoProvider: without the OTEL_* variables that ask for traces, no exporter and no
// TracerProvider are made.
func TestNoEnvironmentNoProvider(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  map[string]string
		want bool
	}{
		{"no variables", nil, false},
		{"only a service name and a sampler", map[string]string{"OTEL_SERVICE_NAME": "x", "OTEL_TRACES_SAMPLER": "always_on"}, false},
		{"exporter none", map[string]string{envTracesExporter: "none", envEndpoint: "http://127.0.0.1:1"}, false},
		{"an endpoint", map[string]string{envEndpoint: "http://127.0.0.1:1"}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lookup := func(name string) (string, bool) { v, ok := tc.env[name]; return v, ok }
			tp, err := newProvider(context.Background(), lookup, "eu-west-3-1", "eu-west-3-1")
			if err != nil {
				t.Fatal(err)
			}
			if got := tp != nil; got != tc.want {
				t.Errorf("provider made: %v, want %v", got, tc.want)
			}
			if tp != nil {
				_ = tp.Shutdown(context.Background())
			}
		})
	}
}
