package metrics

import (
	"context"
	"slices"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/cache"
)

// Step is a step of a proxy's delegation, the step label of flotilla_delegation_duration_seconds. Each is
// measured from the moment flotilla saw the proxy bound to its node.
type Step string

const (
	// DelegateCreated: the workload apiserver created the delegate.
	DelegateCreated Step = "delegate_created"
	// DelegateRunning: flotilla saw the delegate Running in the workload cluster.
	DelegateRunning Step = "delegate_running"
	// ProxyRunning: flotilla saw the proxy Running in the management cluster (its status written back).
	ProxyRunning Step = "proxy_running"
)

// delegations are the proxies whose delegation is under way, by UID: when flotilla saw each bound, and the
// steps already measured.
type delegations struct {
	mu      sync.Mutex
	pending map[string]*delegation
}

type delegation struct {
	bound time.Time
	done  []Step
}

func (d *delegations) bind(uid types.UID, now time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, ok := d.pending[string(uid)]; !ok {
		d.pending[string(uid)] = &delegation{bound: now}
	}
}

// reach says how long after its binding the proxy reached step, and false if its binding was not seen or the
// step was measured already.
func (d *delegations) reach(uid types.UID, step Step, now time.Time) (time.Duration, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	p, ok := d.pending[string(uid)]
	if !ok || slices.Contains(p.done, step) {
		return 0, false
	}
	p.done = append(p.done, step)
	return now.Sub(p.bound), true
}

func (d *delegations) forget(uid types.UID) {
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.pending, string(uid))
}

// DelegationStep measures the step of the delegation of the proxy with that UID, once, if flotilla saw the
// proxy bound (see ProxyEvents).
func (r *Recorder) DelegationStep(proxy types.UID, step Step) {
	if r == nil {
		return
	}
	if took, ok := r.delegations.reach(proxy, step, time.Now()); ok {
		r.delegation.Record(context.Background(), took.Seconds(), metric.WithAttributes(r.cluster, attribute.String("step", string(step))))
	}
}

// ProxyEvents are handlers for the informer of the pods bound to this node (virtual-kubelet's). A proxy it
// adds after its first list was bound just now: its delegation's clock starts. Its change to Running is
// the last step (ProxyRunning); a proxy that ends otherwise, starts terminating or goes is forgotten.
// Proxies of the first list were bound before flotilla started, when nobody saw them bound.
func (r *Recorder) ProxyEvents() cache.ResourceEventHandler {
	if r == nil {
		return cache.ResourceEventHandlerFuncs{}
	}
	return cache.ResourceEventHandlerDetailedFuncs{
		AddFunc: func(obj any, isInInitialList bool) {
			if pod, ok := obj.(*corev1.Pod); ok && !isInInitialList && pod.Status.Phase != corev1.PodRunning && !settled(pod) {
				r.delegations.bind(pod.UID, time.Now())
			}
		},
		UpdateFunc: func(_, obj any) {
			pod, ok := obj.(*corev1.Pod)
			switch {
			case !ok:
			case pod.Status.Phase == corev1.PodRunning:
				r.DelegationStep(pod.UID, ProxyRunning)
				r.delegations.forget(pod.UID)
			case settled(pod):
				r.delegations.forget(pod.UID)
			}
		},
		DeleteFunc: func(obj any) {
			if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = t.Obj
			}
			if pod, ok := obj.(*corev1.Pod); ok {
				r.delegations.forget(pod.UID)
			}
		},
	}
}

// settled says whether a proxy will not run any more: it finished or is being deleted.
func settled(pod *corev1.Pod) bool {
	return pod.DeletionTimestamp != nil || pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed
}
