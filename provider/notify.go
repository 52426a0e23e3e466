package provider

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/tools/cache"

	"github.com/flotilla-io/flotilla/metrics"
	"github.com/flotilla-io/flotilla/tracing"
)

// syncStatus hands the pod controller the status one proxy should show (see proxyStatus), with the
// management cache's current metadata of the proxy (see statusUpdate).
func (p *Provider) syncStatus(ctx context.Context, key string) error {
	namespace, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return nil
	}
	env := statusEnv{cluster: p.cfg.ClusterName, hostIP: p.cfg.HostIP, now: time.Now(), clusterNotReady: p.clusterReadiness()}
	var d *corev1.Pod
	if env.clusterNotReady != "" && !p.informer.HasSynced() {
		// Asking a workload apiserver that does not answer would hold this worker for its client's timeout;
		// the proxy shows the lost cluster without its delegate.
		env.delegateUnknown = true
	} else if d, err = p.delegate(ctx, namespace, name); err != nil {
		if env.clusterNotReady == "" && p.problemOf(key) == nil {
			return err
		}
		// The workload cluster does not answer. While the virtual node says so, nothing is known of the
		// delegate; otherwise a problem is recorded, and the proxy, with no delegate flotilla knows of,
		// shows it.
		env.delegateUnknown = env.clusterNotReady != ""
		d = nil
	}
	proxy, err := p.cfg.ManagementPods.Pods(namespace).Get(name)
	if apierrors.IsNotFound(err) {
		if d != nil {
			// The pod controller only takes statuses of pods in its cache; look again later. (If the proxy
			// is really gone, the delegate is deleted meanwhile and this stops.)
			return fmt.Errorf("proxy %s is not in the pod controller's cache", key)
		}
		return nil
	}
	if err != nil {
		return err
	}
	tracing.SetPodUID(ctx, proxy.UID)
	if d != nil && parentUID(d) != proxy.UID {
		d = nil // an earlier pod's delegate says nothing about this one
	}
	if d != nil && d.Status.Phase == corev1.PodRunning {
		p.cfg.Metrics.DelegationStep(proxy.UID, metrics.DelegateRunning)
	}
	status := proxyStatus(proxy, d, p.problemOf(key), env)
	if status == nil || equality.Semantic.DeepEqual(*status, proxy.Status) {
		return nil
	}
	if message, ok := newSchedulingFailure(&proxy.Status, status); ok {
		p.cfg.EventRecorder.Eventf(proxy, corev1.EventTypeWarning, ReasonFailedScheduling,
			"workload cluster %s: %s", p.cfg.ClusterName, message)
	}
	p.mu.Lock()
	notify := p.notify
	p.mu.Unlock()
	notify(statusUpdate(proxy, status))
	return nil
}
