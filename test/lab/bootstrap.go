package lab

import (
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	psaapi "k8s.io/pod-security-admission/api"

	"github.com/flotilla-io/flotilla/deploy"
	"github.com/flotilla-io/flotilla/tenancy"
)

// kwokNodeAnnotation marks the nodes kwok simulates.
const kwokNodeAnnotation = "kwok.x-k8s.io/node"

// NodeAllocatable is what every kwok node of the lab offers, like a 4-vCPU, 16 GiB cloud instance.
var NodeAllocatable = corev1.ResourceList{
	corev1.ResourceCPU:              resource.MustParse("4"),
	corev1.ResourceMemory:           resource.MustParse("16Gi"),
	corev1.ResourcePods:             resource.MustParse("110"),
	corev1.ResourceEphemeralStorage: resource.MustParse("100Gi"),
}

// applyRBAC applies flotilla's namespace, roles and admission policies (deploy.ManifestsDir) with the lab's
// own kubectl, exactly as an operator would (flotilla join applies the same files again, and binds them per
// node), and the binding of the package tests' identity (test/lab/rbac).
func applyRBAC(ctx context.Context, c *Cluster, kubectl string) error {
	role := "workload.yaml"
	if c.IsManagement() {
		role = "management.yaml"
	}
	root := RepoRoot()
	args := []string{"--kubeconfig", c.Kubeconfig, "apply", "-f", filepath.Join(root, deploy.ManifestsDir, deploy.NamespaceManifest)}
	for _, dir := range []string{filepath.Join(deploy.ManifestsDir, "rbac"), filepath.Join(deploy.ManifestsDir, "policies"), "test/lab/rbac"} {
		args = append(args, "-f", filepath.Join(root, dir, role))
	}
	// The kube-node-lease namespace and RBAC's bootstrap roles appear shortly after /readyz; retry
	// until the apply goes through.
	var out []byte
	err := wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		var err error
		out, err = exec.CommandContext(ctx, kubectl, args...).CombinedOutput()
		return err == nil, nil
	})
	if err != nil {
		return fmt.Errorf("applying flotilla's roles and policies to %s: %w\n%s", c.Name, err, out)
	}
	return nil
}

// openDefaultNamespace does what a workload cluster's admin does to let the tutorial run in `default`:
// opens the namespace to flotilla (tenancy.LabelOpen) and sets its Pod Security level, which flotilla
// leaves to the admin in namespaces it did not create.
func openDefaultNamespace(ctx context.Context, c *Cluster) error {
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{"labels": map[string]string{
		tenancy.LabelOpen:        "true",
		psaapi.EnforceLevelLabel: string(psaapi.LevelBaseline),
	}}})
	if err != nil {
		return err
	}
	// The apiserver creates `default` shortly after /readyz; retry until it is there.
	var last error
	err = wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		_, last = c.Client.CoreV1().Namespaces().Patch(ctx, metav1.NamespaceDefault, types.MergePatchType, patch, metav1.PatchOptions{})
		return last == nil, nil
	})
	if err != nil {
		return fmt.Errorf("opening namespace default of %s: %w (last error: %v)", c.Name, err, last)
	}
	return nil
}

// NodeName is the name of a workload cluster's i-th kwok node: <cluster>-node-a, -b, ...
func NodeName(cluster string, i int) string {
	return fmt.Sprintf("%s-node-%c", cluster, 'a'+i)
}

// createNodes registers a cluster's kwok nodes, one per zone.
func createNodes(ctx context.Context, c *Cluster) error {
	spec := c.Workload
	allocatable := NodeAllocatable
	if spec.Allocatable != nil {
		allocatable = spec.Allocatable
	}
	for i := range spec.Nodes {
		name := NodeName(c.Name, i)
		annotations := map[string]string{kwokNodeAnnotation: "fake"}
		if c.KubeletIP != "" {
			// kwok serves every node's resource metrics on one address, each under its own path.
			annotations[resourceMetricsPathAnnotation] = "/metrics/nodes/" + name + "/metrics/resource"
		}
		node := &corev1.Node{
			ObjectMeta: metav1.ObjectMeta{
				Name:        name,
				Annotations: annotations,
				Labels: map[string]string{
					"kubernetes.io/hostname":           name,
					"kubernetes.io/os":                 "linux",
					"kubernetes.io/arch":               "amd64",
					"node.kubernetes.io/instance-type": "m5.xlarge",
					"topology.kubernetes.io/region":    spec.Region,
					"topology.kubernetes.io/zone":      spec.Zones[i%len(spec.Zones)],
					"type":                             "kwok",
				},
			},
			Status: corev1.NodeStatus{
				Capacity:    allocatable.DeepCopy(),
				Allocatable: allocatable.DeepCopy(),
				NodeInfo:    corev1.NodeSystemInfo{OperatingSystem: "linux", Architecture: "amd64", KubeletVersion: "kwok"},
			},
		}
		if _, err := c.Client.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("creating node %s in %s: %w", name, c.Name, err)
		}
	}
	return nil
}

// waitNodesReady waits until kwok reports every node of the cluster Ready.
func waitNodesReady(ctx context.Context, c *Cluster) error {
	err := wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		nodes, err := c.Client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, nil
		}
		ready := 0
		for _, n := range nodes.Items {
			if NodeReady(&n) {
				ready++
			}
		}
		return ready == c.Workload.Nodes, nil
	})
	if err != nil {
		return fmt.Errorf("nodes of %s not Ready: %w; see %s", c.Name, err, c.Kwok.LogFile)
	}
	return nil
}

// NodeReady reports whether a node's Ready condition is True.
func NodeReady(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}
