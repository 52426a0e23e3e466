package tenancy

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"
	corev1listers "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/util/retry"
)

// RefusedError says tenancy keeps flotilla from using a workload namespace or ServiceAccount; Reason is
// the one to show on the proxy.
type RefusedError struct {
	Reason  string // ReasonWorkloadNamespaceForbidden or ReasonNameConflict
	Message string
}

func (e *RefusedError) Error() string { return e.Message }

// IsRefused returns the RefusedError in err's chain, if any.
func IsRefused(err error) (*RefusedError, bool) {
	var r *RefusedError
	ok := errors.As(err, &r)
	return r, ok
}

// Namespaces applies the rules of this package for one management cluster in one workload cluster. The
// provider (delegates) and the followers (copies) share one.
type Namespaces struct {
	// Workload is flotilla's client of the workload cluster.
	Workload kubernetes.Interface
	// Management lists the management cluster's namespaces (an informer's lister, started by the caller).
	Management corev1listers.NamespaceLister
	// ManagementID is this management cluster's identity (the flotilla.io/management label value).
	ManagementID string
	// Level is the least Pod Security level enforced in namespaces flotilla creates (--pod-security-level).
	Level string
	// Node is this flotilla's virtual node, and Reader its identity in the workload cluster: when Reader
	// is set, flotilla grants it NamespaceReaderRole in each namespace it uses (EnsureReadable). Without it,
	// flotilla's identity must read those namespaces by other grants.
	Node   string
	Reader *rbacv1.Subject
	// Cache, when set and started, answers the reads Ensure and EnsureServiceAccount make before each
	// delegate; nil reads every time from the apiserver.
	Cache *WorkloadCache

	mu       sync.Mutex
	readable map[string]bool
}

// Enabled reports whether the management namespace of that name takes part in delegation. A namespace the
// cache does not hold (deleted, or not synced yet) does not.
func (n *Namespaces) Enabled(name string) bool {
	enabled, _ := n.Lookup(name)
	return enabled
}

// Lookup is Enabled for a caller that must tell "not enabled" from "not known": known is false when the
// cache does not hold the namespace. A pod's namespace exists while the pod does, so for a pod's namespace
// that means the cache has not caught up yet (it is starting), and the caller should look again later rather
// than act on the answer.
func (n *Namespaces) Lookup(name string) (enabled, known bool) {
	ns, err := n.Management.Get(name)
	if err != nil {
		return false, false
	}
	return Enabled(ns), true
}

// Ensure makes the workload namespace of that name one flotilla may use: it creates it when missing and
// keeps the Pod Security level of one it created current. It returns a *RefusedError when the rules forbid
// the namespace, and the apiserver's error when a request fails.
func (n *Namespaces) Ensure(ctx context.Context, name string) error {
	var management *corev1.Namespace
	if ns, err := n.Management.Get(name); err == nil {
		management = ns
	}
	level := WorkloadLevel(n.Level, management)
	namespaces := n.Workload.CoreV1().Namespaces()
	// Only a namespace usable as it is may come from the cache; every write starts from the apiserver's.
	ready := func(ns *corev1.Namespace) bool {
		access, _ := Decide(name, ns, n.ManagementID)
		return ns.DeletionTimestamp == nil && (access == Opened || access == Owned && levelCurrent(ns, level))
	}
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		existing, err := n.workloadNamespace(ctx, name, ready)
		if err != nil {
			return fmt.Errorf("reading namespace %s in the workload cluster: %w", name, err)
		}
		access, why := Decide(name, existing, n.ManagementID)
		switch {
		case access == Forbidden:
			return &RefusedError{Reason: ReasonWorkloadNamespaceForbidden, Message: why}
		case existing != nil && existing.DeletionTimestamp != nil:
			// Nothing can be created in it; once it is gone it is created anew.
			return fmt.Errorf("namespace %s is being deleted in the workload cluster; waiting to use it again once it is gone", name)
		}
		switch access {
		case Create:
			_, err := namespaces.Create(ctx, Desired(name, n.ManagementID, level), metav1.CreateOptions{})
			if apierrors.IsAlreadyExists(err) {
				return apierrors.NewConflict(corev1.Resource("namespaces"), name, err) // created meanwhile: decide again
			}
			if err != nil {
				return err
			}
		case Owned:
			if !levelCurrent(existing, level) {
				updated := existing.DeepCopy()
				withLevel(updated.Labels, level)
				if _, err := namespaces.Update(ctx, updated, metav1.UpdateOptions{}); err != nil {
					return err
				}
			}
		default: // Opened: the admin's Pod Security labels stand
		}
		return n.EnsureReadable(ctx, name)
	})
}

