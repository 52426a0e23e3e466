package follow

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/cache"

	"github.com/flotilla-io/flotilla/tenancy"
)

// TestCopyInformers: a workload namespace flotilla may use gets informers of its own once the read there is
// granted (retried while it fails); until they have synced its copies are not known, and neither are those of
// a namespace a sync has just prepared that the namespace watch has not shown yet; a namespace flotilla may not
// use, or that does not exist, holds none. When a namespace goes, or stops being usable, its informers stop and
// the copies they held are handed to the delete handlers.
func TestCopyInformers(t *testing.T) {
	owner := map[string]string{tenancy.LabelManagement: "m1", tenancy.LabelNode: "vn"}
	ns := func(name string, labels map[string]string) *corev1.Namespace {
		return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}
	}
	cm := func(namespace, name string) *corev1.ConfigMap {
		return &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name, Labels: owner}}
	}
	client := fake.NewClientset(
		ns("owned", map[string]string{tenancy.LabelManagement: "m1"}),
		ns("opened", map[string]string{tenancy.LabelOpen: "true"}),
		ns("theirs", map[string]string{tenancy.LabelManagement: "m2"}),
		cm("owned", "a"), cm("opened", "b"), cm("theirs", "c"),
	)
	var refusals atomic.Int32
	refusals.Store(2)
	var mu sync.Mutex
	var prepared, synced []string
	var deleted []string
	c, err := newCopyInformers(client, "flotilla.io/management=m1,flotilla.io/node=vn", 0,
		func(n *corev1.Namespace) bool {
			access, _ := tenancy.Decide(n.Name, n, "m1")
			return access != tenancy.Forbidden && n.DeletionTimestamp == nil
		},
		func(_ context.Context, namespace string) error {
			if namespace == "opened" && refusals.Add(-1) >= 0 {
				return errors.New("refused")
			}
			mu.Lock()
			prepared = append(prepared, namespace)
			mu.Unlock()
			return nil
		},
		func(namespace string) { mu.Lock(); synced = append(synced, namespace); mu.Unlock() })
	if err != nil {
		t.Fatal(err)
	}
	kind := c.register(func(f informers.SharedInformerFactory) cache.SharedIndexInformer {
		return f.Core().V1().ConfigMaps().Informer()
	},
		cache.ResourceEventHandlerFuncs{DeleteFunc: func(obj any) {
			key, _ := cache.DeletionHandlingMetaNamespaceKeyFunc(obj)
			mu.Lock()
			deleted = append(deleted, key)
			mu.Unlock()
		}})
	copies := copiesOf[*corev1.ConfigMap](c, kind)
	if c.known("owned") == nil {
		t.Error("copies known before the namespaces were listed")
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { c.run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		if err := wait.PollUntilContextTimeout(ctx, 10*time.Millisecond, 10*time.Second, true, func(context.Context) (bool, error) { return cond(), nil }); err != nil {
			t.Fatalf("waiting for %s: %v", what, err)
		}
	}
	waitFor("the owned namespace's copies", func() bool { _, ok := copies("owned", "a"); return ok && c.known("owned") == nil })

	// The opened namespace's read is refused twice: its copies are not known meanwhile, and say why.
	var unknown *unknownCopiesError
	if err := c.known("opened"); !errors.As(err, &unknown) {
		t.Errorf("known(opened) = %v while the read is refused", err)
	}
	waitFor("the opened namespace's copies", func() bool { _, ok := copies("opened", "b"); return ok && c.known("opened") == nil })
	if refusals.Load() >= 0 {
		t.Error("the opened namespace's informers started before the read was granted")
	}
	// Another management cluster's namespace, and one that does not exist, hold no copy of this node's.
	for _, n := range []string{"theirs", "nowhere"} {
		if err := c.known(n); err != nil {
			t.Errorf("known(%s) = %v", n, err)
		}
	}
	if _, ok := copies("theirs", "c"); ok {
		t.Error("a copy read in a namespace flotilla may not use")
	}
	mu.Lock()
	if len(prepared) != 2 || len(synced) != 2 {
		t.Errorf("prepared %v, synced %v; want owned and opened once each", prepared, synced)
	}
	mu.Unlock()
	if keys := c.keys(kind, ""); len(keys) != 2 {
		t.Errorf("keys = %v", keys)
	}

	// A namespace a sync has just prepared is not known until the namespace watch shows it and its
	// informers have synced.
	c.expect("fresh")
	if err := c.known("fresh"); !errors.As(err, &unknown) {
		t.Errorf("known(fresh) = %v before the namespace watch showed it", err)
	}
	if _, err := client.CoreV1().Namespaces().Create(ctx, ns("fresh", map[string]string{tenancy.LabelManagement: "m1"}), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor("the fresh namespace's copies to be known", func() bool { return c.known("fresh") == nil })

	// The opened namespace is closed again: its informers stop, and its copy is handed to the delete
	// handler. The owned one is deleted: the same.
	if _, err := client.CoreV1().Namespaces().Update(ctx, ns("opened", nil), metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := client.CoreV1().Namespaces().Delete(ctx, "owned", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor("both namespaces' copies let go", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(deleted) == 2
	})
	for _, n := range []string{"opened", "owned"} {
		if err := c.known(n); err != nil {
			t.Errorf("known(%s) = %v once it is gone", n, err)
		}
	}
	if _, ok := copies("opened", "b"); ok {
		t.Error("a copy of a namespace flotilla may no longer use is still held")
	}
}
