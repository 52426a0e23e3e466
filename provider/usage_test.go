package provider

import (
	"bytes"
	"strconv"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/common/expfmt"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	statsv1alpha1 "k8s.io/kubelet/pkg/apis/stats/v1alpha1"
	metricsv1beta1 "k8s.io/metrics/pkg/apis/metrics/v1beta1"
	"k8s.io/utils/ptr"
)

var t0 = time.Date(2026, 1, 2, 3, 4, 0, 0, time.UTC)

func TestCPUCounterAdvance(t *testing.T) {
	tests := []struct {
		name  string
		c     cpuCounter
		cores float64
		at    time.Time
		want  cpuCounter
	}{
		{name: "the first sample counts its window", cores: 0.5, at: t0, want: cpuCounter{CoreSeconds: 5, At: t0}},
		{name: "a newer sample adds its rate over the time since", c: cpuCounter{CoreSeconds: 5, At: t0}, cores: 2, at: t0.Add(15 * time.Second),
			want: cpuCounter{CoreSeconds: 35, At: t0.Add(15 * time.Second)}},
		{name: "the same sample again changes nothing", c: cpuCounter{CoreSeconds: 5, At: t0}, cores: 2, at: t0, want: cpuCounter{CoreSeconds: 5, At: t0}},
		{name: "an older sample changes nothing", c: cpuCounter{CoreSeconds: 5, At: t0}, cores: 2, at: t0.Add(-time.Second), want: cpuCounter{CoreSeconds: 5, At: t0}},
		{name: "no usage keeps the total", c: cpuCounter{CoreSeconds: 5, At: t0}, at: t0.Add(time.Minute), want: cpuCounter{CoreSeconds: 5, At: t0.Add(time.Minute)}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.c.advance(tc.cores, tc.at, 10*time.Second); got != tc.want {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func nodeMetrics(name, cpu, memory string, at time.Time) metricsv1beta1.NodeMetrics {
	return metricsv1beta1.NodeMetrics{
		ObjectMeta: metav1.ObjectMeta{Name: name}, Timestamp: metav1.NewTime(at), Window: metav1.Duration{Duration: 10 * time.Second},
		Usage: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(cpu), corev1.ResourceMemory: resource.MustParse(memory)},
	}
}

func podMetrics(ns, name string, at time.Time, containers ...metricsv1beta1.ContainerMetrics) metricsv1beta1.PodMetrics {
	return metricsv1beta1.PodMetrics{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Timestamp: metav1.NewTime(at), Window: metav1.Duration{Duration: 10 * time.Second},
		Containers: containers,
	}
}

func containerMetrics(name, cpu, memory string) metricsv1beta1.ContainerMetrics {
	return metricsv1beta1.ContainerMetrics{Name: name,
		Usage: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(cpu), corev1.ResourceMemory: resource.MustParse(memory)}}
}

func TestClusterUsage(t *testing.T) {
	at := t0.Add(20 * time.Second)
	uids := map[string]string{"shop/web-1": "uid-1"}
	tests := []struct {
		name         string
		prev         map[string]cpuCounter
		nodes        []metricsv1beta1.NodeMetrics
		pods         []metricsv1beta1.PodMetrics
		want         nodeUsage
		wantCounters map[string]cpuCounter
	}{
		{name: "no metrics, no usage", want: nodeUsage{}, wantCounters: map[string]cpuCounter{}},
		{
			name:         "the node is the cluster's nodes summed, as of the newest sample",
			nodes:        []metricsv1beta1.NodeMetrics{nodeMetrics("a", "500m", "1Gi", t0), nodeMetrics("b", "1500m", "3Gi", at)},
			want:         nodeUsage{HasNode: true, Node: usagePoint{Cores: 2, CPU: cpuCounter{CoreSeconds: 20, At: at}, WorkingSetBytes: 4 << 30}},
			wantCounters: map[string]cpuCounter{"": {CoreSeconds: 20, At: at}},
		},
		{
			name:  "counters carry on from the last call",
			prev:  map[string]cpuCounter{"": {CoreSeconds: 100, At: t0}, "shop/web-1/app": {CoreSeconds: 7, At: t0}},
			nodes: []metricsv1beta1.NodeMetrics{nodeMetrics("a", "1", "1Gi", at)},
			pods:  []metricsv1beta1.PodMetrics{podMetrics("shop", "web-1", at, containerMetrics("app", "250m", "64Mi"))},
			want: nodeUsage{HasNode: true, Node: usagePoint{Cores: 1, CPU: cpuCounter{CoreSeconds: 120, At: at}, WorkingSetBytes: 1 << 30},
				Pods: []podUsage{{Namespace: "shop", Name: "web-1", UID: "uid-1", Containers: []containerUsage{
					{Name: "app", usagePoint: usagePoint{Cores: 0.25, CPU: cpuCounter{CoreSeconds: 12, At: at}, WorkingSetBytes: 64 << 20}}}}}},
			wantCounters: map[string]cpuCounter{"": {CoreSeconds: 120, At: at}, "shop/web-1/app": {CoreSeconds: 12, At: at}},
		},
		{
			name: "pods that are not this node's delegates are ignored, and a gone pod's counter goes",
			prev: map[string]cpuCounter{"shop/gone/app": {CoreSeconds: 3, At: t0}},
			pods: []metricsv1beta1.PodMetrics{
				podMetrics("shop", "foreign", at, containerMetrics("app", "1", "1Mi")),
				podMetrics("shop", "web-1", at, containerMetrics("sidecar", "10m", "1Mi"), containerMetrics("app", "100m", "2Mi")),
			},
			want: nodeUsage{Pods: []podUsage{{Namespace: "shop", Name: "web-1", UID: "uid-1", Containers: []containerUsage{
				{Name: "app", usagePoint: usagePoint{Cores: 0.1, CPU: cpuCounter{CoreSeconds: 1, At: at}, WorkingSetBytes: 2 << 20}},
				{Name: "sidecar", usagePoint: usagePoint{Cores: 0.01, CPU: cpuCounter{CoreSeconds: 0.1, At: at}, WorkingSetBytes: 1 << 20}},
			}}}},
			wantCounters: map[string]cpuCounter{"shop/web-1/app": {CoreSeconds: 1, At: at}, "shop/web-1/sidecar": {CoreSeconds: 0.1, At: at}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, counters := clusterUsage(tc.prev, tc.nodes, tc.pods, uids)
			if d := cmp.Diff(tc.want, got, cmp.AllowUnexported(containerUsage{})); d != "" {
				t.Errorf("usage differs (-want +got):\n%s", d)
			}
			if d := cmp.Diff(tc.wantCounters, counters); d != "" {
				t.Errorf("counters differ (-want +got):\n%s", d)
			}
		})
	}
}

// TestResourceMetrics pins the text a scraper reads, in the kubelet's names, labels and units.
func TestResourceMetrics(t *testing.T) {
	at := t0.Add(20 * time.Second)
	u := nodeUsage{HasNode: true, Node: usagePoint{Cores: 2, CPU: cpuCounter{CoreSeconds: 120, At: at}, WorkingSetBytes: 1 << 30},
		Pods: []podUsage{{Namespace: "shop", Name: "web-1", UID: "uid-1", Containers: []containerUsage{
			{Name: "app", usagePoint: usagePoint{Cores: 0.25, CPU: cpuCounter{CoreSeconds: 12, At: at}, WorkingSetBytes: 64 << 20}},
			{Name: "sidecar", usagePoint: usagePoint{Cores: 0.01, CPU: cpuCounter{CoreSeconds: 0.5, At: at}, WorkingSetBytes: 1 << 20}},
		}}}}
	var b bytes.Buffer
	for _, f := range resourceMetrics(u) {
		if _, err := expfmt.MetricFamilyToText(&b, f); err != nil {
			t.Fatal(err)
		}
	}
	ms := at.UnixMilli()
	want := `# HELP container_cpu_usage_seconds_total [STABLE] Cumulative cpu time consumed by the container in core-seconds
# TYPE container_cpu_usage_seconds_total counter
container_cpu_usage_seconds_total{container="app",namespace="shop",pod="web-1"} 12 ` + itoa(ms) + `
container_cpu_usage_seconds_total{container="sidecar",namespace="shop",pod="web-1"} 0.5 ` + itoa(ms) + `
# HELP container_memory_working_set_bytes [STABLE] Current working set of the container in bytes
# TYPE container_memory_working_set_bytes gauge
container_memory_working_set_bytes{container="app",namespace="shop",pod="web-1"} 6.7108864e+07 ` + itoa(ms) + `
container_memory_working_set_bytes{container="sidecar",namespace="shop",pod="web-1"} 1.048576e+06 ` + itoa(ms) + `
# HELP node_cpu_usage_seconds_total [STABLE] Cumulative cpu time consumed by the node in core-seconds
# TYPE node_cpu_usage_seconds_total counter
node_cpu_usage_seconds_total 120 ` + itoa(ms) + `
# HELP node_memory_working_set_bytes [STABLE] Current working set of the node in bytes
# TYPE node_memory_working_set_bytes gauge
node_memory_working_set_bytes 1.073741824e+09 ` + itoa(ms) + `
# HELP pod_cpu_usage_seconds_total [STABLE] Cumulative cpu time consumed by the pod in core-seconds
# TYPE pod_cpu_usage_seconds_total counter
pod_cpu_usage_seconds_total{namespace="shop",pod="web-1"} 12.5 ` + itoa(ms) + `
# HELP pod_memory_working_set_bytes [STABLE] Current working set of the pod in bytes
# TYPE pod_memory_working_set_bytes gauge
pod_memory_working_set_bytes{namespace="shop",pod="web-1"} 6.815744e+07 ` + itoa(ms) + `
`
	if d := cmp.Diff(want, b.String()); d != "" {
		t.Errorf("text differs (-want +got):\n%s", d)
	}
	if got := resourceMetrics(nodeUsage{}); len(got) != 0 {
		t.Errorf("no usage gave %d families, want none", len(got))
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func TestWithUsage(t *testing.T) {
	at := t0.Add(20 * time.Second)
	start := metav1.NewTime(t0)
	u := nodeUsage{HasNode: true, Node: usagePoint{Cores: 2, CPU: cpuCounter{CoreSeconds: 120, At: at}, WorkingSetBytes: 1 << 30},
		Pods: []podUsage{{Namespace: "shop", Name: "web-1", UID: "uid-1", Containers: []containerUsage{
			{Name: "app", usagePoint: usagePoint{Cores: 0.25, CPU: cpuCounter{CoreSeconds: 12, At: at}, WorkingSetBytes: 64 << 20}},
		}}}}
	s := &statsv1alpha1.Summary{
		Node: statsv1alpha1.NodeStats{NodeName: "vn", StartTime: start},
		Pods: []statsv1alpha1.PodStats{
			{PodRef: statsv1alpha1.PodReference{Namespace: "shop", Name: "web-1", UID: "uid-1"}, StartTime: start,
				Containers: []statsv1alpha1.ContainerStats{{Name: "app"}, {Name: "unmeasured"}}},
			{PodRef: statsv1alpha1.PodReference{Namespace: "shop", Name: "web-2", UID: "uid-2"}, StartTime: start,
				Containers: []statsv1alpha1.ContainerStats{{Name: "app"}}},
		},
	}
	withUsage(s, u)
	cpu := func(cores float64, total float64) *statsv1alpha1.CPUStats {
		return &statsv1alpha1.CPUStats{Time: metav1.NewTime(at), UsageNanoCores: ptr.To(uint64(cores * 1e9)), UsageCoreNanoSeconds: ptr.To(uint64(total * 1e9))}
	}
	mem := func(b uint64) *statsv1alpha1.MemoryStats {
		return &statsv1alpha1.MemoryStats{Time: metav1.NewTime(at), WorkingSetBytes: ptr.To(b)}
	}
	want := &statsv1alpha1.Summary{
		Node: statsv1alpha1.NodeStats{NodeName: "vn", StartTime: start, CPU: cpu(2, 120), Memory: mem(1 << 30)},
		Pods: []statsv1alpha1.PodStats{
			{PodRef: statsv1alpha1.PodReference{Namespace: "shop", Name: "web-1", UID: "uid-1"}, StartTime: start,
				CPU: cpu(0.25, 12), Memory: mem(64 << 20),
				Containers: []statsv1alpha1.ContainerStats{{Name: "app", CPU: cpu(0.25, 12), Memory: mem(64 << 20)}, {Name: "unmeasured"}}},
			// Not measured (yet): listed without usage.
			{PodRef: statsv1alpha1.PodReference{Namespace: "shop", Name: "web-2", UID: "uid-2"}, StartTime: start,
				Containers: []statsv1alpha1.ContainerStats{{Name: "app"}}},
		},
	}
	if d := cmp.Diff(want, s); d != "" {
		t.Errorf("summary differs (-want +got):\n%s", d)
	}
}
