package provider

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/flotilla-io/flotilla/provider/follow"
)

var testOwner = owner{managementID: "mgmt-1", nodeName: "eu-west-3-1", clusterName: "eu-west-3-1"}

// proxyPod is a proxy as the management apiserver stores it once bound to the virtual node: with the
// token volume, default tolerations and priority admission filled in.
func proxyPod() *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: "shop", Name: "web-1", UID: "proxy-uid", ResourceVersion: "42", Generation: 1,
			Labels:          map[string]string{"app": "web"},
			Annotations:     map[string]string{"note": "hi"},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "web", UID: "rs-uid", Controller: new(true)}},
			Finalizers:      []string{"batch.kubernetes.io/job-tracking"},
			ManagedFields:   []metav1.ManagedFieldsEntry{{Manager: "kube-controller-manager"}},
		},
		Spec: corev1.PodSpec{
			NodeName:           "eu-west-3-1",
			ServiceAccountName: "web",
			Containers: []corev1.Container{{
				Name: "app", Image: "nginx:1",
				VolumeMounts: []corev1.VolumeMount{
					{Name: "data", MountPath: "/data"},
					{Name: "kube-api-access-x7k2p", MountPath: "/var/run/secrets/kubernetes.io/serviceaccount"},
				},
			}},
			InitContainers: []corev1.Container{{
				Name: "init", Image: "busybox:1",
				VolumeMounts: []corev1.VolumeMount{{Name: "kube-api-access-x7k2p", MountPath: "/var/run/secrets/kubernetes.io/serviceaccount"}},
			}},
			EphemeralContainers: []corev1.EphemeralContainer{{EphemeralContainerCommon: corev1.EphemeralContainerCommon{Name: "debug", Image: "busybox"}}},
			Volumes: []corev1.Volume{
				{Name: "data", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
				{Name: "kube-api-access-x7k2p", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{Sources: []corev1.VolumeProjection{
					{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{Path: "token"}},
					{ConfigMap: &corev1.ConfigMapProjection{LocalObjectReference: corev1.LocalObjectReference{Name: "kube-root-ca.crt"}}},
				}}}},
			},
			Tolerations: []corev1.Toleration{
				{Key: "virtual-kubelet.io/provider", Operator: corev1.TolerationOpEqual, Value: "flotilla", Effect: corev1.TaintEffectNoSchedule},
				{Key: "node.kubernetes.io/not-ready", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute, TolerationSeconds: new(int64(300))},
			},
			NodeSelector:      map[string]string{"topology.kubernetes.io/region": "eu-west-3", "type": "virtual-kubelet"},
			PriorityClassName: "high",
			Priority:          new(int32(1000)),
			PreemptionPolicy:  new(corev1.PreemptLowerPriority),
			Overhead:          corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("10m")},
			SchedulerName:     "default-scheduler",
		},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, QOSClass: corev1.PodQOSBestEffort},
	}
}

