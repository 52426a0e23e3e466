package follow

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/sirupsen/logrus"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/csaupgrade"
	"k8s.io/client-go/util/workqueue"

	"github.com/flotilla-io/flotilla/tenancy"
	"github.com/flotilla-io/flotilla/tracing"
)

// This file is the one mechanism every followed kind shares: a rate-limited work queue of management object
// keys, and a sync that makes the workload copy match what the management side wants (the object exists and
// something on this node needs it) and, for kinds whose status comes back, publishes the copy's load-balancer
// addresses on this node's virtual node and writes the union over all virtual nodes to the management object.
// New (follow.go) parameterises it per kind.

// FieldManager is the field manager of flotilla's server-side applies: copies in workload clusters, and the
// load-balancer status of management objects (the same for every flotilla, so they converge instead of
// conflicting).
const FieldManager = "flotilla"

// object is what every followed kind is.
type object interface {
	metav1.Object
	runtime.Object
}

// client is the part of a typed client (ServiceInterface, ConfigMapInterface, ...) the mechanism uses.
type client[T object] interface {
	Get(ctx context.Context, name string, opts metav1.GetOptions) (T, error)
	Create(ctx context.Context, obj T, opts metav1.CreateOptions) (T, error)
	Patch(ctx context.Context, name string, pt types.PatchType, data []byte, opts metav1.PatchOptions, subresources ...string) (T, error)
	Delete(ctx context.Context, name string, opts metav1.DeleteOptions) error
}

// lister gets an object from an informer cache; found is false when the cache does not hold it.
type lister[T object] func(namespace, name string) (obj T, found bool)

// kind is one followed kind.
type kind[T object] struct {
	f    *Followers
	name string // "Service", as Events and errors name it

	queue workqueue.TypedRateLimitingInterface[string]

	source lister[T] // the management cache
	// known, when set, says whether the source knows yet whether the object exists: nil, or an error
	// saying why not (an object read per object whose watch has not answered yet, see objectWatches). Such
	// a key is left alone until its watch queues it again. Unset: a synced source knows every object.
	known func(namespace, name string) error
	// sources are the keys of the management objects of this kind the source holds in a namespace ("" for
	// every namespace), for resyncs.
	sources func(namespace string) []string
	copy    lister[T] // the workload caches of this node's copies (register)
	// copies are the keys of this node's copies the workload caches hold in a namespace ("" for every
	// namespace), for resyncs.
	copies func(namespace string) []string
	// copiesKnown says whether the workload caches know which copies a namespace holds: nil, or an error
	// saying why not (see copyInformers.known). Unset: always.
	copiesKnown func(namespace string) error
	workload    func(namespace string) client[T]
	// management is the client of the management objects (kinds whose status comes back).
	management func(namespace string) client[T]
	// wanted says whether something on this node needs the management object in the workload cluster.
	wanted func(src T) bool
	// follows, when set, says whether the management object may follow at all, whatever wants it.
	follows func(src T) bool
	// notice, when set, is a Warning Event (reason, message) a wanted management object gets about its
	// copy, once per distinct message; "" for none.
	notice func(src T) (reason, message string)
	// build is the copy the workload cluster should hold (copies.go).
	build func(src T) T
	// recreateOnInvalid: an apply the workload apiserver rejects as invalid (an immutable ConfigMap or
	// Secret whose source changed) is resolved by deleting the copy so the next sync creates it anew.
	recreateOnInvalid bool
	// lb reads an object's status.loadBalancer.ingress; nil for kinds whose status does not come back.
	lb func(obj T) []corev1.LoadBalancerIngress
	// lbStatus is the status part of an apply body carrying the given load-balancer list.
	lbStatus func(list []corev1.LoadBalancerIngress) map[string]any
	// after runs after each sync of a key, e.g. to queue the Ingresses that route to a Service.
	after func(namespace, name string)

	mu sync.Mutex
	// applied remembers the hash last applied per key until the copy reaches the cache, so a sync in between
	// does not write the same content again.
	applied map[string]string
	// reported remembers per key and reason the problem last reported as an Event, so that one problem
	// makes one Event, and a different one (another foreign object, another message) a new one.
	reported map[string]map[string]string
}

