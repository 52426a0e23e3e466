package metrics

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/VictoriaMetrics/metricsql"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/workqueue"
)

const dashboardFile = "../deploy/grafana/flotilla.json"

// TestDashboardNamesExportedMetrics: every PromQL expression of the Grafana dashboard parses, and every metric
// it names is one flotilla exports: the names come from a real registry, gathered after each instrument (and
// client-go's work queue and REST client) has been used once, not from a list kept by hand.
func TestDashboardNamesExportedMetrics(t *testing.T) {
	exprs, err := dashboardExpressions(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	if len(exprs) < 10 {
		t.Fatalf("only %d expressions found in %s", len(exprs), dashboardFile)
	}
	exported := exportedNames(t)
	for _, expr := range exprs {
		names, err := metricNames(expr)
		if err != nil {
			t.Errorf("%v", err)
			continue
		}
		for _, name := range names {
			if !exported[name] {
				t.Errorf("%s names %s, which flotilla does not export", expr, name)
			}
		}
	}
}

// exportedNames exercises every instrument and gathers the names of the series flotilla then serves
// (histograms' _bucket, _sum and _count).
func exportedNames(t *testing.T) map[string]bool {
	t.Helper()
	r, err := New("eu-1")
	if err != nil {
		t.Fatal(err)
	}
	apiserver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"kind":"Namespace","apiVersion":"v1","metadata":{"name":"default"}}`))
	}))
	defer apiserver.Close()
	cfg := &rest.Config{Host: apiserver.URL}
	r.CountRequests(cfg, "management")
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := client.CoreV1().Namespaces().Get(context.Background(), "default", metav1.GetOptions{}); err != nil {
		t.Fatal(err)
	}
	queue := workqueue.NewTypedRateLimitingQueueWithConfig(workqueue.DefaultTypedControllerRateLimiter[string](),
		workqueue.TypedRateLimitingQueueConfig[string]{Name: "dashboard-test"})
	defer queue.ShutDown()
	queue.Add("a")
	key, _ := queue.Get()
	queue.AddRateLimited(key)
	queue.Done(key)

	exerciseAll(r)

	families, err := r.Gatherer().Gather()
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, f := range families {
		names[f.GetName()] = true
		if f.GetType().String() == "HISTOGRAM" {
			for _, suffix := range []string{"_bucket", "_sum", "_count"} {
				names[f.GetName()+suffix] = true
			}
		}
	}
	return names
}

// exerciseAll uses each of flotilla's own instruments once.
func exerciseAll(r *Recorder) {
	proxy := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{UID: "p", Namespace: "ns", Name: "web"}}
	events := r.ProxyEvents()
	events.OnAdd(proxy, false)
	r.DelegationStep(proxy.UID, DelegateCreated)
	running := proxy.DeepCopy()
	running.Status.Phase = corev1.PodRunning
	events.OnUpdate(proxy, running)
	changes := r.FollowChanges("ConfigMap")
	changes.OnUpdate(&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "cm", ResourceVersion: "1"}},
		&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "cm", ResourceVersion: "2"}})
	r.FollowWritten("ConfigMap", "ns/cm")
	r.Reachable(true)
	r.Refused("Refused")
	r.FailedOver("eu-2", "FlotillaLost")
	r.Fenced(FenceOrphaned)
}

// dashboardExpressions are the PromQL expressions of a Grafana dashboard's panels (rows' too), and of its
// template variables' label_values queries the metric they read, as an expression of its own.
func dashboardExpressions(file string) ([]string, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	var dashboard struct {
		Panels     []panel `json:"panels"`
		Templating struct {
			List []struct {
				Query json.RawMessage `json:"query"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(data, &dashboard); err != nil {
		return nil, err
	}
	var exprs []string
	var walk func([]panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			for _, target := range p.Targets {
				exprs = append(exprs, target.Expr)
			}
			walk(p.Panels)
		}
	}
	walk(dashboard.Panels)
	labelValues := regexp.MustCompile(`label_values\(\s*([a-zA-Z_:][a-zA-Z0-9_:]*)`)
	for _, v := range dashboard.Templating.List {
		for _, m := range labelValues.FindAllStringSubmatch(string(v.Query), -1) {
			exprs = append(exprs, m[1])
		}
	}
	return exprs, nil
}

type panel struct {
	Targets []struct {
		Expr string `json:"expr"`
	} `json:"targets"`
	Panels []panel `json:"panels"`
}

// metricNames parses a PromQL expression and returns the metric names it selects. MetricsQL, whose parser
// this is, accepts PromQL and more; the one PromQL rule it relaxes that a dashboard would trip on, a range
// function without a range ([5m]), is checked here.
func metricNames(expr string) ([]string, error) {
	if strings.TrimSpace(expr) == "" {
		return nil, errEmpty
	}
	e, err := metricsql.Parse(expr)
	if err != nil {
		return nil, &exprError{expr: expr, err: err.Error()}
	}
	var names []string
	var problem error
	metricsql.VisitAll(e, func(n metricsql.Expr) {
		switch n := n.(type) {
		case *metricsql.FuncExpr:
			if i := metricsql.GetRollupArgIdx(n); i >= 0 && i < len(n.Args) {
				if re, ok := n.Args[i].(*metricsql.RollupExpr); !ok || re.Window == nil {
					problem = &exprError{expr: expr, err: n.Name + "() needs a range vector ([5m])"}
				}
			}
		case *metricsql.MetricExpr:
			for _, filters := range n.LabelFilterss {
				for _, f := range filters {
					if f.Label == "__name__" && !f.IsRegexp && !f.IsNegative && !slices.Contains(names, f.Value) {
						names = append(names, f.Value)
					}
				}
			}
		}
	})
	if problem != nil {
		return nil, problem
	}
	if len(names) == 0 {
		return nil, &exprError{expr: expr, err: "names no metric"}
	}
	return names, nil
}

type exprError struct{ expr, err string }

func (e *exprError) Error() string { return e.expr + ": " + e.err }

var errEmpty = &exprError{expr: "(empty)", err: "a panel target has no expression"}

// TestMetricNames pins what metricNames accepts and refuses.
func TestMetricNames(t *testing.T) {
	for _, c := range []struct {
		expr    string
		want    []string
		wantErr string
	}{
		{expr: `flotilla_workload_reachable{cluster=~"$cluster"}`, want: []string{"flotilla_workload_reachable"}},
		{expr: `histogram_quantile(0.99, sum by (le) (rate(a_bucket[5m]))) * on (instance) group_left (cluster) b`, want: []string{"a_bucket", "b"}},
		{expr: `sum(rate(a_total))`, wantErr: "needs a range vector"},
		{expr: `sum(rate(a_total[5m])`, wantErr: "unexpected token"},
		{expr: `vector(1)`, wantErr: "names no metric"},
		{expr: ``, wantErr: "no expression"},
	} {
		got, err := metricNames(c.expr)
		switch {
		case c.wantErr != "" && (err == nil || !strings.Contains(err.Error(), c.wantErr)):
			t.Errorf("%q: want an error with %q, got %v", c.expr, c.wantErr, err)
		case c.wantErr == "" && (err != nil || !slices.Equal(got, c.want)):
			t.Errorf("%q: want %v, got %v, %v", c.expr, c.want, got, err)
		}
	}
}
