package follow

import (
	"reflect"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

var owner = map[string]string{"flotilla.io/management": "m1", "flotilla.io/node": "eu-west-3-1"}

// sourceMeta is management object metadata with everything that must not cross over.
func sourceMeta() metav1.ObjectMeta {
	return metav1.ObjectMeta{
		Namespace: "shop", Name: "web", UID: "uid-1", ResourceVersion: "42", Generation: 3,
		CreationTimestamp: metav1.Now(),
		Labels:            map[string]string{"app": "web", "flotilla.io/node": "spoofed"},
		Annotations: map[string]string{
			"team":      "payments",
			lastApplied: "{}",
			// An annotation of that prefix means nothing to flotilla (no released version wrote one): it
			// is the user's, and follows like any other.
			"lb.flotilla.io/us-west-2-0": `[{"ip":"10.0.0.1"}]`,
		},
		OwnerReferences: []metav1.OwnerReference{{Name: "x", UID: "o"}},
		Finalizers:      []string{"example.com/keep"},
		ManagedFields:   []metav1.ManagedFieldsEntry{{Manager: "kubectl"}},
	}
}

func wantMeta() metav1.ObjectMeta {
	return metav1.ObjectMeta{
		Namespace: "shop", Name: "web",
		Labels:      map[string]string{"app": "web", "flotilla.io/management": "m1", "flotilla.io/node": "eu-west-3-1"},
		Annotations: map[string]string{"team": "payments", "lb.flotilla.io/us-west-2-0": `[{"ip":"10.0.0.1"}]`},
	}
}

func TestServiceCopy(t *testing.T) {
	single := corev1.IPFamilyPolicySingleStack
	tests := []struct {
		name string
		spec corev1.ServiceSpec
		want corev1.ServiceSpec
	}{
		{
			name: "ClusterIP: allocated addresses and families cleared, the rest kept",
			spec: corev1.ServiceSpec{
				Type: corev1.ServiceTypeClusterIP, Selector: map[string]string{"app": "web"},
				ClusterIP: "10.96.0.10", ClusterIPs: []string{"10.96.0.10"},
				IPFamilies: []corev1.IPFamily{corev1.IPv4Protocol}, IPFamilyPolicy: &single,
				Ports:           []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080), Protocol: corev1.ProtocolTCP}},
				SessionAffinity: corev1.ServiceAffinityNone,
			},
			want: corev1.ServiceSpec{
				Type: corev1.ServiceTypeClusterIP, Selector: map[string]string{"app": "web", "flotilla.io/management": "m1"},
				IPFamilyPolicy:  &single,
				Ports:           []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080), Protocol: corev1.ProtocolTCP}},
				SessionAffinity: corev1.ServiceAffinityNone,
			},
		},
		{
			name: "headless stays headless",
			spec: corev1.ServiceSpec{Selector: map[string]string{"app": "db"}, ClusterIP: corev1.ClusterIPNone, ClusterIPs: []string{corev1.ClusterIPNone},
				Ports: []corev1.ServicePort{{Port: 5432}}},
			want: corev1.ServiceSpec{Selector: map[string]string{"app": "db", "flotilla.io/management": "m1"}, ClusterIP: corev1.ClusterIPNone,
				Ports: []corev1.ServicePort{{Port: 5432}}},
		},
		{
			name: "external IPs never follow (CVE-2020-8554), nor the traffic policy defaulted for them",
			spec: corev1.ServiceSpec{Type: corev1.ServiceTypeClusterIP, Selector: map[string]string{"app": "web"}, ClusterIP: "10.96.0.12",
				Ports: []corev1.ServicePort{{Port: 80}}, ExternalIPs: []string{"203.0.113.7"},
				ExternalTrafficPolicy: corev1.ServiceExternalTrafficPolicyCluster},
			want: corev1.ServiceSpec{Type: corev1.ServiceTypeClusterIP, Selector: map[string]string{"app": "web", "flotilla.io/management": "m1"}, Ports: []corev1.ServicePort{{Port: 80}}},
		},
		{
			name: "a NodePort Service keeps its traffic policy without its external IPs",
			spec: corev1.ServiceSpec{Type: corev1.ServiceTypeNodePort, Selector: map[string]string{"app": "web"},
				Ports: []corev1.ServicePort{{Port: 80, NodePort: 30080}}, ExternalIPs: []string{"203.0.113.7"},
				ExternalTrafficPolicy: corev1.ServiceExternalTrafficPolicyLocal},
			want: corev1.ServiceSpec{Type: corev1.ServiceTypeNodePort, Selector: map[string]string{"app": "web", "flotilla.io/management": "m1"},
				Ports: []corev1.ServicePort{{Port: 80}}, ExternalTrafficPolicy: corev1.ServiceExternalTrafficPolicyLocal},
		},
		{
			name: "LoadBalancer: node ports and health-check node port cleared, type and policies kept",
			spec: corev1.ServiceSpec{
				Type: corev1.ServiceTypeLoadBalancer, Selector: map[string]string{"app": "web"}, ClusterIP: "10.96.0.11",
				Ports:                 []corev1.ServicePort{{Port: 80, NodePort: 30080}, {Port: 443, NodePort: 30443}},
				ExternalTrafficPolicy: corev1.ServiceExternalTrafficPolicyLocal, HealthCheckNodePort: 31000,
				LoadBalancerSourceRanges: []string{"10.0.0.0/8"},
			},
			want: corev1.ServiceSpec{
				Type: corev1.ServiceTypeLoadBalancer, Selector: map[string]string{"app": "web", "flotilla.io/management": "m1"},
				Ports:                    []corev1.ServicePort{{Port: 80}, {Port: 443}},
				ExternalTrafficPolicy:    corev1.ServiceExternalTrafficPolicyLocal,
				LoadBalancerSourceRanges: []string{"10.0.0.0/8"},
			},
		},
		{
			name: "a Service without a selector stays without (its endpoints are someone else's to write)",
			spec: corev1.ServiceSpec{Type: corev1.ServiceTypeClusterIP, ClusterIP: "10.96.0.13", Ports: []corev1.ServicePort{{Port: 80}}},
			want: corev1.ServiceSpec{Type: corev1.ServiceTypeClusterIP, Ports: []corev1.ServicePort{{Port: 80}}},
		},
		{
			name: "a selector naming the management label selects this management cluster's delegates all the same",
			spec: corev1.ServiceSpec{Selector: map[string]string{"app": "web", "flotilla.io/management": "other"}, Ports: []corev1.ServicePort{{Port: 80}}},
			want: corev1.ServiceSpec{Selector: map[string]string{"app": "web", "flotilla.io/management": "m1"}, Ports: []corev1.ServicePort{{Port: 80}}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := &corev1.Service{ObjectMeta: sourceMeta(), Spec: tt.spec,
				Status: corev1.ServiceStatus{LoadBalancer: corev1.LoadBalancerStatus{Ingress: []corev1.LoadBalancerIngress{{IP: "1.2.3.4"}}}}}
			before := src.DeepCopy()
			got := ServiceCopy(src, owner)
			want := &corev1.Service{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Service"}, ObjectMeta: wantMeta(), Spec: tt.want}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("ServiceCopy =\n  %+v\nwant\n  %+v", got, want)
			}
			if !reflect.DeepEqual(src, before) {
				t.Error("ServiceCopy changed its source")
			}
		})
	}
}

