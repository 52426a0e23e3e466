package follow

import (
	"cmp"
	"fmt"
	"slices"

	corev1 "k8s.io/api/core/v1"
)

// Kinds of the objects a pod references, as Reference.Kind and the Kind of the errors spell them.
const (
	KindConfigMap = "ConfigMap"
	KindSecret    = "Secret"
)

// RootCAConfigMap is the ConfigMap every namespace of every cluster holds with that cluster's own CA
// bundle (the ServiceAccount token volume projects it). It never follows a pod: the workload cluster has
// its own, and the delegate must trust the workload cluster's CA, not the management cluster's.
const RootCAConfigMap = "kube-root-ca.crt"

// Reference is a ConfigMap or Secret a pod references, in the pod's namespace.
type Reference struct {
	Kind string // KindConfigMap or KindSecret
	Name string
	// Key is set for an env valueFrom reference to one key of the object.
	Key string
	// Optional says the kubelet starts the pod without it: every use is marked optional, or it is an image
	// pull secret (a missing one only costs a warning).
	Optional bool
}

// References lists, sorted by kind, name and key and without repeats, every ConfigMap and Secret the pod
// spec references: volumes (plain and projected), env valueFrom and envFrom of init and app containers,
// and image pull secrets. Of two uses of the same object (and key), the mandatory one is kept. Ephemeral
// containers are not delegated, and RootCAConfigMap never follows, so neither counts.
func References(s *corev1.PodSpec) []Reference {
	var refs []Reference
	add := func(kind, name, key string, optional *bool) {
		if name == "" || (kind == KindConfigMap && name == RootCAConfigMap) {
			return
		}
		refs = append(refs, Reference{Kind: kind, Name: name, Key: key, Optional: optional != nil && *optional})
	}
	for _, v := range s.Volumes {
		if v.ConfigMap != nil {
			add(KindConfigMap, v.ConfigMap.Name, "", v.ConfigMap.Optional)
		}
		if v.Secret != nil {
			add(KindSecret, v.Secret.SecretName, "", v.Secret.Optional)
		}
		if v.Projected != nil {
			for _, p := range v.Projected.Sources {
				if p.ConfigMap != nil {
					add(KindConfigMap, p.ConfigMap.Name, "", p.ConfigMap.Optional)
				}
				if p.Secret != nil {
					add(KindSecret, p.Secret.Name, "", p.Secret.Optional)
				}
			}
		}
	}
	for _, c := range slices.Concat(s.InitContainers, s.Containers) {
		for _, e := range c.EnvFrom {
			if e.ConfigMapRef != nil {
				add(KindConfigMap, e.ConfigMapRef.Name, "", e.ConfigMapRef.Optional)
			}
			if e.SecretRef != nil {
				add(KindSecret, e.SecretRef.Name, "", e.SecretRef.Optional)
			}
		}
		for _, e := range c.Env {
			if e.ValueFrom == nil {
				continue
			}
			if r := e.ValueFrom.ConfigMapKeyRef; r != nil {
				add(KindConfigMap, r.Name, r.Key, r.Optional)
			}
			if r := e.ValueFrom.SecretKeyRef; r != nil {
				add(KindSecret, r.Name, r.Key, r.Optional)
			}
		}
	}
	optional := true
	for _, s := range s.ImagePullSecrets {
		add(KindSecret, s.Name, "", &optional)
	}
	slices.SortFunc(refs, func(a, b Reference) int {
		// Mandatory before optional, so that Compact keeps the mandatory one of two otherwise equal entries.
		return cmp.Or(cmp.Compare(a.Kind, b.Kind), cmp.Compare(a.Name, b.Name), cmp.Compare(a.Key, b.Key),
			compareBool(a.Optional, b.Optional))
	})
	refs = slices.CompactFunc(refs, func(a, b Reference) bool {
		return a.Kind == b.Kind && a.Name == b.Name && a.Key == b.Key
	})
	return refs
}

func compareBool(a, b bool) int {
	switch {
	case a == b:
		return 0
	case !a:
		return -1
	default:
		return 1
	}
}

// objectKeys are the index keys ("<Kind>/<namespace>/<name>") of the objects a pod references, without
// repeats: what the proxy index of the ConfigMap and Secret followers is built from.
func objectKeys(pod *corev1.Pod) []string {
	var keys []string
	for _, r := range References(&pod.Spec) {
		k := refKey(r.Kind, pod.Namespace, r.Name)
		if len(keys) == 0 || keys[len(keys)-1] != k {
			keys = append(keys, k)
		}
	}
	return keys
}

