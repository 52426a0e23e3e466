package provider

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/virtual-kubelet/virtual-kubelet/log"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"

	"github.com/flotilla-io/flotilla/metrics"
	"github.com/flotilla-io/flotilla/tracing"
)

// Re-placement: a delegate the workload cluster's scheduler cannot place (PodScheduled False, reason
// Unschedulable) for Config.RescheduleAfter has its proxy evicted through the Eviction API, which honours
// PodDisruptionBudgets, so the proxy's controller makes a replacement the management scheduler places again.
// The virtual node's max-pod labels (package node) and the webhook's affinity (package admission) keep the
// replacement off this cluster while no single node of it fits the pod; re-placement covers what they miss
// (a pod needing much CPU and much memory where the maxima are on different nodes, workload taints, node
// affinity or ports only the workload cluster knows, labels a step behind).
//
// No ping-pong: each further round of re-placement of one controller's pods from this cluster waits twice as
// long as the one before, up to replaceMaxFactor times RescheduleAfter; a controller quiet for twice that is
// forgotten. A pod without a controller (or a DaemonSet's, which would come back to this very node) is never
// evicted: its proxy keeps showing FailedScheduling. The rule is replaceDecision; replacer does the I/O.

const (
	// DefaultRescheduleAfter is the default re-placement delay. A workload cluster's own cluster-autoscaler
	// sees an unschedulable pod within about 10 s and a cloud node takes one to three minutes to join and
	// turn Ready; five minutes leaves it room to do so before flotilla gives up on the cluster, and matches
	// the unschedulable threshold of Karmada's descheduler. Shorter churns pods a cluster was about to run;
	// much longer leaves a pod that fits elsewhere Pending for no reason.
	DefaultRescheduleAfter = 5 * time.Minute

	// ReasonUnschedulableInCluster (Warning Event on the proxy): its delegate could not be scheduled in the
	// workload cluster for the re-placement delay, so the proxy is evicted for its controller to replace it.
	ReasonUnschedulableInCluster = "UnschedulableInCluster"

	// replaceMaxFactor caps the wait of later rounds at this many times RescheduleAfter.
	replaceMaxFactor = 8
	// replaceBlockedRetry is how soon an eviction a PodDisruptionBudget refused is tried again.
	replaceBlockedRetry = 30 * time.Second
)

// replacements is this cluster's history of re-placing one controller's pods: how many rounds, and when the
// last pod was evicted. Evictions less than RescheduleAfter apart are one round (the replicas of one rollout
// that all wait on the same full cluster).
type replacements struct {
	rounds int
	last   time.Time
}

// current is h as it counts at now: forgotten once the controller has been quiet for twice the longest wait.
func (h replacements) current(now time.Time, after time.Duration) replacements {
	if h.last.IsZero() || now.Sub(h.last) > 2*replaceMaxFactor*after {
		return replacements{}
	}
	return h
}

// wait is how long a delegate of the controller must have been unschedulable before its proxy is evicted:
// after, doubled for each earlier round, capped at replaceMaxFactor×after. An eviction that joins the
// current round waits as long as that round's first one did.
func (h replacements) wait(now time.Time, after time.Duration) time.Duration {
	h = h.current(now, after)
	n := h.rounds
	if n > 0 && now.Sub(h.last) < after {
		n--
	}
	w := after
	for ; n > 0 && w < replaceMaxFactor*after; n-- {
		w *= 2
	}
	return min(w, replaceMaxFactor*after)
}

// record is h after an eviction at now.
func (h replacements) record(now time.Time, after time.Duration) replacements {
	h = h.current(now, after)
	if h.rounds == 0 || now.Sub(h.last) >= after {
		h.rounds++
	}
	h.last = now
	return h
}

// replaceVerdict is what replaceDecision says about one proxy.
type replaceVerdict struct {
	evict bool
	// recheck is when to look again if nothing changes meanwhile; 0 when only a change of the delegate or
	// proxy can make a difference (the informers bring those).
	recheck time.Duration
	// unschedulableFor and message (the workload scheduler's) describe an eviction.
	unschedulableFor time.Duration
	message          string
}

// replaceDecision says whether the proxy is evicted now for its delegate has been unschedulable in the
// workload cluster for long enough, given the history of its controller's re-placements from this cluster
// and whether the virtual node is Ready (a delegate of a cluster that is not is judged once it is again).
// after <= 0 turns re-placement off.
func replaceDecision(proxy, delegate *corev1.Pod, clusterReady bool, h replacements, now time.Time, after time.Duration) replaceVerdict {
	if after <= 0 || proxy == nil || delegate == nil || proxy.DeletionTimestamp != nil || delegate.DeletionTimestamp != nil ||
		parentUID(delegate) != proxy.UID || delegate.Status.Phase != corev1.PodPending {
		return replaceVerdict{}
	}
	c := findCondition(delegate.Status.Conditions, corev1.PodScheduled)
	if c == nil || c.Status != corev1.ConditionFalse || c.Reason != corev1.PodReasonUnschedulable {
		return replaceVerdict{}
	}
	if owner := metav1.GetControllerOf(proxy); owner == nil || owner.Kind == "DaemonSet" {
		return replaceVerdict{}
	}
	if !clusterReady {
		return replaceVerdict{recheck: after}
	}
	since := c.LastTransitionTime.Time
	if since.IsZero() {
		since = delegate.CreationTimestamp.Time
	}
	waited, wait := now.Sub(since), h.wait(now, after)
	if waited < wait {
		return replaceVerdict{recheck: wait - waited}
	}
	return replaceVerdict{evict: true, unschedulableFor: waited.Truncate(time.Second), message: c.Message}
}

