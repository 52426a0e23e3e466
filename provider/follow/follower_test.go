package follow

import (
	"errors"
	"fmt"
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"

	"github.com/flotilla-io/flotilla/tenancy"
)

// TestResyncQueuesBothCaches: a resync queues every object either cluster's cache holds, each key once, so a
// copy whose source is gone is looked at as well as a source without a copy.
func TestResyncQueuesBothCaches(t *testing.T) {
	k := newKind[*corev1.ConfigMap](nil, KindConfigMap)
	defer k.queue.ShutDown()
	source, copies := namespaceIndexer(), namespaceIndexer()
	add := func(s cache.Store, ns, name string) {
		if err := s.Add(&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}); err != nil {
			t.Fatal(err)
		}
	}
	add(source, "a", "both")
	add(copies, "a", "both")
	add(source, "a", "source-only")
	add(copies, "b", "copy-only")
	k.sources, k.copies = indexerKeys(source), indexerKeys(copies)

	k.resync()
	if queued, want := drain(k), []string{"a/both", "a/source-only", "b/copy-only"}; !slices.Equal(queued, want) {
		t.Errorf("queued %v, want %v", queued, want)
	}
}

func namespaceIndexer() cache.Indexer {
	return cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})
}

// drain empties the kind's queue and returns what it held, sorted.
func drain[T object](k *kind[T]) []string {
	var queued []string
	for k.queue.Len() > 0 {
		key, _ := k.queue.Get()
		queued = append(queued, key)
		k.queue.Done(key)
	}
	slices.Sort(queued)
	return queued
}

// TestResyncNamespace: a namespace's change queues that namespace's objects of both caches.
func TestResyncNamespace(t *testing.T) {
	k := newKind[*corev1.ConfigMap](nil, KindConfigMap)
	defer k.queue.ShutDown()
	source, copies := namespaceIndexer(), namespaceIndexer()
	for _, o := range []struct {
		s        cache.Indexer
		ns, name string
	}{{source, "a", "source"}, {copies, "a", "copy-only"}, {source, "b", "source"}, {copies, "b", "copy"}} {
		if err := o.s.Add(&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: o.ns, Name: o.name}}); err != nil {
			t.Fatal(err)
		}
	}
	k.sources, k.copies = indexerKeys(source), indexerKeys(copies)
	k.resyncNamespace("a")
	if queued, want := drain(k), []string{"a/copy-only", "a/source"}; !slices.Equal(queued, want) {
		t.Errorf("queued %v, want %v", queued, want)
	}
}

// TestDecision: what only a change ends waits decisionRetry; what time may cure backs off from 100 ms.
func TestDecision(t *testing.T) {
	forbidden := apierrors.NewForbidden(corev1.Resource("configmaps"), "app", errors.New("exceeded quota"))
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{name: "a foreign object of the copy's name", err: &ConflictError{}, want: true},
		{name: "the workload apiserver's refusal", err: &RefusedCopyError{Err: forbidden}, want: true},
		{name: "a forbidden workload namespace", err: &tenancy.RefusedError{Reason: tenancy.ReasonWorkloadNamespaceForbidden}, want: true},
		{name: "an object that never follows", err: &UnsupportedReferenceError{}, want: true},
		{name: "wrapped", err: fmt.Errorf("syncing: %w", &ConflictError{}), want: true},
		{name: "joined decisions", err: errors.Join(&ConflictError{}, &tenancy.RefusedError{}), want: true},
		// A failure that came with a decision (publishing the load-balancer addresses) backs off as
		// failures do instead of waiting decisionRetry.
		{name: "joined with a failure", err: errors.Join(&ConflictError{}, errors.New("writing the load-balancer addresses on node x: timeout"))},
		{name: "joined with a failure, wrapped", err: fmt.Errorf("x: %w", errors.Join(errors.New("timeout"), &ConflictError{}))},
		{name: "joined with nothing", err: errors.Join(&ConflictError{}, nil), want: true},
		{name: "a bare apiserver error is not classified here", err: forbidden},
		{name: "a timeout", err: apierrors.NewTimeoutError("slow", 1)},
		{name: "a failed uid precondition (another object holds the name)", err: uidInvalid()},
		{name: "a failed uid precondition (no object holds the name)", err: apierrors.NewConflict(corev1.Resource("configmaps"), "app", errors.New("uid"))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := decision(tt.err); got != tt.want {
				t.Errorf("decision(%v) = %v, want %v", tt.err, got, tt.want)
			}
		})
	}
}