func TestIngressCopy(t *testing.T) {
	name := func(s string) *string { return &s }
	classes := map[string]string{"public": "nginx-internet", "": "not-applied"}
	backend := networkingv1.IngressBackend{Service: &networkingv1.IngressServiceBackend{Name: "web", Port: networkingv1.ServiceBackendPort{Number: 80}}}
	tests := []struct {
		name           string
		class          *string
		annotation     string // the legacy annotation, "" for none
		wantClass      *string
		wantAnnotation string
	}{
		{name: "mapped class name", class: name("public"), wantClass: name("nginx-internet")},
		{name: "unmapped class name kept", class: name("private"), wantClass: name("private")},
		{name: "no class stays without", class: nil, wantClass: nil},
		{name: "legacy annotation mapped", annotation: "public", wantAnnotation: "nginx-internet"},
		{name: "both mapped", class: name("public"), annotation: "public", wantClass: name("nginx-internet"), wantAnnotation: "nginx-internet"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := sourceMeta()
			if tt.annotation != "" {
				m.Annotations[AnnotationIngressClass] = tt.annotation
			}
			spec := networkingv1.IngressSpec{IngressClassName: tt.class, Rules: []networkingv1.IngressRule{{Host: "shop.example.com",
				IngressRuleValue: networkingv1.IngressRuleValue{HTTP: &networkingv1.HTTPIngressRuleValue{Paths: []networkingv1.HTTPIngressPath{{Path: "/", Backend: backend}}}}}}}
			src := &networkingv1.Ingress{ObjectMeta: m, Spec: spec,
				Status: networkingv1.IngressStatus{LoadBalancer: networkingv1.IngressLoadBalancerStatus{Ingress: []networkingv1.IngressLoadBalancerIngress{{IP: "1.2.3.4"}}}}}
			got := IngressCopy(src, owner, classes, nil)
			wantM := wantMeta()
			if tt.wantAnnotation != "" {
				wantM.Annotations[AnnotationIngressClass] = tt.wantAnnotation
			}
			wantSpec := *spec.DeepCopy()
			wantSpec.IngressClassName = tt.wantClass
			want := &networkingv1.Ingress{TypeMeta: metav1.TypeMeta{APIVersion: "networking.k8s.io/v1", Kind: "Ingress"}, ObjectMeta: wantM, Spec: wantSpec}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("IngressCopy =\n  %+v\nwant\n  %+v", got, want)
			}
			if tt.class != nil && src.Spec.IngressClassName != tt.class {
				t.Error("IngressCopy changed its source")
			}
		})
	}
}

