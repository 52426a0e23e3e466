package tenancy

import (
	"context"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corev1listers "k8s.io/client-go/listers/core/v1"

	"github.com/flotilla-io/flotilla/internal/cachetrim"
)

// WorkloadCache watches what Namespaces reads in the workload cluster before each delegate: its namespaces,
// and the ServiceAccounts delegates may run as (those flotilla created for this management cluster, and
// every namespace's default). With it a delegate costs the workload apiserver its create alone, instead of
// two reads more.
//
// The cache may only say yes: a namespace or ServiceAccount it does not hold, or holds in a state the rules
// refuse, is read again from the apiserver before flotilla acts on it, so a namespace just opened to
// flotilla, or a ServiceAccount just made, is never refused for the cache's lag. A yes is as fresh as the
// watch, milliseconds behind the apiserver, as a read made just before a create is.
type WorkloadCache struct {
	namespaces corev1listers.NamespaceLister
	accounts   []corev1listers.ServiceAccountLister
	factories  []informers.SharedInformerFactory
}

// NewWorkloadCache prepares the caches through client, flotilla's workload client; Start starts them.
func NewWorkloadCache(client kubernetes.Interface, managementID string) *WorkloadCache {
	factory := func(tweak func(*metav1.ListOptions)) informers.SharedInformerFactory {
		return informers.NewSharedInformerFactoryWithOptions(client, 0,
			informers.WithTransform(cachetrim.ManagedFields), informers.WithTweakListOptions(tweak))
	}
	all := factory(func(*metav1.ListOptions) {})
	ours := factory(func(o *metav1.ListOptions) {
		o.LabelSelector = labels.SelectorFromSet(labels.Set{LabelManagement: managementID}).String()
	})
	defaults := factory(func(o *metav1.ListOptions) {
		o.FieldSelector = fields.OneTermEqualSelector("metadata.name", DefaultServiceAccount).String()
	})
	return &WorkloadCache{
		namespaces: all.Core().V1().Namespaces().Lister(),
		accounts:   []corev1listers.ServiceAccountLister{ours.Core().V1().ServiceAccounts().Lister(), defaults.Core().V1().ServiceAccounts().Lister()},
		factories:  []informers.SharedInformerFactory{all, ours, defaults},
	}
}

// Start starts the watches until stop is closed. Reads before they have synced go to the apiserver.
func (c *WorkloadCache) Start(stop <-chan struct{}) {
	for _, f := range c.factories {
		f.Start(stop)
	}
}

// Shutdown waits for the watches, once stop is closed.
func (c *WorkloadCache) Shutdown() {
	for _, f := range c.factories {
		f.Shutdown()
	}
}

// workloadNamespace reads the workload namespace of that name: from the cache when it holds one that usable
// accepts, else from the apiserver; nil when it does not exist.
func (n *Namespaces) workloadNamespace(ctx context.Context, name string, usable func(*corev1.Namespace) bool) (*corev1.Namespace, error) {
	if n.Cache != nil {
		if ns, err := n.Cache.namespaces.Get(name); err == nil && usable(ns) {
			return ns, nil
		}
	}
	ns, err := n.Workload.CoreV1().Namespaces().Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	return ns, err
}

// serviceAccount reads a workload ServiceAccount: from the cache when it holds one that usable accepts,
// else from the apiserver; nil when it does not exist.
func (n *Namespaces) serviceAccount(ctx context.Context, namespace, name string, usable func(*corev1.ServiceAccount) bool) (*corev1.ServiceAccount, error) {
	if n.Cache != nil {
		for _, accounts := range n.Cache.accounts {
			if sa, err := accounts.ServiceAccounts(namespace).Get(name); err == nil && usable(sa) {
				return sa, nil
			}
		}
	}
	sa, err := n.Workload.CoreV1().ServiceAccounts(namespace).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	return sa, err
}
