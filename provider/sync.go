package provider

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/retry"

	"github.com/flotilla-io/flotilla/metrics"
	"github.com/flotilla-io/flotilla/provider/follow"
	"github.com/flotilla-io/flotilla/tracing"
)

// syncDelegate makes the workload cluster agree with one proxy: it creates, adopts, updates or deletes the
// delegate, ends the proxy when its delegate was lost, and removes a terminating proxy once its delegate
// is gone. It runs when the pod controller creates or updates the proxy and when a delegate appears or
// vanishes; an error retries the key with backoff.
func (p *Provider) syncDelegate(ctx context.Context, key string) error {
	namespace, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return nil // not a key this provider made; retrying cannot help
	}
	d, err := p.delegate(ctx, namespace, name)
	if err != nil {
		// The workload cluster does not answer. A proxy that never started says so rather than wait
		// mutely; one that runs keeps its last known status (the virtual node's Ready condition tells).
		if proxy, perr := p.proxy(ctx, namespace, name); perr == nil && proxy != nil && proxy.Status.StartTime == nil {
			if enabled, known := p.cfg.Namespaces.Lookup(namespace); known && !enabled {
				// What the proxy will show once the cluster answers; retried all the same, since a delegate
				// from before the namespace's opt-out may exist and must still follow its proxy.
				p.show(key, proxy, notEnabled(namespace, p.cfg.ClusterName))
				return err
			}
			return p.fail(key, proxy, refusal(p.cfg.ClusterName, err), err)
		}
		return err
	}
	proxy, err := p.proxy(ctx, namespace, name)
	if err != nil {
		return err
	}
	if proxy == nil {
		// The proxy is gone, so must its delegate be (usually the pod controller's DeletePod got there first).
		p.forget(key)
		if d == nil {
			return nil
		}
		return p.fence(ctx, d, gracePeriod(d), metrics.FenceProxyGone)
	}
	tracing.SetPodUID(ctx, proxy.UID)
	return p.reconcile(ctx, key, proxy, d)
}

// reconcile acts on a proxy and its delegate d (nil when the cache has none).
func (p *Provider) reconcile(ctx context.Context, key string, proxy, d *corev1.Pod) error {
	switch {
	case d != nil && parentUID(d) != proxy.UID:
		// Left over from an earlier pod of the same name: it must go before this pod's delegate can exist.
		if err := p.fence(ctx, d, new(int64(0)), metrics.FenceEarlierPod); err != nil {
			return err
		}
		return fmt.Errorf("waiting for the delegate of an earlier pod %s to go", key)
	case proxy.DeletionTimestamp != nil:
		if d != nil {
			return p.deleteDelegate(ctx, d, proxy.DeletionGracePeriodSeconds)
		}
		// The delegate has stopped and is gone: remove the proxy at once, as the kubelet does once a pod's
		// containers have stopped, instead of leaving it Terminating for the rest of its grace period. Only a
		// proxy a finalizer keeps is shown terminated first (see proxyStatus).
		if len(proxy.Finalizers) > 0 {
			p.statuses.Add(key)
		}
		return p.deleteProxy(ctx, proxy)
	case isTerminal(&proxy.Status):
		return nil // a finished pod is left as it is, delegate and all, until it is deleted
	case lost(proxy, d):
		return p.endLost(ctx, key, proxy)
	case d == nil:
		return p.create(ctx, key, proxy)
	default:
		return p.update(ctx, key, proxy, d)
	}
}

// endLost ends a proxy whose delegate was deleted or evicted in the workload cluster. The status queue
// reports it Failed (see lostStatus), which makes any controller replace it. A controlled proxy is also
// deleted at once, so failed proxies do not pile up (a drain of the workload cluster would leave one per
// pod) and its controller replaces it without waiting for the status write; a bare pod has no one to replace
// it, so it stays, Failed, for its owner to read why.
func (p *Provider) endLost(ctx context.Context, key string, proxy *corev1.Pod) error {
	p.cfg.EventRecorder.Eventf(proxy, corev1.EventTypeWarning, ReasonDeletedInWorkloadCluster,
		"The delegate pod was deleted in workload cluster %s", p.cfg.ClusterName)
	p.statuses.Add(key)
	if metav1.GetControllerOf(proxy) == nil {
		return nil
	}
	return p.deleteProxy(ctx, proxy)
}

// deleteProxy deletes exactly this proxy, at once. It is marked removed before the request: the deletion's
// grace-0 update reaches the pod controller, whose own removal it wakes, before the apiserver has answered
// here. Should the deletion fail, the mark goes and the sync is retried.
func (p *Provider) deleteProxy(ctx context.Context, proxy *corev1.Pod) error {
	p.removed.Set(proxy.UID, true, removedMemory)
	err := p.cfg.Management.CoreV1().Pods(proxy.Namespace).Delete(ctx, proxy.Name, metav1.DeleteOptions{
		GracePeriodSeconds: new(int64(0)),
		Preconditions:      metav1.NewUIDPreconditions(string(proxy.UID)),
	})
	if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
		return nil // gone, or the name is another pod's: the pod controller's removal would change nothing either
	}
	if err != nil {
		p.removed.Delete(proxy.UID)
	}
	return err
}

