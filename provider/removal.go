package provider

import (
	"context"
	"errors"
	"fmt"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	vknode "github.com/virtual-kubelet/virtual-kubelet/node"

	"github.com/flotilla-io/flotilla/metrics"
)

// At most one incarnation. A pod's controller (a StatefulSet above all) starts the next pod of a name only
// once the previous one is gone from the apiserver, trusting the node to remove it only once its containers
// have stopped. virtual-kubelet removes a terminating proxy once its grace period has passed, whatever
// became of the delegate; on a workload cluster that cannot be reached, or whose kubelets cannot be, that
// would start a second incarnation beside a first that may still run. So the removal waits until the
// delegate is confirmed gone from the workload apiserver, or the cluster has been declared lost (the virtual
// node carries the failover taint), the one exception, as force deletion is Kubernetes' own.

// ErrDelegateNotGone holds a proxy's removal until its delegate is confirmed gone.
var ErrDelegateNotGone = errors.New("the delegate is not confirmed gone from the workload cluster")

// removalCheckTimeout bounds the workload read that confirms a delegate gone: an apiserver that does not
// answer confirms nothing, and the removal is tried again.
const removalCheckTimeout = 5 * time.Second

// RemovalRetry is how soon a held removal is tried again.
const RemovalRetry = time.Second

// confirmGone returns nil once the proxy of that name and UID may be removed: its delegate is gone (or the
// name belongs to another proxy's delegate now), or its cluster is lost.
func (p *Provider) confirmGone(ctx context.Context, namespace, name string, proxyUID types.UID) error {
	if p.cfg.ClusterLost != nil && p.cfg.ClusterLost() {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, removalCheckTimeout)
	defer cancel()
	d, err := p.liveDelegate(ctx, namespace, name)
	switch {
	case err != nil:
		return fmt.Errorf("%w: workload cluster %s does not answer: %v", ErrDelegateNotGone, p.cfg.ClusterName, err)
	case d != nil && parentUID(d) == proxyUID:
		// virtual-kubelet asks the provider to delete the delegates of running proxies only (and that ask
		// fails while the workload cluster is away): a proxy can reach its removal with its delegate untouched,
		// so the removal starts the delete, gracefully, so that the workload's kubelet still confirms it.
		if d.DeletionTimestamp == nil {
			if err := p.fence(ctx, d, d.Spec.TerminationGracePeriodSeconds, metrics.FenceRemoval); err != nil {
				return fmt.Errorf("%w: deleting delegate %s/%s in workload cluster %s: %v", ErrDelegateNotGone, namespace, name, p.cfg.ClusterName, err)
			}
		}
		return fmt.Errorf("%w: delegate %s/%s still exists in workload cluster %s", ErrDelegateNotGone, namespace, name, p.cfg.ClusterName)
	default:
		return nil
	}
}

// Delete is the removal guard of PodControllerClient: a deletion with a UID precondition (virtual-kubelet's
// removal of a terminated proxy) waits for confirmGone. Use RetryHeldRemovals as the controller's
// DeletePodsFromKubernetesShouldRetryFunc, so a held removal is tried again for as long as it takes.
//
// A removal of a proxy the provider is removing itself (deleteProxy: exactly this UID, grace 0) is not sent
// again: it would change nothing, and the management apiserver would answer 404 for most pods
// (BenchmarkDeploymentRollout counted 0.82 such answers per pod).
func (c podControllerPodInterface) Delete(ctx context.Context, name string, opts metav1.DeleteOptions) error {
	if opts.Preconditions != nil && opts.Preconditions.UID != nil {
		if _, removed := c.p.removed.Get(*opts.Preconditions.UID); removed {
			return nil
		}
		if err := c.p.confirmGone(ctx, c.namespace, name, *opts.Preconditions.UID); err != nil {
			return err
		}
	}
	return c.PodInterface.Delete(ctx, name, opts)
}

// RetryHeldRemovals tries a removal ErrDelegateNotGone held again after RemovalRetry, with no limit, and
// leaves every other failure to fallback (virtual-kubelet's default policy).
func RetryHeldRemovals(fallback vknode.ShouldRetryFunc) vknode.ShouldRetryFunc {
	return func(ctx context.Context, key string, timesTried int, originallyAdded time.Time, err error) (*time.Duration, error) {
		if errors.Is(err, ErrDelegateNotGone) {
			retry := RemovalRetry
			return &retry, nil
		}
		return fallback(ctx, key, timesTried, originallyAdded, err)
	}
}
