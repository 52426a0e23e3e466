package follow

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"strings"
	"sync"
	"time"

	"github.com/sirupsen/logrus"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
)

// This file is the one mechanism every followed kind shares: a rate-limited work queue of management object
// keys, and a sync that makes the workload copy match what the management side wants (the object exists and
// something on this node needs it) and, for kinds whose status comes back, publishes the copy's load-balancer
// addresses and writes their union to the management object. kinds.go parameterises it per kind.

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

	source     lister[T]              // the management cache
	copy       lister[T]              // the workload cache of this node's copies
	synced     []cache.InformerSynced // what must be synced before the queue is worked
	stores     []cache.Store          // the management and workload caches of this kind, for resync
	workload   func(namespace string) client[T]
	management func(namespace string) client[T]
	// wanted says whether something on this node needs the management object in the workload cluster.
	wanted func(src T) bool
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
	// conflicts remembers the foreign object last reported per key, so one conflict makes one Event.
	conflicts map[string]types.UID
}

func newKind[T object](f *Followers, name string) *kind[T] {
	return &kind[T]{
		f:    f,
		name: name,
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(
			workqueue.NewTypedItemExponentialFailureRateLimiter[string](100*time.Millisecond, 2*time.Minute),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: "follow-" + strings.ToLower(name)}),
		applied:   map[string]string{},
		conflicts: map[string]types.UID{},
	}
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
	for _, store := range k.stores {
		for _, key := range store.ListKeys() {
			k.queue.Add(key)
		}
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
			k.queue.Forget(key)
		case ctx.Err() != nil:
		default:
			var conflict *ConflictError
			if errors.As(err, &conflict) {
				logrus.WithField("key", key).Debugf("follow %s: %v", k.name, err)
			} else {
				logrus.WithField("key", key).Warnf("follow %s: %v", k.name, err)
			}
			k.queue.AddRateLimited(key)
		}
		k.queue.Done(key)
	}
}

// sync brings the workload copy of one management object, and for kinds whose status comes back the
// management object's load-balancer status, in line with the caches.
func (k *kind[T]) sync(ctx context.Context, key string) error {
	namespace, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return nil
	}
	src, haveSource := k.source(namespace, name)
	cp, haveCopy := k.copy(namespace, name)
	want := haveSource && src.GetDeletionTimestamp() == nil && k.wanted(src)
	switch {
	case want:
		cp, haveCopy, err = k.ensure(ctx, src, cp, haveCopy)
	case haveCopy:
		err = k.remove(ctx, cp)
		haveCopy = false
	default:
		k.forget(key)
	}
	if k.lb != nil && haveSource {
		var own []corev1.LoadBalancerIngress
		if haveCopy {
			own = k.lb(cp)
		}
		err = errors.Join(err, k.syncStatus(ctx, src, own))
	}
	if k.after != nil {
		k.after(namespace, name)
	}
	return err
}

// ensure makes the workload copy of src current, creating it (and its namespace) if need be. It never
// touches an object of the same name that this node does not own: that is a *ConflictError, reported once
// as an Event on src. It returns the copy as last seen.
func (k *kind[T]) ensure(ctx context.Context, src T, cp T, haveCopy bool) (T, bool, error) {
	key := src.GetNamespace() + "/" + src.GetName()
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
		return cp, false, nil // applied a moment ago; the cache has not caught up
	}
	workload := k.workload(src.GetNamespace())
	if !haveCopy {
		// Not among this node's copies: free, or someone else's. Ask the apiserver, not a cache.
		live, err := workload.Get(ctx, src.GetName(), metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
		case err != nil:
			return cp, false, err
		case !k.f.owns(live):
			return cp, false, k.conflict(src, live)
		case live.GetAnnotations()[AnnotationSourceHash] == hash:
			return live, true, nil
		default:
			cp, haveCopy = live, true
		}
	}
	k.resolved(key)
	var uid types.UID
	if haveCopy {
		uid = cp.GetUID()
	}
	body, _, err := applyBody(built, uid)
	if err != nil {
		return cp, haveCopy, err
	}
	opts := metav1.PatchOptions{FieldManager: FieldManager, Force: new(true)}
	out, err := workload.Patch(ctx, src.GetName(), types.ApplyPatchType, body, opts)
	if apierrors.IsNotFound(err) {
		// The namespace does not exist in the workload cluster yet.
		if err = k.f.ensureNamespace(ctx, src.GetNamespace()); err == nil {
			out, err = workload.Patch(ctx, src.GetName(), types.ApplyPatchType, body, opts)
		}
	}
	if apierrors.IsInvalid(err) && k.recreateOnInvalid && haveCopy {
		if derr := k.remove(ctx, cp); derr != nil {
			return cp, haveCopy, errors.Join(err, derr)
		}
		return cp, false, fmt.Errorf("%s %s rejected by the workload cluster, deleted to be created anew: %w", k.name, key, err)
	}
	if err != nil {
		return cp, haveCopy, fmt.Errorf("applying %s %s in the workload cluster: %w", k.name, key, err)
	}
	k.mu.Lock()
	k.applied[key] = hash
	k.mu.Unlock()
	return out, true, nil
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
	delete(k.conflicts, key)
	k.mu.Unlock()
}

