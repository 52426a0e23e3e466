package provider

import (
	"context"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"

	"github.com/flotilla-io/flotilla/tracing"
)

// TraceStatusWrites wraps the pod client virtual-kubelet's pod controller writes proxy statuses with. Its
// status queue writes them in goroutines of its own, whose spans start traces of their own; the write of a
// proxy being delegated is a span of the delegation's trace instead (tracing.SpanUpdateProxyStatus, linked
// to the pod controller's span), and the write that shows the proxy Running, or finished, ends the
// delegation.
func (p *Provider) TraceStatusWrites(pods corev1client.PodsGetter) corev1client.PodsGetter {
	return tracedPods{PodsGetter: pods, p: p}
}

type tracedPods struct {
	corev1client.PodsGetter
	p *Provider
}

func (t tracedPods) Pods(namespace string) corev1client.PodInterface {
	return tracedPodInterface{PodInterface: t.PodsGetter.Pods(namespace), p: t.p}
}

type tracedPodInterface struct {
	corev1client.PodInterface
	p *Provider
}

func (t tracedPodInterface) UpdateStatus(ctx context.Context, pod *corev1.Pod, opts metav1.UpdateOptions) (*corev1.Pod, error) {
	key := pod.Namespace + "/" + pod.Name
	ctx, span := t.p.delegations.Start(ctx, key, tracing.SpanUpdateProxyStatus, tracing.PodAttributes(pod, t.p.cfg.ClusterName)...)
	updated, err := t.PodInterface.UpdateStatus(ctx, pod, opts)
	tracing.End(span, err)
	if err == nil && tracing.Delegated(&pod.Status) {
		t.p.delegations.End(key)
	}
	return updated, err
}