// EnsureReadable grants flotilla's workload identity (Reader) NamespaceReaderRole in a namespace it may use,
// once per process; Ensure calls it, and so does anything that reads a namespace flotilla uses before
// writing to it. It does nothing without a Reader.
func (n *Namespaces) EnsureReadable(ctx context.Context, name string) error {
	if n.Reader == nil {
		return nil
	}
	n.mu.Lock()
	done := n.readable[name]
	n.mu.Unlock()
	if done {
		return nil
	}
	_, err := n.Workload.RbacV1().RoleBindings(name).Create(ctx, ReadGrant(name, n.ManagementID, n.Node, *n.Reader), metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("granting flotilla read access to its objects in workload namespace %s: %w", name, err)
	}
	n.mu.Lock()
	if n.readable == nil {
		n.readable = map[string]bool{}
	}
	n.readable[name] = true
	n.mu.Unlock()
	return nil
}

// EnsureServiceAccount makes the workload ServiceAccount a delegate runs as one it may use: flotilla's
// (created when missing) or the namespace's default one. It returns a *RefusedError for a ServiceAccount of
// that name that someone else created.
func (n *Namespaces) EnsureServiceAccount(ctx context.Context, namespace, name string) error {
	if name == "" {
		name = DefaultServiceAccount
	}
	accounts := n.Workload.CoreV1().ServiceAccounts(namespace)
	existing, err := n.serviceAccount(ctx, namespace, name, func(sa *corev1.ServiceAccount) bool {
		return ServiceAccountUsable(name, sa, n.ManagementID)
	})
	switch {
	case err == nil && existing == nil:
		if name == DefaultServiceAccount {
			// The workload's own controller creates it moments after the namespace; the workload's admission
			// refuses pods that run as a ServiceAccount it does not find, so wait for it briefly.
			return waitForDefault(ctx, accounts, namespace)
		}
		_, err = accounts.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{
			Namespace: namespace, Name: name, Labels: map[string]string{LabelManagement: n.ManagementID},
		}}, metav1.CreateOptions{})
		if apierrors.IsAlreadyExists(err) {
			return n.EnsureServiceAccount(ctx, namespace, name) // created meanwhile: whose is it?
		}
		return err
	case err != nil:
		return fmt.Errorf("reading ServiceAccount %s/%s in the workload cluster: %w", namespace, name, err)
	case !ServiceAccountUsable(name, existing, n.ManagementID):
		return &RefusedError{Reason: ReasonNameConflict, Message: fmt.Sprintf(
			"ServiceAccount %s/%s exists in the workload cluster and was not created by flotilla for this management cluster; a delegate never runs as it",
			namespace, name)}
	default:
		return nil
	}
}

// defaultWait bounds how long EnsureServiceAccount waits for the workload cluster's controller to create a
// new namespace's default ServiceAccount.
const defaultWait = 5 * time.Second

func waitForDefault(ctx context.Context, accounts corev1client.ServiceAccountInterface, namespace string) error {
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, defaultWait, false, func(ctx context.Context) (bool, error) {
		_, err := accounts.Get(ctx, DefaultServiceAccount, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return false, nil
		}
		return err == nil, err
	})
	if err != nil {
		return fmt.Errorf("the ServiceAccount default of namespace %s does not exist in the workload cluster yet (its service account controller creates it): %w", namespace, err)
	}
	return nil
}
