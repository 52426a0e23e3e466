package provider

import (
	"context"

	"github.com/virtual-kubelet/virtual-kubelet/log"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/flotilla-io/flotilla/tracing"
)

// UpdateStatus is the status tracing of PodControllerClient. virtual-kubelet's status queue writes proxies'
// statuses in goroutines of its own, whose spans start traces of their own; the write of a proxy being
// delegated is a span of the delegation's trace instead (tracing.SpanUpdateProxyStatus, linked to the pod
// controller's span), and the write that shows the proxy Running, or finished, ends the delegation. A write
// that would change nothing is not sent (see sameStatus).
func (c podControllerPodInterface) UpdateStatus(ctx context.Context, pod *corev1.Pod, opts metav1.UpdateOptions) (*corev1.Pod, error) {
	if current, err := c.p.cfg.ManagementPods.Pods(pod.Namespace).Get(pod.Name); err == nil && sameStatus(current, pod) {
		log.G(ctx).WithField("pod", pod.Namespace+"/"+pod.Name).Debug("proxy status unchanged; not written")
		return current, nil
	}
	key := pod.Namespace + "/" + pod.Name
	ctx, span := c.p.delegations.Start(ctx, key, tracing.SpanUpdateProxyStatus, tracing.PodAttributes(pod, c.p.cfg.ClusterName)...)
	updated, err := c.PodInterface.UpdateStatus(ctx, pod, opts)
	tracing.End(span, err)
	if err == nil && tracing.Delegated(&pod.Status) {
		c.p.delegations.End(key)
	}
	return updated, err
}
