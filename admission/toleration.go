// Package admission is flotilla's mutating admission webhook (`flotilla webhook`): pods created in the
// management namespaces that take part in delegation get the toleration of the virtual nodes' taint, so users
// opt in by labelling a namespace instead of editing every pod template (see docs/DESIGN.md, "Tenancy").
//
// Pods that request CPU or memory also get node affinity that keeps them off virtual nodes whose largest
// workload node cannot take them (fit.go), while any other node stays allowed.
//
// The rules are the pure functions TolerationPatch in this file and fitOps in fit.go, joined by PodPatch; handler.go reads AdmissionReviews and answers
// with its patch; serve.go serves the handler over TLS. The webhook reads nothing from any cluster: which
// namespaces take part is the MutatingWebhookConfiguration's namespaceSelector (deploy/charts/flotilla).
package admission

import (
	"encoding/json"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	corev1helpers "k8s.io/component-helpers/scheduling/corev1"
)

// patchOp is one operation of a JSON Patch (RFC 6902).
type patchOp struct {
	Op    string `json:"op"`
	Path  string `json:"path"`
	Value any    `json:"value"`
}

// Toleration is the toleration the webhook adds for taint: the taint's key, value and effect, operator Equal.
func Toleration(taint corev1.Taint) corev1.Toleration {
	return corev1.Toleration{Key: taint.Key, Operator: corev1.TolerationOpEqual, Value: taint.Value, Effect: taint.Effect}
}

// TolerationPatch is the JSON Patch that adds Toleration(taint) to the pod's tolerations, keeping those it
// has, or nil when one of them already tolerates taint (then the pod needs nothing, and applying the patch
// twice adds the toleration once). Tolerations are matched as the scheduler matches them, without the alpha
// numeric operators (Lt, Gt), which the scheduler ignores unless a feature gate is on.
func TolerationPatch(pod *corev1.Pod, taint corev1.Taint) ([]byte, error) {
	return marshal(tolerationOps(pod, taint))
}

// PodPatch is the webhook's whole patch: TolerationPatch's operation, and fitOps' node affinity that keeps
// the pod off virtual nodes whose largest workload node cannot take it; nil when the pod needs neither.
func PodPatch(pod *corev1.Pod, taint corev1.Taint) ([]byte, error) {
	return marshal(append(tolerationOps(pod, taint), fitOps(pod)...))
}

func marshal(ops []patchOp) ([]byte, error) {
	if len(ops) == 0 {
		return nil, nil
	}
	return json.Marshal(ops)
}

func tolerationOps(pod *corev1.Pod, taint corev1.Taint) []patchOp {
	if corev1helpers.TolerationsTolerateTaint(logr.Discard(), pod.Spec.Tolerations, &taint, false) {
		return nil
	}
	toleration := Toleration(taint)
	op := patchOp{Op: "add", Path: "/spec/tolerations/-", Value: toleration}
	if len(pod.Spec.Tolerations) == 0 {
		// The field may be absent, and "/-" needs an array to append to; "add" on an existing (empty) member
		// replaces it.
		op = patchOp{Op: "add", Path: "/spec/tolerations", Value: []corev1.Toleration{toleration}}
	}
	return []patchOp{op}
}
