package follow

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/sirupsen/logrus"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	corev1informers "k8s.io/client-go/informers/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/flotilla-io/flotilla/internal/cachetrim"
)

// copyInformers reads this node's copies in the workload cluster one namespace at a time. flotilla's workload
// identity may read them only in the namespaces it uses, where it grants itself the read
// (NamespaceGate.EnsureReadable, tenancy.NamespaceReaderRole), so no cluster-wide list of Services,
// ConfigMaps, Secrets or Ingresses is ever made: the workload cluster's Namespaces are watched (flotilla may
// list those cluster-wide), and every namespace flotilla may use (usable: tenancy.Decide does not make it
// Forbidden; one opened to it may hold copies of this node as well as one it created) gets a set of informers
// of its own, one per registered kind, all selecting the owner's labels. A set starts once the read is
// granted (retried with backoff while the apiserver refuses it) and stops when the namespace goes or stops
// being usable; the copies its caches held are then handed to the kinds' delete handlers, so each is looked
// at again.
//
// Until a namespace's set has synced, whether a copy exists there is not known (known says so): whoever
// asks must not take the copy for missing. A namespace that does not exist, or that flotilla may not use,
// holds no copy of this node's.
type copyInformers struct {
	workload kubernetes.Interface
	// selector is the owner's label selector every informer of a set lists with.
	selector string
	// usable says whether flotilla may use the workload namespace (it may hold copies).
	usable func(ns *corev1.Namespace) bool
	// prepare grants flotilla the read of its copies in the namespace; retried with backoff until it
	// succeeds.
	prepare func(ctx context.Context, namespace string) error
	// synced is told the namespace whose set has just synced: what the kinds hold there is looked at again.
	synced func(namespace string)
	resync time.Duration

	kinds      []copyKind
	namespaces cache.SharedIndexInformer
	// namespacesSynced says whether the namespace handler has seen the first list.
	namespacesSynced cache.InformerSynced

	mu     sync.Mutex
	ctx    context.Context // run's; nil until run
	closed bool
	sets   map[string]*copySet
	// expected are the namespaces a sync has just prepared (Ensure) that the namespace watch has not shown
	// yet, with when: until it does (or expectFor has passed), their copies are not known.
	expected map[string]time.Time
	running  sync.WaitGroup
}

// copyKind is one kind of copy: its informer of a namespace's factory, and the handlers of its events.
type copyKind struct {
	informer func(informers.SharedInformerFactory) cache.SharedIndexInformer
	handlers []cache.ResourceEventHandler
}

// copySet is the informers of one workload namespace.
type copySet struct {
	cancel context.CancelFunc
	synced bool
	err    error         // the last failure to grant the read, while it is not synced
	stores []cache.Store // per kind, once synced
}

// expectFor bounds how long a namespace a sync prepared counts as not known while the namespace watch does
// not show it.
const expectFor = time.Minute

// Backoff of the read grant of a namespace.
const (
	prepareFirstRetry = 500 * time.Millisecond
	prepareMaxRetry   = 2 * time.Minute
)

func newCopyInformers(workload kubernetes.Interface, selector string, resync time.Duration,
	usable func(*corev1.Namespace) bool, prepare func(context.Context, string) error, synced func(string)) (*copyInformers, error) {
	c := &copyInformers{
		workload: workload, selector: selector, usable: usable, prepare: prepare, synced: synced, resync: resync,
		sets: map[string]*copySet{}, expected: map[string]time.Time{},
	}
	c.namespaces = corev1informers.NewNamespaceInformer(workload, resync, cache.Indexers{})
	if err := c.namespaces.SetTransform(cachetrim.ManagedFields); err != nil {
		return nil, err
	}
	reg, err := c.namespaces.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    c.namespaceChanged,
		UpdateFunc: func(_, obj any) { c.namespaceChanged(obj) },
		DeleteFunc: func(obj any) {
			if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = t.Obj
			}
			if ns, ok := obj.(*corev1.Namespace); ok {
				c.stop(ns.Name)
			}
		},
	})
	if err != nil {
		return nil, err
	}
	c.namespacesSynced = reg.HasSynced
	return c, nil
}

