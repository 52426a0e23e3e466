package node

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"syscall"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"
)

func TestTransient(t *testing.T) {
	dial := func(errno syscall.Errno) error {
		return &url.Error{Op: "Patch", URL: "https://127.0.0.1:6443/api/v1/nodes/x/status",
			Err: &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", errno)}}
	}
	nodes := schema.GroupResource{Resource: "nodes"}
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"connection refused (apiserver down)", dial(syscall.ECONNREFUSED), true},
		{"connection reset (apiserver killed mid-request)", dial(syscall.ECONNRESET), true},
		{"unexpected EOF", fmt.Errorf("reading body: %w", io.ErrUnexpectedEOF), true},
		{"503", apierrors.NewServiceUnavailable("starting"), true},
		{"429", apierrors.NewTooManyRequests("slow down", 1), true},
		{"500", apierrors.NewInternalError(errors.New("etcd")), true},
		{"server timeout", apierrors.NewServerTimeout(nodes, "patch", 1), true},
		{"not found: virtual-kubelet creates the node", apierrors.NewNotFound(nodes, "x"), false},
		{"forbidden", apierrors.NewForbidden(nodes, "x", errors.New("no")), false},
		{"conflict: virtual-kubelet reads again itself", apierrors.NewConflict(nodes, "x", errors.New("changed")), false},
		{"cancelled", context.Canceled, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := transient(tt.err); got != tt.want {
				t.Errorf("transient(%v) = %t, want %t", tt.err, got, tt.want)
			}
		})
	}
}

// failingNodes answers Get with err the first failures times, then with a node.
type failingNodes struct {
	corev1client.NodeInterface
	failures, calls int
	err             error
}

func (f *failingNodes) Get(context.Context, string, metav1.GetOptions) (*corev1.Node, error) {
	f.calls++
	if f.calls <= f.failures {
		return nil, f.err
	}
	return &corev1.Node{}, nil
}

func TestRegistrationClientRetriesUntilRegistered(t *testing.T) {
	refused := &url.Error{Op: "Get", URL: "https://127.0.0.1:6443", Err: &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}}
	registered := make(chan struct{})
	nodes := &failingNodes{failures: 2, err: refused}
	if _, err := RegistrationClient(nodes, registered).Get(context.Background(), "x", metav1.GetOptions{}); err != nil || nodes.calls != 3 {
		t.Fatalf("before registration: %v after %d calls, want success after 3", err, nodes.calls)
	}
	close(registered)
	nodes = &failingNodes{failures: 2, err: refused}
	if _, err := RegistrationClient(nodes, registered).Get(context.Background(), "x", metav1.GetOptions{}); err == nil || nodes.calls != 1 {
		t.Fatalf("after registration: %v after %d calls, want the first error", err, nodes.calls)
	}
	nodes = &failingNodes{failures: 2, err: apierrors.NewForbidden(schema.GroupResource{Resource: "nodes"}, "x", errors.New("no"))}
	if _, err := RegistrationClient(nodes, make(chan struct{})).Get(context.Background(), "x", metav1.GetOptions{}); err == nil || nodes.calls != 1 {
		t.Fatalf("a lasting error: %v after %d calls, want it at once", err, nodes.calls)
	}
}
