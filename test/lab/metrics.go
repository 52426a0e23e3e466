package lab

import (
	"fmt"
	"net/http"
	"slices"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// FlotillaRequests reads a flotilla's count of requests sent to the given cluster role ("management" or
// "workload") from its /metrics endpoint, summed over HTTP methods; methods, if given, restricts the sum.
func (l *Lab) FlotillaRequests(name, role string, methods ...string) (float64, error) {
	families, err := l.flotillaMetrics(name)
	if err != nil {
		return 0, err
	}
	var total float64
	for _, m := range families["flotilla_api_requests_total"].GetMetric() {
		labels := map[string]string{}
		for _, lp := range m.GetLabel() {
			labels[lp.GetName()] = lp.GetValue()
		}
		if labels["cluster"] == role && (len(methods) == 0 || slices.Contains(methods, labels["method"])) {
			total += m.GetCounter().GetValue()
		}
	}
	return total, nil
}

// flotillaMetrics reads a flotilla's /metrics endpoint.
func (l *Lab) flotillaMetrics(name string) (map[string]*dto.MetricFamily, error) {
	url, ok := l.FlotillaMetrics[name]
	if !ok {
		return nil, fmt.Errorf("no flotilla for workload cluster %q", name)
	}
	client := &http.Client{Timeout: 5 * time.Second}
	resp, err := client.Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("parsing %s: %w", url, err)
	}
	return families, nil
}
