package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/flotilla-io/flotilla/test/lab"
)

// TestLabRunsPodsInWorkloadClusters proves a workload cluster is a working Kubernetes: its scheduler,
// controller-manager and kwok take a Deployment to Running.
func TestLabRunsPodsInWorkloadClusters(t *testing.T) {
	c := shared.Workload("eu-west-3-1")
	ns := namespace(t, c.Client)
	ctx := testContext(t, 2*time.Minute)
	deploy := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "hello", Namespace: ns},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](3),
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "hello"}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "hello"}},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "hello", Image: "hello-world"}}},
			},
		},
	}
	if _, err := c.Client.AppsV1().Deployments(ns).Create(ctx, deploy, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	took := eventually(t, time.Minute, "3 pods Running", func(ctx context.Context) (bool, string) {
		pods, err := c.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, err.Error()
		}
		running := 0
		for _, p := range pods.Items {
			if p.Status.Phase == corev1.PodRunning && p.Spec.NodeName != "" {
				running++
			}
		}
		return running == 3, fmt.Sprintf("%d of %d pods Running", running, len(pods.Items))
	})
	t.Logf("deployment Running in %s", took)
}

// TestVirtualNodesRegistered checks that each workload cluster appears as a Ready virtual node.
func TestVirtualNodesRegistered(t *testing.T) {
	ctx := testContext(t, time.Minute)
	for _, c := range shared.Workloads {
		if err := shared.WaitVirtualNodeReady(ctx, c.Name); err != nil {
			t.Error(err)
		}
	}
	nodes, err := shared.Management.Client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(nodes.Items) != len(shared.Workloads) {
		t.Errorf("management cluster has %d nodes, want one per workload cluster (%d)", len(nodes.Items), len(shared.Workloads))
	}
	for _, n := range nodes.Items {
		if !lab.NodeReady(&n) {
			t.Errorf("virtual node %s not Ready", n.Name)
		}
	}
}