func newKind[T object](f *Followers, name string) *kind[T] {
	return &kind[T]{
		f:    f,
		name: name,
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(
			workqueue.NewTypedItemExponentialFailureRateLimiter[string](100*time.Millisecond, 2*time.Minute),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: "follow-" + strings.ToLower(name)}),
		applied:  map[string]string{},
		reported: map[string]map[string]string{},
	}
}

// register reads the kind's copies with c, one workload namespace at a time: informer is the kind's informer
// of a namespace's factory, whose events copyEvents handles, and the extra handlers too.
func (k *kind[T]) register(c *copyInformers, informer func(informers.SharedInformerFactory) cache.SharedIndexInformer, extra ...cache.ResourceEventHandler) {
	n := c.register(informer, append([]cache.ResourceEventHandler{k.copyEvents()}, extra...)...)
	k.copy = copiesOf[T](c, n)
	k.copies = func(namespace string) []string { return c.keys(n, namespace) }
	k.copiesKnown = c.known
}

// enqueue queues the key of a management or workload object (or a tombstone of one).
func (k *kind[T]) enqueue(obj any) {
	key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj)
	if err == nil {
		k.queue.Add(key)
	}
}

func (k *kind[T]) enqueueKey(namespace, name string) { k.queue.Add(namespace + "/" + name) }

// resync queues every object of this kind that either cluster holds, at once: also those waiting out the
// backoff of a failure.
func (k *kind[T]) resync() {
	for _, key := range slices.Concat(k.sources(""), k.copies("")) {
		k.queue.Add(key)
	}
}

// resyncNamespace queues the objects of this kind that either cluster's cache holds in the namespace.
func (k *kind[T]) resyncNamespace(namespace string) {
	for _, key := range slices.Concat(k.sources(namespace), k.copies(namespace)) {
		k.queue.Add(key)
	}
}

// indexerKeys lists the keys an informer's cache holds in a namespace ("" for all): the sources of a kind
// read with a cluster-wide informer.
func indexerKeys(store cache.Indexer) func(namespace string) []string {
	return func(namespace string) []string {
		if namespace == "" {
			return store.ListKeys()
		}
		keys, _ := store.IndexKeys(cache.NamespaceIndex, namespace)
		return keys
	}
}

// copyEvents are the handlers of the workload informer of this kind: a copy changed (its status), went
// (deleted by someone), or was there when flotilla started (and may be an orphan).
func (k *kind[T]) copyEvents() cache.ResourceEventHandler {
	return cache.ResourceEventHandlerFuncs{
		AddFunc:    k.enqueue,
		UpdateFunc: func(_, obj any) { k.enqueue(obj) },
		DeleteFunc: func(obj any) {
			if key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
				k.mu.Lock()
				delete(k.applied, key)
				k.mu.Unlock()
				k.queue.Add(key)
			}
		},
	}
}

// run works the queue until ctx ends.
func (k *kind[T]) run(ctx context.Context, workers int) {
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() { wait.UntilWithContext(ctx, k.work, time.Second) })
	}
	<-ctx.Done()
	k.queue.ShutDown()
	wg.Wait()
}

func (k *kind[T]) work(ctx context.Context) {
	for {
		key, quit := k.queue.Get()
		if quit {
			return
		}
		err := k.sync(ctx, key)
		switch {
		case err == nil:
			k.f.cfg.Metrics.FollowSettled(k.name, key)
			k.queue.Forget(key)
		case ctx.Err() != nil:
		case isUnknownCopies(err):
			// The workload namespace's copies are not in the cache yet (its informers start or sync): looked
			// at again soon, and at once when they have synced.
			logrus.WithField("key", key).Debugf("follow %s: %v", k.name, err)
			k.queue.AddRateLimited(key)
		case decision(err):
			// Reported as an Event already; only a change somewhere ends it, and a change of what flotilla
			// watches queues the key anyway. Looked at again now and then for what it does not watch. A
			// failure that came with it (publishing load-balancer addresses, say) is not a decision: the key
			// then backs off as for any failure.
			logrus.WithField("key", key).Debugf("follow %s: %v", k.name, err)
			k.queue.Forget(key)
			k.queue.AddAfter(key, decisionRetry)
		default:
			logrus.WithField("key", key).Warnf("follow %s: %v", k.name, err)
			k.queue.AddRateLimited(key)
		}
		k.queue.Done(key)
	}
}

