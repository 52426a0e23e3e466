package follow

import (
	"cmp"
	"encoding/json"
	"maps"
	"slices"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
)

// Load-balancer addresses come back through the virtual nodes. Each flotilla sees only its own workload
// cluster, so each publishes its copies' status.loadBalancer.ingress on its own virtual node, in the
// annotation AnnotationLoadBalancers: a JSON object from LBKey ("<Kind>/<namespace>/<name>") to that copy's
// list, holding only objects this node follows. A user who may edit a Service cannot write nodes, so cannot
// forge an entry. Every flotilla writes the status of a management Service or Ingress as the union of that
// object's entries over all virtual nodes (UnionLB) whenever it differs: all compute the same answer from
// the same nodes, so they converge. An entry leaves the union when its node removes it (the copy went) or
// the node is deleted.
//
// This file holds the pure part (encoding, union, what changed); publish.go keeps this node's annotation.
// Both kinds' entries are held as corev1.LoadBalancerIngress; an Ingress's entries are the same fields
// without ipMode.

// AnnotationLoadBalancers on a virtual node holds the load-balancer addresses of the copies its flotilla
// follows (Published, encoded by EncodePublished).
const AnnotationLoadBalancers = "flotilla.io/load-balancers"

// Published is what one virtual node publishes: LBKey to the copy's canonical load-balancer list. An object
// without addresses has no entry.
type Published map[string][]corev1.LoadBalancerIngress

// LBKey is the key of a management object's entry in Published.
func LBKey(kind, namespace, name string) string { return kind + "/" + namespace + "/" + name }

// EncodePublished is the annotation value publishing p: canonical JSON (keys sorted, each list canonical,
// empty lists left out), or "" when nothing is left (published as no annotation at all).
func EncodePublished(p Published) string {
	out := make(map[string][]corev1.LoadBalancerIngress, len(p))
	for k, list := range p {
		if list = CanonicalLB(list); len(list) > 0 {
			out[k] = list
		}
	}
	if len(out) == 0 {
		return ""
	}
	b, _ := json.Marshal(out) // encoding/json writes map keys sorted
	return string(b)
}

// DecodePublished reads a node's annotation value. A value that does not parse publishes nothing (a node is
// written only by its flotilla, so that is a bug or a hand edit, which its flotilla overwrites); each list
// comes back canonical, and empty ones are left out.
func DecodePublished(value string) Published {
	if value == "" {
		return nil
	}
	var raw map[string][]corev1.LoadBalancerIngress
	if json.Unmarshal([]byte(value), &raw) != nil {
		return nil
	}
	p := Published{}
	for k, list := range raw {
		if list = CanonicalLB(list); len(list) > 0 {
			p[k] = list
		}
	}
	if len(p) == 0 {
		return nil
	}
	return p
}

// UnionLB is the load-balancer list of the management object with the given key: the canonical union of its
// entries over every node's Published.
func UnionLB(nodes []Published, key string) []corev1.LoadBalancerIngress {
	var all []corev1.LoadBalancerIngress
	for _, p := range nodes {
		all = append(all, p[key]...)
	}
	return CanonicalLB(all)
}

// ChangedKeys are the keys, sorted, whose entries differ between two versions of a node's Published: the
// objects whose union may have changed. A node that comes or goes is a change from or to nil.
func ChangedKeys(before, after Published) []string {
	var keys []string
	for k, list := range before {
		if !sameLB(list, after[k]) {
			keys = append(keys, k)
		}
	}
	for k, list := range after {
		if _, had := before[k]; !had && len(list) > 0 {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	return slices.Compact(keys)
}

// withEntry is p with key's entry set to list (removed when list is empty), p itself unchanged; changed says
// whether the entry differs from p's.
func withEntry(p Published, key string, list []corev1.LoadBalancerIngress) (out Published, changed bool) {
	list = CanonicalLB(list)
	if sameLB(p[key], list) {
		return p, false
	}
	out = maps.Clone(p)
	if out == nil {
		out = Published{}
	}
	if len(list) == 0 {
		delete(out, key)
	} else {
		out[key] = list
	}
	return out, true
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

// EncodeLB is a list as canonical JSON, or "" for an empty list.
func EncodeLB(list []corev1.LoadBalancerIngress) string {
	list = CanonicalLB(list)
	if len(list) == 0 {
		return ""
	}
	b, _ := json.Marshal(list)
	return string(b)
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
