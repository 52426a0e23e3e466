package follow

import (
	"fmt"
	"maps"
	"slices"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/flotilla-io/flotilla/tenancy"
)

// This file says what the workload copy of each followed kind looks like: pure functions of the management
// object and the owner's labels, pinned by copies_test.go.

const (
	// AnnotationSourceHash on a copy is a digest of what flotilla last applied, so an unchanged source
	// costs no write.
	AnnotationSourceHash = "flotilla.io/source-hash"
	// AnnotationIngressClass is the legacy way to name an Ingress's class.
	AnnotationIngressClass = "kubernetes.io/ingress.class"
	// lastApplied is kubectl's record of the management object's own history; it means nothing on a copy.
	lastApplied = corev1.LastAppliedConfigAnnotation
)

// copyMeta is the metadata of the copy of an object with the given metadata: namespace, name, labels (the
// owner's win) and annotations, without the management cluster's bookkeeping (kubectl's last applied
// configuration, a source hash).
func copyMeta(src metav1.ObjectMeta, owner map[string]string) metav1.ObjectMeta {
	labels := maps.Clone(src.Labels)
	if labels == nil {
		labels = map[string]string{}
	}
	maps.Copy(labels, owner)
	annotations := maps.Clone(src.Annotations)
	maps.DeleteFunc(annotations, func(k, _ string) bool {
		return k == lastApplied || k == AnnotationSourceHash
	})
	if len(annotations) == 0 {
		annotations = nil
	}
	return metav1.ObjectMeta{Namespace: src.Namespace, Name: src.Name, Labels: labels, Annotations: annotations}
}

// ConfigMapCopy is the workload copy of a ConfigMap: its data, binary data and immutability.
func ConfigMapCopy(src *corev1.ConfigMap, owner map[string]string) *corev1.ConfigMap {
	return &corev1.ConfigMap{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: KindConfigMap},
		ObjectMeta: copyMeta(src.ObjectMeta, owner),
		Data:       maps.Clone(src.Data),
		BinaryData: maps.Clone(src.BinaryData),
		Immutable:  src.Immutable,
	}
}

// SecretFollows says whether a Secret may follow at all. A ServiceAccount token Secret never does: its token
// is the management cluster's credential, and in the workload cluster the token controller would delete the
// copy (its ServiceAccount does not exist there) as soon as it was made.
func SecretFollows(s *corev1.Secret) bool {
	return s.Type != corev1.SecretTypeServiceAccountToken
}

// SecretCopy is the workload copy of a Secret: its type, data and immutability.
func SecretCopy(src *corev1.Secret, owner map[string]string) *corev1.Secret {
	return &corev1.Secret{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: KindSecret},
		ObjectMeta: copyMeta(src.ObjectMeta, owner),
		Type:       src.Type,
		Data:       maps.Clone(src.Data),
		Immutable:  src.Immutable,
	}
}

// ServiceCopy is the workload copy of a Service: the same spec, without what the management cluster
// allocated: cluster IPs (a headless Service stays headless), IP families, node ports and the health-check
// node port. The workload cluster allocates its own. Delegates carry their proxies' labels, so the workload
// cluster computes endpoints from the selector; a selector also gets the owner's management label
// (tenancy.LabelManagement, which delegates carry too), so that in a workload namespace its admin opened the
// copy selects flotilla's delegates only, never the admin's own pods of the same labels. A Service without a
// selector stays without (its endpoints are someone's to write). External IPs never follow (see
// ExternalIPsNotice), and with them goes the external traffic policy of a Service that only they made
// externally accessible (the apiserver defaults it there, and refuses it on a ClusterIP Service without them).
func ServiceCopy(src *corev1.Service, owner map[string]string) *corev1.Service {
	spec := src.Spec.DeepCopy()
	if id, ok := owner[tenancy.LabelManagement]; ok && len(spec.Selector) > 0 {
		spec.Selector[tenancy.LabelManagement] = id
	}
	if spec.ClusterIP != corev1.ClusterIPNone {
		spec.ClusterIP = ""
	}
	spec.ClusterIPs = nil
	spec.ExternalIPs = nil
	if spec.Type != corev1.ServiceTypeNodePort && spec.Type != corev1.ServiceTypeLoadBalancer {
		spec.ExternalTrafficPolicy = ""
	}
	spec.IPFamilies = nil
	spec.HealthCheckNodePort = 0
	for i := range spec.Ports {
		spec.Ports[i].NodePort = 0
	}
	return &corev1.Service{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Service"},
		ObjectMeta: copyMeta(src.ObjectMeta, owner),
		Spec:       *spec,
	}
}

