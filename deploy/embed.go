// Package deploy holds flotilla's manifests and hands the ones `flotilla join` applies to the command. They
// live in the Helm chart (charts/flotilla/files), which renders the management cluster's share of them, so the
// chart, an operator's kubectl apply and the join apply the same files.
package deploy

import (
	"embed"
	"io/fs"
)

// ManifestsDir is where the manifests live, relative to the repository root.
const ManifestsDir = "deploy/charts/flotilla/files"

// NamespaceManifest is flotilla-system, of both clusters, which the roles and policies assume.
const NamespaceManifest = "namespace.yaml"

//go:embed charts/flotilla/files/namespace.yaml charts/flotilla/files/rbac/*.yaml charts/flotilla/files/policies/*.yaml
var files embed.FS

// Manifests are ManifestsDir's namespace.yaml, rbac/ and policies/: the namespace, the roles each cluster
// needs once, and the ValidatingAdmissionPolicies that confine them, named as within ManifestsDir.
var Manifests = func() fs.FS {
	sub, err := fs.Sub(files, "charts/flotilla/files")
	if err != nil {
		panic(err) // a constant path into the embedded tree: only a broken build gets here
	}
	return sub
}()
