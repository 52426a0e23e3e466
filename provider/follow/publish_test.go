package follow

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
	corev1listers "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
)

// TestPublisher drives the publisher against a fake clientset and a hand-fed node cache: what it keeps on its
// own node, the union it reads from all nodes, and the objects it queues when a node changes or goes.
func TestPublisher(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	node := func(name, published string) *corev1.Node {
		n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}}
		if published != "" {
			n.Annotations = map[string]string{AnnotationLoadBalancers: published}
		}
		return n
	}
	own := node("eu-west-3-1", `{"Service/shop/gone":[{"ip":"10.0.0.9"}],"Service/shop/web":[{"ip":"10.0.3.1"}]}`)
	peer := node("us-west-2-0", `{"Service/shop/web":[{"ip":"10.0.1.1"}]}`)
	client := fake.NewClientset(own.DeepCopy(), peer.DeepCopy())
	store := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{})
	for _, n := range []*corev1.Node{own, peer} {
		if err := store.Add(n); err != nil {
			t.Fatal(err)
		}
	}
	p := newPublisher(own.Name, corev1listers.NewNodeLister(store), client.CoreV1().Nodes())
	published := func() string {
		n, err := client.CoreV1().Nodes().Get(ctx, own.Name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return n.Annotations[AnnotationLoadBalancers]
	}
	eventually := func(what, want string) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for published() != want {
			if time.Now().After(deadline) {
				t.Fatalf("%s: node publishes %s, want %s", what, published(), want)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}

	if err := p.set(ctx, "Service/shop/web", nil); err == nil {
		t.Error("set before start: want an error, nothing is known yet")
	}
	// On start, the entry of an object that has no copy any more goes.
	p.start(func(key string) bool { return key == "Service/shop/web" })
	done := make(chan struct{})
	go func() { p.run(ctx); close(done) }()
	eventually("after start", `{"Service/shop/web":[{"ip":"10.0.3.1"}]}`)

	// The union is read from every node in the cache, this one included.
	if got := EncodeLB(p.union("Service/shop/web")); got != `[{"ip":"10.0.1.1"},{"ip":"10.0.3.1"}]` {
		t.Errorf("union = %s", got)
	}
	if got := p.union("Service/shop/other"); got != nil {
		t.Errorf("union of an object nobody publishes for = %v", got)
	}

	// set writes at once, and only what changed.
	if err := p.set(ctx, "Ingress/shop/site", []corev1.LoadBalancerIngress{{Hostname: "lb.example.com"}}); err != nil {
		t.Fatal(err)
	}
	want := `{"Ingress/shop/site":[{"hostname":"lb.example.com"}],"Service/shop/web":[{"ip":"10.0.3.1"}]}`
	if got := published(); got != want {
		t.Fatalf("after set: %s, want %s", got, want)
	}
	writes := len(client.Actions())
	if err := p.set(ctx, "Service/shop/web", []corev1.LoadBalancerIngress{{IP: "10.0.3.1"}}); err != nil {
		t.Fatal(err)
	}
	if err := p.set(ctx, "Service/shop/unrelated", nil); err != nil {
		t.Fatal(err)
	}
	if n := len(client.Actions()) - writes; n != 0 {
		t.Errorf("%d requests for nothing new", n)
	}

	// The node is deleted and registered again, without the annotation: it is written again.
	var mu sync.Mutex
	var queued []string
	handler := p.nodeEvents(func(key string) {
		mu.Lock()
		defer mu.Unlock()
		queued = append(queued, key)
	})
	if err := client.CoreV1().Nodes().Delete(ctx, own.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := client.CoreV1().Nodes().Create(ctx, node(own.Name, ""), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	handler.OnAdd(node(own.Name, ""), false)
	eventually("after re-registration", want)

	// A peer's changed, new and removed entries queue their objects; so does every entry of a peer that goes.
	handler.OnUpdate(peer, node(peer.Name, `{"Service/shop/web":[{"ip":"10.0.1.2"}],"Service/shop/api":[{"ip":"10.0.1.3"}]}`))
	handler.OnDelete(cache.DeletedFinalStateUnknown{Key: peer.Name, Obj: node(peer.Name, `{"Ingress/shop/site":[{"ip":"10.0.1.4"}]}`)})
	mu.Lock()
	got := slices.Clone(queued)
	mu.Unlock()
	if want := []string{"Service/shop/api", "Service/shop/web", "Ingress/shop/site"}; !slices.Equal(got, want) {
		t.Errorf("queued %v, want %v", got, want)
	}

	// Everything gone: no annotation at all.
	for _, key := range []string{"Service/shop/web", "Ingress/shop/site"} {
		if err := p.set(ctx, key, nil); err != nil {
			t.Fatal(err)
		}
	}
	if n, _ := client.CoreV1().Nodes().Get(ctx, own.Name, metav1.GetOptions{}); n.Annotations != nil {
		if _, ok := n.Annotations[AnnotationLoadBalancers]; ok {
			t.Errorf("annotation left: %v", n.Annotations)
		}
	}

	// A node that is not registered is an error the caller retries.
	if err := client.CoreV1().Nodes().Delete(ctx, own.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := p.set(ctx, "Service/shop/web", []corev1.LoadBalancerIngress{{IP: "10.0.3.1"}}); err == nil || !strings.Contains(err.Error(), "not registered") {
		t.Errorf("set on a missing node = %v, want an error saying so", err)
	}
	cancel()
	<-done
}