// register adds a kind before run; its number names it to get and keys.
func (c *copyInformers) register(informer func(informers.SharedInformerFactory) cache.SharedIndexInformer, handlers ...cache.ResourceEventHandler) int {
	c.kinds = append(c.kinds, copyKind{informer: informer, handlers: handlers})
	return len(c.kinds) - 1
}

// run watches the workload namespaces, and runs a set for each usable one, until ctx ends; it then stops
// every set and returns once they have stopped.
func (c *copyInformers) run(ctx context.Context) {
	c.mu.Lock()
	c.ctx = ctx
	c.mu.Unlock()
	c.namespaces.Run(ctx.Done()) // returns when ctx ends
	c.mu.Lock()
	c.closed = true
	for _, s := range c.sets {
		s.cancel()
	}
	c.mu.Unlock()
	c.running.Wait()
}

// hasSynced says whether the workload namespaces have been listed and handled.
func (c *copyInformers) hasSynced() bool { return c.namespacesSynced() }

func (c *copyInformers) namespaceChanged(obj any) {
	ns, ok := obj.(*corev1.Namespace)
	if !ok {
		return
	}
	if c.usable(ns) {
		c.start(ns.Name)
	} else {
		c.stop(ns.Name)
	}
}

// start makes the set of the namespace, unless it has one.
func (c *copyInformers) start(namespace string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.expected, namespace)
	if c.sets[namespace] != nil || c.closed || c.ctx == nil {
		return
	}
	ctx, cancel := context.WithCancel(c.ctx)
	s := &copySet{cancel: cancel}
	c.sets[namespace] = s
	c.running.Add(1)
	go func() {
		defer c.running.Done()
		c.runSet(ctx, namespace, s)
	}()
}

// runSet grants the read in the namespace, then runs the set's informers until ctx ends.
func (c *copyInformers) runSet(ctx context.Context, namespace string, s *copySet) {
	for delay := prepareFirstRetry; ; delay = min(2*delay, prepareMaxRetry) {
		err := c.prepare(ctx, namespace)
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return
		}
		logrus.WithField("namespace", namespace).Warnf("follow: reading this node's copies in workload namespace %s: %v (retried in %s)", namespace, err, delay)
		c.mu.Lock()
		s.err = err
		c.mu.Unlock()
		select {
		case <-ctx.Done():
			return
		case <-time.After(delay):
		}
	}
	factory := informers.NewSharedInformerFactoryWithOptions(c.workload, c.resync,
		informers.WithNamespace(namespace),
		informers.WithTransform(cachetrim.ManagedFields),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = c.selector }))
	defer factory.Shutdown()
	stores := make([]cache.Store, len(c.kinds))
	var synced []cache.InformerSynced
	for i, k := range c.kinds {
		inf := k.informer(factory)
		for _, h := range k.handlers {
			reg, err := inf.AddEventHandler(h)
			if err != nil { // only for an informer that has stopped: a programming mistake
				logrus.WithField("namespace", namespace).Errorf("follow: %v", err)
				return
			}
			synced = append(synced, reg.HasSynced)
		}
		stores[i] = inf.GetStore()
	}
	factory.Start(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), synced...) {
		return // stopped first
	}
	c.mu.Lock()
	stopped := ctx.Err() != nil // stop cancels with mu held: a stopped set never counts as synced
	if !stopped {
		s.synced, s.err, s.stores = true, nil, stores
	}
	c.mu.Unlock()
	if stopped {
		return
	}
	c.synced(namespace)
	<-ctx.Done()
}