// decisionRetry is how long a copy that was decided against (a foreign object of its name, a forbidden
// namespace, the workload apiserver's refusal) waits before it is tried again.
const decisionRetry = 30 * time.Second

// decision says whether err is a decision against a copy rather than a failure that time may cure. Errors
// joined together (errors.Join) are a decision only when each of them is one.
func decision(err error) bool {
	for err != nil {
		switch e := err.(type) {
		case *ConflictError, *RefusedCopyError, *UnsupportedReferenceError, *tenancy.RefusedError:
			return true
		case interface{ Unwrap() []error }:
			parts := e.Unwrap()
			for _, p := range parts {
				if !decision(p) {
					return false
				}
			}
			return len(parts) > 0
		case interface{ Unwrap() error }:
			err = e.Unwrap()
		default:
			return false
		}
	}
	return false
}

// sync brings the workload copy of one management object, and for kinds whose status comes back this node's
// published load-balancer addresses and the management object's status, in line with the caches.
func (k *kind[T]) sync(ctx context.Context, key string) error {
	namespace, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return nil
	}
	if k.known != nil {
		if err := k.known(namespace, name); err != nil {
			// Neither there nor missing yet: its watch queues the key once it has answered.
			logrus.WithField("key", key).Debugf("follow %s: %v", k.name, err)
			return nil
		}
	}
	if k.copiesKnown != nil {
		if err := k.copiesKnown(namespace); err != nil {
			// Whether this node holds a copy is not known: neither copy, remove nor publish anything.
			return err
		}
	}
	src, haveSource := k.source(namespace, name)
	if haveSource && !k.f.namespaceKnown(namespace) {
		// Whether the namespace's proxies count is not known yet: neither copy nor remove anything.
		return fmt.Errorf("management namespace %s is not in flotilla's cache yet", namespace)
	}
	cp, haveCopy := k.copy(namespace, name)
	want := haveSource && src.GetDeletionTimestamp() == nil && k.wanted(src) && (k.follows == nil || k.follows(src))
	switch {
	case want:
		k.notify(src)
		cp, haveCopy, err = k.ensure(ctx, src, cp, haveCopy)
	case haveCopy:
		err = k.remove(ctx, cp)
		haveCopy = false
	default:
		k.forget(key)
	}
	if k.lb != nil {
		var own []corev1.LoadBalancerIngress
		if haveCopy {
			own = k.lb(cp)
		}
		if perr := k.f.lbs.set(ctx, LBKey(k.name, namespace, name), own); perr != nil {
			err = errors.Join(err, perr)
		}
		if haveSource {
			err = errors.Join(err, k.syncStatus(ctx, src))
		}
	}
	if k.after != nil {
		k.after(namespace, name)
	}
	return err
}

// notify records the kind's notice about src, once per distinct message.
func (k *kind[T]) notify(src T) {
	if k.notice == nil {
		return
	}
	reason, message := k.notice(src)
	key := src.GetNamespace() + "/" + src.GetName()
	if message == "" {
		k.clear(key, reason)
		return
	}
	k.report(src, reason, message, message)
}

