// Package tenancy holds delegation's trust boundary: which management namespaces take part (the opt-in
// label), which workload namespaces and ServiceAccounts flotilla may use, the Pod Security level of the
// namespaces it creates, and when clean-up may delete the namespaces and ServiceAccounts it created. The
// rules are pure functions, each pinned by a table test: rules.go (labels, reasons, opt-in, Pod Security
// level, namespace access, ServiceAccount use) and cleanup.go (what clean-up may delete); workload.go applies
// them against a workload cluster.
package tenancy

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	psaapi "k8s.io/pod-security-admission/api"
)

// Labels of the contract (see docs/DESIGN.md, "Tenancy").
const (
	// LabelEnabled on a management namespace, with value "true", lets its pods be delegated.
	LabelEnabled = "flotilla.io/enabled"
	// LabelOpen on a workload namespace, with value "true", is its admin's leave for flotilla to use it.
	LabelOpen = "flotilla.io/open"
	// LabelManagement marks what flotilla created in a workload cluster with the identity of the management
	// cluster it created it for.
	LabelManagement = "flotilla.io/management"
)

// Reasons of the status and Events flotilla shows on proxies that tenancy keeps from delegation.
const (
	// ReasonNamespaceNotEnabled: the proxy's management namespace does not carry LabelEnabled=true.
	ReasonNamespaceNotEnabled = "NamespaceNotEnabled"
	// ReasonWorkloadNamespaceForbidden: the workload namespace of the proxy's namespace name is one flotilla
	// may not use (a system namespace, or one that exists without being flotilla's or opened to it).
	ReasonWorkloadNamespaceForbidden = "WorkloadNamespaceForbidden"
	// ReasonNameConflict: a ServiceAccount of the delegate's name exists in the workload namespace and is
	// not flotilla's. It is also the reason for a copy or a delegate whose name someone else's object holds:
	// this is the one definition. Package provider aliases it, and package follow, which imports tenancy
	// already, can too; tenancy, the pure rules, imports neither, so no cycle arises.
	ReasonNameConflict = "NameConflict"
)

// DefaultServiceAccount is the ServiceAccount the workload cluster's own controller creates in every
// namespace; delegates may run as it without flotilla having created it.
const DefaultServiceAccount = "default"

// DefaultLevel is the Pod Security level flotilla enforces in the namespaces it creates unless the
// management namespace asks for a stricter one.
const DefaultLevel = string(psaapi.LevelBaseline)

// systemNamespaces hold the workload cluster's own components, and flotilla's own identities
// (IdentityNamespace); flotilla never uses them for delegates.
var systemNamespaces = map[string]bool{
	metav1.NamespaceSystem: true, metav1.NamespacePublic: true, corev1.NamespaceNodeLease: true, IdentityNamespace: true,
}

// Enabled reports whether a management namespace takes part in delegation.
func Enabled(ns *corev1.Namespace) bool {
	return ns != nil && ns.Labels[LabelEnabled] == "true"
}

// ParseLevel checks a Pod Security level given by an operator (--pod-security-level).
func ParseLevel(level string) (string, error) {
	l, err := psaapi.ParseLevel(level)
	if err != nil {
		return "", fmt.Errorf("%q is not a Pod Security level (privileged, baseline, restricted)", level)
	}
	return string(l), nil
}

// WorkloadLevel is the Pod Security level enforced in a workload namespace flotilla creates for the given
// management namespace (nil when unknown): floor (DefaultLevel when empty), or the management namespace's own
// enforced level when that is stricter. Both fail closed as Pod Security admission does: a level it cannot
// parse counts as restricted, which is what the management cluster itself enforces in such a namespace.
func WorkloadLevel(floor string, management *corev1.Namespace) string {
	if floor == "" {
		floor = DefaultLevel
	}
	level, _ := psaapi.ParseLevel(floor) // restricted when unparsable
	if management != nil {
		if own, set := management.Labels[psaapi.EnforceLevelLabel]; set {
			ownLevel, _ := psaapi.ParseLevel(own) // restricted when unparsable
			if psaapi.CompareLevels(ownLevel, level) > 0 {
				level = ownLevel
			}
		}
	}
	return string(level)
}

// Access is what flotilla may do with a workload namespace.
type Access int

const (
	// Create: the namespace does not exist; flotilla creates it for its management cluster.
	Create Access = iota
	// Owned: flotilla created it for this management cluster; it keeps its Pod Security labels current.
	Owned
	// Opened: the workload cluster's admin opened it; flotilla uses it as it is.
	Opened
	// Forbidden: flotilla must not put anything into it.
	Forbidden
)

// Decide says what flotilla may do with the workload namespace of the given name, given the namespace as it
// exists there (nil when it does not) and this management cluster's identity; for Forbidden, why, in words
// for the proxy. A namespace the admin opened counts as Opened even when flotilla created it: the admin has
// taken it over, so its Pod Security labels are the admin's and clean-up leaves it alone.
func Decide(name string, existing *corev1.Namespace, managementID string) (Access, string) {
	switch {
	case systemNamespaces[name]:
		return Forbidden, fmt.Sprintf("namespace %s holds the workload cluster's own components; flotilla never uses it", name)
	case existing == nil:
		return Create, ""
	case existing.Labels[LabelOpen] == "true":
		return Opened, ""
	case managementID != "" && existing.Labels[LabelManagement] == managementID:
		return Owned, ""
	case existing.Labels[LabelManagement] != "":
		return Forbidden, fmt.Sprintf("namespace %s belongs to another management cluster (%s); its workload admin can open it with the label %s=true",
			name, existing.Labels[LabelManagement], LabelOpen)
	default:
		return Forbidden, fmt.Sprintf("namespace %s exists and was not opened to flotilla; its workload admin can open it with the label %s=true",
			name, LabelOpen)
	}
}

// Desired is the namespace flotilla creates (or keeps, Owned) for its management cluster.
func Desired(name, managementID, level string) *corev1.Namespace {
	return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
		Name:   name,
		Labels: withLevel(map[string]string{LabelManagement: managementID}, level),
	}}
}

// withLevel sets the Pod Security labels that enforce level on the latest policy version.
func withLevel(labels map[string]string, level string) map[string]string {
	labels[psaapi.EnforceLevelLabel] = level
	labels[psaapi.EnforceVersionLabel] = string(psaapi.VersionLatest)
	return labels
}

// levelCurrent reports whether an Owned namespace already enforces level.
func levelCurrent(ns *corev1.Namespace, level string) bool {
	return ns.Labels[psaapi.EnforceLevelLabel] == level && ns.Labels[psaapi.EnforceVersionLabel] == string(psaapi.VersionLatest)
}

// ServiceAccountUsable reports whether a delegate may run as the workload ServiceAccount sa (nil when it
// does not exist, and flotilla will create it): it must be flotilla's, of this management cluster, or the
// namespace's default one.
func ServiceAccountUsable(name string, sa *corev1.ServiceAccount, managementID string) bool {
	return sa == nil || name == DefaultServiceAccount || (managementID != "" && sa.Labels[LabelManagement] == managementID)
}