// replacer is the I/O of re-placement: a queue of proxies whose delegate changed, the history per
// controller, the eviction and its Event.
type replacer struct {
	p     *Provider
	after time.Duration
	queue workqueue.TypedRateLimitingInterface[string]

	mu      sync.Mutex
	history map[types.UID]replacements // by the proxies' controller UID
}

// newReplacer watches the delegates for re-placement; nil when after <= 0 (off).
func newReplacer(p *Provider, after time.Duration) (*replacer, error) {
	if after <= 0 {
		return nil, nil
	}
	r := &replacer{
		p:     p,
		after: after,
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(
			workqueue.NewTypedItemExponentialFailureRateLimiter[string](retryBase, retryMax),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: "flotilla-replacements"}),
		history: map[types.UID]replacements{},
	}
	enqueue := func(obj any) {
		if d, ok := obj.(*corev1.Pod); ok && d.Status.Phase == corev1.PodPending {
			p.enqueue(d, r.queue)
		}
	}
	_, err := p.informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    enqueue,
		UpdateFunc: func(_, obj any) { enqueue(obj) }, // also every resync, which rechecks what AddAfter lost
	})
	return r, err
}

// run works the queue until ctx ends.
func (r *replacer) run(ctx context.Context) {
	go func() { <-ctx.Done(); r.queue.ShutDown() }()
	r.p.work(ctx, r.queue, tracing.SpanReplaceUnschedulable, r.sync)
}

func (r *replacer) sync(ctx context.Context, key string) error {
	namespace, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return nil
	}
	delegate, err := r.p.delegates.Pods(namespace).Get(name)
	if err != nil {
		return nil // gone: nothing to re-place
	}
	proxy, err := r.p.cfg.ManagementPods.Pods(namespace).Get(name)
	if err != nil {
		return nil
	}
	var ownerUID types.UID
	if owner := metav1.GetControllerOf(proxy); owner != nil {
		ownerUID = owner.UID
	}
	now := time.Now()
	r.mu.Lock()
	h := r.history[ownerUID]
	r.mu.Unlock()
	v := replaceDecision(proxy, delegate, r.p.clusterReadiness() == "", h, now, r.after)
	if !v.evict {
		if v.recheck > 0 {
			r.queue.AddAfter(key, v.recheck)
		}
		return nil
	}

	logger := log.G(ctx)
	uid := proxy.UID
	err = r.p.cfg.Management.CoreV1().Pods(namespace).EvictV1(ctx, &policyv1.Eviction{
		ObjectMeta:    metav1.ObjectMeta{Namespace: namespace, Name: name},
		DeleteOptions: &metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}},
	})
	switch {
	case apierrors.IsNotFound(err) || apierrors.IsConflict(err):
		return nil // another pod by now
	case apierrors.IsTooManyRequests(err):
		logger.WithError(err).Info("a disruption budget holds the re-placement of an unschedulable pod; will retry")
		r.queue.AddAfter(key, replaceBlockedRetry)
		return nil
	case err != nil:
		return fmt.Errorf("evicting unschedulable proxy: %w", err)
	}
	// The delegate goes at once, with the proxy's grace period: virtual-kubelet's pod controller does not call
	// DeletePod for a proxy that is not running, and the removal guard (removal.go) would start it only once the
	// proxy's grace period is over.
	if err := r.p.fence(ctx, delegate, proxy.Spec.TerminationGracePeriodSeconds, metrics.FenceEvicted); err != nil {
		logger.WithError(err).Warn("deleting the delegate of an evicted proxy; the resync retries")
	}
	r.mu.Lock()
	r.history[ownerUID] = r.history[ownerUID].record(now, r.after)
	for uid, h := range r.history {
		if h.current(now, r.after).rounds == 0 {
			delete(r.history, uid)
		}
	}
	r.mu.Unlock()
	r.p.cfg.EventRecorder.Eventf(proxy, corev1.EventTypeWarning, ReasonUnschedulableInCluster,
		"workload cluster %s could not schedule the pod for %s (%s); evicted so its controller replaces it",
		r.p.cfg.ClusterName, v.unschedulableFor, v.message)
	logger.WithField("unschedulable", v.unschedulableFor).Info("evicted a proxy its workload cluster cannot schedule")
	return nil
}
