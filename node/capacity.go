package node

import (
	"strconv"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	resourcehelper "k8s.io/component-helpers/resource"
)

// alwaysReported are the resources the virtual node reports even when no workload node offers them, so that
// `kubectl describe node` shows a cluster with no schedulable node as 0 rather than as not reporting.
var alwaysReported = []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory, corev1.ResourcePods}

// resources sums what the workload cluster can run: the capacity and allocatable of every Ready, schedulable
// node (a cordoned or NotReady node takes no new pods, so its share must not attract any), with allocatable
// lowered by the requests of the pods already bound to those nodes. Pods own selects flotilla's own
// delegates: the management scheduler already counts them through their proxy pods, so subtracting them too
// would count them twice. Terminal pods hold nothing. Every resource name counts (cpu, memory, pods,
// ephemeral-storage, hugepages, extended resources), and no value goes below zero.
// requests is what each pod holds (podRequests, or a requestsMemo's of).
func resources(nodes []*corev1.Node, pods []*corev1.Pod, own labels.Selector, requests func(*corev1.Pod) corev1.ResourceList) (capacity, allocatable corev1.ResourceList) {
	capacity, allocatable = corev1.ResourceList{}, corev1.ResourceList{}
	counted := map[string]bool{}
	for _, n := range nodes {
		if !isReady(n) || n.Spec.Unschedulable {
			continue
		}
		counted[n.Name] = true
		add(capacity, n.Status.Capacity)
		add(allocatable, n.Status.Allocatable)
	}

	for _, p := range pods {
		if !counted[p.Spec.NodeName] || isTerminal(p) || own.Matches(labels.Set(p.Labels)) {
			continue
		}
		subtract(allocatable, requests(p))
	}

	for _, list := range []corev1.ResourceList{capacity, allocatable} {
		for _, name := range alwaysReported {
			if _, ok := list[name]; !ok {
				list[name] = resource.Quantity{Format: resource.DecimalSI}
			}
		}
	}
	return capacity, allocatable
}

// podRequests is what a pod holds on its node, computed the way the kubelet and scheduler do (init
// containers, sidecars, pod overhead, pod-level resources, in-place resizes), plus the one pod slot it takes.
func podRequests(p *corev1.Pod) corev1.ResourceList {
	requests := resourcehelper.PodRequests(p, resourcehelper.PodResourcesOptions{UseStatusResources: true})
	requests[corev1.ResourcePods] = *resource.NewQuantity(1, resource.DecimalSI)
	return requests
}

// requestsMemo remembers what podRequests said of each pod, by UID, with the resourceVersion it said it of.
// The virtual node is derived again after every burst of pod events (settleDelay) from every pod of the
// workload cluster: computing each pod's requests afresh each time was a quarter of all flotilla allocated
// during BenchmarkDeploymentRollout/1000x4 (heap profile, alloc_space), garbage that grows its heap. A nil
// memo remembers nothing.
type requestsMemo map[types.UID]memoizedRequests

type memoizedRequests struct {
	resourceVersion string
	requests        corev1.ResourceList
}

// refresh is the memo for exactly pods: what m knew of the pods that did not change since, and their
// requests for the others. Pods no longer there are forgotten.
func (m requestsMemo) refresh(pods []*corev1.Pod) requestsMemo {
	next := make(requestsMemo, len(pods))
	for _, p := range pods {
		r, ok := m[p.UID]
		if !ok || r.resourceVersion != p.ResourceVersion {
			r = memoizedRequests{resourceVersion: p.ResourceVersion, requests: podRequests(p)}
		}
		next[p.UID] = r
	}
	return next
}

// of is podRequests(p), remembered if m knows p as it is now. The lists it returns are shared: read them only.
func (m requestsMemo) of(p *corev1.Pod) corev1.ResourceList {
	if r, ok := m[p.UID]; ok && r.resourceVersion == p.ResourceVersion {
		return r.requests
	}
	return podRequests(p)
}

// add adds every quantity of more to sum.
func add(sum, more corev1.ResourceList) {
	for name, q := range more {
		total := sum[name]
		total.Add(q)
		sum[name] = total
	}
}

// subtract lowers the resources list offers by used, clamping at zero. Resources list doesn't offer are left
// out rather than reported as zero, since no node had them to begin with.
func subtract(list, used corev1.ResourceList) {
	for name, q := range used {
		left, ok := list[name]
		if !ok {
			continue
		}
		left.Sub(q)
		if left.Sign() < 0 {
			left = resource.Quantity{Format: left.Format}
		}
		list[name] = left
	}
}

