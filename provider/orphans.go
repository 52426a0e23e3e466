package provider

import (
	"context"
	"slices"
	"time"

	"github.com/virtual-kubelet/virtual-kubelet/log"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"

	"github.com/flotilla-io/flotilla/metrics"
	"github.com/flotilla-io/flotilla/node"
	"github.com/flotilla-io/flotilla/tenancy"
)

// collect runs the periodic collectors: delegates whose proxy is gone, then the workload namespaces and
// ServiceAccounts nothing uses any more (whose delegates the first may just have deleted).
func (p *Provider) collect(ctx context.Context) {
	p.collectOrphans(ctx)
	p.collectTenancy(ctx, time.Now())
}

// collectOrphans deletes this node's delegates whose proxy is gone: a delegate is kept only while a pod of
// its namespace, name and parent UID is bound to this node. It catches what the pod controller and the
// delegate queue missed: proxies deleted while flotilla was down, deletions that failed, leftovers of an
// earlier pod of the same name. Delegates are listed before proxies, so a delegate created meanwhile has its
// proxy in the second list; proxies come from the management apiserver itself (a consistent read), not from
// a cache that may lag or not have synced, since delegates are deleted on its word.
func (p *Provider) collectOrphans(ctx context.Context) {
	delegates, err := p.ownDelegates(ctx)
	if err != nil {
		log.G(ctx).WithError(err).Warn("orphan collection: cannot list delegates")
		return
	}
	proxies, err := p.cfg.Management.CoreV1().Pods(metav1.NamespaceAll).List(ctx, metav1.ListOptions{
		FieldSelector: fields.OneTermEqualSelector("spec.nodeName", p.cfg.NodeName).String(),
	})
	if err != nil {
		log.G(ctx).WithError(err).Warn("orphan collection: cannot list proxies")
		return
	}
	live := make(map[types.NamespacedName]types.UID, len(proxies.Items))
	for _, proxy := range proxies.Items {
		live[types.NamespacedName{Namespace: proxy.Namespace, Name: proxy.Name}] = proxy.UID
	}
	for _, d := range delegates {
		if live[types.NamespacedName{Namespace: d.Namespace, Name: d.Name}] == parentUID(d) {
			continue
		}
		if err := p.fence(ctx, d, gracePeriod(d), metrics.FenceOrphaned); err != nil {
			log.G(ctx).WithError(err).Warnf("orphan collection: cannot delete delegate %s/%s", d.Namespace, d.Name)
			continue
		}
		log.G(ctx).Infof("deleted orphaned delegate %s/%s", d.Namespace, d.Name)
	}
}

