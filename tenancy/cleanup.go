package tenancy

import (
	"time"

	corev1 "k8s.io/api/core/v1"
)

// The clean-up rules: which workload namespaces and ServiceAccounts that flotilla created may go. Several
// virtual nodes of one management cluster may share a workload cluster (their objects all carry the same
// LabelManagement), and several management clusters may too (each with its own): the rules count every use,
// whoever made it, and never touch another management cluster's objects.
//
// The rules are monotone: another use (a pod, a bound management pod) never turns "keep" into "may go". A
// collector may therefore ask with the uses it has read so far (none, or the workload pods only) and read
// the rest only while the answer is still "may go"; only the answer over every use permits a deletion.

// CollectionGrace is the least age of a workload namespace or ServiceAccount that clean-up deletes. A
// flotilla creates the namespace and the ServiceAccount first and the delegate that uses them moments later
// (after the copies it needs); any flotilla sharing the workload cluster may collect in between, which would
// refuse that delegate once. The grace, twice the provider's collection interval (a minute) and far longer
// than that window, keeps what was just created. Ages are measured from the workload apiserver's
// creationTimestamp on the collector's clock, so clock skew between the two shortens or lengthens it.
const CollectionGrace = 2 * time.Minute

// NamespaceUnused reports whether the workload namespace ns may be deleted at now: flotilla created it for
// this management cluster (namespaceCollectable: not a system namespace, not opened by the workload admin,
// not being deleted already, older than CollectionGrace), no pod at all is in it (workloadPods: every pod of
// ns, whoever made it; a namespace holding anyone's pod is kept, since that pod and whatever else its owner
// put there would go with it), and no pod of the management namespace of the same name is bound to a virtual
// node (managementPods: that namespace's pods; virtual says whether a management node is a virtual node and
// is called only for bound pods), since such a pod has, or is about to get, a delegate there.
func NamespaceUnused(managementID string, ns *corev1.Namespace, workloadPods, managementPods []corev1.Pod, virtual func(nodeName string) bool, now time.Time) bool {
	if !namespaceCollectable(managementID, ns, now) || len(workloadPods) > 0 {
		return false
	}
	for i := range managementPods {
		if n := managementPods[i].Spec.NodeName; n != "" && virtual(n) {
			return false
		}
	}
	return true
}

// namespaceCollectable reports whether the workload namespace ns is one that clean-up may delete at now,
// once unused: flotilla created it for this management cluster, it is no system namespace, the workload admin
// has not opened it, it is not being deleted already, and it is older than CollectionGrace.
func namespaceCollectable(managementID string, ns *corev1.Namespace, now time.Time) bool {
	if ns == nil || ns.DeletionTimestamp != nil || young(ns.CreationTimestamp.Time, now) {
		return false
	}
	access, _ := Decide(ns.Name, ns, managementID)
	return access == Owned
}

// serviceAccountCollectable reports whether the workload ServiceAccount sa is one that clean-up may delete at
// now, once unused: flotilla created it for this management cluster, it is not the namespace's default one,
// it is not being deleted already, and it is older than CollectionGrace.
func serviceAccountCollectable(managementID string, sa *corev1.ServiceAccount, now time.Time) bool {
	return managementID != "" && sa.Labels[LabelManagement] == managementID && sa.Name != DefaultServiceAccount &&
		sa.DeletionTimestamp == nil && !young(sa.CreationTimestamp.Time, now)
}

// young reports whether an object created at created is within CollectionGrace of now. An object without a
// creation time (the apiserver always sets one) counts as young: clean-up fails closed.
func young(created, now time.Time) bool {
	return created.IsZero() || now.Sub(created) < CollectionGrace
}

// UnusedServiceAccounts are the ServiceAccounts among accounts (of one workload namespace) that may be
// deleted at now: serviceAccountCollectable (flotilla created them for this management cluster, never the
// namespace's default one, older than CollectionGrace), and no pod of pods (every pod of that namespace,
// whoever made it) runs as them.
func UnusedServiceAccounts(managementID string, accounts []corev1.ServiceAccount, pods []corev1.Pod, now time.Time) []corev1.ServiceAccount {
	used := map[string]bool{}
	for i := range pods {
		name := pods[i].Spec.ServiceAccountName
		if name == "" {
			name = DefaultServiceAccount
		}
		used[pods[i].Namespace+"/"+name] = true
	}
	var unused []corev1.ServiceAccount
	for _, sa := range accounts {
		if !serviceAccountCollectable(managementID, &sa, now) || used[sa.Namespace+"/"+sa.Name] {
			continue
		}
		unused = append(unused, sa)
	}
	return unused
}
