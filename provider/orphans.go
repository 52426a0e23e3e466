package provider

import (
	"context"

	"github.com/virtual-kubelet/virtual-kubelet/log"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
)

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
		if err := p.deleteDelegate(ctx, d, gracePeriod(d)); err != nil {
			log.G(ctx).WithError(err).Warnf("orphan collection: cannot delete delegate %s/%s", d.Namespace, d.Name)
			continue
		}
		log.G(ctx).Infof("deleted orphaned delegate %s/%s", d.Namespace, d.Name)
	}
}