// collectTenancy deletes the workload namespaces and ServiceAccounts flotilla created for this management
// cluster once nothing uses them (the rules, at now: tenancy.NamespaceUnused, tenancy.UnusedServiceAccounts).
// Every virtual node of the management cluster that shares this workload cluster runs it; the rules count
// every use, whoever made it, and a deletion carries the UID it was decided on. The rules are monotone, so
// the uses are read one after the other, each only while the rule, asked with what was read so far, still
// lets the object go. The rules keep what is younger than tenancy.CollectionGrace, so what a sync has just
// created for a delegate it is about to make stays. What they cannot rule out is a pod bound and delegated
// between the reads and the deletion: that delegate goes with its namespace and its proxy ends as one
// deleted in the workload cluster (its controller replaces it), and a create that finds the namespace
// terminating is refused and retried. Opened namespaces and anything without this management cluster's label
// are never deleted.
func (p *Provider) collectTenancy(ctx context.Context, now time.Time) {
	logger := log.G(ctx)
	id := p.cfg.ManagementID
	ours := labels.SelectorFromSet(labels.Set{tenancy.LabelManagement: id}).String()
	namespaces, err := p.cfg.Workload.CoreV1().Namespaces().List(ctx, metav1.ListOptions{LabelSelector: ours})
	if err != nil {
		logger.WithError(err).Warn("namespace collection: cannot list the workload namespaces flotilla created")
		return
	}
	var virtual func(string) bool // read at most once per round, and only when a namespace may go
	deleted := map[string]bool{}
	for i := range namespaces.Items {
		ns := &namespaces.Items[i]
		if !tenancy.NamespaceUnused(id, ns, nil, nil, nil, now) {
			continue // kept whatever uses it: read none
		}
		// Anyone's pod keeps it, so one is as good as all.
		pods, err := p.cfg.Workload.CoreV1().Pods(ns.Name).List(ctx, metav1.ListOptions{Limit: 1})
		if err != nil {
			logger.WithError(err).Warnf("namespace collection: cannot list the pods of workload namespace %s", ns.Name)
			continue
		}
		if !tenancy.NamespaceUnused(id, ns, pods.Items, nil, nil, now) {
			continue // kept: no need to read the management side
		}
		bound, err := p.cfg.Management.CoreV1().Pods(ns.Name).List(ctx, metav1.ListOptions{
			FieldSelector: fields.OneTermNotEqualSelector("spec.nodeName", "").String(),
		})
		if err != nil {
			logger.WithError(err).Warnf("namespace collection: cannot list the pods of management namespace %s", ns.Name)
			continue
		}
		if virtual == nil {
			if virtual, err = p.virtualNodes(ctx); err != nil {
				logger.WithError(err).Warn("namespace collection: cannot list the virtual nodes")
				return
			}
		}
		if !tenancy.NamespaceUnused(id, ns, pods.Items, bound.Items, virtual, now) {
			continue
		}
		err = p.cfg.Workload.CoreV1().Namespaces().Delete(ctx, ns.Name, metav1.DeleteOptions{Preconditions: metav1.NewUIDPreconditions(string(ns.UID))})
		switch {
		case err == nil:
			deleted[ns.Name] = true
			logger.Infof("deleted workload namespace %s: nothing uses it any more", ns.Name)
		case apierrors.IsNotFound(err) || apierrors.IsConflict(err):
			deleted[ns.Name] = true // gone already, or another namespace of that name now
		default:
			logger.WithError(err).Warnf("namespace collection: cannot delete workload namespace %s", ns.Name)
		}
	}

	accounts, err := p.cfg.Workload.CoreV1().ServiceAccounts(metav1.NamespaceAll).List(ctx, metav1.ListOptions{LabelSelector: ours})
	if err != nil {
		logger.WithError(err).Warn("ServiceAccount collection: cannot list the workload ServiceAccounts flotilla created")
		return
	}
	byNamespace := map[string][]corev1.ServiceAccount{}
	for _, sa := range accounts.Items {
		if !deleted[sa.Namespace] { // those of a deleted namespace go with it
			byNamespace[sa.Namespace] = append(byNamespace[sa.Namespace], sa)
		}
	}
	for namespace, all := range byNamespace {
		candidates := tenancy.UnusedServiceAccounts(id, all, nil, now)
		if len(candidates) == 0 {
			continue // all kept whatever runs as them: no need to read the pods
		}
		pods, err := p.cfg.Workload.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{})
		if err != nil {
			logger.WithError(err).Warnf("ServiceAccount collection: cannot list the pods of workload namespace %s", namespace)
			continue
		}
		if candidates = tenancy.UnusedServiceAccounts(id, candidates, pods.Items, now); len(candidates) == 0 {
			continue
		}
		// A proxy bound to a virtual node that waits for its delegate (a missing ConfigMap, a quota) keeps its
		// ServiceAccount too: otherwise every retry would create it anew, and one collected between its
		// creation and the delegate's would refuse the delegate once.
		waiting, err := p.boundProxies(ctx, namespace, &virtual)
		if err != nil {
			logger.WithError(err).Warnf("ServiceAccount collection: cannot list the bound pods of management namespace %s", namespace)
			continue
		}
		for _, sa := range tenancy.UnusedServiceAccounts(id, candidates, waiting, now) {
			err := p.cfg.Workload.CoreV1().ServiceAccounts(namespace).Delete(ctx, sa.Name, metav1.DeleteOptions{Preconditions: metav1.NewUIDPreconditions(string(sa.UID))})
			switch {
			case err == nil:
				logger.Infof("deleted workload ServiceAccount %s/%s: no pod runs as it any more", namespace, sa.Name)
			case apierrors.IsNotFound(err) || apierrors.IsConflict(err):
			default:
				logger.WithError(err).Warnf("ServiceAccount collection: cannot delete workload ServiceAccount %s/%s", namespace, sa.Name)
			}
		}
	}
}

// boundProxies are the pods of the management namespace bound to a virtual node (of any flotilla); virtual
// caches which nodes are virtual for the round.
func (p *Provider) boundProxies(ctx context.Context, namespace string, virtual *func(string) bool) ([]corev1.Pod, error) {
	bound, err := p.cfg.Management.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{
		FieldSelector: fields.OneTermNotEqualSelector("spec.nodeName", "").String(),
	})
	if err != nil {
		return nil, err
	}
	if *virtual == nil {
		if *virtual, err = p.virtualNodes(ctx); err != nil {
			return nil, err
		}
	}
	return slices.DeleteFunc(bound.Items, func(pod corev1.Pod) bool { return !(*virtual)(pod.Spec.NodeName) }), nil
}

// virtualNodes reads which management nodes are virtual nodes (of any flotilla).
func (p *Provider) virtualNodes(ctx context.Context) (func(string) bool, error) {
	nodes, err := p.cfg.Management.CoreV1().Nodes().List(ctx, metav1.ListOptions{
		LabelSelector: labels.SelectorFromSet(labels.Set{node.LabelType: node.TypeVirtualKubelet}).String(),
	})
	if err != nil {
		return nil, err
	}
	names := make(map[string]bool, len(nodes.Items))
	for _, n := range nodes.Items {
		names[n.Name] = true
	}
	return func(name string) bool { return names[name] }, nil
}
