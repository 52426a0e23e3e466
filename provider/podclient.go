package provider

import (
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"
)

// PodControllerClient wraps the pod client virtual-kubelet's pod controller writes proxies with: their
// removals wait until their delegates are confirmed gone (removal.go), and the writes of their statuses are
// spans of their delegations' traces (tracing.go).
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
