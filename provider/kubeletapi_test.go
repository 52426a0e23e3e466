package provider

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/virtual-kubelet/virtual-kubelet/errdefs"
	"github.com/virtual-kubelet/virtual-kubelet/node/api"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	statsv1alpha1 "k8s.io/kubelet/pkg/apis/stats/v1alpha1"
)

func TestLogOptions(t *testing.T) {
	since := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	tests := []struct {
		name string
		opts api.ContainerLogOpts
		want *corev1.PodLogOptions
	}{
		{name: "defaults", want: &corev1.PodLogOptions{Container: "app"}},
		{
			name: "everything",
			opts: api.ContainerLogOpts{Tail: 10, LimitBytes: 2048, Timestamps: true, Follow: true, Previous: true, SinceSeconds: 60},
			want: &corev1.PodLogOptions{Container: "app", TailLines: new(int64(10)), LimitBytes: new(int64(2048)),
				Timestamps: true, Follow: true, Previous: true, SinceSeconds: new(int64(60))},
		},
		{
			name: "since a time",
			opts: api.ContainerLogOpts{SinceTime: since},
			want: &corev1.PodLogOptions{Container: "app", SinceTime: new(metav1.NewTime(since))},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := logOptions("app", tt.opts); !equality.Semantic.DeepEqual(got, tt.want) {
				t.Errorf("options differ (-want +got):\n%s", cmp.Diff(tt.want, got))
			}
		})
	}
}

func TestStatsSummaryListsPodsWithoutUsage(t *testing.T) {
	h := newHarness(t)
	proxy := h.bind(h.newProxy("web-1"))
	d := h.running(h.createDelegate(proxy, nil)) // kwok starts it
	h.createForeignPod("foreign", nil)
	got, err := h.p.GetStatsSummary(h.ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := []statsv1alpha1.PodStats{{
		PodRef:     statsv1alpha1.PodReference{Namespace: h.ns, Name: "web-1", UID: string(proxy.UID)},
		StartTime:  *d.Status.StartTime,
		Containers: []statsv1alpha1.ContainerStats{{Name: "app"}},
	}}
	if got.Node.NodeName != h.node || !equality.Semantic.DeepEqual(got.Pods, want) {
		t.Errorf("summary differs (-want +got):\n%s", cmp.Diff(want, got.Pods))
	}
}

func TestKubeletAPIOnlyServesOwnDelegates(t *testing.T) {
	h := newHarness(t)
	h.createForeignPod("foreign", nil)
	if _, err := h.p.GetContainerLogs(h.ctx, h.ns, "foreign", "x", api.ContainerLogOpts{}); !errdefs.IsNotFound(err) {
		t.Errorf("logs of a foreign pod: %v", err)
	}
	if err := h.p.PortForward(h.ctx, h.ns, "web-1", 80, nil); !errdefs.IsInvalidInput(err) {
		t.Errorf("port-forward without a REST config: %v", err)
	}
}