// maxPodLabels are LabelMaxPodCPU and LabelMaxPodMemory: on the Ready, schedulable node with most CPU left
// (and, separately, the one with most memory left), its allocatable minus the requests of every pod bound to
// it, flotilla's own delegates included (on one node nothing else counts them), rounded down to
// MaxPodCPUStep millicores and MaxPodMemoryStep MiB. A node with no pod slot left takes nothing. With no such
// node both are 0. The two maxima may come from different nodes, so a pod that needs much of both can pass
// both labels and still fit no node: re-placement (package provider) handles what the labels miss.
// requests is as resources'.
func maxPodLabels(nodes []*corev1.Node, pods []*corev1.Pod, requests func(*corev1.Pod) corev1.ResourceList) map[string]string {
	free := map[string]corev1.ResourceList{}
	for _, n := range nodes {
		if isReady(n) && !n.Spec.Unschedulable {
			free[n.Name] = n.Status.Allocatable.DeepCopy()
		}
	}
	for _, p := range pods {
		if left, ok := free[p.Spec.NodeName]; ok && !isTerminal(p) {
			subtract(left, requests(p))
		}
	}
	var cpuMilli, memBytes int64
	for _, left := range free {
		if slots, ok := left[corev1.ResourcePods]; ok && slots.Sign() <= 0 {
			continue
		}
		cpuMilli = max(cpuMilli, left.Cpu().MilliValue())
		memBytes = max(memBytes, left.Memory().Value())
	}
	return map[string]string{
		LabelMaxPodCPU:    strconv.FormatInt(cpuMilli/MaxPodCPUStep*MaxPodCPUStep, 10),
		LabelMaxPodMemory: strconv.FormatInt(memBytes>>20/MaxPodMemoryStep*MaxPodMemoryStep, 10),
	}
}

// requestsOnly is the informer transform of the workload pods the capacity rules read: it keeps of a pod only
// what resources and maxPodLabels look at (its name, UID, resourceVersion and labels; its node; what
// podRequests reads, in spec and status; its phase) and drops the rest (volumes, environment, probes,
// annotations, the containers' states...), most of a pod. The cache holds every pod of the workload cluster,
// not only flotilla's, so this is most of what the virtual node costs flotilla's memory.
func requestsOnly(obj any) (any, error) {
	p, ok := obj.(*corev1.Pod)
	if !ok {
		return obj, nil // a tombstone: it is only a key to delete
	}
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: p.Name, Namespace: p.Namespace, UID: p.UID, ResourceVersion: p.ResourceVersion, Labels: p.Labels,
		},
		Spec: corev1.PodSpec{
			NodeName:       p.Spec.NodeName,
			Containers:     keepOf(p.Spec.Containers, containerRequests),
			InitContainers: keepOf(p.Spec.InitContainers, containerRequests),
			Overhead:       p.Spec.Overhead,
			Resources:      p.Spec.Resources,
		},
		Status: corev1.PodStatus{
			Phase:                 p.Status.Phase,
			Conditions:            p.Status.Conditions, // an in-place resize pending or in progress
			Resources:             p.Status.Resources,
			AllocatedResources:    p.Status.AllocatedResources,
			ContainerStatuses:     keepOf(p.Status.ContainerStatuses, containerStatusRequests),
			InitContainerStatuses: keepOf(p.Status.InitContainerStatuses, containerStatusRequests),
		},
	}, nil
}

// containerRequests keeps of a container what podRequests reads: its name (to find its status), its resources,
// and its restart policy (a sidecar's requests add up, an init container's do not).
func containerRequests(c corev1.Container) corev1.Container {
	return corev1.Container{Name: c.Name, Resources: c.Resources, RestartPolicy: c.RestartPolicy}
}

// containerStatusRequests keeps of a container status what podRequests reads once a container runs: the
// resources the kubelet allocated and applied, which an in-place resize makes differ from the spec's.
func containerStatusRequests(s corev1.ContainerStatus) corev1.ContainerStatus {
	return corev1.ContainerStatus{Name: s.Name, Resources: s.Resources, AllocatedResources: s.AllocatedResources}
}

// keepOf is items with each reduced to what keep keeps of it; nil stays nil.
func keepOf[T any](items []T, keep func(T) T) []T {
	if items == nil {
		return nil
	}
	out := make([]T, len(items))
	for i, item := range items {
		out[i] = keep(item)
	}
	return out
}
