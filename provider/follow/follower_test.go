package follow

import (
	"errors"
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"

	"github.com/flotilla-io/flotilla/tenancy"
)

// TestResyncQueuesBothCaches: a resync queues every object either cluster's cache holds, each key once, so a
// copy whose source is gone is looked at as well as a source without a copy.
func TestResyncQueuesBothCaches(t *testing.T) {
	k := newKind[*corev1.ConfigMap](nil, KindConfigMap)
	defer k.queue.ShutDown()
	source, copies := cache.NewStore(cache.MetaNamespaceKeyFunc), cache.NewStore(cache.MetaNamespaceKeyFunc)
	add := func(s cache.Store, ns, name string) {
		if err := s.Add(&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}); err != nil {
			t.Fatal(err)
		}
	}
	add(source, "a", "both")
	add(copies, "a", "both")
	add(source, "a", "source-only")
	add(copies, "b", "copy-only")
	k.stores = []cache.Store{source, copies}

	k.resync()
	var queued []string
	for k.queue.Len() > 0 {
		key, _ := k.queue.Get()
		queued = append(queued, key)
		k.queue.Done(key)
	}
	slices.Sort(queued)
	if want := []string{"a/both", "a/source-only", "b/copy-only"}; !slices.Equal(queued, want) {
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
		{name: "joined with a failure", err: errors.Join(errors.New("timeout"), &ConflictError{}), want: true},
		{name: "a bare apiserver error is not classified here", err: forbidden},
		{name: "a timeout", err: apierrors.NewTimeoutError("slow", 1)},
		{name: "a changed copy (uid precondition)", err: apierrors.NewConflict(corev1.Resource("configmaps"), "app", errors.New("uid"))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := decision(tt.err); got != tt.want {
				t.Errorf("decision(%v) = %v, want %v", tt.err, got, tt.want)
			}
		})
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
