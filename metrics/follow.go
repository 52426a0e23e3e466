package metrics

import (
	"context"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/client-go/tools/cache"
)

// changes are the management objects whose change has not reached its copy yet, by kind and key: when
// flotilla saw the first change the copy has not had.
type changes struct {
	mu    sync.Mutex
	since map[string]time.Time
}

func (c *changes) start(key string, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.since[key]; !ok {
		c.since[key] = now
	}
}

// end forgets the change of key, and says when it was seen (false when there was none).
func (c *changes) end(key string) (time.Time, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	since, ok := c.since[key]
	delete(c.since, key)
	return since, ok
}

// FollowChanges are handlers for the informer of a followed kind's management objects: an update (a new
// resourceVersion, not a resync) starts the clock of the object's follow, unless it runs already.
func (r *Recorder) FollowChanges(kind string) cache.ResourceEventHandler {
	if r == nil {
		return cache.ResourceEventHandlerFuncs{}
	}
	return cache.ResourceEventHandlerFuncs{
		UpdateFunc: func(oldObj, obj any) {
			old, err1 := meta.Accessor(oldObj)
			now, err2 := meta.Accessor(obj)
			if err1 != nil || err2 != nil || old.GetResourceVersion() == now.GetResourceVersion() {
				return
			}
			if key, err := cache.MetaNamespaceKeyFunc(obj); err == nil {
				r.changes.start(kind+" "+key, time.Now())
			}
		},
	}
}

// FollowWritten measures the follow of the object's pending change, now that its copy has been written.
func (r *Recorder) FollowWritten(kind, key string) {
	if r == nil {
		return
	}
	if since, ok := r.changes.end(kind + " " + key); ok {
		r.follow.Record(context.Background(), time.Since(since).Seconds(), metric.WithAttributes(r.cluster, attribute.String("kind", kind)))
	}
}

// FollowSettled forgets the object's pending change without measuring it: a sync ended well without writing
// its copy (the change did not alter the copy, or no copy is wanted).
func (r *Recorder) FollowSettled(kind, key string) {
	if r == nil {
		return
	}
	r.changes.end(kind + " " + key)
}
