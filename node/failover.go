package node

import (
	"context"
	"encoding/json"
	"time"

	"github.com/virtual-kubelet/virtual-kubelet/log"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/retry"
)

// DefaultFailoverAfter is how long a workload cluster may be unusable before its pods are moved elsewhere:
// long enough to ride out an apiserver restart, short enough that a lost cluster costs seconds, not the
// five minutes of Kubernetes' default not-ready toleration.
const DefaultFailoverAfter = 20 * time.Second

// failoverCheckInterval is how often the failover compares the node's taints with the cluster's health. The
// comparison reads only caches, so checking often costs nothing and keeps failover close to its deadline.
const failoverCheckInterval = time.Second

// Event reasons on the virtual node when the lost-cluster taint comes and goes.
const (
	ReasonClusterLost      = "ClusterLost"
	ReasonClusterRecovered = "ClusterRecovered"
)

// Failover taints the virtual node with LostTaintKey once its workload cluster has not been Ready for a while,
// and removes the taint when the cluster is Ready again.
//
// The eviction itself is Kubernetes' own: the management cluster's taint-eviction controller deletes every
// pod on the node that does not tolerate the taint, so a pod's controller replaces it on another node at
// once, and a user who would rather wait for a flaky cluster says so with a toleration (and
// tolerationSeconds), as with any NoExecute taint. The taint is flotilla's own rather than a shorter default
// for node.kubernetes.io/not-ready because that default is the management cluster's, for every node it has.
//
// The eviction deletes the pods gracefully. While the cluster does not answer, their delegates cannot be
// told to stop, so the pods stay Terminating until it answers again: a Deployment's replacements start at
// once, but a StatefulSet's wait, as they must, since the old pod may still run.
type Failover struct {
	nodeName string
	after    time.Duration
	ready    func() (corev1.NodeCondition, bool)
	nodes    corev1client.NodeInterface
	lister   corelisters.NodeLister
	recorder record.EventRecorder
}

// NewFailover prepares the failover of the virtual node nodeName: ready reports the node's Ready condition as
// flotilla derives it and whether that rests on an observation (Controller.Ready), lister reads the node as
// the management cluster has it, and nodes writes it. after is how long the cluster may be unusable; zero
// turns failover off, but a taint left from before is still removed once the cluster is Ready.
func NewFailover(nodeName string, after time.Duration, ready func() (corev1.NodeCondition, bool),
	nodes corev1client.NodeInterface, lister corelisters.NodeLister, recorder record.EventRecorder) *Failover {
	return &Failover{nodeName: nodeName, after: after, ready: ready, nodes: nodes, lister: lister, recorder: recorder}
}

// Run keeps the taint in line with the cluster's health until ctx is done.
func (f *Failover) Run(ctx context.Context) {
	wait.UntilWithContext(ctx, f.check, failoverCheckInterval)
}

// check adds or removes the taint when the cached node disagrees with the cluster's health.
func (f *Failover) check(ctx context.Context) {
	ready, observed := f.ready()
	lost, decided := clusterLost(ready, observed, f.after, time.Now())
	if !decided {
		return
	}
	n, err := f.lister.Get(f.nodeName)
	if err != nil {
		return // not registered yet, or just deleted: virtual-kubelet registers it, and the next check runs then
	}
	if _, changed := withLostTaint(n.Spec.Taints, lost, time.Now()); !changed {
		return
	}
	if err := f.setTaint(ctx, lost); err != nil {
		log.G(ctx).WithError(err).Warn("Cannot update the virtual node's lost-cluster taint; will retry")
	}
}

// setTaint writes the taint, reading the node afresh on a conflict: taints are replaced as a whole list, so
// the patch carries the resourceVersion it was computed from, and a taint someone else added meanwhile is
// kept.
func (f *Failover) setTaint(ctx context.Context, lost bool) error {
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		n, err := f.nodes.Get(ctx, f.nodeName, metav1.GetOptions{})
		if err != nil {
			return err
		}
		taints, changed := withLostTaint(n.Spec.Taints, lost, time.Now())
		if !changed {
			return nil
		}
		patch, err := json.Marshal(map[string]any{
			"metadata": map[string]any{"resourceVersion": n.ResourceVersion},
			"spec":     map[string]any{"taints": taints},
		})
		if err != nil {
			return err
		}
		if _, err := f.nodes.Patch(ctx, f.nodeName, types.MergePatchType, patch, metav1.PatchOptions{FieldManager: "flotilla"}); err != nil {
			return err
		}
		f.record(n, lost)
		return nil
	})
}

func (f *Failover) record(n *corev1.Node, lost bool) {
	if lost {
		f.recorder.Eventf(n, corev1.EventTypeWarning, ReasonClusterLost,
			"Workload cluster not Ready for %s: tainted %s, so pods that do not tolerate it are evicted and replaced elsewhere",
			f.after, LostTaintKey)
		return
	}
	f.recorder.Eventf(n, corev1.EventTypeNormal, ReasonClusterRecovered, "Workload cluster Ready again: removed taint %s", LostTaintKey)
}

// clusterLost decides from the virtual node's Ready condition whether its workload cluster counts as lost:
// yes once it has not been Ready for after (never when after is zero), no as soon as it is Ready. Otherwise
// (not Ready, but not for long; or not observed yet, as after a restart of flotilla until its first probe and
// the first listing of the workload nodes) it decides nothing, so a taint already there stays until the
// cluster is Ready again.
func clusterLost(ready corev1.NodeCondition, observed bool, after time.Duration, now time.Time) (lost, decided bool) {
	switch {
	case !observed:
		return false, false
	case ready.Status == corev1.ConditionTrue:
		return false, true
	case after > 0 && now.Sub(ready.LastTransitionTime.Time) >= after:
		return true, true
	}
	return false, false
}

// withLostTaint returns taints with the lost-cluster taint added (lost) or removed (!lost), and whether that
// changed anything. Other taints, the user's and Kubernetes', are kept as they are.
func withLostTaint(taints []corev1.Taint, lost bool, now time.Time) ([]corev1.Taint, bool) {
	out := make([]corev1.Taint, 0, len(taints)+1)
	found := false
	for _, t := range taints {
		if t.Key == LostTaintKey && t.Effect == corev1.TaintEffectNoExecute {
			found = true
			if !lost {
				continue
			}
		}
		out = append(out, t)
	}
	if lost && !found {
		added := metav1.NewTime(now)
		out = append(out, corev1.Taint{Key: LostTaintKey, Effect: corev1.TaintEffectNoExecute, TimeAdded: &added})
	}
	return out, found != lost
}
