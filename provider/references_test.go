package provider

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"

	"github.com/flotilla-io/flotilla/provider/follow"
)

func TestUnsupportedReference(t *testing.T) {
	secret := &corev1.LocalObjectReference{Name: "creds"}
	volume := func(source corev1.VolumeSource) func(*corev1.PodSpec) {
		return func(s *corev1.PodSpec) {
			s.Volumes = append(s.Volumes, corev1.Volume{Name: "store", VolumeSource: source})
		}
	}
	for _, tc := range []struct {
		name  string
		spec  func(*corev1.PodSpec)
		parts []string // the message names these; none: the pod is supported
	}{
		{name: "emptyDir, ConfigMap, Secret, projected and token volumes are supported"},
		{name: "a PersistentVolumeClaim would bind to the workload's claim of that name",
			spec:  volume(corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "data-0"}}),
			parts: []string{`volume "store"`, `PersistentVolumeClaim "data-0"`, "workload cluster eu-west-3-1", "whatever that cluster holds"}},
		{name: "a generic ephemeral volume",
			spec:  volume(corev1.VolumeSource{Ephemeral: &corev1.EphemeralVolumeSource{}}),
			parts: []string{`volume "store"`, "generic ephemeral volume"}},
		{name: "a CSI volume with a node publish secret",
			spec:  volume(corev1.VolumeSource{CSI: &corev1.CSIVolumeSource{Driver: "x", NodePublishSecretRef: secret}}),
			parts: []string{`volume "store"`, `Secret "creds"`, "nodePublishSecretRef"}},
		{name: "a CSI volume without a secret is supported",
			spec: volume(corev1.VolumeSource{CSI: &corev1.CSIVolumeSource{Driver: "secrets-store.csi.k8s.io"}})},
		{name: "cephfs secret", spec: volume(corev1.VolumeSource{CephFS: &corev1.CephFSVolumeSource{SecretRef: secret}}),
			parts: []string{`Secret "creds"`, "cephfs"}},
		{name: "cephfs without a secret is supported", spec: volume(corev1.VolumeSource{CephFS: &corev1.CephFSVolumeSource{Monitors: []string{"m"}}})},
		{name: "rbd secret", spec: volume(corev1.VolumeSource{RBD: &corev1.RBDVolumeSource{SecretRef: secret}}),
			parts: []string{`Secret "creds"`, "rbd"}},
		{name: "iscsi secret", spec: volume(corev1.VolumeSource{ISCSI: &corev1.ISCSIVolumeSource{SecretRef: secret}}),
			parts: []string{`Secret "creds"`, "iscsi"}},
		{name: "flexVolume secret", spec: volume(corev1.VolumeSource{FlexVolume: &corev1.FlexVolumeSource{Driver: "x", SecretRef: secret}}),
			parts: []string{`Secret "creds"`, "flexVolume"}},
		{name: "azureFile secret", spec: volume(corev1.VolumeSource{AzureFile: &corev1.AzureFileVolumeSource{SecretName: "creds"}}),
			parts: []string{`Secret "creds"`, "azureFile"}},
		{name: "scaleIO secret", spec: volume(corev1.VolumeSource{ScaleIO: &corev1.ScaleIOVolumeSource{SecretRef: secret}}),
			parts: []string{`Secret "creds"`, "scaleIO"}},
		{name: "storageos secret", spec: volume(corev1.VolumeSource{StorageOS: &corev1.StorageOSVolumeSource{SecretRef: secret}}),
			parts: []string{`Secret "creds"`, "storageos"}},
		{name: "a resource claim",
			spec: func(s *corev1.PodSpec) {
				s.ResourceClaims = []corev1.PodResourceClaim{{Name: "gpu", ResourceClaimName: new("shared-gpu")}}
			},
			parts: []string{`resource claim "gpu"`, `ResourceClaim "shared-gpu"`}},
		{name: "a resource claim template",
			spec: func(s *corev1.PodSpec) {
				s.ResourceClaims = []corev1.PodResourceClaim{{Name: "gpu", ResourceClaimTemplateName: new("one-gpu")}}
			},
			parts: []string{`resource claim "gpu"`, `ResourceClaimTemplate "one-gpu"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			proxy := withReferences()
			if tc.spec != nil {
				tc.spec(&proxy.Spec)
			}
			why, unsupported := unsupportedReference(&proxy.Spec, "eu-west-3-1")
			if unsupported != (len(tc.parts) > 0) {
				t.Fatalf("unsupported = %v (%q), want %v", unsupported, why, len(tc.parts) > 0)
			}
			for _, part := range tc.parts {
				if !strings.Contains(why, part) {
					t.Errorf("message %q does not say %q", why, part)
				}
			}
		})
	}
}

// withReferences is proxyPod with one optional and one mandatory use of each kind of reference.
func withReferences() *corev1.Pod {
	p := proxyPod()
	s := &p.Spec
	s.Volumes = append(s.Volumes,
		corev1.Volume{Name: "cm", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
			LocalObjectReference: corev1.LocalObjectReference{Name: "maybe-cm"}, Optional: new(true)}}},
		corev1.Volume{Name: "secret", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "maybe-secret", Optional: new(true)}}},
		corev1.Volume{Name: "needed", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "needed"}}},
		corev1.Volume{Name: "all", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{Sources: []corev1.VolumeProjection{
			{ConfigMap: &corev1.ConfigMapProjection{LocalObjectReference: corev1.LocalObjectReference{Name: "maybe-cm"}, Optional: new(true)}},
			{Secret: &corev1.SecretProjection{LocalObjectReference: corev1.LocalObjectReference{Name: "maybe-secret"}, Optional: new(true)}},
			{Secret: &corev1.SecretProjection{LocalObjectReference: corev1.LocalObjectReference{Name: "needed"}}},
		}}}},
	)
	c := &s.Containers[0]
	c.EnvFrom = []corev1.EnvFromSource{
		{ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "maybe-cm"}, Optional: new(true)}},
		{SecretRef: &corev1.SecretEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "needed"}}},
	}
	c.Env = []corev1.EnvVar{
		{Name: "PLAIN", Value: "x"},
		{Name: "FROM_CM", ValueFrom: &corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{
			LocalObjectReference: corev1.LocalObjectReference{Name: "maybe-cm"}, Key: "k", Optional: new(true)}}},
		{Name: "FROM_SECRET", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
			LocalObjectReference: corev1.LocalObjectReference{Name: "maybe-secret"}, Key: "k", Optional: new(true)}}},
		{Name: "NEEDED", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
			LocalObjectReference: corev1.LocalObjectReference{Name: "needed"}, Key: "k"}}},
		{Name: "POD", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}},
	}
	s.InitContainers[0].EnvFrom = []corev1.EnvFromSource{
		{SecretRef: &corev1.SecretEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "maybe-secret"}, Optional: new(true)}},
	}
	s.ImagePullSecrets = []corev1.LocalObjectReference{{Name: "registry"}, {Name: "maybe-secret"}}
	return p
}

func TestDropReferences(t *testing.T) {
	cm := follow.Reference{Kind: follow.KindConfigMap, Name: "maybe-cm", Optional: true}
	secret := follow.Reference{Kind: follow.KindSecret, Name: "maybe-secret", Optional: true}
	dropCM := func(s *corev1.PodSpec) {
		s.Volumes[2].VolumeSource = corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}
		s.Volumes[5].Projected.Sources = s.Volumes[5].Projected.Sources[1:]
		s.Containers[0].EnvFrom = s.Containers[0].EnvFrom[1:]
		s.Containers[0].Env = append(s.Containers[0].Env[:1], s.Containers[0].Env[2:]...)
	}
	for _, tc := range []struct {
		name string
		drop []follow.Reference
		want func(*corev1.PodSpec) // applied to withReferences(); nil: unchanged
	}{
		{name: "nothing to drop"},
		{name: "an optional ConfigMap: its volume becomes an emptyDir, its projection, envFrom and env entries go",
			drop: []follow.Reference{cm}, want: dropCM},
		{name: "an optional Secret: the same, and the image pull secret of its name goes",
			drop: []follow.Reference{secret},
			want: func(s *corev1.PodSpec) {
				s.Volumes[3].VolumeSource = corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}
				s.Volumes[5].Projected.Sources = []corev1.VolumeProjection{s.Volumes[5].Projected.Sources[0], s.Volumes[5].Projected.Sources[2]}
				s.Containers[0].Env = append(s.Containers[0].Env[:2], s.Containers[0].Env[3:]...)
				s.InitContainers[0].EnvFrom = []corev1.EnvFromSource{}
				s.ImagePullSecrets = []corev1.LocalObjectReference{{Name: "registry"}}
			}},
		{name: "a reference stands for its object, whatever its key",
			drop: []follow.Reference{{Kind: follow.KindConfigMap, Name: "maybe-cm", Key: "other", Optional: true}}, want: dropCM},
		{name: "the kind matters: a Secret of the ConfigMap's name drops nothing of the ConfigMap",
			drop: []follow.Reference{{Kind: follow.KindSecret, Name: "maybe-cm", Optional: true}}},
		{name: "mandatory uses are never dropped",
			drop: []follow.Reference{{Kind: follow.KindSecret, Name: "needed", Optional: true}}},
		{name: "an image pull secret alone",
			drop: []follow.Reference{{Kind: follow.KindSecret, Name: "registry", Optional: true}},
			want: func(s *corev1.PodSpec) { s.ImagePullSecrets = []corev1.LocalObjectReference{{Name: "maybe-secret"}} }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := withReferences().Spec
			dropReferences(&got, tc.drop)
			want := withReferences().Spec
			if tc.want != nil {
				tc.want(&want)
			}
			if !equality.Semantic.DeepEqual(got, want) {
				t.Errorf("spec differs (-want +got):\n%s", cmp.Diff(want, got))
			}
		})
	}
}
