package follow

import (
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"
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