func TestBuildDelegate(t *testing.T) {
	// expected is the delegate of proxyPod() when the PriorityClass does not exist in the workload cluster.
	expected := func() *corev1.Pod {
		return &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{
				Namespace: "shop", Name: "web-1",
				Labels: map[string]string{"app": "web",
					LabelParentUID: "proxy-uid", LabelManagement: "mgmt-1", LabelNode: "eu-west-3-1"},
				Annotations: map[string]string{"note": "hi", annotationProxyLabels: "app", annotationProxyAnnotations: "note"},
			},
			Spec: corev1.PodSpec{
				ServiceAccountName: "web",
				Containers: []corev1.Container{{Name: "app", Image: "nginx:1",
					VolumeMounts: []corev1.VolumeMount{{Name: "data", MountPath: "/data"}}}},
				InitContainers: []corev1.Container{{Name: "init", Image: "busybox:1"}},
				Volumes:        []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}},
				Tolerations: []corev1.Toleration{
					{Key: "node.kubernetes.io/not-ready", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute, TolerationSeconds: new(int64(300))},
				},
				NodeSelector: map[string]string{"topology.kubernetes.io/region": "eu-west-3"},
			},
		}
	}
	tests := []struct {
		name              string
		proxy             func(*corev1.Pod)
		keepPriorityClass bool
		drop              []follow.Reference
		want              func(*corev1.Pod)
	}{
		{name: "bound proxy becomes a schedulable workload pod"},
		{
			name:              "priority class the workload cluster has is kept",
			keepPriorityClass: true,
			want:              func(d *corev1.Pod) { d.Spec.PriorityClassName = "high" },
		},
		{
			name:  "proxy without labels or annotations",
			proxy: func(p *corev1.Pod) { p.Labels, p.Annotations = nil, nil },
			want: func(d *corev1.Pod) {
				d.Labels = map[string]string{LabelParentUID: "proxy-uid", LabelManagement: "mgmt-1", LabelNode: "eu-west-3-1"}
				d.Annotations = map[string]string{annotationProxyLabels: "", annotationProxyAnnotations: ""}
			},
		},
		{
			name:  "flotilla's labels on the proxy are overwritten with the truth",
			proxy: func(p *corev1.Pod) { p.Labels[LabelParentUID], p.Labels[LabelNode] = "forged", "other" },
		},
		{
			name: "a user volume named like the token volume but without a token is kept",
			proxy: func(p *corev1.Pod) {
				p.Spec.Volumes[1].Projected.Sources = p.Spec.Volumes[1].Projected.Sources[1:]
			},
			want: func(d *corev1.Pod) {
				d.Spec.Volumes = append(d.Spec.Volumes, corev1.Volume{Name: "kube-api-access-x7k2p", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{Sources: []corev1.VolumeProjection{
					{ConfigMap: &corev1.ConfigMapProjection{LocalObjectReference: corev1.LocalObjectReference{Name: "kube-root-ca.crt"}}},
				}}}})
				mount := corev1.VolumeMount{Name: "kube-api-access-x7k2p", MountPath: "/var/run/secrets/kubernetes.io/serviceaccount"}
				d.Spec.Containers[0].VolumeMounts = append(d.Spec.Containers[0].VolumeMounts, mount)
				d.Spec.InitContainers[0].VolumeMounts = []corev1.VolumeMount{mount}
			},
		},
		{
			name:  "a custom scheduler name is dropped: the workload's default scheduler places the delegate",
			proxy: func(p *corev1.Pod) { p.Spec.SchedulerName = "volcano" },
		},
		{
			name: "optional references follow's verdict drops are gone",
			proxy: func(p *corev1.Pod) {
				p.Spec.Volumes = append(p.Spec.Volumes, corev1.Volume{Name: "extra", VolumeSource: corev1.VolumeSource{
					ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "missing"}, Optional: new(true)}}})
				p.Spec.ImagePullSecrets = []corev1.LocalObjectReference{{Name: "registry"}, {Name: "shadowed"}}
			},
			drop: []follow.Reference{{Kind: follow.KindConfigMap, Name: "missing", Optional: true}, {Kind: follow.KindSecret, Name: "shadowed", Optional: true}},
			want: func(d *corev1.Pod) {
				d.Spec.Volumes = append(d.Spec.Volumes, corev1.Volume{Name: "extra", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}})
				d.Spec.ImagePullSecrets = []corev1.LocalObjectReference{{Name: "registry"}}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			proxy := proxyPod()
			if tt.proxy != nil {
				tt.proxy(proxy)
			}
			before := proxy.DeepCopy()
			want := expected()
			if tt.want != nil {
				tt.want(want)
			}
			got := buildDelegate(proxy, testOwner, tt.keepPriorityClass, tt.drop)
			if !equality.Semantic.DeepEqual(got, want) {
				t.Errorf("delegate differs (-want +got):\n%s", cmp.Diff(want, got))
			}
			if !equality.Semantic.DeepEqual(proxy, before) {
				t.Errorf("the proxy was modified (-before +after):\n%s", cmp.Diff(before, proxy))
			}
		})
	}
}

