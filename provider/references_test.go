package provider

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
)

func TestNotFoundReason(t *testing.T) {
	for r, want := range map[reference]string{
		{kind: kindConfigMap}:                 ReasonMandatoryConfigMapNotFound,
		{kind: kindConfigMap, optional: true}: ReasonOptionalConfigMapNotFound,
		{kind: kindSecret}:                    ReasonMandatorySecretNotFound,
		{kind: kindSecret, optional: true}:    ReasonOptionalSecretNotFound,
	} {
		if got := r.notFoundReason(); got != want {
			t.Errorf("%+v: %s, want %s", r, got, want)
		}
	}
}

func TestReferences(t *testing.T) {
	ref := func(name string) corev1.LocalObjectReference { return corev1.LocalObjectReference{Name: name} }
	optional := new(true)
	tests := []struct {
		name string
		spec corev1.PodSpec
		want []reference
	}{
		{name: "none"},
		{
			name: "volumes, plain and projected",
			spec: corev1.PodSpec{Volumes: []corev1.Volume{
				{Name: "a", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: ref("conf")}}},
				{Name: "b", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "tls"}}},
				{Name: "c", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{Sources: []corev1.VolumeProjection{
					{ConfigMap: &corev1.ConfigMapProjection{LocalObjectReference: ref("bundle")}},
					{Secret: &corev1.SecretProjection{LocalObjectReference: ref("creds")}},
					{DownwardAPI: &corev1.DownwardAPIProjection{}},
				}}}},
				{Name: "d", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
			}},
			want: []reference{{kindConfigMap, "bundle", false}, {kindConfigMap, "conf", false}, {kindSecret, "creds", false}, {kindSecret, "tls", false}},
		},
		{
			name: "env and envFrom of init and app containers",
			spec: corev1.PodSpec{
				InitContainers: []corev1.Container{{Name: "init", EnvFrom: []corev1.EnvFromSource{{SecretRef: &corev1.SecretEnvSource{LocalObjectReference: ref("init-env")}}}}},
				Containers: []corev1.Container{{Name: "app",
					EnvFrom: []corev1.EnvFromSource{{ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: ref("app-env")}}},
					Env: []corev1.EnvVar{
						{Name: "PLAIN", Value: "x"},
						{Name: "FIELD", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}},
						{Name: "CM", ValueFrom: &corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{LocalObjectReference: ref("settings"), Key: "k"}}},
						{Name: "PW", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: ref("db"), Key: "password"}}},
					},
				}},
			},
			want: []reference{{kindConfigMap, "app-env", false}, {kindConfigMap, "settings", false}, {kindSecret, "db", false}, {kindSecret, "init-env", false}},
		},
		{
			name: "optional references",
			spec: corev1.PodSpec{
				Volumes: []corev1.Volume{
					{Name: "a", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: ref("conf"), Optional: optional}}},
					{Name: "b", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "tls", Optional: optional}}},
					{Name: "c", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{Sources: []corev1.VolumeProjection{
						{Secret: &corev1.SecretProjection{LocalObjectReference: ref("creds"), Optional: optional}},
					}}}},
				},
				Containers: []corev1.Container{{Name: "app",
					EnvFrom: []corev1.EnvFromSource{{ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: ref("app-env"), Optional: optional}}},
					Env: []corev1.EnvVar{
						{Name: "PW", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: ref("db"), Key: "p", Optional: optional}}},
						{Name: "CM", ValueFrom: &corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{LocalObjectReference: ref("settings"), Key: "k", Optional: new(false)}}},
					},
				}},
			},
			want: []reference{{kindConfigMap, "app-env", true}, {kindConfigMap, "conf", true}, {kindConfigMap, "settings", false},
				{kindSecret, "creds", true}, {kindSecret, "db", true}, {kindSecret, "tls", true}},
		},
		{
			name: "a name used twice is listed once, mandatory if any use is; a ConfigMap and a Secret of one name are two",
			spec: corev1.PodSpec{
				Volumes: []corev1.Volume{{Name: "a", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: ref("app"), Optional: optional}}}},
				Containers: []corev1.Container{{Name: "app", EnvFrom: []corev1.EnvFromSource{
					{ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: ref("app")}},
					{ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: ref("app"), Optional: optional}},
					{SecretRef: &corev1.SecretEnvSource{LocalObjectReference: ref("app"), Optional: optional}},
					{SecretRef: &corev1.SecretEnvSource{LocalObjectReference: ref("app"), Optional: optional}},
				}}},
			},
			want: []reference{{kindConfigMap, "app", false}, {kindSecret, "app", true}},
		},
		{
			name: "image pull secrets only warn when missing",
			spec: corev1.PodSpec{ImagePullSecrets: []corev1.LocalObjectReference{ref("registry")}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := references(&tt.spec)
			if diff := cmp.Diff(tt.want, got, cmp.AllowUnexported(reference{})); diff != "" {
				t.Errorf("references differ (-want +got):\n%s", diff)
			}
		})
	}
}
