package provider

import (
	"context"

	"github.com/virtual-kubelet/virtual-kubelet/errdefs"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// This file is the PodLifecycleHandler the virtual-kubelet pod controller drives.

// CreatePod queues the proxy for delegation and returns at once. The pod controller marks a
// restartPolicy: Never pod Failed for good when CreatePod returns an error, so failures are instead retried
// with backoff and shown on the proxy by the delegate queue (sync.go). The pod controller's span in ctx
// becomes the parent of the delegation's spans (tracing.Delegations).
func (p *Provider) CreatePod(ctx context.Context, pod *corev1.Pod) error {
	p.delegations.Begin(ctx, pod.Namespace+"/"+pod.Name)
	p.enqueue(pod, p.syncs)
	if p.clusterReadiness() != "" {
		// The cluster's state was reported before this proxy reached the pod cache (flotilla starting while
		// its cluster is down): the status queue shows it the lost cluster too.
		p.enqueue(pod, p.statuses)
	}
	return nil
}

// UpdatePod queues the proxy so its changes reach the delegate, for the same reason as CreatePod.
func (p *Provider) UpdatePod(_ context.Context, pod *corev1.Pod) error {
	p.enqueue(pod, p.syncs)
	return nil
}

// DeletePod deletes the pod's delegate. The pod controller calls it for a proxy being deleted (graceful
// deletion, eviction, drain) and, once a proxy is gone from the API (a force delete, or the pod controller's
// own removal), with the pod GetPod describes. It asks the workload apiserver, not the cache, so a delegate
// created a moment ago is not missed. The delegate's removal is then reported through the delegate informer.
func (p *Provider) DeletePod(ctx context.Context, pod *corev1.Pod) error {
	// Whatever kept this pod from a delegate is over; a later pod of the same name starts afresh.
	p.forget(pod.Namespace + "/" + pod.Name)
	d, err := p.liveDelegate(ctx, pod.Namespace, pod.Name)
	if err != nil || d == nil || parentUID(d) != pod.UID {
		return err // nothing of this pod's to delete: success for the pod controller
	}
	return p.deleteDelegate(ctx, d, gracePeriod(pod))
}

// gracePeriod is what a delegate gets to stop: the proxy's grace period while the proxy terminates. Once the
// proxy is gone from the API (force-deleted, or its grace period over) there is none left, as the kubelet
// stops the containers of a pod removed from the API at once.
func gracePeriod(pod *corev1.Pod) *int64 {
	if pod.DeletionGracePeriodSeconds != nil {
		return pod.DeletionGracePeriodSeconds
	}
	return new(int64(0))
}

// deleteDelegate deletes exactly the delegate d (a UID precondition spares a newer pod of the same name).
func (p *Provider) deleteDelegate(ctx context.Context, d *corev1.Pod, grace *int64) error {
	err := p.cfg.Workload.CoreV1().Pods(d.Namespace).Delete(ctx, d.Name, metav1.DeleteOptions{
		GracePeriodSeconds: grace,
		Preconditions:      metav1.NewUIDPreconditions(string(d.UID)),
	})
	if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
		return nil // already gone, or the name now belongs to another pod
	}
	return err
}

// fence deletes the delegate d for its proxy's sake (reason: a metrics.Fence... constant), and counts it
// unless it was being deleted already.
func (p *Provider) fence(ctx context.Context, d *corev1.Pod, grace *int64, reason string) error {
	err := p.deleteDelegate(ctx, d, grace)
	if err == nil && d.DeletionTimestamp == nil {
		p.cfg.Metrics.Fenced(reason)
	}
	return err
}

// GetPod describes the delegate of the pod of this name as the pod controller expects (see proxyView).
func (p *Provider) GetPod(ctx context.Context, namespace, name string) (*corev1.Pod, error) {
	d, err := p.delegate(ctx, namespace, name)
	if err != nil {
		return nil, err
	}
	if d == nil {
		return nil, errdefs.NotFoundf("pod %s/%s has no delegate in workload cluster %s", namespace, name, p.cfg.ClusterName)
	}
	return proxyView(d, p.cfg.NodeName, p.cfg.HostIP), nil
}

// GetPodStatus is the status part of GetPod.
func (p *Provider) GetPodStatus(ctx context.Context, namespace, name string) (*corev1.PodStatus, error) {
	pod, err := p.GetPod(ctx, namespace, name)
	if err != nil {
		return nil, err
	}
	return &pod.Status, nil
}

// GetPods describes all of this node's delegates, including ones whose proxy is gone: the pod controller
// deletes those at start.
func (p *Provider) GetPods(ctx context.Context) ([]*corev1.Pod, error) {
	ds, err := p.ownDelegates(ctx)
	if err != nil {
		return nil, err
	}
	views := make([]*corev1.Pod, 0, len(ds))
	for _, d := range ds {
		views = append(views, proxyView(d, p.cfg.NodeName, p.cfg.HostIP))
	}
	return views, nil
}

// delegate is this node's delegate of the given name, nil if there is none. It reads the cache, or the
// workload apiserver while the cache has not synced yet (the pod controller may ask first).
func (p *Provider) delegate(ctx context.Context, namespace, name string) (*corev1.Pod, error) {
	if !p.informer.HasSynced() {
		return p.liveDelegate(ctx, namespace, name)
	}
	d, err := p.delegates.Pods(namespace).Get(name)
	if apierrors.IsNotFound(err) || (err == nil && !p.owner.owns(d)) {
		return nil, nil
	}
	return d, err
}

// liveDelegate is delegate asked of the workload apiserver.
func (p *Provider) liveDelegate(ctx context.Context, namespace, name string) (*corev1.Pod, error) {
	d, err := p.cfg.Workload.CoreV1().Pods(namespace).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) || (err == nil && !p.owner.owns(d)) {
		return nil, nil
	}
	return d, err
}

// ownDelegates lists this node's delegates, from the cache once it has synced.
func (p *Provider) ownDelegates(ctx context.Context) ([]*corev1.Pod, error) {
	var all []*corev1.Pod
	if p.informer.HasSynced() {
		var err error
		if all, err = p.delegates.List(labels.Everything()); err != nil {
			return nil, err
		}
	} else {
		list, err := p.cfg.Workload.CoreV1().Pods(metav1.NamespaceAll).List(ctx, metav1.ListOptions{
			LabelSelector: OwnDelegates(p.cfg.ManagementID, p.cfg.NodeName).String(),
		})
		if err != nil {
			return nil, err
		}
		for i := range list.Items {
			all = append(all, &list.Items[i])
		}
	}
	var own []*corev1.Pod
	for _, d := range all {
		if p.owner.owns(d) {
			own = append(own, d)
		}
	}
	return own, nil
}
