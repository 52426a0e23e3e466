package provider

import (
	"fmt"
	"slices"

	corev1 "k8s.io/api/core/v1"

	"github.com/flotilla-io/flotilla/provider/follow"
)

// A delegate never names a workload object that does not stand for the proxy's management object of that
// name (see DESIGN.md, "Nothing resolves to a foreign object"): what follows the pod (ConfigMaps and Secrets,
// package follow) is flotilla's copy; what does not follow is refused (unsupportedReference) or, when the
// reference is optional, dropped (dropReferences).

// unsupportedReference says why the pod cannot be delegated to the named workload cluster when its spec names
// an object that does not follow pods: the delegate would get whatever that cluster holds under the name
// (someone else's claim, volume or credentials). ok is false when there is none. Only the first is reported.
func unsupportedReference(s *corev1.PodSpec, cluster string) (why string, ok bool) {
	unsupported := func(what string) (string, bool) {
		return fmt.Sprintf("%s, which does not follow pods to workload cluster %s: there the name would resolve to whatever that cluster holds under it, so flotilla does not delegate the pod",
			what, cluster), true
	}
	secret := func(volume, plugin, name string) (string, bool) {
		return unsupported(fmt.Sprintf("volume %q refers to Secret %q (the %s volume's secret reference)", volume, name, plugin))
	}
	for _, v := range s.Volumes {
		switch {
		case v.PersistentVolumeClaim != nil:
			return unsupported(fmt.Sprintf("volume %q refers to PersistentVolumeClaim %q", v.Name, v.PersistentVolumeClaim.ClaimName))
		case v.Ephemeral != nil:
			return unsupported(fmt.Sprintf("volume %q is a generic ephemeral volume (a PersistentVolumeClaim made from a template, provisioned by a StorageClass of the cluster)", v.Name))
		case v.CSI != nil && v.CSI.NodePublishSecretRef != nil:
			return unsupported(fmt.Sprintf("volume %q refers to Secret %q (csi nodePublishSecretRef)", v.Name, v.CSI.NodePublishSecretRef.Name))
		case v.CephFS != nil && v.CephFS.SecretRef != nil:
			return secret(v.Name, "cephfs", v.CephFS.SecretRef.Name)
		case v.RBD != nil && v.RBD.SecretRef != nil:
			return secret(v.Name, "rbd", v.RBD.SecretRef.Name)
		case v.ISCSI != nil && v.ISCSI.SecretRef != nil:
			return secret(v.Name, "iscsi", v.ISCSI.SecretRef.Name)
		case v.FlexVolume != nil && v.FlexVolume.SecretRef != nil:
			return secret(v.Name, "flexVolume", v.FlexVolume.SecretRef.Name)
		case v.AzureFile != nil && v.AzureFile.SecretName != "":
			return secret(v.Name, "azureFile", v.AzureFile.SecretName)
		case v.ScaleIO != nil && v.ScaleIO.SecretRef != nil:
			return secret(v.Name, "scaleIO", v.ScaleIO.SecretRef.Name)
		case v.StorageOS != nil && v.StorageOS.SecretRef != nil:
			return secret(v.Name, "storageos", v.StorageOS.SecretRef.Name)
		}
	}
	for _, c := range s.ResourceClaims {
		switch {
		case c.ResourceClaimName != nil:
			return unsupported(fmt.Sprintf("resource claim %q refers to ResourceClaim %q", c.Name, *c.ResourceClaimName))
		case c.ResourceClaimTemplateName != nil:
			return unsupported(fmt.Sprintf("resource claim %q refers to ResourceClaimTemplate %q", c.Name, *c.ResourceClaimTemplateName))
		default:
			return unsupported(fmt.Sprintf("resource claim %q (dynamic resource allocation)", c.Name))
		}
	}
	return "", false
}

// dropReferences removes from s every optional use of the ConfigMaps and Secrets in drop (package follow's
// verdict: missing in the management cluster, or a ServiceAccount token Secret, which never follows), so the
// delegate starts as the kubelet starts the proxy without them, and the name never resolves to a workload
// object: an optional volume becomes an empty emptyDir (what the kubelet mounts for a missing optional
// ConfigMap or Secret), an optional projected source, envFrom or env entry goes, and so does an image pull
// secret (all of them are optional). A reference in drop stands for its object, whatever its Key: every
// optional use of that object goes. Mandatory uses stay; follow refuses a pod with a mandatory use of such an
// object before it gets here.
func dropReferences(s *corev1.PodSpec, drop []follow.Reference) {
	if len(drop) == 0 {
		return
	}
	type object struct{ kind, name string }
	dropped := map[object]bool{}
	for _, r := range drop {
		dropped[object{r.Kind, r.Name}] = true
	}
	optionalUse := func(kind, name string, optional *bool) bool {
		return optional != nil && *optional && dropped[object{kind, name}]
	}
	for i := range s.Volumes {
		v := &s.Volumes[i]
		switch {
		case v.ConfigMap != nil && optionalUse(follow.KindConfigMap, v.ConfigMap.Name, v.ConfigMap.Optional),
			v.Secret != nil && optionalUse(follow.KindSecret, v.Secret.SecretName, v.Secret.Optional):
			v.VolumeSource = corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}
		case v.Projected != nil:
			v.Projected.Sources = slices.DeleteFunc(v.Projected.Sources, func(p corev1.VolumeProjection) bool {
				return (p.ConfigMap != nil && optionalUse(follow.KindConfigMap, p.ConfigMap.Name, p.ConfigMap.Optional)) ||
					(p.Secret != nil && optionalUse(follow.KindSecret, p.Secret.Name, p.Secret.Optional))
			})
		}
	}
	for _, cs := range [][]corev1.Container{s.InitContainers, s.Containers} {
		for i := range cs {
			c := &cs[i]
			c.EnvFrom = slices.DeleteFunc(c.EnvFrom, func(e corev1.EnvFromSource) bool {
				return (e.ConfigMapRef != nil && optionalUse(follow.KindConfigMap, e.ConfigMapRef.Name, e.ConfigMapRef.Optional)) ||
					(e.SecretRef != nil && optionalUse(follow.KindSecret, e.SecretRef.Name, e.SecretRef.Optional))
			})
			c.Env = slices.DeleteFunc(c.Env, func(e corev1.EnvVar) bool {
				if e.ValueFrom == nil {
					return false
				}
				cm, sec := e.ValueFrom.ConfigMapKeyRef, e.ValueFrom.SecretKeyRef
				return (cm != nil && optionalUse(follow.KindConfigMap, cm.Name, cm.Optional)) ||
					(sec != nil && optionalUse(follow.KindSecret, sec.Name, sec.Optional))
			})
		}
	}
	s.ImagePullSecrets = slices.DeleteFunc(s.ImagePullSecrets, func(r corev1.LocalObjectReference) bool {
		return dropped[object{follow.KindSecret, r.Name}]
	})
}
