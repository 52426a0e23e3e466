package provider

import (
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"
)

// PodControllerClient wraps the pod client virtual-kubelet's pod controller writes proxies with: their
// removals wait until their delegates are confirmed gone (removal.go), and the writes of their statuses are
// spans of their delegations' traces (tracing.go), sent only when they change something (sameStatus).
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