// stop stops the namespace's set, if it has one, and hands what its caches held to the kinds' delete
// handlers: those copies are not seen any more.
func (c *copyInformers) stop(namespace string) {
	c.mu.Lock()
	delete(c.expected, namespace)
	s := c.sets[namespace]
	delete(c.sets, namespace)
	var stores []cache.Store
	if s != nil {
		s.cancel()
		stores = s.stores
	}
	c.mu.Unlock()
	for i, store := range stores {
		for _, obj := range store.List() {
			key, err := cache.MetaNamespaceKeyFunc(obj)
			if err != nil {
				continue
			}
			for _, h := range c.kinds[i].handlers {
				h.OnDelete(cache.DeletedFinalStateUnknown{Key: key, Obj: obj})
			}
		}
	}
}

// expect notes that a sync has just prepared the namespace (it exists and flotilla may use it): until the
// namespace watch shows it, its copies are not known.
func (c *copyInformers) expect(namespace string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.sets[namespace] == nil {
		c.expected[namespace] = time.Now()
	}
}

// known is nil when it is known which copies of this node the namespace holds (its set has synced, or it
// holds none: it does not exist, or flotilla may not use it), and otherwise an *unknownCopiesError.
func (c *copyInformers) known(namespace string) error {
	if !c.hasSynced() {
		return &unknownCopiesError{Namespace: namespace}
	}
	c.mu.Lock()
	s := c.sets[namespace]
	var synced bool
	var cause error
	if s != nil {
		synced, cause = s.synced, s.err
	}
	expected, wasExpected := c.expected[namespace]
	c.mu.Unlock()
	switch {
	case s != nil && synced:
		return nil
	case s != nil:
		return &unknownCopiesError{Namespace: namespace, Err: cause}
	case wasExpected && time.Since(expected) < expectFor:
		// A sync found it usable a moment ago; the namespace watch has not caught up.
		return &unknownCopiesError{Namespace: namespace}
	}
	// No set: the namespace is unusable or gone, or the handler of what the cache shows has not run yet.
	if obj, exists, _ := c.namespaces.GetStore().GetByKey(namespace); exists {
		if ns, ok := obj.(*corev1.Namespace); ok && c.usable(ns) {
			return &unknownCopiesError{Namespace: namespace}
		}
	}
	return nil
}

// get is the copy of the kind (register's number) of that namespace and name, if the namespace's set has
// synced and holds it.
func (c *copyInformers) get(kind int, namespace, name string) (any, bool) {
	c.mu.Lock()
	s := c.sets[namespace]
	var store cache.Store
	if s != nil && s.synced {
		store = s.stores[kind]
	}
	c.mu.Unlock()
	if store == nil {
		return nil, false
	}
	obj, exists, _ := store.GetByKey(namespace + "/" + name)
	return obj, exists
}

// keys are the keys of the copies of the kind held in the namespace ("" for every namespace).
func (c *copyInformers) keys(kind int, namespace string) []string {
	c.mu.Lock()
	var stores []cache.Store
	for ns, s := range c.sets {
		if s.synced && (namespace == "" || ns == namespace) {
			stores = append(stores, s.stores[kind])
		}
	}
	c.mu.Unlock()
	var keys []string
	for _, store := range stores {
		keys = append(keys, store.ListKeys()...)
	}
	return keys
}

// copiesOf is the lister of a kind's copies.
func copiesOf[T object](c *copyInformers, kind int) lister[T] {
	return func(namespace, name string) (T, bool) {
		var none T
		obj, found := c.get(kind, namespace, name)
		if !found {
			return none, false
		}
		t, ok := obj.(T)
		return t, ok
	}
}

// unknownCopiesError says which copies of this node a workload namespace holds is not known yet: its
// informers have not synced (Err is why, when granting the read failed), or the namespace watch has not
// caught up.
type unknownCopiesError struct {
	Namespace string
	Err       error
}

func (e *unknownCopiesError) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("this node's copies in workload namespace %s are not in flotilla's cache yet: %v", e.Namespace, e.Err)
	}
	return fmt.Sprintf("this node's copies in workload namespace %s are not in flotilla's cache yet", e.Namespace)
}

func (e *unknownCopiesError) Unwrap() error { return e.Err }
