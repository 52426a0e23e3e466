package follow

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/sirupsen/logrus"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/client-go/tools/cache"

	"github.com/flotilla-io/flotilla/internal/cachetrim"
)

// objectWatches reads the management objects of one kind (ConfigMaps, Secrets) one at a time, the way the
// kubelet's watch-based manager (pkg/kubelet/util/manager/watch_based_manager.go) does: every object that
// something of this node references (a holder: a proxy, a followed Ingress's TLS entries) gets a watch of its
// own, a list and watch of its namespace with the field selector metadata.name=<name>, started by the first
// holder that names it and stopped when the last one lets go. That is all a node may read under the Node
// authorizer, and it costs memory for what this node needs only, not for every Secret of the management
// cluster.
//
// Until its watch has answered the first list, an object is not known: neither there nor missing. get says
// so with an *unknownObjectError, and whoever asked waits (the watch queues the key once it has synced)
// instead of reporting the object missing.
type objectWatches[T object] struct {
	kind string // KindConfigMap or KindSecret
	// listWatch lists and watches the single object of that namespace and name.
	listWatch func(namespace, name string, selector fields.Selector) cache.ListerWatcher
	example   T // the informers' example object
	// queue is told the key of an object whose watch delivered an event, answered its first list, or
	// stopped.
	queue func(namespace, name string)
	// forbidden, when set, is told each time the management apiserver refuses a watch's list or watch, from
	// the forbiddenAfter-th refusal in a row on (the watch backs off meanwhile, up to 30 s between attempts).
	forbidden func(namespace, name string, err error)
	// changes are further handlers of each watch's events (the follow latency's clock).
	changes cache.ResourceEventHandler

	mu      sync.Mutex
	closed  bool
	watches map[string]*objectWatch // by "<namespace>/<name>"
	held    map[string][]string     // holder -> the keys it names
}

// objectWatch is the watch of one object.
type objectWatch struct {
	holders  sets.Set[string]
	informer cache.SharedIndexInformer
	stop     chan struct{}
	stopOnce sync.Once
	synced   bool
	err      error            // the last failed list or watch before the first list answered
	refused  int              // refusals (Forbidden) in a row
	told     sets.Set[string] // problems already reported for this watch (see tell)
}

func (ow *objectWatch) close() { ow.stopOnce.Do(func() { close(ow.stop) }) }

func newObjectWatches[T object](kind string, example T, listWatch func(namespace, name string, selector fields.Selector) cache.ListerWatcher, queue func(namespace, name string)) *objectWatches[T] {
	return &objectWatches[T]{kind: kind, listWatch: listWatch, example: example, queue: queue,
		changes: cache.ResourceEventHandlerFuncs{}, watches: map[string]*objectWatch{}, held: map[string][]string{}}
}

// set makes holder name exactly keys ("<namespace>/<name>"; none to let go of everything): watches of newly
// named objects start, and those no holder names any more stop (their keys are queued, so that copies of them
// go).
func (w *objectWatches[T]) set(holder string, keys []string) {
	keys = slices.Compact(slices.Sorted(slices.Values(keys)))
	w.mu.Lock()
	old := w.held[holder]
	if len(keys) == 0 {
		delete(w.held, holder)
	} else {
		w.held[holder] = keys
	}
	var stopped []string
	for _, key := range keys {
		if slices.Contains(old, key) {
			continue
		}
		ow := w.watches[key]
		if ow == nil {
			ow = w.start(key)
			w.watches[key] = ow
		}
		ow.holders.Insert(holder)
	}
	for _, key := range old {
		if slices.Contains(keys, key) {
			continue
		}
		if ow := w.watches[key]; ow != nil {
			ow.holders.Delete(holder)
			if ow.holders.Len() == 0 {
				ow.close()
				delete(w.watches, key)
				stopped = append(stopped, key)
			}
		}
	}
	w.mu.Unlock()
	for _, key := range stopped {
		ns, name, _ := strings.Cut(key, "/")
		w.queue(ns, name)
	}
}

