package follow

import (
	"encoding/json"
	"reflect"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
)

func TestPublishedEncoding(t *testing.T) {
	vip := corev1.LoadBalancerIPModeVIP
	tests := []struct {
		name  string
		in    Published
		value string
	}{
		{name: "nothing published is no annotation", in: nil, value: ""},
		{name: "only empty lists is no annotation", in: Published{"Service/shop/web": nil, "Ingress/shop/web": {}}, value: ""},
		{
			name: "keys sorted, lists canonical, empty lists left out",
			in: Published{
				"Service/shop/web":  {{IP: "10.0.0.2"}, {IP: "10.0.0.1", IPMode: &vip}, {IP: "10.0.0.2"}},
				"Ingress/shop/site": {{Hostname: "lb.example.com"}},
				"Service/shop/gone": nil,
			},
			value: `{"Ingress/shop/site":[{"hostname":"lb.example.com"}],"Service/shop/web":[{"ip":"10.0.0.1","ipMode":"VIP"},{"ip":"10.0.0.2"}]}`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			value := EncodePublished(tt.in)
			if value != tt.value {
				t.Fatalf("EncodePublished = %s, want %s", value, tt.value)
			}
			// What is read back encodes the same way: a node's annotation is stable across flotilla restarts.
			if again := EncodePublished(DecodePublished(value)); again != value {
				t.Errorf("round trip = %s, want %s", again, value)
			}
		})
	}
}

