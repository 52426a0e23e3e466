package follow

import (
	"reflect"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

func TestReferences(t *testing.T) {
	yes, no := true, false
	cmVol := func(name string, optional *bool) corev1.Volume {
		return corev1.Volume{Name: name, VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
			LocalObjectReference: corev1.LocalObjectReference{Name: name}, Optional: optional}}}
	}
	secretVol := func(name string, optional *bool) corev1.Volume {
		return corev1.Volume{Name: name, VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: name, Optional: optional}}}
	}
	tokenVolume := corev1.Volume{Name: "kube-api-access-x", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
		Sources: []corev1.VolumeProjection{
			{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{Path: "token"}},
			{ConfigMap: &corev1.ConfigMapProjection{LocalObjectReference: corev1.LocalObjectReference{Name: RootCAConfigMap}}},
		}}}}
	tests := []struct {
		name string
		spec corev1.PodSpec
		want []Reference
	}{
		{name: "nothing", spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c"}}}},
		{
			name: "volumes, plain and projected",
			spec: corev1.PodSpec{Volumes: []corev1.Volume{
				cmVol("cm", nil), secretVol("s", &yes),
				{Name: "p", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{Sources: []corev1.VolumeProjection{
					{ConfigMap: &corev1.ConfigMapProjection{LocalObjectReference: corev1.LocalObjectReference{Name: "pcm"}, Optional: &no}},
					{Secret: &corev1.SecretProjection{LocalObjectReference: corev1.LocalObjectReference{Name: "ps"}}},
				}}}},
			}},
			want: []Reference{
				{Kind: KindConfigMap, Name: "cm"}, {Kind: KindConfigMap, Name: "pcm"},
				{Kind: KindSecret, Name: "ps"}, {Kind: KindSecret, Name: "s", Optional: true},
			},
		},
		{
			name: "env and envFrom of init and app containers; ephemeral containers do not count",
			spec: corev1.PodSpec{
				InitContainers: []corev1.Container{{Name: "i", EnvFrom: []corev1.EnvFromSource{{SecretRef: &corev1.SecretEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "init-s"}}}}}},
				Containers: []corev1.Container{{Name: "c",
					EnvFrom: []corev1.EnvFromSource{{ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "env-cm"}, Optional: &yes}}},
					Env: []corev1.EnvVar{
						{Name: "A", Value: "plain"},
						{Name: "B", ValueFrom: &corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "key-cm"}, Key: "k"}}},
						{Name: "C", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "key-s"}, Key: "password", Optional: &yes}}},
						{Name: "D", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}},
					}}},
				EphemeralContainers: []corev1.EphemeralContainer{{EphemeralContainerCommon: corev1.EphemeralContainerCommon{Name: "e",
					EnvFrom: []corev1.EnvFromSource{{ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "debug"}}}}}}},
			},
			want: []Reference{
				{Kind: KindConfigMap, Name: "env-cm", Optional: true},
				{Kind: KindConfigMap, Name: "key-cm", Key: "k"},
				{Kind: KindSecret, Name: "init-s"},
				{Kind: KindSecret, Name: "key-s", Key: "password", Optional: true},
			},
		},
		{
			name: "image pull secrets follow but are optional",
			spec: corev1.PodSpec{ImagePullSecrets: []corev1.LocalObjectReference{{Name: "registry"}, {Name: ""}}},
			want: []Reference{{Kind: KindSecret, Name: "registry", Optional: true}},
		},
		{
			name: "repeats collapse, mandatory wins",
			spec: corev1.PodSpec{
				Volumes:          []corev1.Volume{cmVol("cm", &yes), cmVol("cm", nil), secretVol("s", nil)},
				ImagePullSecrets: []corev1.LocalObjectReference{{Name: "s"}},
				Containers: []corev1.Container{{Name: "c", EnvFrom: []corev1.EnvFromSource{
					{ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "cm"}, Optional: &yes}},
				}}},
			},
			want: []Reference{{Kind: KindConfigMap, Name: "cm"}, {Kind: KindSecret, Name: "s"}},
		},
		{
			name: "the ServiceAccount volume's root CA ConfigMap never follows",
			spec: corev1.PodSpec{Volumes: []corev1.Volume{tokenVolume, cmVol(RootCAConfigMap, nil)}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := References(&tt.spec); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("References =\n  %+v\nwant\n  %+v", got, tt.want)
			}
		})
	}
}

func TestObjectKeys(t *testing.T) {
	pod := &corev1.Pod{Spec: corev1.PodSpec{
		Volumes: []corev1.Volume{{Name: "v", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
			LocalObjectReference: corev1.LocalObjectReference{Name: "cm"}}}}},
		Containers: []corev1.Container{{Name: "c", Env: []corev1.EnvVar{
			{Name: "A", ValueFrom: &corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "cm"}, Key: "a"}}},
			{Name: "B", ValueFrom: &corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "cm"}, Key: "b"}}},
		}}},
		ImagePullSecrets: []corev1.LocalObjectReference{{Name: "pull"}},
	}}
	pod.Namespace = "ns"
	want := []string{"ConfigMap/ns/cm", "Secret/ns/pull"}
	if got := objectKeys(pod); !reflect.DeepEqual(got, want) {
		t.Errorf("objectKeys = %v, want %v", got, want)
	}
}