func TestWithProxyChanges(t *testing.T) {
	// live is the delegate as the workload cluster holds it: admission added a token mount and a toleration.
	live := func() *corev1.Pod {
		d := buildDelegate(proxyPod(), testOwner, false, nil)
		d.UID, d.ResourceVersion = "delegate-uid", "7"
		d.Spec.NodeName = "eu-west-3-1-node-a"
		d.Spec.Containers[0].VolumeMounts = append(d.Spec.Containers[0].VolumeMounts, corev1.VolumeMount{Name: "kube-api-access-abcde"})
		d.Spec.Tolerations = append(d.Spec.Tolerations, corev1.Toleration{Key: "node.kubernetes.io/unreachable", Operator: corev1.TolerationOpExists})
		d.Status.Phase = corev1.PodRunning
		return d
	}
	tests := []struct {
		name        string
		live        func(*corev1.Pod) // what the workload cluster did to the delegate
		proxy       func(*corev1.Pod)
		want        func(*corev1.Pod) // applied to live(); nil means unchanged
		wantChanged bool
	}{
		{name: "unchanged proxy changes nothing"},
		{
			name:  "labels and annotations follow, ownership labels stay",
			proxy: func(p *corev1.Pod) { p.Labels = map[string]string{"app": "web", "tier": "front"}; p.Annotations = nil },
			want: func(d *corev1.Pod) {
				d.Labels["tier"] = "front"
				delete(d.Annotations, "note")
				d.Annotations[annotationProxyLabels], d.Annotations[annotationProxyAnnotations] = "app,tier", ""
			},
			wantChanged: true,
		},
		{
			name: "keys the workload cluster added stay when the proxy's change",
			live: func(d *corev1.Pod) {
				d.Labels["mesh.example/injected"] = "true"
				d.Annotations["sidecar.example/status"] = "injected"
			},
			proxy: func(p *corev1.Pod) { p.Labels["tier"] = "front"; delete(p.Annotations, "note") },
			want: func(d *corev1.Pod) {
				d.Labels["mesh.example/injected"] = "true"
				d.Annotations["sidecar.example/status"] = "injected"
				d.Labels["tier"] = "front"
				delete(d.Annotations, "note")
				d.Annotations[annotationProxyLabels], d.Annotations[annotationProxyAnnotations] = "app,tier", ""
			},
			wantChanged: true,
		},
		{
			name: "images follow by container name",
			proxy: func(p *corev1.Pod) {
				p.Spec.Containers[0].Image = "nginx:2"
				p.Spec.InitContainers[0].Image = "busybox:2"
			},
			want: func(d *corev1.Pod) {
				d.Spec.Containers[0].Image = "nginx:2"
				d.Spec.InitContainers[0].Image = "busybox:2"
			},
			wantChanged: true,
		},
		{
			name:        "activeDeadlineSeconds follows",
			proxy:       func(p *corev1.Pod) { p.Spec.ActiveDeadlineSeconds = new(int64(60)) },
			want:        func(d *corev1.Pod) { d.Spec.ActiveDeadlineSeconds = new(int64(60)) },
			wantChanged: true,
		},
		{
			name: "an added toleration is appended, admission's stay",
			proxy: func(p *corev1.Pod) {
				p.Spec.Tolerations = append(p.Spec.Tolerations, corev1.Toleration{Key: "gpu", Operator: corev1.TolerationOpExists})
			},
			want: func(d *corev1.Pod) {
				d.Spec.Tolerations = append(d.Spec.Tolerations, corev1.Toleration{Key: "gpu", Operator: corev1.TolerationOpExists})
			},
			wantChanged: true,
		},
		{
			name:  "fields an existing pod cannot change are left alone",
			proxy: func(p *corev1.Pod) { p.Spec.Containers[0].Args = []string{"-v"}; p.Spec.NodeSelector = nil },
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			proxy := proxyPod()
			if tt.proxy != nil {
				tt.proxy(proxy)
			}
			l := live()
			if tt.live != nil {
				tt.live(l)
			}
			before := l.DeepCopy()
			got, changed := withProxyChanges(l, buildDelegate(proxy, testOwner, false, nil))
			want := live()
			if tt.want != nil {
				tt.want(want)
			}
			if changed != tt.wantChanged {
				t.Errorf("changed = %v, want %v", changed, tt.wantChanged)
			}
			if !equality.Semantic.DeepEqual(got, want) {
				t.Errorf("updated delegate differs (-want +got):\n%s", cmp.Diff(want, got))
			}
			if !equality.Semantic.DeepEqual(l, before) {
				t.Errorf("live was modified")
			}
		})
	}
}