func TestIngressCopyTLS(t *testing.T) {
	tls := func(secret string, hosts ...string) networkingv1.IngressTLS {
		return networkingv1.IngressTLS{Hosts: hosts, SecretName: secret}
	}
	tests := []struct {
		name     string
		tls      []networkingv1.IngressTLS
		followed map[string]bool
		want     []networkingv1.IngressTLS
	}{
		{name: "no TLS"},
		{name: "a Secret this node holds a copy of is named", tls: []networkingv1.IngressTLS{tls("shop-cert", "shop.example.com")},
			followed: map[string]bool{"shop-cert": true}, want: []networkingv1.IngressTLS{tls("shop-cert", "shop.example.com")}},
		{
			name:     "a Secret without a copy here (missing, a token, someone else's) is not named: it would be the workload cluster's",
			tls:      []networkingv1.IngressTLS{tls("shop-cert", "shop.example.com"), tls("other", "api.example.com"), tls("", "default.example.com")},
			followed: map[string]bool{"shop-cert": true},
			want:     []networkingv1.IngressTLS{tls("shop-cert", "shop.example.com"), tls("", "api.example.com"), tls("", "default.example.com")},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := &networkingv1.Ingress{ObjectMeta: sourceMeta(), Spec: networkingv1.IngressSpec{TLS: tt.tls}}
			before := src.DeepCopy()
			got := IngressCopy(src, owner, nil, tt.followed)
			if !reflect.DeepEqual(got.Spec.TLS, tt.want) {
				t.Errorf("TLS = %+v, want %+v", got.Spec.TLS, tt.want)
			}
			if !reflect.DeepEqual(src, before) {
				t.Error("IngressCopy changed its source")
			}
		})
	}
}

func TestIngressTLSSecrets(t *testing.T) {
	ing := &networkingv1.Ingress{Spec: networkingv1.IngressSpec{TLS: []networkingv1.IngressTLS{
		{SecretName: "b"}, {Hosts: []string{"no-secret.example.com"}}, {SecretName: "a"}, {SecretName: "b"},
	}}}
	if got, want := IngressTLSSecrets(ing), []string{"a", "b"}; !reflect.DeepEqual(got, want) {
		t.Errorf("IngressTLSSecrets = %v, want %v", got, want)
	}
	if got := IngressTLSSecrets(&networkingv1.Ingress{}); got != nil {
		t.Errorf("IngressTLSSecrets of none = %v", got)
	}
}

