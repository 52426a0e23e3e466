package node

import (
	"cmp"
	"maps"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// observation is everything the virtual node is derived from, as the controller last saw it.
type observation struct {
	probed   bool   // a /readyz probe has finished
	probeErr error  // why the last probe failed; nil when /readyz answered ok
	version  string // the workload apiserver's version, "" until fetched
	synced   bool   // the node and pod caches have listed once; until then nodes and pods are unknown
	nodes    []*corev1.Node
	pods     []*corev1.Pod // pods bound to workload nodes
	requests requestsMemo  // what each of pods holds
}

// desiredNode is the virtual node flotilla wants given what it observed: the object it registers, and the
// labels, annotations and status it sends virtual-kubelet on every change (virtual-kubelet patches only those,
// so spec, which holds the user's cordon, is written once at registration). prev are the conditions last
// derived, so unchanged conditions keep their transition time; now stamps the ones that change.
//
// Until the caches have synced nothing is known about the workload nodes, so the node carries only the base
// labels and zero capacity rather than guesses.
func desiredNode(cfg Config, host string, obs observation, prev []corev1.NodeCondition, now time.Time) *corev1.Node {
	n := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{
			Name:        cfg.NodeName,
			Labels:      BaseLabels(cfg.NodeName, cfg.ClusterName),
			Annotations: map[string]string{AnnotationWorkloadServer: host, AnnotationFailoverAfter: cfg.FailoverAfter.String()},
		},
		Status: corev1.NodeStatus{
			Phase:      corev1.NodeRunning,
			Conditions: conditions(readyCondition(obs), prev, metav1.NewTime(now)),
			Addresses:  addresses(cfg),
			DaemonEndpoints: corev1.NodeDaemonEndpoints{
				KubeletEndpoint: corev1.DaemonEndpoint{Port: cfg.KubeletPort},
			},
			NodeInfo: corev1.NodeSystemInfo{KubeletVersion: obs.version},
		},
	}
	if cfg.Taint {
		n.Spec.Taints = []corev1.Taint{Taint()}
	}
	if !obs.synced {
		n.Status.Capacity, n.Status.Allocatable = resources(nil, nil, cfg.OwnPods, podRequests)
		return n
	}

	n.Labels = nodeLabels(cfg.NodeName, cfg.ClusterName, obs.nodes, cfg.ExcludeLabels)
	maps.Copy(n.Labels, maxPodLabels(obs.nodes, obs.pods, obs.requests.of))
	n.Annotations[AnnotationWorkloadNodes] = strconv.Itoa(len(obs.nodes))
	n.Annotations[AnnotationWorkloadNodesReady] = strconv.Itoa(len(readyNodes(obs.nodes)))
	n.Status.Capacity, n.Status.Allocatable = resources(obs.nodes, obs.pods, cfg.OwnPods, obs.requests.of)
	p := consensus(readyNodes(obs.nodes), platform)
	n.Status.NodeInfo.OperatingSystem, n.Status.NodeInfo.Architecture = p[platformOS], p[platformArch]
	return n
}

// addresses are where the management cluster's apiserver reaches flotilla's kubelet API (logs, exec).
func addresses(cfg Config) []corev1.NodeAddress {
	var addrs []corev1.NodeAddress
	if cfg.InternalIP != "" {
		addrs = append(addrs, corev1.NodeAddress{Type: corev1.NodeInternalIP, Address: cfg.InternalIP})
	}
	return append(addrs, corev1.NodeAddress{Type: corev1.NodeHostName, Address: cfg.NodeName})
}

const (
	platformOS   = "os"
	platformArch = "arch"
)

// platform is a workload node's operating system and architecture, from its kubelet's report or, when a node
// doesn't report one, from the well-known labels. The virtual node reports them when all Ready nodes agree.
func platform(n *corev1.Node) map[string]string {
	p := map[string]string{}
	if os := cmp.Or(n.Status.NodeInfo.OperatingSystem, n.Labels[corev1.LabelOSStable]); os != "" {
		p[platformOS] = os
	}
	if arch := cmp.Or(n.Status.NodeInfo.Architecture, n.Labels[corev1.LabelArchStable]); arch != "" {
		p[platformArch] = arch
	}
	return p
}