func refKey(kind, namespace, name string) string { return kind + "/" + namespace + "/" + name }

// referencePlan is what EnsureFor does about a proxy's references.
type referencePlan struct {
	// copy lists the objects (Kind and Name) to copy to the workload cluster before the delegate is created.
	copy []Reference
	// drop lists the objects (Kind and Name, Optional) every reference to which the delegate loses: optional
	// ones the management cluster does not hold, and ServiceAccount token Secrets.
	drop []Reference
	// missing lists the optional references to objects the management cluster does not hold, each of which
	// gets the kubelet's Event on the proxy.
	missing []Reference
}

// planReferences decides what becomes of the references refs (as References lists them) of a proxy in
// namespace, given the referenced objects the management cluster holds (by name; an absent name is an object
// it does not hold). It returns a *MissingReferenceError for a mandatory reference to an object, or to a
// key of one, that does not exist, and an *UnsupportedReferenceError for a mandatory reference to a
// ServiceAccount token Secret; the first in References' order wins.
func planReferences(namespace string, refs []Reference, configMaps map[string]*corev1.ConfigMap, secrets map[string]*corev1.Secret) (referencePlan, error) {
	type object struct{ kind, name string }
	var order []object
	mandatory := map[object]bool{}
	for _, r := range refs {
		o := object{r.Kind, r.Name}
		if _, seen := mandatory[o]; !seen {
			order = append(order, o)
		}
		mandatory[o] = mandatory[o] || !r.Optional
	}
	var plan referencePlan
	copied := map[object]bool{}
	for _, o := range order {
		var present, token bool
		if o.kind == KindConfigMap {
			_, present = configMaps[o.name]
		} else {
			s, ok := secrets[o.name]
			present, token = ok, ok && !SecretFollows(s)
		}
		ref := Reference{Kind: o.kind, Name: o.name, Optional: true}
		switch {
		case !present && mandatory[o]:
			return referencePlan{}, &MissingReferenceError{Reason: notFoundReason(o.kind, true, false), Kind: o.kind, Namespace: namespace, Name: o.name}
		case token && mandatory[o]:
			return referencePlan{}, &UnsupportedReferenceError{Reason: ReasonUnsupportedReference, Kind: o.kind, Namespace: namespace, Name: o.name,
				Message: fmt.Sprintf("secret %q is a ServiceAccount token (type %s) of the management cluster; such Secrets never follow to a workload cluster, so a pod that needs it cannot run there (mark the reference optional to run without it)",
					o.name, corev1.SecretTypeServiceAccountToken)}
		case !present:
			plan.drop = append(plan.drop, ref)
			plan.missing = append(plan.missing, ref)
		case token:
			plan.drop = append(plan.drop, ref)
		default:
			plan.copy = append(plan.copy, Reference{Kind: o.kind, Name: o.name})
			copied[o] = true
		}
	}
	for _, r := range refs {
		if r.Key == "" || r.Optional || !copied[object{r.Kind, r.Name}] {
			continue
		}
		var has bool
		if r.Kind == KindConfigMap {
			cm := configMaps[r.Name]
			_, inData := cm.Data[r.Key]
			_, inBinary := cm.BinaryData[r.Key]
			has = inData || inBinary
		} else {
			_, has = secrets[r.Name].Data[r.Key]
		}
		if !has {
			return referencePlan{}, &MissingReferenceError{Reason: notFoundReason(r.Kind, true, true), Kind: r.Kind, Namespace: namespace, Name: r.Name, Key: r.Key}
		}
	}
	return plan, nil
}

func notFoundReason(kind string, mandatory, key bool) string {
	switch {
	case kind == KindConfigMap && !mandatory:
		return ReasonOptionalConfigMapNotFound
	case kind == KindSecret && !mandatory:
		return ReasonOptionalSecretNotFound
	case kind == KindConfigMap && key:
		return ReasonMandatoryConfigMapKeyNotFound
	case kind == KindConfigMap:
		return ReasonMandatoryConfigMapNotFound
	case key:
		return ReasonMandatorySecretKeyNotFound
	default:
		return ReasonMandatorySecretNotFound
	}
}
