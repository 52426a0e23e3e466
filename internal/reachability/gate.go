// Package reachability keeps informers from backing off while their cluster is known to be down (Gate), and
// tells an apiserver that is slow to answer from one that is silent (Heard).
//
// A client-go reflector whose list or watch fails waits before it tries again, twice as long after each
// failure, up to a minute with jitter, and forgets the failures only after two quiet minutes. A workload
// cluster that is away for half a minute therefore leaves every informer of it up to a minute behind once
// it is back: delegates of evicted pods not seen to go, load-balancer addresses not seen to come. The Gate
// holds informers' list and watch requests while the prober says the cluster is not ready (its /readyz does
// not answer ok), instead of letting them fail, and lets them through as soon as it is again.
package reachability

import (
	"net/http"
	"sync"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Gate holds informer traffic while its cluster is unreachable. It starts open.
type Gate struct {
	mu     sync.Mutex
	closed chan struct{} // nil while open; closed (the channel) when the gate opens again
}

// Set opens the gate when the cluster answers and closes it when it does not.
func (g *Gate) Set(reachable bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	switch {
	case reachable && g.closed != nil:
		close(g.closed)
		g.closed = nil
	case !reachable && g.closed == nil:
		g.closed = make(chan struct{})
	}
}

// wait returns a channel that is closed once the gate is open, or nil when it is open now.
func (g *Gate) wait() <-chan struct{} {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.closed
}

// Wrap returns rt with informer requests held while the gate is closed; any other request goes through at
// once, so that work on one pod fails fast and says why. Use it as a rest.Config's WrapTransport.
func (g *Gate) Wrap(rt http.RoundTripper) http.RoundTripper {
	return promhttp.RoundTripperFunc(func(r *http.Request) (*http.Response, error) {
		if informerRequest(r) {
			if opened := g.wait(); opened != nil {
				select {
				case <-opened:
				case <-r.Context().Done():
					return nil, r.Context().Err()
				}
			}
		}
		return rt.RoundTrip(r)
	})
}

// informerRequest tells a reflector's requests from others: a watch, or a list that names a resource
// version to list at, as a reflector's first list and relists do ("0" included; a plain list or get does
// not). The rare reflector lists without one (after a 410 Gone, or the continuation pages of a paged list)
// go through unheld and, if the cluster is down, back off as before.
func informerRequest(r *http.Request) bool {
	if r.Method != http.MethodGet {
		return false
	}
	q := r.URL.Query()
	return q.Get("watch") == "true" || q.Has("resourceVersion")
}
