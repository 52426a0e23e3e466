package node

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/virtual-kubelet/virtual-kubelet/log"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/retry"
	nodeutil "k8s.io/component-helpers/node/util"
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
	// ReasonFlotillaLost: a peer tainted the node because its own flotilla stopped reporting.
	ReasonFlotillaLost = "FlotillaLost"
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
// A flotilla that is itself lost (its process, or its link to the management cluster) cannot taint its node,
// so every flotilla also watches its peers: a virtual node whose Ready condition the node lifecycle
// controller has turned Unknown (its lease lapsed) gets the taint from the first peer that has seen it so for
// the same delay. Only the node's own flotilla removes the taint, once it is back and finds its cluster Ready.
//
// The eviction deletes the pods gracefully. While the cluster does not answer, their delegates cannot be
// told to stop, so the pods stay Terminating until it answers again: a Deployment's replacements start at
// once, but a StatefulSet's wait, as they must, since the old pod may still run.
type Failover struct {
	nodeName string
	after    time.Duration
	health   ClusterHealth
	nodes    corev1client.NodeInterface
	lister   corelisters.NodeLister
	recorder record.EventRecorder
	// tainted, when set, is told each cluster-lost taint set, with the node and the Event's reason.
	tainted func(node, reason string)
}

// ClusterHealth is what the failover knows of the workload cluster; Controller has it.
type ClusterHealth interface {
	// Ready is the virtual node's Ready condition as flotilla derives it, and whether that rests on an
	// observation of the workload cluster.
	Ready() (corev1.NodeCondition, bool)
	// LastAnswer is when the workload apiserver last answered at all, however slowly.
	LastAnswer() time.Time
}

// NewFailover prepares the failover of the virtual node nodeName: health tells the workload cluster's
// health as flotilla derives it (a Controller), lister reads the virtual
// nodes (this one and its peers) as the management cluster has them, and nodes writes them. after is how
// long a cluster may be unusable; zero turns failover off, but a taint left from before is still removed
// from this node once its cluster is Ready. tainted, if not nil, is told each cluster-lost taint set (a
// failover), with the node's name and the Event's reason (ReasonClusterLost, ReasonFlotillaLost).
func NewFailover(nodeName string, after time.Duration, health ClusterHealth,
	nodes corev1client.NodeInterface, lister corelisters.NodeLister, recorder record.EventRecorder, tainted func(node, reason string)) *Failover {
	return &Failover{nodeName: nodeName, after: after, health: health, nodes: nodes, lister: lister, recorder: recorder, tainted: tainted}
}

// Run keeps the taint in line with the cluster's health until ctx is done.
func (f *Failover) Run(ctx context.Context) {
	wait.UntilWithContext(ctx, f.check, failoverCheckInterval)
}

// check adds or removes this node's taint when the cached node disagrees with the cluster's health, and
// taints the peers whose flotilla is lost.
func (f *Failover) check(ctx context.Context) {
	f.ensureRoleLabel(ctx)
	f.checkSelf(ctx)
	f.checkPeers(ctx)
}

// ensureRoleLabel gives the node LabelRole, which NodeRestriction keeps the node identity from setting.
func (f *Failover) ensureRoleLabel(ctx context.Context) {
	n, err := f.lister.Get(f.nodeName)
	if err != nil || n.Labels[LabelRole] == RoleCluster {
		return
	}
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{"labels": map[string]string{LabelRole: RoleCluster}}})
	if err != nil {
		return
	}
	if _, err := f.nodes.Patch(ctx, f.nodeName, types.MergePatchType, patch, metav1.PatchOptions{FieldManager: "flotilla"}); err != nil {
		log.G(ctx).WithError(err).Warnf("Cannot label the virtual node %s=%s; will retry", LabelRole, RoleCluster)
	}
}

func (f *Failover) checkSelf(ctx context.Context) {
	ready, observed := f.health.Ready()
	lost, decided := clusterLost(ready, observed, f.health.LastAnswer(), f.after, time.Now())
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
	if lost {
		message := fmt.Sprintf("Workload cluster not Ready for %s: tainted %s, so pods that do not tolerate it are evicted and replaced elsewhere",
			f.after, LostTaintKey)
		f.setTaint(ctx, f.nodeName, true, func(*corev1.Node) bool { return true }, ReasonClusterLost, message)
		return
	}
	// Back, perhaps after being lost itself: lift the taint only once the node says Ready in the management
	// cluster too, or a peer that still sees it Unknown would put the taint back.
	f.setTaint(ctx, f.nodeName, false, readyInManagement, ReasonClusterRecovered, "Workload cluster Ready again: removed taint "+LostTaintKey)
}

