package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/flotilla-io/flotilla/provider"
)

// TestPrometheusMetrics: after a delegation, a follow, a refusal and a fencing deletion, the lab flotilla's
// /metrics shows each of them, beside client-go's work queue and REST client metrics of both clusters.
func TestPrometheusMetrics(t *testing.T) {
	ctx := testContext(t, 4*time.Minute)
	cluster := shared.Workloads[0]
	ns := namespace(t, shared.Management.Client)
	configMaps := shared.Management.Client.CoreV1().ConfigMaps(ns)
	pods := shared.Management.Client.CoreV1().Pods(ns)

	// A delegation, of a pod whose ConfigMap follows it.
	if _, err := configMaps.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "settings"}, Data: map[string]string{"a": "1"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	web := podOn(ns, "web", cluster.Name)
	web.Spec.Volumes = []corev1.Volume{{Name: "settings", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
		LocalObjectReference: corev1.LocalObjectReference{Name: "settings"}}}}}
	if _, err := pods.Create(ctx, web, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, time.Minute, "web Running", func(ctx context.Context) (bool, string) {
		p, err := pods.Get(ctx, "web", metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		return p.Status.Phase == corev1.PodRunning, string(p.Status.Phase)
	})

	// A follow: the ConfigMap's change reaches its copy.
	cm, err := configMaps.Get(ctx, "settings", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cm.Data["a"] = "2"
	if _, err := configMaps.Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, time.Minute, "the ConfigMap's change in its copy", func(ctx context.Context) (bool, string) {
		cp, err := cluster.Client.CoreV1().ConfigMaps(ns).Get(ctx, "settings", metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		return cp.Data["a"] == "2", fmt.Sprint(cp.Data)
	})

	// A refusal: a pod whose mandatory ConfigMap does not exist.
	broken := podOn(ns, "broken", cluster.Name)
	broken.Spec.Containers[0].EnvFrom = []corev1.EnvFromSource{{ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "absent"}}}}
	if _, err := pods.Create(ctx, broken, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, time.Minute, "broken showing "+provider.ReasonCreateContainerConfigError, func(ctx context.Context) (bool, string) {
		p, err := pods.Get(ctx, "broken", metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		return p.Status.Reason == provider.ReasonCreateContainerConfigError, p.Status.Reason
	})

	// A fencing deletion: a delegate of this node whose proxy does not exist (the workload admin made it).
	system, err := shared.Management.Client.CoreV1().Namespaces().Get(ctx, metav1.NamespaceSystem, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	stray := podOn(ns, "stray", cluster.Name)
	stray.Spec.NodeSelector, stray.Spec.Tolerations = nil, nil
	stray.Labels = map[string]string{provider.LabelManagement: string(system.UID), provider.LabelNode: cluster.Name, provider.LabelParentUID: "no-such-proxy"}
	if _, err := cluster.Client.CoreV1().Pods(ns).Create(ctx, stray, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, time.Minute, "the stray delegate deleted", func(ctx context.Context) (bool, string) {
		p, err := cluster.Client.CoreV1().Pods(ns).Get(ctx, "stray", metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return true, ""
		}
		if err != nil {
			return false, err.Error()
		}
		return p.DeletionTimestamp != nil, "not being deleted"
	})

	// flotilla counts the fencing once the apiserver has answered its delete, a moment after the test can see
	// the deletion.
	at := map[string]string{"cluster": cluster.Name}
	var families map[string]*dto.MetricFamily
	eventually(t, 30*time.Second, "the fencing deletion counted", func(context.Context) (bool, string) {
		var err error
		if families, err = shared.ScrapeFlotilla(cluster.Name); err != nil {
			return false, err.Error()
		}
		v, _ := sampleValue(families["flotilla_fencing_deletions_total"], with(at, "reason", "proxy_gone"))
		return v > 0, fmt.Sprintf("flotilla_fencing_deletions_total{reason=proxy_gone} = %v", v)
	})
	hosts := map[string]string{}
	for _, m := range families["flotilla_apiserver_info"].GetMetric() {
		hosts[label(m, "role")] = label(m, "host")
	}
	if hosts["management"] == "" || hosts["workload"] == "" || hosts["management"] == hosts["workload"] {
		t.Errorf("flotilla_apiserver_info: want a management and a workload host, got %v", hosts)
	}
	for _, want := range []struct {
		family string
		labels map[string]string
	}{
		{"flotilla_delegation_duration_seconds", with(at, "step", "delegate_created")},
		{"flotilla_delegation_duration_seconds", with(at, "step", "delegate_running")},
		{"flotilla_delegation_duration_seconds", with(at, "step", "proxy_running")},
		{"flotilla_follow_duration_seconds", with(at, "kind", "ConfigMap")},
		{"flotilla_delegation_refusals_total", with(at, "reason", provider.ReasonCreateContainerConfigError)},
		{"flotilla_fencing_deletions_total", with(at, "reason", "proxy_gone")},
		{"flotilla_proxy_status_writes_total", with(at, "change", "started")},
		{"flotilla_workload_reachable", at},
		{"flotilla_api_requests_total", map[string]string{"role": "workload", "method": "POST"}},
		{"workqueue_adds_total", map[string]string{"name": "flotilla-delegates"}},
		{"workqueue_retries_total", map[string]string{"name": "flotilla-delegates"}},
		{"workqueue_queue_duration_seconds", map[string]string{"name": "follow-configmap"}},
		{"workqueue_work_duration_seconds", map[string]string{"name": "flotilla-statuses"}},
		{"rest_client_requests_total", map[string]string{"host": hosts["management"], "code": "201"}},
		{"rest_client_requests_total", map[string]string{"host": hosts["workload"], "code": "201"}},
		{"rest_client_request_duration_seconds", map[string]string{"host": hosts["workload"], "verb": "POST"}},
		{"rest_client_rate_limiter_duration_seconds", map[string]string{"host": hosts["management"]}},
	} {
		v, ok := sampleValue(families[want.family], want.labels)
		t.Logf("%s%v = %v%s", want.family, want.labels, v, meanOf(families[want.family], want.labels))
		if !ok || v <= 0 {
			t.Errorf("%s%v: want a positive value, got %v (present: %v)", want.family, want.labels, v, ok)
		}
	}
	// Gauges that are there, whatever their value.
	for _, family := range []string{"workqueue_depth", "workqueue_unfinished_work_seconds", "workqueue_longest_running_processor_seconds"} {
		if _, ok := sampleValue(families[family], map[string]string{"name": "flotilla-delegates"}); !ok {
			t.Errorf("%s{name=flotilla-delegates} missing", family)
		}
	}
}

// TestMetricsAccess: /metrics off loopback is served over HTTPS only to callers the management apiserver
// authenticates and authorizes (nonResourceURL /metrics, get), by a standby replica whose node identity asks
// it; with --profiling, /debug/pprof/* only to callers authorized for that URL, not to metrics readers; the
// replica's /healthz and /readyz answer anyone.
func TestMetricsAccess(t *testing.T) {
	ctx := testContext(t, 3*time.Minute)
	cluster := shared.Workloads[1]
	ns := namespace(t, shared.Management.Client)
	port := freePort(t)
	// A standby: its failover identity may hold no Lease in this namespace, so it never leads.
	replica, err := shared.AddReplica(cluster.Name, "metrics-access", "--leader-elect", "--leader-elect-namespace="+ns,
		"--metrics-address=:"+strconv.Itoa(port), "--profiling")
	if err != nil {
		t.Fatal(err)
	}
	if err := replica.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = replica.Stop() })

	plain := &http.Client{Timeout: 5 * time.Second}
	for _, path := range []string{"/healthz", "/readyz"} {
		eventually(t, time.Minute, "the standby's "+path, func(context.Context) (bool, string) {
			code, body, err := get(plain, replica.HealthURL()+path, "")
			return err == nil && code == http.StatusOK, fmt.Sprintf("%d %s %v", code, body, err)
		})
	}
	own, err := shared.FlotillaHealth(cluster.Name)
	if err != nil {
		t.Fatal(err)
	}
	if code, body, err := get(plain, own+"/readyz", ""); err != nil || code != http.StatusOK {
		t.Errorf("the serving flotilla's /readyz: %d %s %v", code, body, err)
	}

	// The serving certificate is the lab CA's, for the replica's kubelet address.
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(shared.Management.Config.CAData)
	secure := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: replica.InternalIP}}}
	if code, _, err := get(plain, "http://127.0.0.1:"+strconv.Itoa(port)+"/metrics", ""); err == nil && code == http.StatusOK {
		t.Errorf("/metrics off loopback answered plain HTTP")
	}

	accounts := shared.Management.Client.CoreV1().ServiceAccounts(ns)
	token := func(name string) string {
		t.Helper()
		if _, err := accounts.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		tr, err := accounts.CreateToken(ctx, name, &authenticationv1.TokenRequest{}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return tr.Status.Token
	}
	stranger, scraper, profiler := token("stranger"), token("scraper"), token("profiler")
	rbac := shared.Management.Client.RbacV1()
	// grant lets ServiceAccount account get the non-resource URLs.
	grant := func(account string, urls ...string) {
		t.Helper()
		name := ns + "-" + account
		role := &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: name},
			Rules: []rbacv1.PolicyRule{{NonResourceURLs: urls, Verbs: []string{"get"}}}}
		if _, err := rbac.ClusterRoles().Create(ctx, role, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = rbac.ClusterRoles().Delete(context.Background(), name, metav1.DeleteOptions{}) })
		binding := &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: name},
			RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: name},
			Subjects: []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: ns, Name: account}}}
		if _, err := rbac.ClusterRoleBindings().Create(ctx, binding, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = rbac.ClusterRoleBindings().Delete(context.Background(), name, metav1.DeleteOptions{}) })
	}
	grant("scraper", "/metrics")
	// As kube-apiserver's system:monitoring role spells a profiler's right.
	grant("profiler", "/debug/pprof", "/debug/pprof/*")

	base := "https://127.0.0.1:" + strconv.Itoa(port)
	for _, c := range []struct {
		who, token, path string
		want             int
		// body is what an answer of 200 holds.
		body string
	}{
		{"anonymous", "", "/metrics", http.StatusUnauthorized, ""},
		{"a forged token", "not-a-token", "/metrics", http.StatusUnauthorized, ""},
		{"a ServiceAccount without the right", stranger, "/metrics", http.StatusForbidden, ""},
		{"a ServiceAccount allowed to get /metrics", scraper, "/metrics", http.StatusOK, "flotilla_api_requests_total"},
		{"anonymous", "", "/debug/pprof/heap", http.StatusUnauthorized, ""},
		{"a ServiceAccount without the right", stranger, "/debug/pprof/heap", http.StatusForbidden, ""},
		// A metrics reader is no profiler.
		{"a ServiceAccount allowed to get /metrics", scraper, "/debug/pprof/heap", http.StatusForbidden, ""},
		{"a ServiceAccount allowed to get /debug/pprof/*", profiler, "/debug/pprof/heap?debug=1", http.StatusOK, "heap profile:"},
		{"a ServiceAccount allowed to get /debug/pprof/*", profiler, "/metrics", http.StatusForbidden, ""},
	} {
		var body string
		// The server starts once the replica's management identity is known; the binding may take a moment.
		eventually(t, time.Minute, fmt.Sprintf("%s answered %d for %s", c.who, c.want, c.path), func(context.Context) (bool, string) {
			code, b, err := get(secure, base+c.path, c.token)
			body = b
			return err == nil && code == c.want, fmt.Sprintf("%d %.200s %v", code, b, err)
		})
		t.Logf("%s, %s: %d", c.who, c.path, c.want)
		if !strings.Contains(body, c.body) {
			t.Errorf("%s for %s lacks %q:\n%.500s", c.path, c.who, c.body, body)
		}
	}
}

