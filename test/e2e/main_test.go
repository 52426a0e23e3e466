// Package e2e tests flotilla end to end on the lab: real apiservers, schedulers and controller-managers,
// kwok nodes, and flotilla processes built from this checkout.
package e2e

import (
	"os"
	"testing"

	"github.com/flotilla-io/flotilla/test/lab"
)

// shared is the lab of this test binary: the tutorial's management cluster and four workload clusters,
// one flotilla each. Tests use namespaces of their own and undo what they change in shared state
// (cordons, frozen apiservers, labels).
var shared *lab.Lab

// workloadKubernetes is the workload clusters' Kubernetes, as a tools module under test/tools (k8s-1.35):
// the version-skew run of `make test` sets it, and the management cluster keeps the default.
var workloadKubernetes = os.Getenv("FLOTILLA_E2E_WORKLOAD_KUBERNETES")

func TestMain(m *testing.M) {
	workloads := lab.DefaultWorkloads()
	for i := range workloads {
		workloads[i].Kubernetes = workloadKubernetes
	}
	os.Exit(lab.RunWithLab(m, lab.Options{
		Workloads: workloads,
		Flotilla:  true,
		// The virtual-kubelet suite reaches its node's kubelet API through the apiserver's node proxy.
		ProxyableKubelet: peerSuiteNode,
		// kubectl top and HPAs (metrics_test.go): kwok's kubelet API and metrics-server in every cluster.
		Kubelets: true,
	}, func(l *lab.Lab) { shared = l }))
}