func TestDecodePublished(t *testing.T) {
	tests := []struct {
		name  string
		value string
		want  Published
	}{
		{name: "none", value: ""},
		{name: "not JSON publishes nothing", value: `[{"ip":"203.0.113.7"}]`},
		{name: "the old per-object list format publishes nothing", value: `not json`},
		{
			name:  "lists canonical, empty ones dropped",
			value: `{"Service/shop/web":[{"ip":"10.0.0.2"},{"ip":"10.0.0.1"},{"ip":"10.0.0.2"}],"Service/shop/none":[]}`,
			want:  Published{"Service/shop/web": {{IP: "10.0.0.1"}, {IP: "10.0.0.2"}}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := DecodePublished(tt.value); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("DecodePublished = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestUnionLB(t *testing.T) {
	vip := corev1.LoadBalancerIPModeVIP
	web := LBKey("Service", "shop", "web")
	tests := []struct {
		name  string
		nodes []Published
		want  []corev1.LoadBalancerIngress
	}{
		{name: "no node publishes", nodes: nil},
		{name: "nodes publish for other objects only", nodes: []Published{{"Service/shop/api": {{IP: "10.0.0.9"}}}, nil}},
		{
			name: "union of all nodes, sorted by IP then hostname, without repeats",
			nodes: []Published{
				{web: {{IP: "10.0.2.1"}, {Hostname: "lb.us.example.com"}}},
				{web: {{IP: "10.0.1.1"}}, "Service/shop/api": {{IP: "9.9.9.9"}}},
				{web: {{IP: "10.0.1.1"}, {IP: "10.0.3.1", IPMode: &vip}}},
			},
			want: []corev1.LoadBalancerIngress{
				{Hostname: "lb.us.example.com"}, {IP: "10.0.1.1"}, {IP: "10.0.2.1"}, {IP: "10.0.3.1", IPMode: &vip},
			},
		},
		{
			name: "same address with different ports is two entries",
			nodes: []Published{
				{web: {{IP: "10.0.0.1", Ports: []corev1.PortStatus{{Port: 443, Protocol: corev1.ProtocolTCP}}}}},
				{web: {{IP: "10.0.0.1"}}},
			},
			want: []corev1.LoadBalancerIngress{
				{IP: "10.0.0.1", Ports: []corev1.PortStatus{{Port: 443, Protocol: corev1.ProtocolTCP}}}, {IP: "10.0.0.1"},
			},
		},
		{
			name:  "a Service and an Ingress of one name are different objects",
			nodes: []Published{{LBKey("Ingress", "shop", "web"): {{IP: "10.0.0.5"}}, web: {{IP: "10.0.0.6"}}}},
			want:  []corev1.LoadBalancerIngress{{IP: "10.0.0.6"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := UnionLB(tt.nodes, web)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("UnionLB =\n  %+v\nwant\n  %+v", got, tt.want)
			}
			// Whatever the order of the nodes, the answer is written the same way.
			reversed := slices.Clone(tt.nodes)
			slices.Reverse(reversed)
			if again := UnionLB(reversed, web); !reflect.DeepEqual(again, got) {
				t.Errorf("UnionLB depends on the order of nodes: %v then %v", got, again)
			}
		})
	}
}

func TestChangedKeys(t *testing.T) {
	a, b, c := "Service/shop/a", "Service/shop/b", "Ingress/shop/c"
	ip := func(s string) []corev1.LoadBalancerIngress { return []corev1.LoadBalancerIngress{{IP: s}} }
	tests := []struct {
		name          string
		before, after Published
		want          []string
	}{
		{name: "nothing either side"},
		{name: "unchanged", before: Published{a: ip("1")}, after: Published{a: ip("1")}},
		{name: "same set, other order", before: Published{a: {{IP: "1"}, {IP: "2"}}}, after: Published{a: {{IP: "2"}, {IP: "1"}}}},
		{name: "a node that comes brings all its entries", after: Published{a: ip("1"), c: ip("3")}, want: []string{c, a}},
		{name: "a node that goes takes all its entries", before: Published{a: ip("1"), b: ip("2")}, want: []string{a, b}},
		{
			name:   "changed, added and removed entries; an added empty one is no change",
			before: Published{a: ip("1"), b: ip("2")},
			after:  Published{a: ip("9"), c: ip("3"), "Service/shop/empty": nil},
			want:   []string{c, a, b},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ChangedKeys(tt.before, tt.after); !slices.Equal(got, tt.want) {
				t.Errorf("ChangedKeys = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestWithEntry(t *testing.T) {
	key := LBKey("Service", "shop", "web")
	p := Published{"Service/shop/other": {{IP: "10.0.0.9"}}}
	out, changed := withEntry(p, key, []corev1.LoadBalancerIngress{{IP: "10.0.0.2"}, {IP: "10.0.0.1"}})
	if !changed || EncodeLB(out[key]) != `[{"ip":"10.0.0.1"},{"ip":"10.0.0.2"}]` || len(p) != 1 {
		t.Fatalf("withEntry = %v (changed %v), the original %v must stay as it was", out, changed, p)
	}
	if same, changed := withEntry(out, key, []corev1.LoadBalancerIngress{{IP: "10.0.0.1"}, {IP: "10.0.0.2"}}); changed || !reflect.DeepEqual(same, out) {
		t.Errorf("the same set again changed %v", same)
	}
	if gone, changed := withEntry(out, key, nil); !changed || len(gone) != 1 || gone[key] != nil {
		t.Errorf("an empty list removes the entry: %v, changed %v", gone, changed)
	}
	if fresh, changed := withEntry(nil, key, nil); changed || fresh != nil {
		t.Errorf("nothing to nothing: %v, changed %v", fresh, changed)
	}
}

func TestEncodeLB(t *testing.T) {
	if got := EncodeLB(nil); got != "" {
		t.Errorf("EncodeLB(nil) = %q, want empty", got)
	}
	a := EncodeLB([]corev1.LoadBalancerIngress{{IP: "10.0.0.2"}, {IP: "10.0.0.1"}, {IP: "10.0.0.2"}})
	b := EncodeLB([]corev1.LoadBalancerIngress{{IP: "10.0.0.1"}, {IP: "10.0.0.2"}})
	if a != b || a != `[{"ip":"10.0.0.1"},{"ip":"10.0.0.2"}]` {
		t.Errorf("EncodeLB = %s and %s, want both canonical", a, b)
	}
	if !sameLB([]corev1.LoadBalancerIngress{{IP: "1"}, {IP: "2"}}, []corev1.LoadBalancerIngress{{IP: "2"}, {IP: "1"}}) {
		t.Error("sameLB depends on order")
	}
}

func TestIngressLBConversion(t *testing.T) {
	e := "Pending"
	in := []networkingv1.IngressLoadBalancerIngress{{IP: "10.0.0.1", Ports: []networkingv1.IngressPortStatus{{Port: 80, Protocol: corev1.ProtocolTCP, Error: &e}}}, {Hostname: "h"}}
	svc := ingressLB(in)
	if back := toIngressLB(svc); !reflect.DeepEqual(back, in) {
		t.Errorf("round trip = %+v, want %+v", back, in)
	}
	// The published JSON of an Ingress list reads back as the same Ingress entries.
	var parsed []networkingv1.IngressLoadBalancerIngress
	if err := json.Unmarshal([]byte(EncodeLB(svc)), &parsed); err != nil || len(parsed) != 2 {
		t.Errorf("published list does not parse as Ingress entries: %v %v", parsed, err)
	}
	if ingressLB(nil) != nil || toIngressLB(nil) != nil {
		t.Error("empty lists should stay nil")
	}
}

func TestApplyBody(t *testing.T) {
	src := &corev1.Service{ObjectMeta: sourceMeta(), Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "web"}, Ports: []corev1.ServicePort{{Port: 80}}}}
	body, hash, err := applyBody(ServiceCopy(src, owner), "")
	if err != nil {
		t.Fatal(err)
	}
	var u map[string]any
	if err := json.Unmarshal(body, &u); err != nil {
		t.Fatal(err)
	}
	meta := u["metadata"].(map[string]any)
	if _, ok := u["status"]; ok {
		t.Error("apply body carries a status")
	}
	if _, ok := meta["creationTimestamp"]; ok {
		t.Error("apply body carries a creation timestamp")
	}
	if u["apiVersion"] != "v1" || u["kind"] != "Service" {
		t.Errorf("apply body type = %v %v", u["apiVersion"], u["kind"])
	}
	if got := meta["annotations"].(map[string]any)[AnnotationSourceHash]; got != hash || hash == "" {
		t.Errorf("hash annotation = %v, hash %q", got, hash)
	}
	_, again, _ := applyBody(ServiceCopy(src, owner), "")
	withUID, sameHash, _ := applyBody(ServiceCopy(src, owner), "copy-uid")
	if !strings.Contains(string(withUID), `"uid":"copy-uid"`) || sameHash != hash {
		t.Errorf("a uid precondition must reach the body (%s) and leave the hash alone (%q vs %q)", withUID, sameHash, hash)
	}
	src.Spec.Ports[0].Port = 81
	_, changed, _ := applyBody(ServiceCopy(src, owner), "")
	if again != hash || changed == hash {
		t.Errorf("hash: same content %q vs %q, changed content %q", hash, again, changed)
	}
}
