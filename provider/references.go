package provider

import (
	"cmp"
	"fmt"
	"slices"

	corev1 "k8s.io/api/core/v1"
)

// reference names a ConfigMap or Secret in the pod's namespace.
type reference struct {
	kind     string // kindConfigMap or kindSecret
	name     string
	optional bool // every use of it is marked optional: the kubelet starts the pod without it
}

// Kinds of references, spelt as the kubelet spells them in its messages.
const (
	kindConfigMap = "configmap"
	kindSecret    = "secret"
)

func (r reference) String() string { return fmt.Sprintf("%s %q", r.kind, r.name) }

// notFoundReason is the reason of the Event saying r is missing, as virtual-kubelet names it.
func (r reference) notFoundReason() string {
	switch {
	case r.kind == kindConfigMap && r.optional:
		return ReasonOptionalConfigMapNotFound
	case r.kind == kindConfigMap:
		return ReasonMandatoryConfigMapNotFound
	case r.optional:
		return ReasonOptionalSecretNotFound
	default:
		return ReasonMandatorySecretNotFound
	}
}

// references lists, sorted and each once, the ConfigMaps and Secrets the pod's volumes (plain and
// projected) and its init and app containers' env valueFrom and envFrom use; a reference is optional only
// if every use of it is. Without a mandatory one the kubelet would not start the containers. Ephemeral
// containers are not delegated, and image pull secrets only warn when missing, so neither counts.
func references(s *corev1.PodSpec) []reference {
	var refs []reference
	add := func(kind, name string, optional *bool) {
		if name != "" {
			refs = append(refs, reference{kind: kind, name: name, optional: optional != nil && *optional})
		}
	}
	for _, v := range s.Volumes {
		if v.ConfigMap != nil {
			add(kindConfigMap, v.ConfigMap.Name, v.ConfigMap.Optional)
		}
		if v.Secret != nil {
			add(kindSecret, v.Secret.SecretName, v.Secret.Optional)
		}
		if v.Projected != nil {
			for _, p := range v.Projected.Sources {
				if p.ConfigMap != nil {
					add(kindConfigMap, p.ConfigMap.Name, p.ConfigMap.Optional)
				}
				if p.Secret != nil {
					add(kindSecret, p.Secret.Name, p.Secret.Optional)
				}
			}
		}
	}
	for _, c := range slices.Concat(s.InitContainers, s.Containers) {
		for _, e := range c.EnvFrom {
			if e.ConfigMapRef != nil {
				add(kindConfigMap, e.ConfigMapRef.Name, e.ConfigMapRef.Optional)
			}
			if e.SecretRef != nil {
				add(kindSecret, e.SecretRef.Name, e.SecretRef.Optional)
			}
		}
		for _, e := range c.Env {
			if e.ValueFrom == nil {
				continue
			}
			if r := e.ValueFrom.ConfigMapKeyRef; r != nil {
				add(kindConfigMap, r.Name, r.Optional)
			}
			if r := e.ValueFrom.SecretKeyRef; r != nil {
				add(kindSecret, r.Name, r.Optional)
			}
		}
	}
	// Mandatory uses sort first, so compacting keeps them.
	slices.SortFunc(refs, func(a, b reference) int {
		return cmp.Or(cmp.Compare(a.kind, b.kind), cmp.Compare(a.name, b.name), compareBool(a.optional, b.optional))
	})
	return slices.CompactFunc(refs, func(a, b reference) bool { return a.kind == b.kind && a.name == b.name })
}

func compareBool(a, b bool) int {
	switch {
	case a == b:
		return 0
	case a:
		return 1
	default:
		return -1
	}
}
