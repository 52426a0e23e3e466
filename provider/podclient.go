package provider

import (
	"context"

	"github.com/virtual-kubelet/virtual-kubelet/log"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"

	"github.com/flotilla-io/flotilla/tracing"
)

// PodControllerClient wraps the pod client virtual-kubelet's pod controller writes proxies with: their
// removals wait until their delegates are confirmed gone (removal.go), and the writes of their statuses are
// spans of their delegations' traces, sent only when they change something (UpdateStatus).
func (p *Provider) PodControllerClient(pods corev1client.PodsGetter) corev1client.PodsGetter {
	return podControllerPods{PodsGetter: pods, p: p}
}

type podControllerPods struct {
	corev1client.PodsGetter
	p *Provider
}

func (c podControllerPods) Pods(namespace string) corev1client.PodInterface {
	return podControllerPodInterface{PodInterface: c.PodsGetter.Pods(namespace), p: c.p, namespace: namespace}
}

type podControllerPodInterface struct {
	corev1client.PodInterface
	p         *Provider
	namespace string
}

// sameStatus says whether writing pod's status would change nothing on current, the proxy as the pod
// controller's cache has it: the same pod at the same resourceVersion, with a status semantically equal (nil
// and empty lists are one, as they are once stored). virtual-kubelet writes back the last status flotilla
// gave it whenever the proxy changes while it held back an identical one (v1.14 node/podcontroller.go,
// lastPodStatusUpdateSkipped), on a deletion for one; the apiserver would store what it already has.
func sameStatus(current, pod *corev1.Pod) bool {
	return current.UID == pod.UID && current.ResourceVersion == pod.ResourceVersion &&
		equality.Semantic.DeepEqual(current.Status, pod.Status)
}

// UpdateStatus writes a proxy's status for PodControllerClient, when it would change something (sameStatus),
// counted by what it changes, as a span of its delegation's trace. virtual-kubelet's status queue writes
// proxies' statuses in goroutines of its own, whose spans start traces of their own; the write of a proxy
// being delegated is a span of the delegation's trace instead (tracing.SpanUpdateProxyStatus, linked to the
// pod controller's span), and the write that shows the proxy Running, or finished, ends the delegation.
func (c podControllerPodInterface) UpdateStatus(ctx context.Context, pod *corev1.Pod, opts metav1.UpdateOptions) (*corev1.Pod, error) {
	before := &corev1.PodStatus{}
	if current, err := c.p.cfg.ManagementPods.Pods(pod.Namespace).Get(pod.Name); err == nil {
		if sameStatus(current, pod) {
			log.G(ctx).WithField("pod", pod.Namespace+"/"+pod.Name).Debug("proxy status unchanged; not written")
			return current, nil
		}
		before = &current.Status
	}
	c.p.cfg.Metrics.StatusWritten(statusChange(before, &pod.Status))
	key := pod.Namespace + "/" + pod.Name
	ctx, span := c.p.delegations.Start(ctx, key, tracing.SpanUpdateProxyStatus, tracing.PodAttributes(pod, c.p.cfg.ClusterName)...)
	updated, err := c.PodInterface.UpdateStatus(ctx, pod, opts)
	tracing.End(span, err)
	if err == nil && tracing.Delegated(&pod.Status) {
		c.p.delegations.End(key)
	}
	return updated, err
}
