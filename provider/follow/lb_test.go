package follow

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/util/validation"
)

func TestUnionLB(t *testing.T) {
	vip := corev1.LoadBalancerIPModeVIP
	tests := []struct {
		name        string
		annotations map[string]string
		want        []corev1.LoadBalancerIngress
	}{
		{name: "none published", annotations: map[string]string{"team": "x"}},
		{
			name: "union of all nodes, sorted by IP then hostname, without repeats",
			annotations: map[string]string{
				LBAnnotation("us-west-2-0"): `[{"ip":"10.0.2.1"},{"hostname":"lb.us.example.com"}]`,
				LBAnnotation("us-west-2-1"): `[{"ip":"10.0.1.1"}]`,
				LBAnnotation("eu-west-3-0"): `[{"ip":"10.0.1.1"},{"ip":"10.0.3.1","ipMode":"VIP"}]`,
				"unrelated":                 `[{"ip":"9.9.9.9"}]`,
			},
			want: []corev1.LoadBalancerIngress{
				{Hostname: "lb.us.example.com"}, {IP: "10.0.1.1"}, {IP: "10.0.2.1"}, {IP: "10.0.3.1", IPMode: &vip},
			},
		},
		{
			name: "same address with different ports is two entries; a value that does not parse is skipped",
			annotations: map[string]string{
				LBAnnotation("a"): `[{"ip":"10.0.0.1","ports":[{"port":443,"protocol":"TCP"}]}]`,
				LBAnnotation("b"): `[{"ip":"10.0.0.1"}]`,
				LBAnnotation("c"): `not json`,
			},
			want: []corev1.LoadBalancerIngress{
				{IP: "10.0.0.1", Ports: []corev1.PortStatus{{Port: 443, Protocol: corev1.ProtocolTCP}}}, {IP: "10.0.0.1"},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := UnionLB(tt.annotations)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("UnionLB =\n  %+v\nwant\n  %+v", got, tt.want)
			}
			// Whatever the map's iteration order, the answer is written the same way.
			for range 20 {
				if again := UnionLB(tt.annotations); EncodeLB(again) != EncodeLB(got) || !reflect.DeepEqual(again, got) {
					t.Fatalf("UnionLB is not stable: %v then %v", got, again)
				}
			}
		})
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

func TestLBAnnotation(t *testing.T) {
	for _, node := range []string{"eu-west-3-1", strings.Repeat("cluster.", 20) + "x"} {
		key := LBAnnotation(node)
		if errs := validation.IsQualifiedName(key); len(errs) > 0 {
			t.Errorf("LBAnnotation(%q) = %q is not a valid annotation key: %v", node, key, errs)
		}
		if len(lbManager(node)) > 128 {
			t.Errorf("lbManager(%q) is longer than 128", node)
		}
	}
	if got := LBAnnotation("eu-west-3-1"); got != "lb.flotilla.io/eu-west-3-1" {
		t.Errorf("LBAnnotation = %q", got)
	}
	long1, long2 := LBAnnotation(strings.Repeat("a", 70)+"1"), LBAnnotation(strings.Repeat("a", 70)+"2")
	if long1 == long2 {
		t.Error("long node names that differ share an annotation")
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