// removedMemory is how long a proxy deleteProxy removed is remembered: the pod controller's own removal
// follows within moments (the deletion's grace-0 update wakes it), and one later is merely sent.
const removedMemory = time.Minute

// create creates the proxy's delegate, or adopts the one that already exists for it. Nothing is written to
// the workload cluster for a proxy admissible refuses (its namespace is not enabled, or its spec names an
// object that does not follow it); the rest of prepare's checks each write only what the delegate needs.
func (p *Provider) create(ctx context.Context, key string, proxy *corev1.Pod) error {
	enabled, known := p.cfg.Namespaces.Lookup(proxy.Namespace)
	if !known {
		// The pod's namespace exists: the namespace cache has not caught up (flotilla is starting).
		return fmt.Errorf("management namespace %s is not in flotilla's cache yet", proxy.Namespace)
	}
	if prob := admissible(proxy, enabled, p.cfg.ClusterName); prob != nil {
		p.show(key, proxy, *prob)
		return nil // not retried (see admissible)
	}
	desired, err := p.prepare(ctx, key, proxy)
	if err != nil {
		return err
	}
	_, err = p.cfg.Workload.CoreV1().Pods(proxy.Namespace).Create(ctx, desired, metav1.CreateOptions{})
	switch {
	case err == nil:
		// No Normal event says so: the scheduler's Scheduled event already names the cluster, and a write to
		// the management cluster per pod is a fifth of what a pod's whole lifecycle costs it.
		p.cfg.Metrics.DelegationStep(proxy.UID, metrics.DelegateCreated)
		p.setProblem(key, nil)
		return nil
	case apierrors.IsAlreadyExists(err):
		live, getErr := p.cfg.Workload.CoreV1().Pods(proxy.Namespace).Get(ctx, proxy.Name, metav1.GetOptions{})
		if getErr != nil {
			return getErr
		}
		if !p.owner.owns(live) {
			return p.fail(key, proxy, problem{
				reason: ReasonNameConflict,
				message: fmt.Sprintf("a pod %s/%s that flotilla does not own already exists in workload cluster %s; it is left alone",
					proxy.Namespace, proxy.Name, p.cfg.ClusterName),
			}, err)
		}
		// Ours, and the cache had not seen it yet (or flotilla restarted mid-create): carry on with it.
		return p.reconcile(ctx, key, proxy, live)
	default:
		return p.fail(key, proxy, refusal(p.cfg.ClusterName, err), err)
	}
}

// prepare readies the workload cluster for the proxy's delegate and returns it: the workload namespace (one
// flotilla may use, created when missing: tenancy), the ServiceAccount the delegate runs as (flotilla's,
// created when missing, or the namespace's default; the workload's admission mounts its token), the
// ConfigMaps and Secrets that follow the proxy (package follow, which also says which optional ones to
// drop), and whether the PriorityClass exists there. A failure is shown on the proxy and returned, to retry.
func (p *Provider) prepare(ctx context.Context, key string, proxy *corev1.Pod) (*corev1.Pod, error) {
	if err := p.cfg.Namespaces.Ensure(ctx, proxy.Namespace); err != nil {
		return nil, p.fail(key, proxy, tenancyProblem(p.cfg.ClusterName, err), err)
	}
	if err := p.cfg.Namespaces.EnsureServiceAccount(ctx, proxy.Namespace, proxy.Spec.ServiceAccountName); err != nil {
		return nil, p.fail(key, proxy, tenancyProblem(p.cfg.ClusterName, err), err)
	}
	var drop []follow.Reference
	if p.cfg.References != nil {
		var err error
		if drop, err = p.cfg.References.EnsureFor(ctx, proxy); err != nil {
			prob, ev := referenceProblem(p.cfg.ClusterName, err)
			return nil, p.fail(key, proxy, prob, err, ev)
		}
	}
	keep, err := p.priorityClassExists(ctx, proxy.Spec.PriorityClassName)
	if err != nil {
		return nil, p.fail(key, proxy, refusal(p.cfg.ClusterName, err), err)
	}
	return buildDelegate(proxy, p.owner, keep, drop), nil
}

