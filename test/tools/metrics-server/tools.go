//go:build tools

// Package tools records the metrics-server command the lab builds, so `go mod tidy` keeps its dependencies.
package tools

import _ "sigs.k8s.io/metrics-server/cmd/metrics-server"