// ensure makes the workload copy of src current, creating it if need be. It never touches an object of the
// same name that this node does not own: that is a *ConflictError, reported once as an Event on src. It
// returns the copy as last seen. A write is a span (tracing.SpanFollow) under ctx's: a proxy's sync's, when
// a delegate needs src.
func (k *kind[T]) ensure(ctx context.Context, src T, cp T, haveCopy bool) (_ T, _ bool, err error) {
	key := src.GetNamespace() + "/" + src.GetName()
	if k.follows != nil && !k.follows(src) {
		return cp, haveCopy, &UnsupportedReferenceError{Reason: ReasonUnsupportedReference, Kind: k.name,
			Namespace: src.GetNamespace(), Name: src.GetName(),
			Message: fmt.Sprintf("%s %s never follows to a workload cluster", strings.ToLower(k.name), key)}
	}
	built := k.build(src)
	_, hash, err := applyBody(built, "")
	if err != nil {
		return cp, haveCopy, err
	}
	if haveCopy && cp.GetAnnotations()[AnnotationSourceHash] == hash {
		return cp, true, nil
	}
	k.mu.Lock()
	justApplied := k.applied[key] == hash
	k.mu.Unlock()
	if !haveCopy && justApplied {
		return cp, false, nil // written a moment ago; the cache has not caught up
	}
	ctx, span := tracing.Start(ctx, tracing.SpanFollow, tracing.ObjectAttributes(k.name, src)...)
	defer func() { tracing.End(span, err) }()
	workload := k.workload(src.GetNamespace())
	if !haveCopy {
		// Not among this node's copies: free, or someone else's. Ask the apiserver, not a cache, in a
		// namespace flotilla may use (and read).
		if err := k.prepare(ctx, src); err != nil {
			return cp, false, err
		}
		live, err := k.getFresh(ctx, workload, src.GetName())
		switch {
		case apierrors.IsNotFound(err):
			return k.create(ctx, src, built, hash)
		case err != nil:
			return cp, false, err
		case !k.f.owns(live):
			return cp, false, k.conflict(src, live)
		case live.GetAnnotations()[AnnotationSourceHash] == hash:
			k.clear(key, ReasonNameConflict)
			return live, true, nil
		default:
			cp, haveCopy = live, true
		}
	}
	k.clear(key, ReasonNameConflict)
	out, err := k.apply(ctx, src, built, cp.GetUID())
	if apierrors.IsInvalid(err) || apierrors.IsConflict(err) {
		// Either the uid precondition failed (Invalid: an object of another uid holds the name, and
		// metadata.uid cannot change; Conflict: no object holds it) or the copy itself is invalid. The live
		// object tells which.
		live, gerr := workload.Get(ctx, src.GetName(), metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(gerr):
			return cp, false, fmt.Errorf("%s %s went from the workload cluster while it was being applied; it is created anew", k.name, key)
		case gerr != nil:
			return cp, haveCopy, errors.Join(err, gerr)
		case !k.f.owns(live):
			return cp, false, k.conflict(src, live)
		case live.GetUID() != cp.GetUID():
			// Another copy of this node took the name since this one was cached (a concurrent sync created
			// it anew): that one is kept current instead.
			cp = live
			out, err = k.apply(ctx, src, built, live.GetUID())
		}
	}
	if apierrors.IsInvalid(err) && k.recreateOnInvalid {
		// An immutable ConfigMap or Secret whose source changed: the copy goes, and the next sync creates it
		// anew.
		if derr := k.remove(ctx, cp); derr != nil {
			return cp, haveCopy, errors.Join(err, derr)
		}
		return cp, false, fmt.Errorf("%s %s rejected by the workload cluster, deleted to be created anew: %w", k.name, key, err)
	}
	if err != nil {
		return cp, haveCopy, k.refusal(src, err, "applying")
	}
	k.wrote(key, hash)
	return out, true, nil
}

// prepare makes src's workload namespace one the tenancy gate allows (creating it when missing) and that
// flotilla may read, before a copy is looked for there or created: a *tenancy.RefusedError, reported once as
// an Event on src, for a namespace flotilla may not use.
func (k *kind[T]) prepare(ctx context.Context, src T) error {
	key := src.GetNamespace() + "/" + src.GetName()
	if err := k.f.cfg.Namespaces.Ensure(ctx, src.GetNamespace()); err != nil {
		if r, ok := tenancy.IsRefused(err); ok {
			k.report(src, r.Reason, r.Message, r.Message)
			return err
		}
		return fmt.Errorf("preparing namespace %s in the workload cluster: %w", src.GetNamespace(), err)
	}
	k.clear(key, tenancy.ReasonWorkloadNamespaceForbidden)
	// The namespace exists now, and flotilla may use it; until the namespace watch shows it and its copies
	// are in the cache, which copies it holds is not known (a sync must not take a copy made now for
	// missing).
	k.f.copyInformers.expect(src.GetNamespace())
	return nil
}

// getFresh reads the workload object of that name right after prepare: a read the workload apiserver
// refuses is tried again for a moment, since the read flotilla has just granted itself there
// (EnsureReadable) may not have reached the apiserver's authorizer yet.
func (k *kind[T]) getFresh(ctx context.Context, workload client[T], name string) (T, error) {
	var live T
	var err error
	deadline := time.Now().Add(grantWait)
	for delay := 20 * time.Millisecond; ; delay = min(2*delay, 500*time.Millisecond) {
		live, err = workload.Get(ctx, name, metav1.GetOptions{})
		if !apierrors.IsForbidden(err) || time.Now().Add(delay).After(deadline) {
			return live, err
		}
		select {
		case <-ctx.Done():
			return live, err
		case <-time.After(delay):
		}
	}
}

