package lab

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// ScrapeFlotilla reads the metric families a workload cluster's flotilla serves on its /metrics endpoint.
func (l *Lab) ScrapeFlotilla(name string) (map[string]*dto.MetricFamily, error) {
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

// FlotillaProfile writes a workload cluster's flotilla's profile of the given kind (as net/http/pprof names
// them: "heap", "profile" for CPU, "goroutine", ...) to a file in dir and returns its path, for
// `go tool pprof`. query adds parameters, such as seconds=30 for a CPU profile or gc=1 for a heap profile
// taken after a garbage collection.
func (l *Lab) FlotillaProfile(name, kind string, query url.Values, dir string) (string, error) {
	metricsURL, ok := l.FlotillaMetrics[name]
	if !ok {
		return "", fmt.Errorf("no flotilla for workload cluster %q", name)
	}
	u, err := url.Parse(metricsURL)
	if err != nil {
		return "", err
	}
	u.Path, u.RawQuery = "/debug/pprof/"+kind, query.Encode()
	// A CPU profile takes the seconds it was asked for.
	resp, err := (&http.Client{Timeout: 5 * time.Minute}).Get(u.String())
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		return "", fmt.Errorf("%s: %s: %s", u, resp.Status, body)
	}
	return saveProfile(resp.Body, dir, "flotilla-"+name, kind)
}

// Profile writes the cluster's kube-apiserver's profile of the given kind ("profile" for CPU, "heap", ...)
// to a file in dir and returns its path, as FlotillaProfile does for a flotilla: what the apiserver spends
// its CPU on, for `go tool pprof`.
func (c *Cluster) Profile(ctx context.Context, kind string, query url.Values, dir string) (string, error) {
	req := c.Client.CoreV1().RESTClient().Get().AbsPath("/debug/pprof/" + kind)
	for k, vs := range query {
		for _, v := range vs {
			req = req.Param(k, v)
		}
	}
	body, err := req.Stream(ctx)
	if err != nil {
		return "", fmt.Errorf("%s profile of %s's apiserver: %w", kind, c.Name, err)
	}
	defer body.Close()
	return saveProfile(body, dir, "kube-apiserver-"+c.Name, kind)
}

// saveProfile copies a profile to a file in dir named after whose and what it is, and the time.
func saveProfile(profile io.Reader, dir, whose, kind string) (string, error) {
	path := filepath.Join(dir, fmt.Sprintf("%s-%s-%s.pprof", whose, kind, time.Now().Format("150405")))
	f, err := os.Create(path)
	if err != nil {
		return "", err
	}
	if _, err := io.Copy(f, profile); err != nil {
		f.Close()
		return "", err
	}
	return path, f.Close()
}

// FlotillaRequests reads a flotilla's count of requests sent to the given cluster role ("management" or
// "workload") from its /metrics endpoint, summed over HTTP methods; methods, if given, restricts the sum.
func (l *Lab) FlotillaRequests(name, role string, methods ...string) (float64, error) {
	families, err := l.ScrapeFlotilla(name)
	if err != nil {
		return 0, err
	}
	var total float64
	for _, m := range families["flotilla_api_requests_total"].GetMetric() {
		labels := labelsOf(m)
		if labels["role"] == role && (len(methods) == 0 || slices.Contains(methods, labels["method"])) {
			total += m.GetCounter().GetValue()
		}
	}
	return total, nil
}

// FlotillaValues reads one of a flotilla's counters or gauges from its /metrics endpoint, summed by the value
// of one label (flotilla_proxy_status_writes_total by "change", say).
func (l *Lab) FlotillaValues(name, family, by string) (map[string]float64, error) {
	families, err := l.ScrapeFlotilla(name)
	if err != nil {
		return nil, err
	}
	out := map[string]float64{}
	for _, m := range families[family].GetMetric() {
		out[labelsOf(m)[by]] += m.GetCounter().GetValue() + m.GetGauge().GetValue() // one is nil, read as 0
	}
	return out, nil
}

// FlotillaResponses reads a flotilla's count of answers from the apiserver of the given cluster role
// ("management" or "workload"), by request method and status code ("PUT 409"), from client-go's
// rest_client_requests_total on its /metrics endpoint: which writes a pod costs, and which of them failed.
func (l *Lab) FlotillaResponses(name, role string) (map[string]float64, error) {
	families, err := l.ScrapeFlotilla(name)
	if err != nil {
		return nil, err
	}
	host, err := APIServerHost(families, role)
	if err != nil {
		return nil, fmt.Errorf("flotilla of %s: %w", name, err)
	}
	out := map[string]float64{}
	for _, m := range families["rest_client_requests_total"].GetMetric() {
		if labels := labelsOf(m); labels["host"] == host {
			out[labels["method"]+" "+labels["code"]] += m.GetCounter().GetValue()
		}
	}
	return out, nil
}

// APIServerHost is the host (as client-go's rest_client_* metrics label it) of the apiserver a flotilla's
// metrics families name for the cluster role ("management" or "workload").
func APIServerHost(families map[string]*dto.MetricFamily, role string) (string, error) {
	for _, m := range families["flotilla_apiserver_info"].GetMetric() {
		if labels := labelsOf(m); labels["role"] == role {
			return labels["host"], nil
		}
	}
	return "", fmt.Errorf("no %s apiserver in flotilla_apiserver_info", role)
}

// HistogramTotals sums the sample sums and counts of a histogram family's series that carry all the given
// labels.
func HistogramTotals(families map[string]*dto.MetricFamily, family string, labels map[string]string) (sum, count float64) {
	t := HistogramTotalsBy(families, family, labels, "")[""]
	return t[0], t[1]
}

// Requests is the cluster's apiserver's count, since it started, of requests for resource (plural, as in
// "tokenreviews") with the given verb (as the apiserver labels them: "POST", "GET", "LIST", ...).
func (c *Cluster) Requests(ctx context.Context, resource, verb string) (float64, error) {
	families, err := c.Metrics(ctx)
	if err != nil {
		return 0, err
	}
	var total float64
	for _, m := range families["apiserver_request_total"].GetMetric() {
		labels := labelsOf(m)
		if labels["resource"] == resource && labels["verb"] == verb {
			total += m.GetCounter().GetValue()
		}
	}
	return total, nil
}

// Metrics reads the metric families the cluster's apiserver serves on /metrics.
func (c *Cluster) Metrics(ctx context.Context) (map[string]*dto.MetricFamily, error) {
	raw, err := c.Client.CoreV1().RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
	if err != nil {
		return nil, fmt.Errorf("metrics of %s's apiserver: %w", c.Name, err)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("metrics of %s's apiserver: %w", c.Name, err)
	}
	return families, nil
}

// HistogramTotalsBy is HistogramTotals grouped by the value of one label (series without it group under "").
func HistogramTotalsBy(families map[string]*dto.MetricFamily, family string, labels map[string]string, by string) map[string][2]float64 {
	out := map[string][2]float64{}
	for _, m := range families[family].GetMetric() {
		have := labelsOf(m)
		matches := true
		for k, v := range labels {
			matches = matches && have[k] == v
		}
		if matches {
			t := out[have[by]]
			out[have[by]] = [2]float64{t[0] + m.GetHistogram().GetSampleSum(), t[1] + float64(m.GetHistogram().GetSampleCount())}
		}
	}
	return out
}

func labelsOf(m *dto.Metric) map[string]string {
	labels := map[string]string{}
	for _, lp := range m.GetLabel() {
		labels[lp.GetName()] = lp.GetValue()
	}
	return labels
}
