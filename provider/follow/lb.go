package follow

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
)

// Load-balancer addresses come back through the management object. Each flotilla sees only its own workload
// cluster, so each publishes its copy's status.loadBalancer.ingress in an annotation of its own on the
// management object (LBAnnotation, written by server-side apply under a field manager of its own, so that
// dropping it removes only its key), and every flotilla writes the management object's status as the union
// of all those annotations (UnionLB) whenever it differs: all compute the same answer, so they converge.
//
// Both kinds' entries are held as corev1.LoadBalancerIngress; an Ingress's entries are the same fields
// without ipMode.

// LBAnnotationPrefix starts the annotation keys of the published load-balancer lists.
const LBAnnotationPrefix = "lb.flotilla.io/"

// LBAnnotation is the annotation under which the flotilla of the given virtual node publishes its copy's
// load-balancer ingress list (JSON). A node name too long for an annotation name is shortened with a digest.
func LBAnnotation(nodeName string) string {
	const maxName = 63
	if len(nodeName) > maxName {
		sum := sha256.Sum256([]byte(nodeName))
		nodeName = strings.TrimRight(nodeName[:maxName-9], ".-_") + "-" + hex.EncodeToString(sum[:4])
	}
	return LBAnnotationPrefix + nodeName
}

// CanonicalLB is the list without repeats, sorted by IP, then hostname, then the rest, so the same set is
// always written the same way.
func CanonicalLB(list []corev1.LoadBalancerIngress) []corev1.LoadBalancerIngress {
	type keyed struct {
		e   corev1.LoadBalancerIngress
		key string
	}
	var ks []keyed
	for _, e := range list {
		b, _ := json.Marshal(e)
		ks = append(ks, keyed{e, string(b)})
	}
	slices.SortFunc(ks, func(a, b keyed) int {
		return cmp.Or(cmp.Compare(a.e.IP, b.e.IP), cmp.Compare(a.e.Hostname, b.e.Hostname), cmp.Compare(a.key, b.key))
	})
	ks = slices.CompactFunc(ks, func(a, b keyed) bool { return a.key == b.key })
	if len(ks) == 0 {
		return nil
	}
	out := make([]corev1.LoadBalancerIngress, len(ks))
	for i, k := range ks {
		out[i] = k.e
	}
	return out
}

// EncodeLB is the annotation value publishing a list: canonical JSON, or "" for an empty list (published
// as no annotation at all).
func EncodeLB(list []corev1.LoadBalancerIngress) string {
	list = CanonicalLB(list)
	if len(list) == 0 {
		return ""
	}
	b, _ := json.Marshal(list)
	return string(b)
}

// UnionLB is the load-balancer ingress list of a management object with the given annotations: the
// canonical union of every published list. A value that does not parse is skipped.
func UnionLB(annotations map[string]string) []corev1.LoadBalancerIngress {
	var all []corev1.LoadBalancerIngress
	for k, v := range annotations {
		if !strings.HasPrefix(k, LBAnnotationPrefix) {
			continue
		}
		var list []corev1.LoadBalancerIngress
		if json.Unmarshal([]byte(v), &list) == nil {
			all = append(all, list...)
		}
	}
	return CanonicalLB(all)
}

// sameLB says whether two lists hold the same entries, in whatever order.
func sameLB(a, b []corev1.LoadBalancerIngress) bool {
	return EncodeLB(a) == EncodeLB(b)
}

// ingressLB is an Ingress's load-balancer list as Service entries.
func ingressLB(list []networkingv1.IngressLoadBalancerIngress) []corev1.LoadBalancerIngress {
	if len(list) == 0 {
		return nil
	}
	out := make([]corev1.LoadBalancerIngress, len(list))
	for i, e := range list {
		out[i] = corev1.LoadBalancerIngress{IP: e.IP, Hostname: e.Hostname}
		for _, p := range e.Ports {
			out[i].Ports = append(out[i].Ports, corev1.PortStatus{Port: p.Port, Protocol: p.Protocol, Error: p.Error})
		}
	}
	return out
}

// toIngressLB is a list of Service entries as an Ingress's (ipMode has no place there).
func toIngressLB(list []corev1.LoadBalancerIngress) []networkingv1.IngressLoadBalancerIngress {
	if len(list) == 0 {
		return nil
	}
	out := make([]networkingv1.IngressLoadBalancerIngress, len(list))
	for i, e := range list {
		out[i] = networkingv1.IngressLoadBalancerIngress{IP: e.IP, Hostname: e.Hostname}
		for _, p := range e.Ports {
			out[i].Ports = append(out[i].Ports, networkingv1.IngressPortStatus{Port: p.Port, Protocol: p.Protocol, Error: p.Error})
		}
	}
	return out
}