// grantWait bounds how long getFresh waits for a fresh grant of the read to take effect.
const grantWait = 3 * time.Second

// create makes the copy of src where none exists, in a namespace prepare made ready, with Create, which fails
// when the name was taken meanwhile; that object is then either one of this node's copies (made by a
// concurrent sync), kept as such, or someone else's, left alone.
func (k *kind[T]) create(ctx context.Context, src T, built T, hash string) (T, bool, error) {
	var none T
	key := src.GetNamespace() + "/" + src.GetName()
	annotations := maps.Clone(built.GetAnnotations())
	if annotations == nil {
		annotations = map[string]string{}
	}
	annotations[AnnotationSourceHash] = hash
	built.SetAnnotations(annotations)
	workload := k.workload(src.GetNamespace())
	out, err := workload.Create(ctx, built, metav1.CreateOptions{FieldManager: FieldManager})
	if apierrors.IsAlreadyExists(err) {
		live, gerr := workload.Get(ctx, src.GetName(), metav1.GetOptions{})
		switch {
		case gerr != nil:
			return none, false, fmt.Errorf("%s %s was created meanwhile in the workload cluster, and reading it failed: %w", k.name, key, gerr)
		case !k.f.owns(live):
			return none, false, k.conflict(src, live)
		default: // a concurrent sync of this node created it: keep it current like any other copy
			return k.ensure(ctx, src, live, true)
		}
	}
	if err != nil {
		return none, false, k.refusal(src, err, "creating")
	}
	k.wrote(key, hash)
	// From now on the copy is kept by server-side apply. The fields Create set are handed to it (adopt) only
	// when the source first changes (apply): most copies never change, and a write per copy at its creation
	// was half of what following cost the workload apiserver.
	return out, true, nil
}

// apply server-side applies built over the copy with the given UID (a precondition: an object that took the
// copy's name since makes it fail as Invalid, metadata.uid being immutable; a copy that is gone, as a
// Conflict). When the copy still shows fields set by Create (its first change since), they are handed over
// and the apply repeated, so that fields the source lost are removed.
func (k *kind[T]) apply(ctx context.Context, src T, built T, uid types.UID) (T, error) {
	body, _, err := applyBody(built, uid)
	if err != nil {
		var none T
		return none, err
	}
	workload := k.workload(src.GetNamespace())
	opts := metav1.PatchOptions{FieldManager: FieldManager, Force: new(true)}
	out, err := workload.Patch(ctx, src.GetName(), types.ApplyPatchType, body, opts)
	if err == nil && createdFields(out) {
		if _, err = k.adopt(ctx, out); err == nil {
			out, err = workload.Patch(ctx, src.GetName(), types.ApplyPatchType, body, opts)
		}
	}
	return out, err
}

// adopt hands the fields of a copy that Create set (field manager FieldManager, operation Update) to
// FieldManager's server-side apply, with the copy's resourceVersion as precondition; a copy changed meanwhile
// (a workload controller adding a finalizer, say) is read again, a few times, provided it is still the same
// copy.
func (k *kind[T]) adopt(ctx context.Context, cp T) (T, error) {
	workload := k.workload(cp.GetNamespace())
	for attempt := 0; ; attempt++ {
		patch, err := csaupgrade.UpgradeManagedFieldsPatch(cp, sets.New(FieldManager), FieldManager)
		if err != nil || patch == nil {
			return cp, err
		}
		out, err := workload.Patch(ctx, cp.GetName(), types.JSONPatchType, patch, metav1.PatchOptions{FieldManager: FieldManager})
		if !apierrors.IsConflict(err) || attempt == 2 {
			return out, err
		}
		live, gerr := workload.Get(ctx, cp.GetName(), metav1.GetOptions{})
		if gerr != nil {
			return cp, gerr
		}
		if live.GetUID() != cp.GetUID() {
			return cp, err
		}
		cp = live
	}
}

// createdFields says whether FieldManager owns fields of obj through an Update (Create) rather than Apply.
func createdFields(obj metav1.Object) bool {
	for _, m := range obj.GetManagedFields() {
		if m.Manager == FieldManager && m.Operation == metav1.ManagedFieldsOperationUpdate && m.Subresource == "" {
			return true
		}
	}
	return false
}

