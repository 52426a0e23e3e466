package tracing

import "testing"

func TestEnabled(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  map[string]string
		want bool
	}{
		{"nothing set: off", nil, false},
		{"an endpoint for every signal", map[string]string{envEndpoint: "http://collector:4318"}, true},
		{"an endpoint for traces", map[string]string{envTracesEndpoint: "http://collector:4318/v1/traces"}, true},
		{"an empty endpoint is none", map[string]string{envEndpoint: " "}, false},
		{"an exporter without an endpoint (the SDK's default one)", map[string]string{envTracesExporter: "otlp"}, true},
		{"the console exporter", map[string]string{envTracesExporter: "console"}, true},
		{"exporter none wins over an endpoint", map[string]string{envTracesExporter: "none", envEndpoint: "http://collector:4318"}, false},
		{"a disabled SDK wins over everything", map[string]string{envSDKDisabled: "TRUE", envTracesExporter: "otlp", envEndpoint: "http://c:4318"}, false},
		{"OTEL_SDK_DISABLED=false is not disabled", map[string]string{envSDKDisabled: "false", envEndpoint: "http://c:4318"}, true},
		{"other OTEL variables alone do not turn it on", map[string]string{"OTEL_SERVICE_NAME": "x", "OTEL_TRACES_SAMPLER": "always_on", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lookup := func(name string) (string, bool) { v, ok := tc.env[name]; return v, ok }
			if got := Enabled(lookup); got != tc.want {
				t.Errorf("Enabled = %v, want %v", got, tc.want)
			}
		})
	}
}