// ExternalIPsNotice is the message of the Warning Event (ReasonExternalIPsNotFollowed) a Service with
// spec.externalIPs gets from each node its copy goes to, or "" when it has none. The copy never carries them:
// any user who may create a Service could otherwise claim an address in every workload cluster and take its
// traffic (CVE-2020-8554).
func ExternalIPsNotice(src *corev1.Service, nodeName string) string {
	if len(src.Spec.ExternalIPs) == 0 {
		return ""
	}
	return fmt.Sprintf("spec.externalIPs %v do not follow to the workload cluster of node %s: its copy has none (CVE-2020-8554); publish the Service with type LoadBalancer instead",
		src.Spec.ExternalIPs, nodeName)
}

// IngressCopy is the workload copy of an Ingress: the same spec and annotations, with the ingress class
// (spec.ingressClassName and the legacy annotation) mapped through classes, management class to workload
// class; a class not in classes is kept. A TLS entry keeps its secretName only when the Secret is among
// followed, the Secrets of the Ingress's namespace whose copies this node holds: otherwise the name would
// resolve to whatever Secret of that name the workload cluster has (the entry's hosts stay, served with the
// ingress controller's default certificate).
func IngressCopy(src *networkingv1.Ingress, owner map[string]string, classes map[string]string, followed map[string]bool) *networkingv1.Ingress {
	c := &networkingv1.Ingress{
		TypeMeta:   metav1.TypeMeta{APIVersion: "networking.k8s.io/v1", Kind: "Ingress"},
		ObjectMeta: copyMeta(src.ObjectMeta, owner),
		Spec:       *src.Spec.DeepCopy(),
	}
	for i := range c.Spec.TLS {
		if !followed[c.Spec.TLS[i].SecretName] {
			c.Spec.TLS[i].SecretName = ""
		}
	}
	if n := c.Spec.IngressClassName; n != nil {
		mapped := MapIngressClass(*n, classes)
		c.Spec.IngressClassName = &mapped
	}
	if n, ok := c.Annotations[AnnotationIngressClass]; ok {
		c.Annotations[AnnotationIngressClass] = MapIngressClass(n, classes)
	}
	return c
}

// MapIngressClass is the workload cluster's name for a management ingress class.
func MapIngressClass(class string, classes map[string]string) string {
	if mapped, ok := classes[class]; ok {
		return mapped
	}
	return class
}

// IngressServices names, sorted and without repeats, the Services (in the Ingress's namespace) its default
// backend and rule paths send traffic to. Resource backends name no Service.
func IngressServices(ing *networkingv1.Ingress) []string {
	var names []string
	add := func(b *networkingv1.IngressBackend) {
		if b != nil && b.Service != nil && b.Service.Name != "" {
			names = append(names, b.Service.Name)
		}
	}
	add(ing.Spec.DefaultBackend)
	for _, r := range ing.Spec.Rules {
		if r.HTTP == nil {
			continue
		}
		for _, p := range r.HTTP.Paths {
			add(&p.Backend)
		}
	}
	slices.Sort(names)
	return slices.Compact(names)
}

// IngressTLSSecrets names, sorted and without repeats, the Secrets (in the Ingress's namespace) its TLS
// entries name: they follow with the Ingress.
func IngressTLSSecrets(ing *networkingv1.Ingress) []string {
	var names []string
	for _, t := range ing.Spec.TLS {
		if t.SecretName != "" {
			names = append(names, t.SecretName)
		}
	}
	slices.Sort(names)
	return slices.Compact(names)
}
