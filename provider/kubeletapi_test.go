package provider

import (
	"context"
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
	proxy := newProxy()
	d := ownDelegate(proxy)
	started := metav1.NewTime(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
	d.Status.StartTime = &started
	foreign := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "foreign", UID: "foreign-uid"}}
	h := newHarness(t, d, foreign)
	got, err := h.p.GetStatsSummary(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := []statsv1alpha1.PodStats{{
		PodRef:     statsv1alpha1.PodReference{Namespace: "shop", Name: "web-1", UID: "proxy-uid"},
		StartTime:  started,
		Containers: []statsv1alpha1.ContainerStats{{Name: "app"}},
	}}
	if got.Node.NodeName != "eu-west-3-1" || !equality.Semantic.DeepEqual(got.Pods, want) {
		t.Errorf("summary differs (-want +got):\n%s", cmp.Diff(want, got.Pods))
	}
}

func TestKubeletAPIOnlyServesOwnDelegates(t *testing.T) {
	foreign := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "foreign", UID: "foreign-uid"}}
	h := newHarness(t, foreign)
	if _, err := h.p.GetContainerLogs(context.Background(), "shop", "foreign", "app", api.ContainerLogOpts{}); !errdefs.IsNotFound(err) {
		t.Errorf("logs of a foreign pod: %v", err)
	}
	if err := h.p.PortForward(context.Background(), "shop", "web-1", 80, nil); !errdefs.IsInvalidInput(err) {
		t.Errorf("port-forward without a REST config: %v", err)
	}
}