// uidInvalid is the apiserver's answer to a write whose metadata.uid is not the stored object's (v0.35).
func uidInvalid() error {
	return apierrors.NewInvalid(schema.GroupKind{Kind: "ConfigMap"}, "app", field.ErrorList{
		field.Invalid(field.NewPath("metadata", "uid"), "2b1c", "field is immutable")})
}

func TestUIDMismatch(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{name: "another object holds the name", err: uidInvalid(), want: true},
		{name: "wrapped", err: fmt.Errorf("writing: %w", uidInvalid()), want: true},
		{name: "another field is invalid", err: apierrors.NewInvalid(schema.GroupKind{Kind: "Service"}, "web", field.ErrorList{
			field.Invalid(field.NewPath("status", "loadBalancer", "ingress").Index(0).Child("ip"), "x", "must be a valid IP address")})},
		{name: "no object holds the name", err: apierrors.NewConflict(corev1.Resource("services"), "web", errors.New("uid"))},
		{name: "no error"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := uidMismatch(tt.err); got != tt.want {
				t.Errorf("uidMismatch(%v) = %v, want %v", tt.err, got, tt.want)
			}
		})
	}
}

// TestDelegated: what tells a proxy that has (had) a delegate, and so counts whatever its namespace says.
func TestDelegated(t *testing.T) {
	started := metav1.Now()
	tests := []struct {
		name   string
		status corev1.PodStatus
		want   bool
	}{
		{name: "new (the apiserver's status of a created pod)", status: corev1.PodStatus{Phase: corev1.PodPending, QOSClass: corev1.PodQOSBestEffort}},
		{name: "waiting with a reason", status: corev1.PodStatus{Phase: corev1.PodPending, Reason: tenancy.ReasonNamespaceNotEnabled, HostIP: "10.0.0.1"}},
		{name: "deleted without a delegate (terminated status)", status: corev1.PodStatus{Phase: corev1.PodFailed}},
		{name: "taken up by the workload kubelet", status: corev1.PodStatus{Phase: corev1.PodPending, StartTime: &started}, want: true},
		{name: "running", status: corev1.PodStatus{Phase: corev1.PodRunning, StartTime: &started}, want: true},
		{name: "ended", status: corev1.PodStatus{Phase: corev1.PodSucceeded, StartTime: &started}, want: true},
		{name: "lost its delegate", status: corev1.PodStatus{Phase: corev1.PodFailed, Reason: "DeletedInWorkloadCluster", StartTime: &started}, want: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := delegated(&corev1.Pod{Status: tt.status}); got != tt.want {
				t.Errorf("delegated = %v, want %v", got, tt.want)
			}
		})
	}
}