func (f *Failover) checkPeers(ctx context.Context) {
	nodes, err := f.lister.List(labels.Everything())
	if err != nil {
		return
	}
	now := time.Now()
	if unknownMost(nodes) {
		// Most virtual nodes went silent at once: more likely the management cluster's trouble (or the
		// network to it) than that many clusters' flotillas; the node lifecycle controller holds back its
		// evictions then too.
		return
	}
	for _, peer := range nodes {
		if peer.Name == f.nodeName || !flotillaLost(peer, f.after, now) {
			continue
		}
		if _, changed := withLostTaint(peer.Spec.Taints, true, now); !changed {
			continue
		}
		message := fmt.Sprintf("The node's flotilla has not reported for %s (its lease lapsed): tainted %s by the flotilla of %s, "+
			"so pods that do not tolerate it are evicted and replaced elsewhere", failoverAfter(peer, f.after), LostTaintKey, f.nodeName)
		stillLost := func(n *corev1.Node) bool { return flotillaLost(n, f.after, time.Now()) }
		f.setTaint(ctx, peer.Name, true, stillLost, ReasonFlotillaLost, message)
	}
}

// setTaint adds or removes the taint on the named node if the node, read afresh, still warrants it (the
// decision was taken on a cache that may lag), and records the Event once the taint is written. Taints are
// replaced as a whole list, so the patch carries the resourceVersion it was computed from and a conflict
// starts over, keeping a taint someone else added meanwhile. A failure is logged; the next check retries.
func (f *Failover) setTaint(ctx context.Context, nodeName string, lost bool, warranted func(*corev1.Node) bool, reason, message string) {
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		n, err := f.nodes.Get(ctx, nodeName, metav1.GetOptions{})
		if err != nil {
			return err
		}
		taints, changed := withLostTaint(n.Spec.Taints, lost, time.Now())
		if !changed || !warranted(n) {
			return nil
		}
		patch, err := json.Marshal(map[string]any{
			"metadata": map[string]any{"resourceVersion": n.ResourceVersion},
			"spec":     map[string]any{"taints": taints},
		})
		if err != nil {
			return err
		}
		if _, err := f.nodes.Patch(ctx, nodeName, types.MergePatchType, patch, metav1.PatchOptions{FieldManager: "flotilla"}); err != nil {
			return err
		}
		eventType := corev1.EventTypeNormal
		if lost {
			eventType = corev1.EventTypeWarning
			if f.tainted != nil {
				f.tainted(nodeName, reason)
			}
		}
		f.recorder.Event(n, eventType, reason, message)
		return nil
	})
	if err != nil {
		log.G(ctx).WithError(err).WithField("node", nodeName).Warn("Cannot update the lost-cluster taint; will retry")
	}
}

func readyInManagement(n *corev1.Node) bool {
	ready, _ := nodeReady(n)
	return ready.Status == corev1.ConditionTrue
}

// failoverAfter is the failover delay a virtual node's flotilla publishes (AnnotationFailoverAfter), so that
// its peers honour its own setting; a node that publishes none gets def.
func failoverAfter(n *corev1.Node, def time.Duration) time.Duration {
	if d, err := time.ParseDuration(n.Annotations[AnnotationFailoverAfter]); err == nil {
		return d
	}
	return def
}

// unknownMost says whether more than 55% of the virtual nodes are Unknown, the share at which the node
// lifecycle controller, too, takes a zone to be fully disrupted.
func unknownMost(nodes []*corev1.Node) bool {
	unknown := 0
	for _, n := range nodes {
		if ready, _ := nodeReady(n); ready.Status == corev1.ConditionUnknown {
			unknown++
		}
	}
	return unknown*100 > 55*len(nodes)
}

// flotillaLost says whether a virtual node's own flotilla counts as lost: the node lifecycle controller has
// held its Ready condition Unknown (no lease renewal, no status) for the node's failover delay (def if it
// publishes none; never if its delay is zero).
func flotillaLost(n *corev1.Node, def time.Duration, now time.Time) bool {
	after := failoverAfter(n, def)
	c, ok := nodeReady(n)
	return after > 0 && ok && c.Status == corev1.ConditionUnknown && !c.LastTransitionTime.IsZero() &&
		now.Sub(c.LastTransitionTime.Time) >= after
}

// nodeReady is the node's Ready condition, and whether it has one.
func nodeReady(n *corev1.Node) (corev1.NodeCondition, bool) {
	if _, c := nodeutil.GetNodeCondition(&n.Status, corev1.NodeReady); c != nil {
		return *c, true
	}
	return corev1.NodeCondition{}, false
}

// clusterLost decides from the virtual node's Ready condition whether its workload cluster counts as lost:
// yes once it has not been Ready for after (never when after is zero), no as soon as it is Ready. An
// unreachable cluster whose apiserver still answered, however late, within after (lastAnswer) is slow, not
// lost: moving its pods would add their load to clusters that are likely as busy. Otherwise (not Ready, but
// not for long, or slow; or not observed yet, as after a restart of flotilla until its first probe and the
// first listing of the workload nodes) it decides nothing, so a taint already there stays until the cluster
// is Ready again.
func clusterLost(ready corev1.NodeCondition, observed bool, lastAnswer time.Time, after time.Duration, now time.Time) (lost, decided bool) {
	switch {
	case !observed:
		return false, false
	case ready.Status == corev1.ConditionTrue:
		return false, true
	case after > 0 && now.Sub(ready.LastTransitionTime.Time) >= after &&
		(ready.Reason != ReasonClusterUnreachable || now.Sub(lastAnswer) >= after):
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