// start makes the watch of key and, unless shutdown came first, runs it. Called with mu held.
func (w *objectWatches[T]) start(key string) *objectWatch {
	ns, name, _ := strings.Cut(key, "/")
	ow := &objectWatch{holders: sets.New[string](), stop: make(chan struct{}), told: sets.New[string]()}
	ow.informer = cache.NewSharedIndexInformer(w.listWatch(ns, name, fields.OneTermEqualSelector("metadata.name", name)), w.example, 0, cache.Indexers{})
	// Errors here mean a programming mistake (the informer has not started yet): nothing to handle.
	_ = ow.informer.SetTransform(cachetrim.ManagedFields)
	_ = ow.informer.SetWatchErrorHandlerWithContext(func(ctx context.Context, r *cache.Reflector, err error) {
		forbidden := apierrors.IsForbidden(err)
		w.mu.Lock()
		if !ow.synced {
			ow.err = err
		}
		if forbidden {
			ow.refused++
		} else {
			ow.refused = 0
		}
		refused := ow.refused
		w.mu.Unlock()
		if !forbidden {
			cache.DefaultWatchErrorHandler(ctx, r, err)
			return
		}
		logrus.WithField("key", key).Debugf("follow %s: %v", w.kind, err)
		if w.forbidden != nil && refused >= forbiddenAfter {
			w.forbidden(ns, name, err)
		}
	})
	queue := func(any) { w.queue(ns, name) }
	_, _ = ow.informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: queue, UpdateFunc: func(_, obj any) { queue(obj) }, DeleteFunc: queue,
	})
	_, _ = ow.informer.AddEventHandler(w.changes)
	if w.closed {
		return ow
	}
	go ow.informer.Run(ow.stop)
	go func() {
		if !cache.WaitForCacheSync(ow.stop, ow.informer.HasSynced) {
			return // stopped first
		}
		w.mu.Lock()
		ow.synced, ow.err, ow.refused = true, nil, 0
		ow.told.Clear()
		w.mu.Unlock()
		w.queue(ns, name)
	}()
	return ow
}

// errNotWatched says nothing of this node names an object: it has no watch, and for this node it is not
// there.
var errNotWatched = errors.New("not watched: nothing of this node names it")

// forbiddenAfter is how many refusals in a row make a refused watch worth reporting: the Node authorizer
// learns of a pod's binding from its own watch, so the first read of what a just-bound pod references may be
// refused for a moment.
const forbiddenAfter = 3

// get is the object as its watch last saw it; found is false when the watch knows it does not exist. An
// *unknownObjectError says the watch has not answered its first list yet, errNotWatched that there is no
// watch.
func (w *objectWatches[T]) get(namespace, name string) (obj T, found bool, err error) {
	key := namespace + "/" + name
	w.mu.Lock()
	ow := w.watches[key]
	var synced bool
	var cause error
	if ow != nil {
		synced, cause = ow.synced, ow.err
	}
	w.mu.Unlock()
	switch {
	case ow == nil:
		return obj, false, errNotWatched
	case !synced:
		return obj, false, &unknownObjectError{Kind: w.kind, Namespace: namespace, Name: name, Err: cause}
	}
	item, exists, _ := ow.informer.GetStore().GetByKey(key)
	if !exists {
		return obj, false, nil
	}
	obj, found = item.(T)
	return obj, found, nil
}

// known is nil when the object's watch has answered its first list, or when nothing names it; otherwise an
// *unknownObjectError.
func (w *objectWatches[T]) known(namespace, name string) error {
	if _, _, err := w.get(namespace, name); err != nil && !errors.Is(err, errNotWatched) {
		return err
	}
	return nil
}

// keys are the keys of the watched objects of the namespace ("" for all of them), known or not.
func (w *objectWatches[T]) keys(namespace string) []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var keys []string
	for key := range w.watches {
		if namespace == "" || strings.HasPrefix(key, namespace+"/") {
			keys = append(keys, key)
		}
	}
	return keys
}

// tell says whether the problem (a signature: who is told what) is news for the object's current watch, and
// remembers it: a problem is reported once per watch, and again once the watch has synced in between.
func (w *objectWatches[T]) tell(namespace, name, signature string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	ow := w.watches[namespace+"/"+name]
	if ow == nil || ow.told.Has(signature) {
		return false
	}
	ow.told.Insert(signature)
	return true
}

// shutdown stops every watch; watches of objects named later are never run.
func (w *objectWatches[T]) shutdown() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return
	}
	w.closed = true
	for _, ow := range w.watches {
		ow.close()
	}
}

// unknownObjectError says an object's watch has not answered its first list: whether the object exists is
// not known yet. Err is the watch's last failure, if any (a Forbidden from the apiserver, say).
type unknownObjectError struct {
	Kind            string
	Namespace, Name string
	Err             error
}

func (e *unknownObjectError) Error() string {
	what := fmt.Sprintf("%s %s/%s", strings.ToLower(e.Kind), e.Namespace, e.Name)
	switch {
	case apierrors.IsForbidden(e.Err):
		return fmt.Sprintf("the management cluster forbids flotilla to read %s: %s (%v)", what, nodeReadRule(e.Kind), e.Err)
	case e.Err != nil:
		return fmt.Sprintf("reading %s from the management cluster: %v", what, e.Err)
	default:
		return what + " is not in flotilla's cache yet"
	}
}

func (e *unknownObjectError) Unwrap() error { return e.Err }

// nodeReadRule says what the Node authorizer lets a virtual node read of a kind.
func nodeReadRule(kind string) string {
	return fmt.Sprintf("a virtual node may read only the %ss that pods bound to it reference", kind)
}
