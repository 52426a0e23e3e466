package follow

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"github.com/sirupsen/logrus"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"
	corev1listers "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
)

// publisher keeps this node's AnnotationLoadBalancers current (lb.go says what it means) and reads every
// virtual node's, this one included, from the informer cache: all flotillas compute a union from the same
// input, and one that changed its own node sees the change come back as a node event like its peers do.
type publisher struct {
	node   string
	nodes  corev1listers.NodeLister
	client corev1client.NodeInterface
	// republish is worked by one goroutine: a write that failed, or a node that no longer shows what this
	// flotilla published (re-registered after a deletion, edited by hand).
	republish workqueue.TypedRateLimitingInterface[string]

	write sync.Mutex // one write to the node at a time; the later one carries every change made meanwhile

	mu      sync.Mutex
	started bool      // entries were read from the node once the caches had synced
	entries Published // this node's entries as this flotilla wants them
	written string    // the annotation value this flotilla last wrote or found
	// seen holds the keys whose entries some virtual node's events showed coming, changing or going in this
	// process's life (see published), each with the number of the last such event.
	seen  map[string]uint64
	marks uint64
}

func newPublisher(node string, nodes corev1listers.NodeLister, client corev1client.NodeInterface) *publisher {
	return &publisher{
		node: node, nodes: nodes, client: client, seen: map[string]uint64{},
		republish: workqueue.NewTypedRateLimitingQueueWithConfig(
			workqueue.NewTypedItemExponentialFailureRateLimiter[string](100*time.Millisecond, time.Minute),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: "follow-publish"}),
	}
}

// start reads what the node publishes from the synced cache and drops the entries of objects that have no
// copy any more (their flotilla stopped before it could remove them); run writes the result.
func (p *publisher) start(hasCopy func(key string) bool) {
	var value string
	if n, err := p.nodes.Get(p.node); err == nil {
		value = n.Annotations[AnnotationLoadBalancers]
	}
	entries := DecodePublished(value)
	for key := range entries {
		if !hasCopy(key) {
			delete(entries, key)
		}
	}
	p.mu.Lock()
	p.entries, p.written, p.started = entries, value, true
	p.mu.Unlock()
	p.republish.Add(p.node)
}

// run writes the node whenever it is asked to, until ctx ends.
func (p *publisher) run(ctx context.Context) {
	go func() {
		<-ctx.Done()
		p.republish.ShutDown()
	}()
	for {
		key, quit := p.republish.Get()
		if quit {
			return
		}
		if err := p.flush(ctx); err != nil && ctx.Err() == nil {
			logrus.WithField("node", p.node).Warnf("publishing load-balancer addresses: %v", err)
			p.republish.AddRateLimited(key)
		} else {
			p.republish.Forget(key)
		}
		p.republish.Done(key)
	}
}

// set makes this node publish list for key (nothing when it is empty) and writes the node if that changed
// what it publishes. It returns when the node shows it, or with the error of the write.
func (p *publisher) set(ctx context.Context, key string, list []corev1.LoadBalancerIngress) error {
	p.mu.Lock()
	if !p.started {
		p.mu.Unlock()
		return fmt.Errorf("load-balancer addresses of node %s not read yet", p.node)
	}
	p.entries, _ = withEntry(p.entries, key, list)
	pending := EncodePublished(p.entries) != p.written
	p.mu.Unlock()
	if !pending {
		return nil
	}
	return p.flush(ctx)
}

// flush writes the node's annotation when it differs from what this flotilla wants: a merge patch of that one
// annotation, so labels, taints and other annotations (virtual-kubelet's, peers' taints) are left alone.
func (p *publisher) flush(ctx context.Context) error {
	p.write.Lock()
	defer p.write.Unlock()
	p.mu.Lock()
	value, written := EncodePublished(p.entries), p.written
	p.mu.Unlock()
	if value == written {
		return nil
	}
	var v any // null removes the annotation
	if value != "" {
		v = value
	}
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]any{AnnotationLoadBalancers: v}}})
	if err != nil {
		return err
	}
	_, err = p.client.Patch(ctx, p.node, types.MergePatchType, patch, metav1.PatchOptions{FieldManager: FieldManager})
	if apierrors.IsNotFound(err) {
		return fmt.Errorf("virtual node %s is not registered (yet); its load-balancer addresses wait for it", p.node)
	}
	if err != nil {
		return fmt.Errorf("writing the load-balancer addresses on node %s: %w", p.node, err)
	}
	p.mu.Lock()
	p.written = value
	p.mu.Unlock()
	return nil
}

// union is the load-balancer list of the object with the given key over every virtual node in the cache.
func (p *publisher) union(key string) []corev1.LoadBalancerIngress {
	nodes, _ := p.nodes.List(labels.Everything())
	published := make([]Published, 0, len(nodes))
	for _, n := range nodes {
		if v := n.Annotations[AnnotationLoadBalancers]; v != "" {
			published = append(published, DecodePublished(v))
		}
	}
	return UnionLB(published, key)
}

// nodeEvents are the handlers of the virtual nodes' informer: the objects whose entries a node changed, or
// took along when it went, are queued (enqueue gets their LBKey); a change of this node that does not show
// what this flotilla publishes is written over.
func (p *publisher) nodeEvents(enqueue func(key string)) cache.ResourceEventHandler {
	published := func(obj any) (*corev1.Node, Published) {
		if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
			obj = t.Obj
		}
		n, ok := obj.(*corev1.Node)
		if !ok {
			return nil, nil
		}
		return n, DecodePublished(n.Annotations[AnnotationLoadBalancers])
	}
	changed := func(before, after Published) {
		for _, key := range ChangedKeys(before, after) {
			p.mark(key)
			enqueue(key)
		}
	}
	return cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) {
			n, after := published(obj)
			if n == nil {
				return
			}
			p.check(n)
			changed(nil, after)
		},
		UpdateFunc: func(oldObj, newObj any) {
			_, before := published(oldObj)
			n, after := published(newObj)
			if n == nil {
				return
			}
			p.check(n)
			changed(before, after)
		},
		DeleteFunc: func(obj any) {
			if _, before := published(obj); before != nil {
				changed(before, nil)
			}
		},
	}
}

// mark notes that a node published an entry for key, or changed or removed one, as a node event showed.
func (p *publisher) mark(key string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.marks++
	p.seen[key] = p.marks
}

// published says whether some node published for key in this process's life, since the status flotilla
// wrote last was cleared (forgetPublished): then the status of the object is flotilla's to keep, down to
// clearing it once no node publishes for it. mark identifies the event that last said so.
func (p *publisher) published(key string) (mark uint64, ok bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	mark, ok = p.seen[key]
	return mark, ok
}

// forgetPublished forgets key once the status flotilla wrote for it was cleared, unless an event marked it
// again since mark (published's).
func (p *publisher) forgetPublished(key string, mark uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.seen[key] == mark {
		delete(p.seen, key)
	}
}

// check queues a write when this node, as the cache now shows it, does not publish what this flotilla wants.
func (p *publisher) check(n *corev1.Node) {
	if n.Name != p.node {
		return
	}
	value := n.Annotations[AnnotationLoadBalancers]
	p.mu.Lock()
	stale := p.started && value != EncodePublished(p.entries)
	if stale {
		p.written = value
	}
	p.mu.Unlock()
	if stale {
		p.republish.Add(p.node)
	}
}
