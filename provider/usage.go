package provider

import (
	"cmp"
	"slices"
	"time"

	dto "github.com/prometheus/client_model/go"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	statsv1alpha1 "k8s.io/kubelet/pkg/apis/stats/v1alpha1"
	metricsv1beta1 "k8s.io/metrics/pkg/apis/metrics/v1beta1"
	"k8s.io/utils/ptr"
)

// This file translates the workload cluster's metrics API (metrics.k8s.io NodeMetrics and the PodMetrics of
// this node's delegates) into what a kubelet reports: the resource metrics endpoint (/metrics/resource) that
// metrics-server scrapes, and the stats summary (/stats/summary). Pure functions; kubeletapi.go gathers
// the facts and keeps the counters.
//
// The metrics API gives a CPU rate (cores, averaged over a window ending at a timestamp); a kubelet gives a
// cumulative CPU time and leaves the rate to its scraper. counters turn one into the other by integrating
// the rate over the time between the workload cluster's samples, so the rate a scraper derives between two
// of flotilla's answers is the rate the workload cluster measured.

// cpuCounter is a cumulative CPU time, as of the sample it was last advanced by.
type cpuCounter struct {
	CoreSeconds float64
	At          time.Time
}

// advance adds a sample of cores (a rate averaged over window, ending at at). A sample no newer than the
// counter's changes nothing, so asking twice between two of the workload cluster's samples reports the
// same point twice, which scrapers ignore. The first sample counts its own window.
func (c cpuCounter) advance(cores float64, at time.Time, window time.Duration) cpuCounter {
	switch {
	case c.At.IsZero():
		return cpuCounter{CoreSeconds: cores * window.Seconds(), At: at}
	case !at.After(c.At):
		return c
	default:
		return cpuCounter{CoreSeconds: c.CoreSeconds + cores*at.Sub(c.At).Seconds(), At: at}
	}
}

// usagePoint is one measurement in a kubelet's terms.
type usagePoint struct {
	Cores           float64 // CPU rate, as the metrics API reports it
	CPU             cpuCounter
	WorkingSetBytes uint64
}

// containerUsage is a delegate container's usage.
type containerUsage struct {
	Name string
	usagePoint
}

// podUsage is a delegate's usage, named as its proxy is (a delegate keeps its proxy's namespace and name).
type podUsage struct {
	Namespace, Name, UID string
	Containers           []containerUsage
}

// nodeUsage is the usage a virtual node reports: its workload cluster's, summed over its nodes, and its
// delegates'. HasNode says whether the workload cluster reported any node.
type nodeUsage struct {
	HasNode bool
	Node    usagePoint
	Pods    []podUsage
}

// counterKey names a counter: "" for the node, namespace/pod/container for a container.
func counterKey(namespace, pod, container string) string {
	return namespace + "/" + pod + "/" + container
}

// clusterUsage turns the workload cluster's metrics into a virtual node's usage, advancing the counters of
// the last call (prev), and returns the counters to keep: only those still measured, so a deleted pod's
// go. uids maps each delegate's namespace/name to its proxy's UID; PodMetrics of any other pod are
// ignored.
func clusterUsage(prev map[string]cpuCounter, nodes []metricsv1beta1.NodeMetrics, pods []metricsv1beta1.PodMetrics, uids map[string]string) (nodeUsage, map[string]cpuCounter) {
	next := map[string]cpuCounter{}
	var u nodeUsage
	if len(nodes) > 0 {
		var cores float64
		var memory uint64
		var at time.Time
		var window time.Duration
		for _, n := range nodes {
			cores += n.Usage.Cpu().AsApproximateFloat64()
			memory += uint64(max(n.Usage.Memory().Value(), 0))
			// The cluster's sample is as recent as its newest node's: a node whose sample has not moved
			// still counts its last rate.
			if n.Timestamp.After(at) {
				at, window = n.Timestamp.Time, n.Window.Duration
			}
		}
		c := prev[""].advance(cores, at, window)
		next[""] = c
		u.HasNode = true
		u.Node = usagePoint{Cores: cores, CPU: c, WorkingSetBytes: memory}
	}
	for _, pm := range pods {
		uid, ok := uids[pm.Namespace+"/"+pm.Name]
		if !ok {
			continue
		}
		p := podUsage{Namespace: pm.Namespace, Name: pm.Name, UID: uid}
		for _, cm := range pm.Containers {
			key := counterKey(pm.Namespace, pm.Name, cm.Name)
			cores := cm.Usage.Cpu().AsApproximateFloat64()
			c := prev[key].advance(cores, pm.Timestamp.Time, pm.Window.Duration)
			next[key] = c
			p.Containers = append(p.Containers, containerUsage{Name: cm.Name, usagePoint: usagePoint{
				Cores: cores, CPU: c, WorkingSetBytes: uint64(max(cm.Usage.Memory().Value(), 0)),
			}})
		}
		slices.SortFunc(p.Containers, func(a, b containerUsage) int { return cmp.Compare(a.Name, b.Name) })
		u.Pods = append(u.Pods, p)
	}
	slices.SortFunc(u.Pods, func(a, b podUsage) int {
		return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
	})
	return u, next
}

