// Package health serves flotilla's health endpoints for the kubelet's probes: /healthz (the process is
// alive) and /readyz (it can do its job: the management apiserver answers, and the management informers of
// the serving replica have synced; a standby under --leader-elect, which starts none until it leads, is ready
// while it could take over). They are k8s.io/apiserver's healthz handlers, so each answers ok or not (the
// checks by name with ?verbose, never why), and, like the kubelet's own, they need no credentials.
package health

import (
	"context"
	"net"
	"net/http"
	"reflect"
	"sync"
	"time"

	"k8s.io/apiserver/pkg/server/healthz"
	"k8s.io/client-go/rest"

	"github.com/flotilla-io/flotilla/internal/serve"
)

// Serve serves /healthz and /readyz (with the given checks) on addr until ctx ends.
func Serve(ctx context.Context, addr string, ready ...healthz.HealthChecker) error {
	mux := http.NewServeMux()
	healthz.InstallHandler(mux, healthz.PingHealthz)
	healthz.InstallReadyzHandler(mux, ready...)
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	serve.Until(ctx, l, mux, "health endpoints")
	return nil
}

// APIServer is the readyz check "<name>-apiserver": the apiserver client reaches answers its own /readyz
// within timeout (a probe's own timeout should be longer).
func APIServer(name string, client rest.Interface, timeout time.Duration) healthz.HealthChecker {
	return healthz.NamedCheck(name+"-apiserver", func(r *http.Request) error {
		ctx, cancel := context.WithTimeout(r.Context(), timeout)
		defer cancel()
		return client.Get().AbsPath("/readyz").Do(ctx).Error()
	})
}

// cacheSyncWaiter is an informer factory, as healthz's informer-sync check reads it.
type cacheSyncWaiter interface {
	WaitForCacheSync(stopCh <-chan struct{}) map[reflect.Type]bool
}

// Informers is the readyz check "informer-sync" (k8s.io/apiserver's) over the informer factories added
// since: every informer they started has synced. With none added yet, as on a standby, it passes.
type Informers struct {
	mu        sync.Mutex
	factories []cacheSyncWaiter
}

// Add has the check wait for the informers of the factories (started or about to be).
func (i *Informers) Add(factories ...cacheSyncWaiter) {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.factories = append(i.factories, factories...)
}

// WaitForCacheSync merges the factories' answers.
func (i *Informers) WaitForCacheSync(stopCh <-chan struct{}) map[reflect.Type]bool {
	i.mu.Lock()
	factories := i.factories
	i.mu.Unlock()
	synced := map[reflect.Type]bool{}
	for _, f := range factories {
		for t, ok := range f.WaitForCacheSync(stopCh) {
			if before, seen := synced[t]; seen {
				ok = ok && before // the same type in two factories: both must have synced
			}
			synced[t] = ok
		}
	}
	return synced
}

// Name and Check make Informers a healthz.HealthChecker.
func (i *Informers) Name() string { return "informer-sync" }

func (i *Informers) Check(r *http.Request) error { return healthz.NewInformerSyncHealthz(i).Check(r) }
