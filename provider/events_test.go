package provider

import (
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/tools/record"
)

func TestPodControllerRecorder(t *testing.T) {
	tests := []struct {
		name   string
		record func(record.EventRecorder)
		want   []string
	}{
		{"a success is dropped", func(r record.EventRecorder) {
			r.Event(&corev1.Pod{}, corev1.EventTypeNormal, "ProviderCreateSuccess", "Create pod in provider successfully")
		}, nil},
		{"a failure passes", func(r record.EventRecorder) {
			r.Event(&corev1.Pod{}, corev1.EventTypeWarning, "ProviderCreateFailed", "refused")
		}, []string{"Warning ProviderCreateFailed refused"}},
		{"formatted, the same", func(r record.EventRecorder) {
			r.Eventf(&corev1.Pod{}, corev1.EventTypeNormal, "ProviderDeleteSuccess", "Delete pod %s", "x")
			r.Eventf(&corev1.Pod{}, corev1.EventTypeWarning, "ProviderDeleteFailed", "delete %s failed", "x")
		}, []string{"Warning ProviderDeleteFailed delete x failed"}},
		{"annotated, the same", func(r record.EventRecorder) {
			r.AnnotatedEventf(&corev1.Pod{}, nil, corev1.EventTypeNormal, "ProviderUpdateSuccess", "ok")
			r.AnnotatedEventf(&corev1.Pod{}, nil, corev1.EventTypeWarning, "ProviderUpdateFailed", "no")
		}, []string{"Warning ProviderUpdateFailed no"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fake := record.NewFakeRecorder(10)
			tt.record(PodControllerRecorder(fake))
			close(fake.Events)
			var got []string
			for e := range fake.Events {
				got = append(got, e)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("events %q, want %q", got, tt.want)
			}
		})
	}
}
