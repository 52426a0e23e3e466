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

func TestMain(m *testing.M) {
	os.Exit(lab.RunWithLab(m, lab.Options{
		Workloads: lab.DefaultWorkloads(),
		Flotilla:  true,
		// The virtual-kubelet suite reaches its node's kubelet API through the apiserver's node proxy.
		ProxyableKubelet: peerSuiteNode,
		// kubectl top and HPAs (metrics_test.go): kwok's kubelet API and metrics-server in every cluster.
		Kubelets: true,
	}, func(l *lab.Lab) { shared = l }))
}
