package tenancy

import (
	corev1 "k8s.io/api/core/v1"
)

// The clean-up rules: which workload namespaces and ServiceAccounts that flotilla created may go. Several
// virtual nodes of one management cluster may share a workload cluster (their objects all carry the same
// LabelManagement), and several management clusters may too (each with its own): the rules count every use
// by this management cluster, whichever node made it, and never touch another management cluster's objects.

// NamespaceUnused reports whether the workload namespace ns may be deleted: flotilla created it for this
// management cluster (LabelManagement; not a system namespace, not opened by the workload admin, not being
// deleted already), no workload pod of this management cluster is in it (workloadPods: the pods of ns), and
// no pod of the management namespace of the same name is bound to a virtual node (managementPods: that
// namespace's pods; virtual says whether a management node is a virtual node), since such a pod has, or is
// about to get, a delegate there.
func NamespaceUnused(managementID string, ns *corev1.Namespace, workloadPods, managementPods []corev1.Pod, virtual func(nodeName string) bool) bool {
	if !NamespaceCollectable(managementID, ns) {
		return false
	}
	for i := range workloadPods {
		if workloadPods[i].Labels[LabelManagement] == managementID {
			return false
		}
	}
	for i := range managementPods {
		if n := managementPods[i].Spec.NodeName; n != "" && virtual(n) {
			return false
		}
	}
	return true
}

// NamespaceCollectable reports whether the workload namespace ns is one that clean-up may ever delete, once
// unused: flotilla created it for this management cluster, it is no system namespace, the workload admin has
// not opened it, and it is not being deleted already.
func NamespaceCollectable(managementID string, ns *corev1.Namespace) bool {
	if ns == nil || ns.DeletionTimestamp != nil {
		return false
	}
	access, _ := Decide(ns.Name, ns, managementID)
	return access == Owned
}

// ServiceAccountCollectable reports whether the workload ServiceAccount sa is one that clean-up may ever
// delete, once unused: flotilla created it for this management cluster, it is not the namespace's default
// one, and it is not being deleted already.
func ServiceAccountCollectable(managementID string, sa *corev1.ServiceAccount) bool {
	return managementID != "" && sa.Labels[LabelManagement] == managementID && sa.Name != DefaultServiceAccount &&
		sa.DeletionTimestamp == nil
}

// UnusedServiceAccounts are the ServiceAccounts among accounts (of one workload namespace) that may be
// deleted: flotilla created them for this management cluster (LabelManagement; never the namespace's
// default one), and no pod of pods (every pod of that namespace, whoever made it) runs as them.
func UnusedServiceAccounts(managementID string, accounts []corev1.ServiceAccount, pods []corev1.Pod) []corev1.ServiceAccount {
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
		if !ServiceAccountCollectable(managementID, &sa) || used[sa.Namespace+"/"+sa.Name] {
			continue
		}
		unused = append(unused, sa)
	}
	return unused
}
