package node

import (
	"maps"
	"regexp"
	"strings"

	corev1 "k8s.io/api/core/v1"
	kubeletapis "k8s.io/kubelet/pkg/apis"
)

// nodeLabels is the full label set flotilla wants on the virtual node: every label the Ready workload nodes
// carrying it agree on, minus the keys exclude matches and those NodeRestriction forbids a node to set on
// itself (kubernetes.io/ and k8s.io/ keys outside the kubelet's set), under the base labels. It is always the full set:
// virtual-kubelet's three-way merge removes labels flotilla set before and no longer wants, and keeps labels
// someone else added by hand.
//
// Only Ready nodes vote, so a broken node's stale labels don't take a label away from a healthy cluster. A
// label only some nodes carry still counts when those agree (a GPU label on the GPU nodes), since the
// workload cluster's own scheduler places the delegate on a node that has it.
func nodeLabels(nodeName, clusterName string, nodes []*corev1.Node, exclude *regexp.Regexp) map[string]string {
	labels := consensus(readyNodes(nodes), func(n *corev1.Node) map[string]string { return n.Labels })
	maps.DeleteFunc(labels, func(key, _ string) bool { return exclude.MatchString(key) || !selfSettable(key) })
	maps.Copy(labels, BaseLabels(nodeName, clusterName))
	return labels
}

// selfSettable says whether NodeRestriction admission lets a node set a label key on its own Node: any key
// outside the kubernetes.io and k8s.io namespaces, and the kubelet's own ones inside them
// (topology.kubernetes.io/zone, node.kubernetes.io/instance-type, ...).
func selfSettable(key string) bool {
	namespace, _, ok := strings.Cut(key, "/")
	if !ok {
		return true
	}
	restricted := func(domain string) bool { return namespace == domain || strings.HasSuffix(namespace, "."+domain) }
	return !(restricted("kubernetes.io") || restricted("k8s.io")) || kubeletapis.IsKubeletLabel(key)
}

// consensus returns, for each key that fields reports for some node, the value every node reporting that key
// agrees on; keys reported with different values are dropped.
func consensus(nodes []*corev1.Node, fields func(*corev1.Node) map[string]string) map[string]string {
	agreed := map[string]string{}
	conflicting := map[string]bool{}
	for _, n := range nodes {
		for key, value := range fields(n) {
			if conflicting[key] {
				continue
			}
			if seen, ok := agreed[key]; ok && seen != value {
				delete(agreed, key)
				conflicting[key] = true
				continue
			}
			agreed[key] = value
		}
	}
	return agreed
}
