package provider

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// At most one incarnation: virtual-kubelet's removal of a terminated proxy (a delete with the proxy's UID as
// precondition) is held until the delegate is gone from the workload cluster, unless the cluster was
// declared lost; a delete without a precondition (a user's) is not flotilla's to hold.
func TestProxyRemovalWaitsForDelegate(t *testing.T) {
	h := newHarness(t)
	h.setUpWorkloadNamespace()
	guarded := h.p.PodControllerClient(h.flotillaMgmt.CoreV1())
	remove := func(name string, uid *metav1.Preconditions) error {
		opts := metav1.NewDeleteOptions(0)
		opts.Preconditions = uid
		return guarded.Pods(h.ns).Delete(h.ctx, name, *opts)
	}

	proxy := h.bind(h.newProxy("db-0"))
	d := h.createDelegate(proxy, nil)
	if err := remove(proxy.Name, metav1.NewUIDPreconditions(string(proxy.UID))); !errors.Is(err, ErrDelegateNotGone) {
		t.Fatalf("removal with the delegate still there: %v, want ErrDelegateNotGone", err)
	}
	if h.managementPod(proxy) == nil {
		t.Fatal("the proxy was removed while its delegate exists")
	}
	// The held removal started the delegate's deletion (virtual-kubelet never asks for it for a proxy
	// deleted while Pending), gracefully: the delegate is terminating, or its kubelet already confirmed it.
	if live := h.workloadPod(h.ns, d.Name); live != nil {
		if live.DeletionTimestamp == nil {
			t.Fatal("the delegate's deletion was not started")
		}
		// Its kubelet (kwok) may confirm it between the read and this delete.
		if err := h.workload.CoreV1().Pods(h.ns).Delete(h.ctx, d.Name, *metav1.NewDeleteOptions(0)); err != nil && !apierrors.IsNotFound(err) {
			t.Fatal(err)
		}
	}
	if err := remove(proxy.Name, metav1.NewUIDPreconditions(string(proxy.UID))); err != nil {
		t.Fatalf("removal once the delegate is gone: %v", err)
	}
	if h.managementPod(proxy) != nil {
		t.Error("the proxy is still there once its delegate is gone")
	}

	lost := h.bind(h.newProxy("db-1"))
	h.createDelegate(lost, nil)
	h.lost.Store(true)
	if err := remove(lost.Name, metav1.NewUIDPreconditions(string(lost.UID))); err != nil {
		t.Fatalf("removal on a lost cluster: %v", err)
	}
	h.lost.Store(false)

	plain := h.bind(h.newProxy("db-2"))
	h.createDelegate(plain, nil)
	if err := remove(plain.Name, nil); err != nil {
		t.Fatalf("a delete without a UID precondition: %v", err)
	}
}

func TestRetryHeldRemovals(t *testing.T) {
	fallbackCalled := false
	retry := RetryHeldRemovals(func(_ context.Context, _ string, _ int, _ time.Time, _ error) (*time.Duration, error) {
		fallbackCalled = true
		return nil, errors.New("gave up")
	})
	after, err := retry(context.Background(), "k", 1000, time.Now(), fmt.Errorf("wrapped: %w", ErrDelegateNotGone))
	if err != nil || after == nil || *after != RemovalRetry || fallbackCalled {
		t.Errorf("a held removal: retry after %v, %v (fallback called %v), want after %v with no limit", after, err, fallbackCalled, RemovalRetry)
	}
	if _, err := retry(context.Background(), "k", 1, time.Now(), errors.New("other")); err == nil || !fallbackCalled {
		t.Errorf("another failure goes to the fallback: %v, called %v", err, fallbackCalled)
	}
}
