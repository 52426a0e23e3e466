package follow

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
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

func TestPlanReferences(t *testing.T) {
	cm := func(name string, keys ...string) *corev1.ConfigMap {
		c := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: name}, Data: map[string]string{}}
		for _, k := range keys {
			c.Data[k] = "v"
		}
		return c
	}
	secret := func(name string, typ corev1.SecretType, keys ...string) *corev1.Secret {
		s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: name}, Type: typ, Data: map[string][]byte{}}
		for _, k := range keys {
			s.Data[k] = []byte("v")
		}
		return s
	}
	binary := cm("bin")
	binary.BinaryData = map[string][]byte{"blob": {1}}
	cms := map[string]*corev1.ConfigMap{"app": cm("app", "a"), "bin": binary}
	secrets := map[string]*corev1.Secret{
		"creds": secret("creds", corev1.SecretTypeOpaque, "p"),
		"token": secret("token", corev1.SecretTypeServiceAccountToken, "token"),
	}
	ref := func(kind, name, key string, optional bool) Reference {
		return Reference{Kind: kind, Name: name, Key: key, Optional: optional}
	}
	obj := func(kind, name string) Reference { return Reference{Kind: kind, Name: name} }
	dropped := func(kind, name string) Reference { return Reference{Kind: kind, Name: name, Optional: true} }
	tests := []struct {
		name       string
		refs       []Reference
		want       referencePlan
		wantErr    error
		wantReason string
	}{
		{name: "nothing referenced"},
		{
			name: "present objects are copied, once each",
			refs: []Reference{ref(KindConfigMap, "app", "", false), ref(KindConfigMap, "app", "a", false), ref(KindSecret, "creds", "p", true)},
			want: referencePlan{copy: []Reference{obj(KindConfigMap, "app"), obj(KindSecret, "creds")}},
		},
		{
			name: "a key in binaryData counts",
			refs: []Reference{ref(KindConfigMap, "bin", "blob", false)},
			want: referencePlan{copy: []Reference{obj(KindConfigMap, "bin")}},
		},
		{
			name: "missing optional objects are dropped, and get the kubelet's Event",
			refs: []Reference{ref(KindConfigMap, "maybe", "", true), ref(KindSecret, "creds", "", false), ref(KindSecret, "pull", "", true), ref(KindSecret, "pull", "k", true)},
			want: referencePlan{
				copy:    []Reference{obj(KindSecret, "creds")},
				drop:    []Reference{dropped(KindConfigMap, "maybe"), dropped(KindSecret, "pull")},
				missing: []Reference{dropped(KindConfigMap, "maybe"), dropped(KindSecret, "pull")},
			},
		},
		{
			name: "an optional ServiceAccount token Secret is dropped without an Event, never copied",
			refs: []Reference{ref(KindSecret, "token", "", true), ref(KindSecret, "token", "token", true)},
			want: referencePlan{drop: []Reference{dropped(KindSecret, "token")}},
		},
		{
			name:       "a mandatory ServiceAccount token Secret is unsupported",
			refs:       []Reference{ref(KindConfigMap, "app", "", false), ref(KindSecret, "token", "", true), ref(KindSecret, "token", "token", false)},
			wantErr:    &UnsupportedReferenceError{},
			wantReason: ReasonUnsupportedReference,
		},
		{
			name:       "a missing mandatory object blocks, even when another use is optional",
			refs:       []Reference{ref(KindSecret, "gone", "", true), ref(KindSecret, "gone", "k", false)},
			wantErr:    &MissingReferenceError{Reason: ReasonMandatorySecretNotFound, Kind: KindSecret, Namespace: "shop", Name: "gone"},
			wantReason: ReasonMandatorySecretNotFound,
		},
		{
			name:       "a missing mandatory key blocks",
			refs:       []Reference{ref(KindConfigMap, "app", "b", false)},
			wantErr:    &MissingReferenceError{Reason: ReasonMandatoryConfigMapKeyNotFound, Kind: KindConfigMap, Namespace: "shop", Name: "app", Key: "b"},
			wantReason: ReasonMandatoryConfigMapKeyNotFound,
		},
		{
			name: "a missing optional key does not",
			refs: []Reference{ref(KindSecret, "creds", "other", true)},
			want: referencePlan{copy: []Reference{obj(KindSecret, "creds")}},
		},
		{
			name:       "the first problem in References' order wins",
			refs:       []Reference{ref(KindConfigMap, "gone", "", false), ref(KindSecret, "token", "", false)},
			wantErr:    &MissingReferenceError{Reason: ReasonMandatoryConfigMapNotFound, Kind: KindConfigMap, Namespace: "shop", Name: "gone"},
			wantReason: ReasonMandatoryConfigMapNotFound,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := planReferences("shop", tt.refs, cms, secrets)
			switch want := tt.wantErr.(type) {
			case nil:
				if err != nil {
					t.Fatalf("planReferences: %v", err)
				}
				if !reflect.DeepEqual(got, tt.want) {
					t.Errorf("plan =\n  %+v\nwant\n  %+v", got, tt.want)
				}
			case *MissingReferenceError:
				var missing *MissingReferenceError
				if !errors.As(err, &missing) || !reflect.DeepEqual(missing, want) {
					t.Errorf("error = %#v, want %#v", err, want)
				}
			case *UnsupportedReferenceError:
				var unsupported *UnsupportedReferenceError
				if !errors.As(err, &unsupported) || unsupported.Reason != tt.wantReason || unsupported.Name != "token" ||
					!strings.Contains(unsupported.Error(), `secret "token"`) || !strings.Contains(unsupported.Error(), string(corev1.SecretTypeServiceAccountToken)) {
					t.Errorf("error = %#v, want an unsupported token reference", err)
				}
			}
		})
	}
}
