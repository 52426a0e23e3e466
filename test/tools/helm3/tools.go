//go:build tools

// Package tools records the helm command of Helm 3 the lab builds, so `go mod tidy` keeps its dependencies.
package tools

import _ "helm.sh/helm/v3/cmd/helm"