func TestExternalIPsNotice(t *testing.T) {
	tests := []struct {
		name string
		ips  []string
		want string
	}{
		{name: "none, no notice"},
		{name: "named with the node and the CVE", ips: []string{"203.0.113.7", "203.0.113.8"},
			want: "spec.externalIPs [203.0.113.7 203.0.113.8] do not follow to the workload cluster of node eu-west-3-1: its copy has none (CVE-2020-8554); publish the Service with type LoadBalancer instead"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := &corev1.Service{Spec: corev1.ServiceSpec{ExternalIPs: tt.ips}}
			if got := ExternalIPsNotice(src, "eu-west-3-1"); got != tt.want {
				t.Errorf("ExternalIPsNotice = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestSecretFollows(t *testing.T) {
	for typ, want := range map[corev1.SecretType]bool{
		corev1.SecretTypeOpaque: true, corev1.SecretTypeTLS: true, corev1.SecretTypeDockerConfigJson: true, "": true,
		corev1.SecretTypeServiceAccountToken: false,
	} {
		if got := SecretFollows(&corev1.Secret{Type: typ}); got != want {
			t.Errorf("SecretFollows(type %q) = %v, want %v", typ, got, want)
		}
	}
}

func TestConfigMapAndSecretCopy(t *testing.T) {
	immutable := true
	cm := &corev1.ConfigMap{ObjectMeta: sourceMeta(), Data: map[string]string{"a": "1"}, BinaryData: map[string][]byte{"b": {2}}, Immutable: &immutable}
	wantCM := &corev1.ConfigMap{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"}, ObjectMeta: wantMeta(),
		Data: map[string]string{"a": "1"}, BinaryData: map[string][]byte{"b": {2}}, Immutable: &immutable}
	if got := ConfigMapCopy(cm, owner); !reflect.DeepEqual(got, wantCM) {
		t.Errorf("ConfigMapCopy =\n  %+v\nwant\n  %+v", got, wantCM)
	}
	s := &corev1.Secret{ObjectMeta: sourceMeta(), Type: corev1.SecretTypeDockerConfigJson, Data: map[string][]byte{".dockerconfigjson": []byte("{}")}}
	wantS := &corev1.Secret{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"}, ObjectMeta: wantMeta(),
		Type: corev1.SecretTypeDockerConfigJson, Data: map[string][]byte{".dockerconfigjson": []byte("{}")}}
	if got := SecretCopy(s, owner); !reflect.DeepEqual(got, wantS) {
		t.Errorf("SecretCopy =\n  %+v\nwant\n  %+v", got, wantS)
	}
	// Only the management cluster's bookkeeping annotations go: none left means no annotations at all.
	bare := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "x", Annotations: map[string]string{lastApplied: "{}"}}}
	if got := ConfigMapCopy(bare, owner); got.Annotations != nil {
		t.Errorf("annotations = %v, want none", got.Annotations)
	}
}

func TestIngressServices(t *testing.T) {
	svc := func(name string) networkingv1.IngressBackend {
		return networkingv1.IngressBackend{Service: &networkingv1.IngressServiceBackend{Name: name}}
	}
	paths := func(bs ...networkingv1.IngressBackend) networkingv1.IngressRule {
		var ps []networkingv1.HTTPIngressPath
		for _, b := range bs {
			ps = append(ps, networkingv1.HTTPIngressPath{Path: "/", Backend: b})
		}
		return networkingv1.IngressRule{IngressRuleValue: networkingv1.IngressRuleValue{HTTP: &networkingv1.HTTPIngressRuleValue{Paths: ps}}}
	}
	resource := networkingv1.IngressBackend{Resource: &corev1.TypedLocalObjectReference{Kind: "Bucket", Name: "static"}}
	def := svc("fallback")
	tests := []struct {
		name string
		spec networkingv1.IngressSpec
		want []string
	}{
		{name: "empty", spec: networkingv1.IngressSpec{}},
		{name: "default backend only", spec: networkingv1.IngressSpec{DefaultBackend: &def}, want: []string{"fallback"}},
		{name: "rules, sorted and without repeats; resource backends and rules without http ignored",
			spec: networkingv1.IngressSpec{DefaultBackend: &def, Rules: []networkingv1.IngressRule{
				paths(svc("web"), svc("api"), resource), {Host: "no-http"}, paths(svc("web")),
			}},
			want: []string{"api", "fallback", "web"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := IngressServices(&networkingv1.Ingress{Spec: tt.spec}); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("IngressServices = %v, want %v", got, tt.want)
			}
		})
	}
}
