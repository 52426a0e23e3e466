package e2e

import (
	"encoding/json"
	"testing"
	"time"

	vke2e "github.com/virtual-kubelet/virtual-kubelet/test/e2e"
	statsv1alpha1 "k8s.io/kubelet/pkg/apis/stats/v1alpha1"
)

// peerSuiteNode is the virtual node the suite runs against.
const peerSuiteNode = "us-west-2-0"

// skippedPeerTests are the suite's tests flotilla cannot pass in the lab, and why.
var skippedPeerTests = map[string]string{
	// Both reach the kubelet API through the pod proxy of a pod named after the node (virtual-kubelet's
	// CI runs the virtual kubelet as such a pod). The apiserver's pod proxy presents no credentials, and
	// flotilla's kubelet API, like a kubelet with --anonymous-auth=false, answers 401 to anonymous
	// callers. TestKubeletStatsThroughNodeProxy checks the same endpoint through the node proxy.
	"TestGetStatsSummary": "pod proxy is anonymous; flotilla's kubelet API requires authentication",
	// Also: flotilla reports no usage numbers yet (kwok serves none, and aggregating a real workload
	// cluster's kubelet metrics is not built); emitting zeros would be a lie.
	"TestGetMetricsResource": "pod proxy is anonymous, and no usage numbers to report",
}

// TestVirtualKubeletSuite runs the virtual-kubelet project's own provider suite against one flotilla
// node of the lab: pod lifecycle (graceful and forced deletion), the kubelet API's /pods through the
// apiserver's node proxy, and missing mandatory and optional ConfigMaps and Secrets.
func TestVirtualKubeletSuite(t *testing.T) {
	ns := namespace(t, shared.Management.Client)
	suite := vke2e.NewEndToEndTestSuite(vke2e.EndToEndTestSuiteConfig{
		Kubeconfig:   shared.Management.Kubeconfig,
		Namespace:    ns,
		NodeName:     peerSuiteNode,
		WatchTimeout: time.Minute,
		ShouldSkipTest: func(name string) bool {
			_, skip := skippedPeerTests[name]
			return skip
		},
	})
	suite.Run(t)
}

// TestKubeletStatsThroughNodeProxy reads /stats/summary of a virtual node through the apiserver's
// (authenticated) node proxy, as `kubectl get --raw` or a metrics pipeline would.
func TestKubeletStatsThroughNodeProxy(t *testing.T) {
	ctx := testContext(t, time.Minute)
	raw, err := shared.Management.Client.CoreV1().RESTClient().Get().
		AbsPath("/api/v1/nodes", peerSuiteNode+":10250", "proxy/stats/summary").DoRaw(ctx)
	if err != nil {
		t.Fatalf("stats through the node proxy: %v", err)
	}
	var summary statsv1alpha1.Summary
	if err := json.Unmarshal(raw, &summary); err != nil {
		t.Fatalf("decoding %s: %v", raw, err)
	}
	if summary.Node.NodeName != peerSuiteNode {
		t.Errorf("stats for node %q, want %q", summary.Node.NodeName, peerSuiteNode)
	}
}