// refusal is the error of a failed write of src's copy: the workload apiserver's decision (quota,
// admission, validation) is a *RefusedCopyError, reported once per distinct message as an Event on src;
// anything else is returned as a failure.
func (k *kind[T]) refusal(src T, err error, doing string) error {
	key := src.GetNamespace() + "/" + src.GetName()
	if !apierrors.IsForbidden(err) && !apierrors.IsInvalid(err) && !apierrors.IsBadRequest(err) && !apierrors.IsRequestEntityTooLargeError(err) {
		return fmt.Errorf("%s %s %s in the workload cluster: %w", doing, k.name, key, err)
	}
	e := &RefusedCopyError{Reason: ReasonRefused, Kind: k.name, Namespace: src.GetNamespace(), Name: src.GetName(),
		NodeName: k.f.cfg.NodeName, Err: err}
	k.report(src, ReasonRefused, err.Error(), e.Error())
	return e
}

// wrote notes a successful write of the copy with the given content hash: the problems it had are over.
func (k *kind[T]) wrote(key, hash string) {
	k.mu.Lock()
	k.applied[key] = hash
	k.mu.Unlock()
	k.f.cfg.Metrics.FollowWritten(k.name, key)
	k.clear(key, ReasonRefused, tenancy.ReasonWorkloadNamespaceForbidden)
}

// remove deletes exactly the copy cp (a UID precondition spares an object that took its name since).
func (k *kind[T]) remove(ctx context.Context, cp T) error {
	k.forget(cp.GetNamespace() + "/" + cp.GetName())
	err := k.workload(cp.GetNamespace()).Delete(ctx, cp.GetName(), metav1.DeleteOptions{
		Preconditions: metav1.NewUIDPreconditions(string(cp.GetUID())),
	})
	if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("deleting %s %s/%s in the workload cluster: %w", k.name, cp.GetNamespace(), cp.GetName(), err)
	}
	return nil
}

func (k *kind[T]) forget(key string) {
	k.mu.Lock()
	delete(k.applied, key)
	delete(k.reported, key)
	k.mu.Unlock()
}

// conflict reports a foreign object holding the name of src's copy: an Event on src the first time, and
// always a *ConflictError.
func (k *kind[T]) conflict(src T, live T) error {
	e := &ConflictError{Reason: ReasonNameConflict, Kind: k.name, Namespace: src.GetNamespace(), Name: src.GetName(),
		NodeName: k.f.cfg.NodeName}
	k.report(src, ReasonNameConflict, string(live.GetUID()), e.Error())
	return e
}

// report records a Warning Event on src, unless the same problem (reason and signature) was the last one of
// that reason reported for it.
func (k *kind[T]) report(src T, reason, signature, message string) {
	key := src.GetNamespace() + "/" + src.GetName()
	k.mu.Lock()
	last, seen := k.reported[key][reason]
	if !seen || last != signature {
		if k.reported[key] == nil {
			k.reported[key] = map[string]string{}
		}
		k.reported[key][reason] = signature
	}
	k.mu.Unlock()
	if (!seen || last != signature) && k.f.cfg.EventRecorder != nil {
		k.f.cfg.EventRecorder.Event(src, corev1.EventTypeWarning, reason, message)
	}
}

// clear forgets the problems of the given reasons reported for key: they are over, and their return is news.
func (k *kind[T]) clear(key string, reasons ...string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	for _, r := range reasons {
		delete(k.reported[key], r)
	}
	if len(k.reported[key]) == 0 {
		delete(k.reported, key)
	}
}

// syncStatus writes src's status as the union of every virtual node's published list when it differs. While
// no node publishes anything for src, its status is flotilla's to clear only if some node published for it
// earlier in this process's life (as node events showed it); otherwise it is left alone, so flotilla does not
// fight a load-balancer controller of the management cluster itself. That is decided from what this process
// saw on the virtual nodes, which only flotillas write, never from anything on the management object
// (annotations, managedFields), which whoever may edit it can forge.
func (k *kind[T]) syncStatus(ctx context.Context, src T) error {
	lbKey := LBKey(k.name, src.GetNamespace(), src.GetName())
	mark, wasPublished := k.f.lbs.published(lbKey) // read before the union: a later mark is news
	union := k.f.lbs.union(lbKey)
	if len(union) == 0 && !wasPublished {
		return nil
	}
	if !sameLB(union, k.lb(src)) {
		body := map[string]any{
			"metadata": map[string]any{"name": src.GetName(), "namespace": src.GetNamespace(), "uid": string(src.GetUID())},
			"status":   k.lbStatus(union),
		}
		if err := k.applyManagement(ctx, src, body, "status"); err != nil {
			return fmt.Errorf("writing the load-balancer status of %s %s/%s: %w", k.name, src.GetNamespace(), src.GetName(), err)
		}
	}
	if len(union) == 0 {
		// Cleared: from now on the status is flotilla's again only once a node publishes for src.
		k.f.lbs.forgetPublished(lbKey, mark)
	}
	return nil
}