// flotillaSample sums a family's samples with the given labels over the /metrics of the flotillas of the named
// workload clusters (see sampleValue).
func flotillaSample(t *testing.T, clusters []string, family string, labels map[string]string) float64 {
	t.Helper()
	var sum float64
	for _, c := range clusters {
		families, err := shared.ScrapeFlotilla(c)
		if err != nil {
			t.Fatal(err)
		}
		v, _ := sampleValue(families[family], labels)
		sum += v
	}
	t.Logf("%s%v over %v: %v", family, labels, clusters, sum)
	return sum
}

// meanOf says the mean of a histogram's samples with the given labels, "" for other families.
func meanOf(family *dto.MetricFamily, labels map[string]string) string {
	var sum, count float64
	for _, m := range matching(family, labels) {
		sum += m.GetHistogram().GetSampleSum()
		count += float64(m.GetHistogram().GetSampleCount())
	}
	if family.GetType() != dto.MetricType_HISTOGRAM || count == 0 {
		return ""
	}
	return fmt.Sprintf(" samples, mean %.3fs", sum/count)
}

// get GETs url, with a bearer token if one is given, and returns the status code and body.
func get(client *http.Client, url, token string) (int, string, error) {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return 0, "", err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body), err
}

// freePort is a TCP port free on every address of the machine right now.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", ":0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// with is labels plus one more.
func with(labels map[string]string, name, value string) map[string]string {
	out := map[string]string{name: value}
	for k, v := range labels {
		out[k] = v
	}
	return out
}

// label is the value of a metric's label.
func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

// matching are the family's samples that carry all the given labels.
func matching(family *dto.MetricFamily, labels map[string]string) []*dto.Metric {
	var out []*dto.Metric
	for _, m := range family.GetMetric() {
		matches := true
		for k, v := range labels {
			matches = matches && label(m, k) == v
		}
		if matches {
			out = append(out, m)
		}
	}
	return out
}

// sampleValue sums the family's samples that carry all the given labels: counters' and gauges' values,
// histograms' sample counts; false when none does.
func sampleValue(family *dto.MetricFamily, labels map[string]string) (float64, bool) {
	var sum float64
	samples := matching(family, labels)
	for _, m := range samples {
		switch {
		case m.Counter != nil:
			sum += m.GetCounter().GetValue()
		case m.Gauge != nil:
			sum += m.GetGauge().GetValue()
		case m.Histogram != nil:
			sum += float64(m.GetHistogram().GetSampleCount())
		}
	}
	return sum, len(samples) > 0
}
