package e2e

import (
	"testing"
	"time"

	vke2e "github.com/virtual-kubelet/virtual-kubelet/test/e2e"
)

// TestVirtualKubeletSuite runs the virtual-kubelet project's own provider suite against one flotilla
// node of the lab: pod lifecycle (graceful and forced deletion), the kubelet API (/pods,
// /stats/summary, /metrics/resource) through the apiserver's node proxy, and missing ConfigMaps and
// Secrets.
func TestVirtualKubeletSuite(t *testing.T) {
	ns := namespace(t, shared.Management.Client)
	suite := vke2e.NewEndToEndTestSuite(vke2e.EndToEndTestSuiteConfig{
		Kubeconfig:   shared.Management.Kubeconfig,
		Namespace:    ns,
		NodeName:     "us-west-2-0",
		WatchTimeout: time.Minute,
	})
	suite.Run(t)
}