// applyManagement server-side applies body (metadata and status parts) to the management object src.
func (k *kind[T]) applyManagement(ctx context.Context, src T, body map[string]any, subresource string) error {
	gvk := typeOf(src)
	body["apiVersion"], body["kind"] = gvk.apiVersion, gvk.kind
	data, err := json.Marshal(body)
	if err != nil {
		return err
	}
	var sub []string
	if subresource != "" {
		sub = []string{subresource}
	}
	_, err = k.management(src.GetNamespace()).Patch(ctx, src.GetName(), types.ApplyPatchType, data,
		metav1.PatchOptions{FieldManager: FieldManager, Force: new(true)}, sub...)
	// With Force, a failed uid precondition is all that makes it Invalid on metadata.uid (another object
	// holds the name) or a Conflict (none does).
	if apierrors.IsNotFound(err) || apierrors.IsConflict(err) || uidMismatch(err) {
		return nil // the object is gone (or replaced); its events bring the next sync
	}
	return err
}

// uidMismatch says whether err is the apiserver's refusal of a write whose metadata.uid is not the stored
// object's (a uid precondition in a server-side apply body).
func uidMismatch(err error) bool {
	var status apierrors.APIStatus
	if !apierrors.IsInvalid(err) || !errors.As(err, &status) || status.Status().Details == nil {
		return false
	}
	for _, c := range status.Status().Details.Causes {
		if c.Field == "metadata.uid" {
			return true
		}
	}
	return false
}

type apiType struct{ apiVersion, kind string }

// typeOf is the apiVersion and kind of a followed object (informer caches drop TypeMeta).
func typeOf(obj runtime.Object) apiType {
	switch obj.(type) {
	case *corev1.ConfigMap:
		return apiType{"v1", KindConfigMap}
	case *corev1.Secret:
		return apiType{"v1", KindSecret}
	case *corev1.Service:
		return apiType{"v1", "Service"}
	default:
		return apiType{"networking.k8s.io/v1", "Ingress"}
	}
}

// applyBody is the server-side apply body of a copy (a typed object with its TypeMeta set) and the hash of
// its content, which the body carries as AnnotationSourceHash. Status and the empty creation timestamp are
// left out: they are not flotilla's to set.
//
// A uid, when given, goes into the body after hashing: the apply then fails unless the object still is the
// copy flotilla saw, so an object that took the copy's name since is never applied over. The apiserver
// (v0.35) answers 422 Invalid ("metadata.uid: field is immutable") when another object holds the name, and
// 409 Conflict only when none does.
func applyBody(obj runtime.Object, uid types.UID) (body []byte, hash string, err error) {
	u, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	if err != nil {
		return nil, "", err
	}
	delete(u, "status")
	meta, _ := u["metadata"].(map[string]any)
	if meta == nil {
		return nil, "", fmt.Errorf("object without metadata")
	}
	delete(meta, "creationTimestamp")
	content, err := json.Marshal(u)
	if err != nil {
		return nil, "", err
	}
	sum := sha256.Sum256(content)
	hash = hex.EncodeToString(sum[:12])
	annotations, _ := meta["annotations"].(map[string]any)
	if annotations == nil {
		annotations = map[string]any{}
		meta["annotations"] = annotations
	}
	annotations[AnnotationSourceHash] = hash
	if uid != "" {
		meta["uid"] = string(uid)
	}
	body, err = json.Marshal(u)
	return body, hash, err
}

// isUnknownCopies says whether err says a workload namespace's copies are not known yet.
func isUnknownCopies(err error) bool {
	var u *unknownCopiesError
	return errors.As(err, &u)
}