// conflict reports a foreign object holding the name of src's copy: an Event on src the first time, and
// always a *ConflictError.
func (k *kind[T]) conflict(src T, live T) error {
	key := src.GetNamespace() + "/" + src.GetName()
	e := &ConflictError{Reason: ReasonNameConflict, Kind: k.name, Namespace: src.GetNamespace(), Name: src.GetName(),
		NodeName: k.f.cfg.NodeName}
	k.mu.Lock()
	reported, seen := k.conflicts[key]
	report := !seen || reported != live.GetUID()
	k.conflicts[key] = live.GetUID()
	k.mu.Unlock()
	if report && k.f.cfg.EventRecorder != nil {
		k.f.cfg.EventRecorder.Event(src, corev1.EventTypeWarning, ReasonNameConflict, e.Error())
	}
	return e
}

func (k *kind[T]) resolved(key string) {
	k.mu.Lock()
	delete(k.conflicts, key)
	k.mu.Unlock()
}

// syncStatus publishes this node's copy's load-balancer list (own) on the management object src, and writes
// src's status as the union of every node's published list when it differs. A status flotilla never wrote
// is left alone while no node publishes anything, so flotilla does not fight a load-balancer controller of
// the management cluster itself.
func (k *kind[T]) syncStatus(ctx context.Context, src T, own []corev1.LoadBalancerIngress) error {
	annotations := maps.Clone(src.GetAnnotations())
	if annotations == nil {
		annotations = map[string]string{}
	}
	value := EncodeLB(own)
	current, published := annotations[k.f.lbKey]
	if value != current || (value == "" && published) {
		meta := map[string]any{"name": src.GetName(), "namespace": src.GetNamespace(), "uid": string(src.GetUID())}
		if value != "" {
			meta["annotations"] = map[string]any{k.f.lbKey: value}
			annotations[k.f.lbKey] = value
		} else {
			delete(annotations, k.f.lbKey)
		}
		if err := k.applyManagement(ctx, src, map[string]any{"metadata": meta}, k.f.lbManager, ""); err != nil {
			return fmt.Errorf("publishing the load-balancer addresses of %s %s/%s: %w", k.name, src.GetNamespace(), src.GetName(), err)
		}
	}
	union := UnionLB(annotations)
	if sameLB(union, k.lb(src)) || (len(union) == 0 && !wroteStatus(src)) {
		return nil
	}
	body := map[string]any{
		"metadata": map[string]any{"name": src.GetName(), "namespace": src.GetNamespace(), "uid": string(src.GetUID())},
		"status":   k.lbStatus(union),
	}
	if err := k.applyManagement(ctx, src, body, FieldManager, "status"); err != nil {
		return fmt.Errorf("writing the load-balancer status of %s %s/%s: %w", k.name, src.GetNamespace(), src.GetName(), err)
	}
	return nil
}

// applyManagement server-side applies body (metadata and status parts) to the management object src.
func (k *kind[T]) applyManagement(ctx context.Context, src T, body map[string]any, manager, subresource string) error {
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
		metav1.PatchOptions{FieldManager: manager, Force: new(true)}, sub...)
	// With Force, a conflict can only be the uid precondition.
	if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
		return nil // the object is gone (or replaced); its events bring the next sync
	}
	return err
}

// wroteStatus says whether flotilla's field manager owns part of the object's status.
func wroteStatus(obj metav1.Object) bool {
	for _, m := range obj.GetManagedFields() {
		if m.Manager == FieldManager && m.Subresource == "status" {
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
// A uid, when given, goes into the body after hashing: the apply then fails with a conflict unless the
// object still is the copy flotilla saw, so an object that took the copy's name since is never applied over.
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
