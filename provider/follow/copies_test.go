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
			"team":                      "payments",
			lastApplied:                 "{}",
			LBAnnotation("us-west-2-0"): `[{"ip":"10.0.0.1"}]`,
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
		Annotations: map[string]string{"team": "payments"},
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
				Type: corev1.ServiceTypeClusterIP, Selector: map[string]string{"app": "web"},
				IPFamilyPolicy:  &single,
				Ports:           []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080), Protocol: corev1.ProtocolTCP}},
				SessionAffinity: corev1.ServiceAffinityNone,
			},
		},
		{
			name: "headless stays headless",
			spec: corev1.ServiceSpec{Selector: map[string]string{"app": "db"}, ClusterIP: corev1.ClusterIPNone, ClusterIPs: []string{corev1.ClusterIPNone},
				Ports: []corev1.ServicePort{{Port: 5432}}},
			want: corev1.ServiceSpec{Selector: map[string]string{"app": "db"}, ClusterIP: corev1.ClusterIPNone,
				Ports: []corev1.ServicePort{{Port: 5432}}},
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
				Type: corev1.ServiceTypeLoadBalancer, Selector: map[string]string{"app": "web"},
				Ports:                    []corev1.ServicePort{{Port: 80}, {Port: 443}},
				ExternalTrafficPolicy:    corev1.ServiceExternalTrafficPolicyLocal,
				LoadBalancerSourceRanges: []string{"10.0.0.0/8"},
			},
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
			got := IngressCopy(src, owner, classes)
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