// TestPublishedMarks: a key is flotilla's to clear once a node event showed an entry for it, until its
// status was cleared; an event after the read that led to the clearing keeps it.
func TestPublishedMarks(t *testing.T) {
	p := newPublisher("n", nil, nil)
	defer p.republish.ShutDown()
	var queued []string
	h := p.nodeEvents(func(key string) { queued = append(queued, key) })
	node := func(name, value string) *corev1.Node {
		n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}}
		if value != "" {
			n.Annotations = map[string]string{AnnotationLoadBalancers: value}
		}
		return n
	}
	const web, api = "Service/shop/web", "Service/shop/api"
	if _, ok := p.published(web); ok {
		t.Fatal("a key nothing published is marked")
	}
	h.OnAdd(node("peer", `{"Service/shop/web":[{"ip":"10.0.0.1"}]}`), false)
	mark, ok := p.published(web)
	if !ok {
		t.Fatal("a key a node publishes is not marked")
	}
	// Unrelated updates (heartbeats) mark nothing again.
	h.OnUpdate(node("peer", `{"Service/shop/web":[{"ip":"10.0.0.1"}]}`), node("peer", `{"Service/shop/web":[{"ip":"10.0.0.1"}]}`))
	if again, _ := p.published(web); again != mark {
		t.Errorf("an unchanged entry was marked again")
	}
	// The entry goes: still marked, so that the status flotilla wrote is cleared.
	h.OnUpdate(node("peer", `{"Service/shop/web":[{"ip":"10.0.0.1"}]}`), node("peer", `{"Service/shop/api":[{"ip":"10.0.0.2"}]}`))
	mark, ok = p.published(web)
	if _, apiOK := p.published(api); !ok || !apiOK {
		t.Fatalf("marks after the change: web %v, api %v", ok, apiOK)
	}
	// A node event between the read and the clearing keeps the mark.
	h.OnDelete(node("peer", `{"Service/shop/web":[{"ip":"10.0.0.1"}]}`))
	p.forgetPublished(web, mark)
	if _, ok := p.published(web); !ok {
		t.Error("a mark renewed after the read was forgotten")
	}
	mark, _ = p.published(web)
	p.forgetPublished(web, mark)
	if _, ok := p.published(web); ok {
		t.Error("a cleared key stays marked")
	}
	if want := []string{web, api, web, web}; !slices.Equal(queued, want) {
		t.Errorf("queued %v, want %v", queued, want)
	}
}

// TestReportOncePerProblem: one Event per distinct problem and reason; a problem that ended and comes back
// is news.
func TestReportOncePerProblem(t *testing.T) {
	recorder := record.NewFakeRecorder(10)
	k := newKind[*corev1.ConfigMap](&Followers{cfg: Config{EventRecorder: recorder}}, KindConfigMap)
	defer k.queue.ShutDown()
	src := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "app"}}
	k.report(src, ReasonNameConflict, "uid-1", "taken")
	k.report(src, ReasonNameConflict, "uid-1", "taken")       // the same foreign object
	k.report(src, ReasonRefused, "quota", "refused: quota")   // another reason, at the same time
	k.report(src, ReasonNameConflict, "uid-1", "taken")       // still the same
	k.report(src, ReasonNameConflict, "uid-2", "taken again") // another foreign object
	k.clear("shop/app", ReasonRefused)                        // a write went through
	k.report(src, ReasonRefused, "quota", "refused: quota")   // and the quota bites again
	k.forget("shop/app")                                      // no longer wanted
	k.report(src, ReasonNameConflict, "uid-2", "taken again")
	var got []string
	for len(recorder.Events) > 0 {
		got = append(got, <-recorder.Events)
	}
	want := []string{
		"Warning NameConflict taken", "Warning Refused refused: quota", "Warning NameConflict taken again",
		"Warning Refused refused: quota", "Warning NameConflict taken again",
	}
	if !slices.Equal(got, want) {
		t.Errorf("events =\n  %q\nwant\n  %q", got, want)
	}
}

func TestCreatedFields(t *testing.T) {
	entry := func(manager string, op metav1.ManagedFieldsOperationType, sub string) metav1.ManagedFieldsEntry {
		return metav1.ManagedFieldsEntry{Manager: manager, Operation: op, Subresource: sub}
	}
	tests := []struct {
		name    string
		entries []metav1.ManagedFieldsEntry
		want    bool
	}{
		{name: "applied only", entries: []metav1.ManagedFieldsEntry{entry(FieldManager, metav1.ManagedFieldsOperationApply, "")}},
		{name: "created by flotilla", entries: []metav1.ManagedFieldsEntry{entry(FieldManager, metav1.ManagedFieldsOperationUpdate, "")}, want: true},
		{name: "someone else's update", entries: []metav1.ManagedFieldsEntry{entry("kubectl", metav1.ManagedFieldsOperationUpdate, "")}},
		{name: "a status update", entries: []metav1.ManagedFieldsEntry{entry(FieldManager, metav1.ManagedFieldsOperationUpdate, "status")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			obj := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{ManagedFields: tt.entries}}
			if got := createdFields(obj); got != tt.want {
				t.Errorf("createdFields = %v, want %v", got, tt.want)
			}
		})
	}
}
