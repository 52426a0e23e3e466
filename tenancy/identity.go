package tenancy

import (
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// IdentityNamespace holds flotilla's identity in a workload cluster (and what `flotilla join` makes in the
// management cluster).
const IdentityNamespace = "flotilla-system"

// LabelNode marks the workload objects one virtual node owns, beside LabelManagement.
const LabelNode = "flotilla.io/node"

// WorkloadAccount is the name of flotilla's ServiceAccount in a workload cluster: flotilla.<management>.<node>.
// The owner is in the name so the workload apiserver's admission policy (deploy/charts/flotilla/files/policies/workload.yaml) can
// tell from the user name alone which objects a request may touch; a management identity never holds a dot.
func WorkloadAccount(managementID, node string) string {
	return "flotilla." + managementID + "." + node
}

// NamespaceReaderRole is the ClusterRole (deploy/charts/flotilla/files/rbac/workload.yaml) that lets flotilla read its copies, the
// Secrets among them, in one namespace: flotilla binds it to itself in each namespace it may use (ReadGrant),
// so it reads no Secret of any other namespace. The workload admission policy lets it bind nothing else.
const NamespaceReaderRole = "flotilla-namespace-reader"

// ReadGrant is the RoleBinding that gives reader NamespaceReaderRole in namespace; it carries the owner's
// labels, as everything flotilla writes in a workload cluster does.
func ReadGrant(namespace, managementID, node string, reader rbacv1.Subject) *rbacv1.RoleBinding {
	return &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: namespace,
			Name:      WorkloadAccount(managementID, node),
			Labels:    map[string]string{LabelManagement: managementID, LabelNode: node},
		},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: NamespaceReaderRole},
		Subjects: []rbacv1.Subject{reader},
	}
}
