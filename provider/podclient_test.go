package provider

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8stypes "k8s.io/apimachinery/pkg/types"
	utilcache "k8s.io/apimachinery/pkg/util/cache"
)

func TestSameStatus(t *testing.T) {
	current := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{UID: "u1", ResourceVersion: "7"},
		Status:     corev1.PodStatus{Phase: corev1.PodRunning, Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}},
	}
	for _, tc := range []struct {
		name   string
		change func(*corev1.Pod)
		want   bool
	}{
		{"the same status at the same resourceVersion", func(*corev1.Pod) {}, true},
		{"an empty list where the stored pod has none", func(p *corev1.Pod) { p.Status.ContainerStatuses = []corev1.ContainerStatus{} }, true},
		{"another phase", func(p *corev1.Pod) { p.Status.Phase = corev1.PodFailed }, false},
		{"another condition status", func(p *corev1.Pod) { p.Status.Conditions[0].Status = corev1.ConditionFalse }, false},
		{"another resourceVersion (the proxy changed since)", func(p *corev1.Pod) { p.ResourceVersion = "8" }, false},
		{"another pod of the same name", func(p *corev1.Pod) { p.UID = "u2" }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pod := current.DeepCopy()
			tc.change(pod)
			if got := sameStatus(current, pod); got != tc.want {
				t.Errorf("sameStatus = %v, want %v", got, tc.want)
			}
		})
	}
}

// TestRemovalOfRemovedProxyIsNotSent: the pod controller's removal of a proxy the provider removed itself is
// answered without a request (the wrapped client here has no pod interface: a request would panic); any
// other is sent.
func TestRemovalOfRemovedProxyIsNotSent(t *testing.T) {
	p := &Provider{removed: utilcache.NewExpiring()}
	p.removed.Set(k8stypes.UID("removed"), true, time.Minute)
	c := podControllerPodInterface{p: p, namespace: "shop"}
	if err := c.Delete(context.Background(), "web-1", metav1.DeleteOptions{Preconditions: metav1.NewUIDPreconditions("removed")}); err != nil {
		t.Errorf("removal of a proxy removed already: %v", err)
	}
	sent := false
	func() {
		defer func() { sent = recover() != nil }()
		_ = c.Delete(context.Background(), "web-2", metav1.DeleteOptions{})
	}()
	if !sent {
		t.Error("a removal flotilla did not make was not sent")
	}
}
