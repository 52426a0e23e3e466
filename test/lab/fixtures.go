package lab

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"

	"github.com/flotilla-io/flotilla/tenancy"
)

// Fixtures for tests that run flotilla's parts in-process against a lab, rather than flotilla processes.

var sequence atomic.Int64

var notLabel = regexp.MustCompile(`[^a-z0-9]+`)

// UniqueName is a DNS label unique to this test binary and run: prefix, a readable part of the test's
// name, a sequence number and the clock.
func UniqueName(prefix, testName string) string {
	part := strings.Trim(notLabel.ReplaceAllString(strings.ToLower(testName), "-"), "-")
	if len(part) > 30 {
		part = strings.Trim(part[:30], "-")
	}
	if part != "" {
		part += "-"
	}
	return fmt.Sprintf("%s-%s%d-%d", prefix, part, sequence.Add(1), time.Now().UnixNano()%100000)
}

// Poll waits up to limit for cond, failing the test with cond's last error if it never holds.
func Poll(t testing.TB, limit time.Duration, what string, cond func() (bool, error)) {
	t.Helper()
	var last error
	err := wait.PollUntilContextTimeout(context.Background(), 50*time.Millisecond, limit, true, func(context.Context) (bool, error) {
		ok, err := cond()
		last = err
		return ok, nil
	})
	if err != nil {
		t.Fatalf("waiting for %s: %v (last error: %v)", what, err, last)
	}
}

// Namespace creates a management namespace for the test, enabled for delegation (tenancy.LabelEnabled),
// waits for its default ServiceAccount (which admission requires before pods), and deletes it when the
// test ends.
func Namespace(t testing.TB, c kubernetes.Interface, name string) {
	t.Helper()
	ctx := context.Background()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{tenancy.LabelEnabled: "true"}}}
	if _, err := c.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating namespace %s: %v", name, err)
	}
	t.Cleanup(func() { DeleteNamespace(c, name) })
	Poll(t, 30*time.Second, "the default ServiceAccount of "+name, func() (bool, error) {
		_, err := c.CoreV1().ServiceAccounts(name).Get(ctx, "default", metav1.GetOptions{})
		return err == nil, nil
	})
}

// DeleteNamespace removes a test's namespace. Pods bound to a node without a kubelet have nobody to
// confirm their deletion, so they are removed at once first.
func DeleteNamespace(c kubernetes.Interface, name string) {
	ctx := context.Background()
	_ = c.CoreV1().Pods(name).DeleteCollection(ctx, metav1.DeleteOptions{GracePeriodSeconds: new(int64(0))}, metav1.ListOptions{})
	_ = c.CoreV1().Namespaces().Delete(ctx, name, metav1.DeleteOptions{})
}

// WaitNamespaceGone returns once the namespace is gone, so that the cluster has finished the work of its
// deletion.
func WaitNamespaceGone(ctx context.Context, c kubernetes.Interface, name string) error {
	return wait.PollUntilContextTimeout(ctx, time.Second, 10*time.Minute, true, func(ctx context.Context) (bool, error) {
		_, err := c.CoreV1().Namespaces().Get(ctx, name, metav1.GetOptions{})
		return apierrors.IsNotFound(err), nil
	})
}

// StandInNode registers a Ready node and renews its Lease until the test ends, as virtual-kubelet's node
// controller would, so the cluster's controllers neither collect the pods bound to it (pod GC of a missing
// node) nor evict them (node lifecycle).
func StandInNode(t testing.TB, c kubernetes.Interface, name string, labels map[string]string, taints []corev1.Taint) {
	t.Helper()
	ctx := context.Background()
	now := metav1.Now()
	pods := corev1.ResourceList{corev1.ResourcePods: resource.MustParse("110")}
	n := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels},
		Spec:       corev1.NodeSpec{Taints: taints},
		Status: corev1.NodeStatus{
			Capacity: pods, Allocatable: pods,
			Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "StandIn",
				LastHeartbeatTime: now, LastTransitionTime: now}},
		},
	}
	if _, err := c.CoreV1().Nodes().Create(ctx, n, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.CoreV1().Nodes().Delete(context.Background(), name, metav1.DeleteOptions{}) })
	leases := c.CoordinationV1().Leases(corev1.NamespaceNodeLease)
	lease, err := leases.Create(ctx, &coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec:       coordinationv1.LeaseSpec{HolderIdentity: new(name), LeaseDurationSeconds: new(int32(40)), RenewTime: &metav1.MicroTime{Time: time.Now()}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	renewing, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	t.Cleanup(func() {
		stop()
		<-done
		_ = leases.Delete(context.Background(), name, metav1.DeleteOptions{})
	})
	go func() {
		defer close(done)
		wait.UntilWithContext(renewing, func(ctx context.Context) {
			lease.Spec.RenewTime = &metav1.MicroTime{Time: time.Now()}
			if l, err := leases.Update(ctx, lease, metav1.UpdateOptions{}); err == nil {
				lease = l
			} else if l, err := leases.Get(ctx, name, metav1.GetOptions{}); err == nil {
				lease = l
			}
		}, 5*time.Second)
	}()
}
