// Package deploy holds flotilla's manifests (RBAC roles and admission policies) and hands the ones
// `flotilla join` applies to the command, so an operator's kubectl apply and the join apply the same files.
package deploy

import "embed"

// Manifests are rbac/ and policies/: the roles each cluster needs once, and the ValidatingAdmissionPolicies
// that confine them.
//
//go:embed rbac/*.yaml policies/*.yaml
var Manifests embed.FS
