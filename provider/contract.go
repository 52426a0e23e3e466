// Package provider runs the pods the management cluster binds to a virtual node: each proxy pod becomes a
// delegate pod in the workload cluster, and the delegate's status comes back onto the proxy.
//
// The rules (what a delegate looks like, what it may reference, what status a proxy shows) are pure
// functions in delegate.go, references.go, placement.go and status.go, each with a table test; package
// tenancy decides which proxies may be delegated at all and into which workload namespaces, as which
// ServiceAccount; package follow makes the ConfigMaps and Secrets a proxy references exist in the workload
// cluster (EnsureFor) before its delegate is created. The Provider applies them: virtual-kubelet's pod
// controller calls its PodLifecycleHandler methods (lifecycle.go), two rate-limited work queues create and
// update delegates (sync.go) and report their status (notify.go), and a collector removes delegates whose
// proxy is gone and the workload namespaces and ServiceAccounts nothing uses any more (orphans.go).
package provider

import (
	"k8s.io/apimachinery/pkg/labels"

	"github.com/flotilla-io/flotilla/provider/follow"
	"github.com/flotilla-io/flotilla/tenancy"
)

// Labels every delegate carries besides the proxy's own (see DESIGN.md, "Names and labels"). Together they
// say who owns a workload pod: flotilla touches only pods carrying its management identity and node name.
const (
	// LabelParentUID is the UID of the proxy the delegate stands for, so a delegate left over from an
	// earlier pod of the same name is told apart from the current one.
	LabelParentUID = "flotilla.io/parent-uid"
	// LabelManagement is the identity of the management cluster that owns the delegate.
	LabelManagement = "flotilla.io/management"
	// LabelNode is the virtual node (in that management cluster) that owns the delegate.
	LabelNode = "flotilla.io/node"
)

// Reasons of the Events flotilla records on proxies and of the status it shows on them.
const (
	// ReasonRefused: the workload apiserver rejected the delegate or a change to it (quota, admission,
	// validation); flotilla retries with backoff.
	ReasonRefused = "Refused"
	// ReasonDelegationFailed: creating the delegate failed for a reason that is not the workload cluster's
	// decision (unreachable apiserver, timeout); flotilla retries with backoff.
	ReasonDelegationFailed = "DelegationFailed"
	// ReasonNameConflict: a pod of the same namespace and name that flotilla does not own already exists in
	// the workload cluster, or a ServiceAccount of the delegate's that flotilla did not create (besides
	// default); flotilla never touches it and retries with backoff. Package tenancy defines it once (see
	// there); follow's conflicts on copies give the same reason.
	ReasonNameConflict = tenancy.ReasonNameConflict
	// ReasonCreateContainerConfigError: a ConfigMap or Secret the pod requires does not exist in the
	// management cluster, so none could follow the pod (the kubelet's reason for the same situation). The
	// Event names which one, with the reasons of package follow.
	ReasonCreateContainerConfigError = "CreateContainerConfigError"
	// ReasonDeletedInWorkloadCluster: a delegate that had started was deleted (or evicted) in the workload
	// cluster by someone other than flotilla; its proxy ends.
	ReasonDeletedInWorkloadCluster = "DeletedInWorkloadCluster"
	// ReasonClusterNotReady: the virtual node is not Ready (its workload cluster does not answer, or has no
	// Ready node), so a Running proxy's delegate is in a state nobody can see. The proxy stays Running (nothing
	// says its containers stopped) but its PodReady and ContainersReady conditions are False with this
	// reason, and a message naming the cluster, the node's reason and the delegate's last known status, so
	// that Services, rollouts and disruption budgets stop counting it. Once the node is Ready again the proxy
	// shows its delegate's status again.
	ReasonClusterNotReady = "ClusterNotReady"
	// ReasonFailedScheduling: the workload cluster's scheduler cannot place the delegate (the
	// kube-scheduler's own event reason).
	ReasonFailedScheduling = "FailedScheduling"

	// Reasons of the tenancy contract (DESIGN.md, "Tenancy"): what keeps a proxy from being delegated at all.

	// ReasonNamespaceNotEnabled: the proxy's management namespace does not carry flotilla.io/enabled=true, so
	// nothing is created for it in the workload cluster. Shown once (status and one Warning Event) and not
	// retried: labelling the namespace brings the proxy back (NamespaceChanged).
	ReasonNamespaceNotEnabled = tenancy.ReasonNamespaceNotEnabled
	// ReasonWorkloadNamespaceForbidden: the workload namespace of the proxy's namespace name is one flotilla
	// may not use (a system namespace, another management cluster's, or someone's that its admin did not open
	// with flotilla.io/open=true); flotilla retries with backoff, so opening it ends this.
	ReasonWorkloadNamespaceForbidden = tenancy.ReasonWorkloadNamespaceForbidden
	// ReasonUnsupportedReference: the pod names an object that does not follow it to the workload cluster (a
	// PersistentVolumeClaim, an ephemeral volume, a volume plugin's Secret, a resource claim, or a
	// ServiceAccount token Secret), where the name would resolve to whatever that cluster holds. A pod's
	// volumes cannot change, so a refusal from its spec is not retried; one from package follow (a Secret's
	// type) is, with backoff. Package follow's reason for the latter, so both are one.
	ReasonUnsupportedReference = follow.ReasonUnsupportedReference
)

// OwnDelegates selects the workload pods that are delegates of the given virtual node of the given
// management cluster.
func OwnDelegates(managementID, nodeName string) labels.Selector {
	return labels.SelectorFromSet(OwnerLabels(managementID, nodeName))
}

// OwnerLabels are the labels that say an object in a workload cluster belongs to the given virtual node of
// the given management cluster: delegates carry them (with their parent's UID), and so do followed copies.
func OwnerLabels(managementID, nodeName string) map[string]string {
	return map[string]string{LabelManagement: managementID, LabelNode: nodeName}
}
