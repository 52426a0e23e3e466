//go:build tools

// Package tools records the helm command the lab builds, so `go mod tidy` keeps its dependencies.
package tools

import _ "helm.sh/helm/v4/cmd/helm"
