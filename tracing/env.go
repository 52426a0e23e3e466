package tracing

import "strings"

// The OpenTelemetry environment variables that decide whether flotilla exports traces. The others (protocol,
// headers, sampler, resource attributes, batching) are read by the SDK and its exporters themselves.
const (
	envSDKDisabled    = "OTEL_SDK_DISABLED"
	envTracesExporter = "OTEL_TRACES_EXPORTER"
	envEndpoint       = "OTEL_EXPORTER_OTLP_ENDPOINT"
	envTracesEndpoint = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
	// envProtocol is only named in errors: autoexport reads it (and OTEL_EXPORTER_OTLP_TRACES_PROTOCOL).
	envProtocol = "OTEL_EXPORTER_OTLP_PROTOCOL"
)

// Enabled says whether the environment asks for traces. The OpenTelemetry SDK's own default is an OTLP
// exporter to localhost, which would have every flotilla without a collector beside it record spans and
// fail to send them; flotilla exports only when told where or how to: an OTLP endpoint, or an
// OTEL_TRACES_EXPORTER other than "none". OTEL_SDK_DISABLED=true turns everything off, as the specification
// says. lookup is os.LookupEnv, or a test's stand-in.
func Enabled(lookup func(string) (string, bool)) bool {
	value := func(name string) string {
		v, _ := lookup(name)
		return strings.TrimSpace(v)
	}
	if strings.EqualFold(value(envSDKDisabled), "true") {
		return false
	}
	if exporter := value(envTracesExporter); exporter != "" {
		return exporter != "none"
	}
	return value(envEndpoint) != "" || value(envTracesEndpoint) != ""
}