// resourceMetrics is the kubelet's /metrics/resource for a usage: node_, pod_ and container_ CPU time
// (counters) and working set (gauges), each sample stamped with the time the workload cluster measured
// it. A pod's values are its containers' sums. Families without samples are left out.
func resourceMetrics(u nodeUsage) []*dto.MetricFamily {
	family := func(name, help string, t dto.MetricType) *dto.MetricFamily {
		return &dto.MetricFamily{Name: ptr.To(name), Help: ptr.To(help), Type: t.Enum()}
	}
	nodeCPU := family("node_cpu_usage_seconds_total", "[STABLE] Cumulative cpu time consumed by the node in core-seconds", dto.MetricType_COUNTER)
	nodeMem := family("node_memory_working_set_bytes", "[STABLE] Current working set of the node in bytes", dto.MetricType_GAUGE)
	podCPU := family("pod_cpu_usage_seconds_total", "[STABLE] Cumulative cpu time consumed by the pod in core-seconds", dto.MetricType_COUNTER)
	podMem := family("pod_memory_working_set_bytes", "[STABLE] Current working set of the pod in bytes", dto.MetricType_GAUGE)
	ctrCPU := family("container_cpu_usage_seconds_total", "[STABLE] Cumulative cpu time consumed by the container in core-seconds", dto.MetricType_COUNTER)
	ctrMem := family("container_memory_working_set_bytes", "[STABLE] Current working set of the container in bytes", dto.MetricType_GAUGE)

	counter := func(v float64, at time.Time, labels ...string) *dto.Metric {
		return &dto.Metric{Label: labelPairs(labels), Counter: &dto.Counter{Value: ptr.To(v)}, TimestampMs: ptr.To(at.UnixMilli())}
	}
	gauge := func(v float64, at time.Time, labels ...string) *dto.Metric {
		return &dto.Metric{Label: labelPairs(labels), Gauge: &dto.Gauge{Value: ptr.To(v)}, TimestampMs: ptr.To(at.UnixMilli())}
	}
	if u.HasNode {
		nodeCPU.Metric = append(nodeCPU.Metric, counter(u.Node.CPU.CoreSeconds, u.Node.CPU.At))
		nodeMem.Metric = append(nodeMem.Metric, gauge(float64(u.Node.WorkingSetBytes), u.Node.CPU.At))
	}
	for _, p := range u.Pods {
		if len(p.Containers) == 0 {
			continue
		}
		var cpu float64
		var mem uint64
		at := p.Containers[0].CPU.At
		for _, c := range p.Containers {
			cpu += c.CPU.CoreSeconds
			mem += c.WorkingSetBytes
			ctrCPU.Metric = append(ctrCPU.Metric, counter(c.CPU.CoreSeconds, c.CPU.At, "container", c.Name, "namespace", p.Namespace, "pod", p.Name))
			ctrMem.Metric = append(ctrMem.Metric, gauge(float64(c.WorkingSetBytes), c.CPU.At, "container", c.Name, "namespace", p.Namespace, "pod", p.Name))
		}
		podCPU.Metric = append(podCPU.Metric, counter(cpu, at, "namespace", p.Namespace, "pod", p.Name))
		podMem.Metric = append(podMem.Metric, gauge(float64(mem), at, "namespace", p.Namespace, "pod", p.Name))
	}
	var out []*dto.MetricFamily
	for _, f := range []*dto.MetricFamily{ctrCPU, ctrMem, nodeCPU, nodeMem, podCPU, podMem} {
		if len(f.Metric) > 0 {
			out = append(out, f)
		}
	}
	return out
}

// labelPairs turns name, value, name, value... into label pairs.
func labelPairs(nv []string) []*dto.LabelPair {
	var out []*dto.LabelPair
	for i := 0; i+1 < len(nv); i += 2 {
		out = append(out, &dto.LabelPair{Name: ptr.To(nv[i]), Value: ptr.To(nv[i+1])})
	}
	return out
}

// cpuStats and memoryStats are a usage point in the summary API's terms.
func cpuStats(p usagePoint) *statsv1alpha1.CPUStats {
	return &statsv1alpha1.CPUStats{
		Time:                 metav1.NewTime(p.CPU.At),
		UsageNanoCores:       ptr.To(uint64(p.Cores * 1e9)),
		UsageCoreNanoSeconds: ptr.To(uint64(p.CPU.CoreSeconds * 1e9)),
	}
}

func memoryStats(p usagePoint) *statsv1alpha1.MemoryStats {
	return &statsv1alpha1.MemoryStats{Time: metav1.NewTime(p.CPU.At), WorkingSetBytes: ptr.To(p.WorkingSetBytes)}
}

// withUsage fills a summary's node, pods and containers with the usage measured for them; a pod or
// container the metrics API does not report stays without usage, as the summary lists it anyway.
func withUsage(s *statsv1alpha1.Summary, u nodeUsage) {
	if u.HasNode {
		s.Node.CPU, s.Node.Memory = cpuStats(u.Node), memoryStats(u.Node)
	}
	byPod := map[string]podUsage{}
	for _, p := range u.Pods {
		byPod[p.Namespace+"/"+p.Name] = p
	}
	for i := range s.Pods {
		ps := &s.Pods[i]
		pu, ok := byPod[ps.PodRef.Namespace+"/"+ps.PodRef.Name]
		if !ok || len(pu.Containers) == 0 {
			continue
		}
		var sum usagePoint
		for _, c := range pu.Containers {
			sum.Cores += c.Cores
			sum.CPU.CoreSeconds += c.CPU.CoreSeconds
			sum.CPU.At = c.CPU.At
			sum.WorkingSetBytes += c.WorkingSetBytes
			for j := range ps.Containers {
				if ps.Containers[j].Name == c.Name {
					ps.Containers[j].CPU, ps.Containers[j].Memory = cpuStats(c.usagePoint), memoryStats(c.usagePoint)
				}
			}
		}
		ps.CPU, ps.Memory = cpuStats(sum), memoryStats(sum)
	}
}
