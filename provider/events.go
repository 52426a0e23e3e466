package provider

import (
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/tools/record"
)

// PodControllerRecorder is the event recorder to give virtual-kubelet's pod controller: it passes on its
// Warnings (ProviderCreateFailed, ...) and drops its Normal events, which say only that a call to flotilla
// returned (ProviderCreateSuccess, ProviderUpdateSuccess, ProviderDeleteSuccess). Kubelets record no such
// events, and they would be two of a pod's writes to the management cluster, which keeps every proxy.
func PodControllerRecorder(r record.EventRecorder) record.EventRecorder { return warningsOnly{r} }

type warningsOnly struct{ record.EventRecorder }

func (w warningsOnly) Event(object runtime.Object, eventtype, reason, message string) {
	if eventtype == corev1.EventTypeWarning {
		w.EventRecorder.Event(object, eventtype, reason, message)
	}
}

func (w warningsOnly) Eventf(object runtime.Object, eventtype, reason, messageFmt string, args ...any) {
	if eventtype == corev1.EventTypeWarning {
		w.EventRecorder.Eventf(object, eventtype, reason, messageFmt, args...)
	}
}

func (w warningsOnly) AnnotatedEventf(object runtime.Object, annotations map[string]string, eventtype, reason, messageFmt string, args ...any) {
	if eventtype == corev1.EventTypeWarning {
		w.EventRecorder.AnnotatedEventf(object, annotations, eventtype, reason, messageFmt, args...)
	}
}
