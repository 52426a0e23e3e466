package e2e

import (
	"context"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/flotilla-io/flotilla/test/lab"
)

// TestClustersRunTheirKubernetes: every cluster of the lab runs the Kubernetes its tools module pins (the
// workload clusters another one in the skew run, FLOTILLA_E2E_WORKLOAD_KUBERNETES), and each virtual node
// reports its own cluster's version, as a node reports its kubelet's. In the skew run this is what makes
// the other tests' passing mean "flotilla works across versions".
func TestClustersRunTheirKubernetes(t *testing.T) {
	ctx := context.Background()
	clusters := append([]*lab.Cluster{shared.Management}, shared.Workloads...)
	for _, c := range clusters {
		want, err := lab.KubernetesVersion(c.Workload.Kubernetes)
		if err != nil {
			t.Fatal(err)
		}
		got, err := c.Client.Discovery().ServerVersionWithContext(ctx)
		if err != nil {
			t.Fatalf("%s: %v", c.Name, err)
		}
		if got.GitVersion != want {
			t.Errorf("%s runs Kubernetes %s, want %s", c.Name, got.GitVersion, want)
		}
		if c == shared.Management {
			continue
		}
		n, err := shared.Management.Client.CoreV1().Nodes().Get(ctx, c.Name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if kubelet := n.Status.NodeInfo.KubeletVersion; kubelet != want {
			t.Errorf("virtual node %s reports kubelet %s, want its cluster's %s", c.Name, kubelet, want)
		}
	}
}
