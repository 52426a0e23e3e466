package lab

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/tools/cache"

	"github.com/flotilla-io/flotilla/node"
)

// Heartbeats is what the management cluster saw of a virtual node's heartbeats: every renewal of its Lease
// (kube-node-lease/<node>, its renewTime), and every lapse: a version of the node not Ready, or tainted as
// a lost cluster.
type Heartbeats struct {
	mu       sync.Mutex
	renewals []time.Time
	lapses   []string
}

// WatchHeartbeats records a virtual node's heartbeats, by watch, until ctx ends; it returns once the watches
// have synced.
func (l *Lab) WatchHeartbeats(ctx context.Context, name string) (*Heartbeats, error) {
	h := &Heartbeats{}
	only := informers.WithTweakListOptions(func(o *metav1.ListOptions) {
		o.FieldSelector = fields.OneTermEqualSelector("metadata.name", name).String()
	})
	leases := informers.NewSharedInformerFactoryWithOptions(l.Management.Client, 0, only, informers.WithNamespace(corev1.NamespaceNodeLease))
	nodes := informers.NewSharedInformerFactoryWithOptions(l.Management.Client, 0, only)
	onLease := func(obj any) {
		if lease, ok := obj.(*coordinationv1.Lease); ok && lease.Spec.RenewTime != nil {
			h.renewed(lease.Spec.RenewTime.Time)
		}
	}
	onNode := func(obj any) {
		n, ok := obj.(*corev1.Node)
		if !ok {
			return
		}
		lost := slices.ContainsFunc(n.Spec.Taints, func(t corev1.Taint) bool { return t.Key == node.LostTaintKey })
		if !NodeReady(n) || lost {
			h.mu.Lock()
			defer h.mu.Unlock()
			h.lapses = append(h.lapses, fmt.Sprintf("%s: %s, %s taint %v", time.Now().Format(time.StampMilli), readyCondition(n), node.LostTaintKey, lost))
		}
	}
	for _, handler := range []struct {
		informer cache.SharedIndexInformer
		on       func(any)
	}{
		{leases.Coordination().V1().Leases().Informer(), onLease},
		{nodes.Core().V1().Nodes().Informer(), onNode},
	} {
		if _, err := handler.informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc: handler.on, UpdateFunc: func(_, obj any) { handler.on(obj) },
		}); err != nil {
			return nil, err
		}
	}
	leases.Start(ctx.Done())
	nodes.Start(ctx.Done())
	for _, f := range []informers.SharedInformerFactory{leases, nodes} {
		for kind, synced := range f.WaitForCacheSync(ctx.Done()) {
			if !synced {
				return nil, fmt.Errorf("watching %s of node %s: not synced", kind, name)
			}
		}
	}
	return h, nil
}

func (h *Heartbeats) renewed(at time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if n := len(h.renewals); n == 0 || h.renewals[n-1].Before(at) {
		h.renewals = append(h.renewals, at)
	}
}

// Intervals are the times between consecutive Lease renewals, for each renewal made in [from, to]: the
// interval ending with the first renewal after from counts, so a renewal late because of what started at
// from is seen.
func (h *Heartbeats) Intervals(from, to time.Time) []time.Duration {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []time.Duration
	for i := 1; i < len(h.renewals); i++ {
		if at := h.renewals[i]; !at.Before(from) && !at.After(to) {
			out = append(out, at.Sub(h.renewals[i-1]))
		}
	}
	return out
}

// Lapses lists every version of the node seen not Ready or tainted as a lost cluster, with when it was seen
// and its Ready condition.
func (h *Heartbeats) Lapses() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.lapses)
}

func readyCondition(n *corev1.Node) string {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return fmt.Sprintf("Ready=%s (%s: %s)", c.Status, c.Reason, c.Message)
		}
	}
	return "no Ready condition"
}

// Quantile is the q-quantile (0..1, nearest rank) of ds, 0 for none.
func Quantile(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	sorted := slices.Clone(ds)
	slices.Sort(sorted)
	return sorted[min(len(sorted)-1, int(q*float64(len(sorted))))]
}