// priorityClassExists reports whether the workload cluster has the PriorityClass. A flotilla not allowed
// to read PriorityClasses treats them as absent, so delegates get the workload's default priority rather
// than be refused.
func (p *Provider) priorityClassExists(ctx context.Context, name string) (bool, error) {
	if name == "" {
		return false, nil
	}
	_, err := p.cfg.Workload.SchedulingV1().PriorityClasses().Get(ctx, name, metav1.GetOptions{})
	switch {
	case err == nil:
		return true, nil
	case apierrors.IsNotFound(err) || apierrors.IsForbidden(err):
		return false, nil
	default:
		return false, err
	}
}

// update brings the proxy's changes to its delegate live.
func (p *Provider) update(ctx context.Context, key string, proxy, live *corev1.Pod) error {
	p.setProblem(key, nil) // the proxy has its delegate: whatever kept it from one is over
	// Whether the PriorityClass is kept does not matter here: an existing pod's class cannot change.
	desired := buildDelegate(proxy, p.owner, false, nil)
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		updated, changed := withProxyChanges(live, desired)
		if !changed {
			return nil
		}
		_, err := p.cfg.Workload.CoreV1().Pods(live.Namespace).Update(ctx, updated, metav1.UpdateOptions{})
		if apierrors.IsConflict(err) {
			fresh, ferr := p.liveDelegate(ctx, live.Namespace, live.Name)
			if ferr != nil || fresh == nil || parentUID(fresh) != proxy.UID {
				return ferr // gone or replaced meanwhile: the informer brings the key back
			}
			live = fresh
		}
		return err
	})
	if err == nil {
		return nil
	}
	prob := refusal(p.cfg.ClusterName, err)
	p.cfg.EventRecorder.Event(proxy, corev1.EventTypeWarning, prob.reason, prob.message)
	if apierrors.IsInvalid(err) {
		return nil // the same change would be refused again; the proxy's next change brings a new attempt
	}
	return err
}

// event is a Warning Event to record on a proxy.
type event struct{ reason, message string }

// fail shows prob on the proxy (see show) and returns it as an error so the key is retried with backoff: a
// *problemError that reads as prob's message and keeps cause, the error prob was made of, in its chain.
func (p *Provider) fail(key string, proxy *corev1.Pod, prob problem, cause error, events ...event) error {
	p.show(key, proxy, prob, events...)
	return &problemError{prob: prob, cause: cause}
}

// show records prob as what keeps the proxy from a delegate. Only a new problem costs writes: the status
// queue reports it, and it is recorded as Events (the given ones, or else one of prob's own reason) unless
// the proxy already shows it (a flotilla that restarted finds it there). An unchanged problem writes nothing.
func (p *Provider) show(key string, proxy *corev1.Pod, prob problem, events ...event) {
	if !p.setProblem(key, &prob) {
		return
	}
	p.cfg.Metrics.Refused(prob.reason)
	if proxy.Status.Reason != prob.reason || proxy.Status.Message != prob.message {
		if len(events) == 0 {
			events = []event{{reason: prob.reason, message: prob.message}}
		}
		for _, e := range events {
			p.cfg.EventRecorder.Event(proxy, corev1.EventTypeWarning, e.reason, e.message)
		}
	}
	p.statuses.Add(key)
}

// setProblem records why key's proxy has no delegate (nil: nothing keeps it from one) and reports whether
// that changed.
func (p *Provider) setProblem(key string, prob *problem) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	old, had := p.problems[key]
	if prob == nil {
		delete(p.problems, key)
		return had
	}
	p.problems[key] = *prob
	return !had || old != *prob
}

// forget drops what the provider remembers of a proxy that is gone (or about to be): the problem that kept
// it from a delegate, and its delegation's span.
func (p *Provider) forget(key string) {
	p.setProblem(key, nil)
	p.delegations.End(key)
}

// problemOf is what keeps key's proxy from a delegate, nil if nothing.
func (p *Provider) problemOf(key string) *problem {
	p.mu.Lock()
	defer p.mu.Unlock()
	if prob, ok := p.problems[key]; ok {
		return &prob
	}
	return nil
}

// proxy is the pod of this name bound to this node, nil if there is none. The lister is virtual-kubelet's
// and may lag or not have synced yet, so a miss is confirmed with the management apiserver: delegates are
// deleted on this answer. The confirmation lists by node and name rather than getting the pod: the Node
// authorizer answers a node's get of a pod that is gone, or bound elsewhere, with Forbidden, not NotFound.
func (p *Provider) proxy(ctx context.Context, namespace, name string) (*corev1.Pod, error) {
	pod, err := p.cfg.ManagementPods.Pods(namespace).Get(name)
	if !apierrors.IsNotFound(err) {
		return pod, err
	}
	bound, err := p.cfg.Management.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{
		FieldSelector: fields.AndSelectors(
			fields.OneTermEqualSelector("spec.nodeName", p.cfg.NodeName),
			fields.OneTermEqualSelector("metadata.name", name),
		).String(),
	})
	if err != nil || len(bound.Items) == 0 {
		return nil, err
	}
	return &bound.Items[0], nil
}
