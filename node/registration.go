package node

import (
	"context"
	"errors"
	"io"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	utilnet "k8s.io/apimachinery/pkg/util/net"
	"k8s.io/apimachinery/pkg/util/wait"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/util/retry"
)

// RegistrationClient is the Nodes client to give virtual-kubelet's node controller. Until registered is
// closed (the node controller has registered the node), its Get, Patch and Create ride out an apiserver that
// is restarting or briefly unreachable, retrying with backoff for a few minutes, as a kubelet keeps trying to
// register: virtual-kubelet's node controller ends at its first failed registration, and flotilla with it.
// Afterwards calls pass straight through: the node controller's loop logs a failed status update and tries
// again at its next tick.
func RegistrationClient(nodes corev1client.NodeInterface, registered <-chan struct{}) corev1client.NodeInterface {
	return &registration{NodeInterface: nodes, registered: registered}
}

type registration struct {
	corev1client.NodeInterface
	registered <-chan struct{}
}

// registrationBackoff is about four minutes in all: longer than a control plane takes to restart.
var registrationBackoff = wait.Backoff{Duration: 500 * time.Millisecond, Factor: 2, Cap: 30 * time.Second, Steps: 12, Jitter: 0.1}

func (r *registration) call(ctx context.Context, do func() error) error {
	select {
	case <-r.registered:
		return do()
	default:
	}
	return retry.OnError(registrationBackoff, func(err error) bool { return ctx.Err() == nil && transient(err) }, do)
}

func (r *registration) Get(ctx context.Context, name string, opts metav1.GetOptions) (*corev1.Node, error) {
	var n *corev1.Node
	err := r.call(ctx, func() (err error) {
		n, err = r.NodeInterface.Get(ctx, name, opts)
		return err
	})
	return n, err
}

func (r *registration) Create(ctx context.Context, node *corev1.Node, opts metav1.CreateOptions) (*corev1.Node, error) {
	var n *corev1.Node
	err := r.call(ctx, func() (err error) {
		n, err = r.NodeInterface.Create(ctx, node, opts)
		return err
	})
	return n, err
}

func (r *registration) Patch(ctx context.Context, name string, pt types.PatchType, data []byte, opts metav1.PatchOptions, subresources ...string) (*corev1.Node, error) {
	var n *corev1.Node
	err := r.call(ctx, func() (err error) {
		n, err = r.NodeInterface.Patch(ctx, name, pt, data, opts, subresources...)
		return err
	})
	return n, err
}

// transient says whether a request failed for a reason that passes with time: an apiserver refusing or
// dropping connections (restarting), timing out, or answering that it is overloaded or broken for now. A
// conflict is not: virtual-kubelet retries those itself, reading the node again.
func transient(err error) bool {
	return utilnet.IsConnectionRefused(err) || utilnet.IsConnectionReset(err) || utilnet.IsProbableEOF(err) ||
		errors.Is(err, io.ErrUnexpectedEOF) || utilnet.IsTimeout(err) ||
		apierrors.IsServerTimeout(err) || apierrors.IsTimeout(err) || apierrors.IsTooManyRequests(err) ||
		apierrors.IsInternalError(err) || apierrors.IsServiceUnavailable(err)
}
