package e2e

import (
	"context"
	"fmt"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/flotilla-io/flotilla/node"
	"github.com/flotilla-io/flotilla/tenancy"
	"github.com/flotilla-io/flotilla/test/lab"
)

// The seed tutorial's "Demo" (../shared/seeds/000_*), run as written with the lab's own kubectl: the
// namespace is labelled once, and the pod templates carry no toleration and no multi-cluster field at all.

// tutorialDeployment is the tutorial's regional Deployment, applied once per region with $region replaced,
// as its shell loop does. Only the Admiralty and Fargate template annotations are gone: flotilla needs
// none, and the tutorial's point is that nothing multi-cluster is left in the pod template.
const tutorialDeployment = `apiVersion: apps/v1
kind: Deployment
metadata:
  name: hello-world-$region
spec:
  replicas: 4
  selector:
    matchLabels:
      app: hello-world
      region: $region
  template:
    metadata:
      labels:
        app: hello-world
        region: $region
    spec:
      nodeSelector:
        topology.kubernetes.io/region: $region
      containers:
      - image: adamgolab/hello-world
        name: hello-world
        env:
        - name: PORT
          value: "80"
        - name: WORLD
          valueFrom:
            fieldRef:
              fieldPath: spec.nodeName
        ports:
        - containerPort: 80
`

// tutorialServiceAndIngress is the tutorial's Service and Ingress. The Service is as written. The Ingress is
// adapted to what the lab's v1.37 apiserver serves: extensions/v1beta1 is gone, so it is networking.k8s.io/v1
// with its backend spelled service.name/port.number and the ALB's wildcard path "/*" given pathType
// ImplementationSpecific; the host is a lab name instead of the Admiralty Cloud account's subdomain. The
// ALB annotations stay as written: the lab runs no ingress controller (neither did the tutorial's
// management cluster), so they only travel with the copies.
const tutorialServiceAndIngress = `apiVersion: v1
kind: Service
metadata:
  name: hello-world
spec:
  ports:
  - port: 80
    targetPort: 80
  selector:
    app: hello-world
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: hello-world
  annotations:
    kubernetes.io/ingress.class: alb
    alb.ingress.kubernetes.io/scheme: internet-facing
    alb.ingress.kubernetes.io/target-type: ip
spec:
  rules:
  - host: hello-world.lab.example.com
    http:
      paths:
      - path: /*
        pathType: ImplementationSpecific
        backend:
          service:
            name: hello-world
            port:
              number: 80
`

var tutorialRegions = []string{"us-west-2", "eu-west-3"}

// TestTutorialAsWritten: after `kubectl label ns default flotilla.io/enabled=true`, the tutorial's two
// regional Deployments (no toleration in their pods: the webhook adds it) run 4 proxies each on their
// region's virtual nodes, each with a Running delegate in `default` of its workload cluster; the Service
// and Ingress follow them to every cluster that runs one; scaling eu-west-3 to 0 takes its pods (and its
// copies) away; and draining eu-west-3-1 leaves the region's pods on eu-west-3-0.
func TestTutorialAsWritten(t *testing.T) {
	ctx := testContext(t, 6*time.Minute)
	const ns = metav1.NamespaceDefault
	var manifests []string
	for _, region := range tutorialRegions {
		manifests = append(manifests, strings.ReplaceAll(tutorialDeployment, "$region", region))
	}
	manifests = append(manifests, tutorialServiceAndIngress)
	// The lab opened every workload cluster's `default`, as their admins would.
	for _, c := range shared.Workloads {
		d, err := c.Client.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if d.Labels[tenancy.LabelOpen] != "true" {
			t.Fatalf("%s: namespace default not opened to flotilla: labels %v", c.Name, d.Labels)
		}
	}

	// Cleanup runs last to first: the objects go (and with them proxies and delegates) before `default`
	// is unlabelled, and the drained node is uncordoned first.
	kubectl(t, "label", "ns", ns, tenancy.LabelEnabled+"=true")
	t.Cleanup(func() { kubectl(t, "label", "ns", ns, tenancy.LabelEnabled+"-") })
	t.Cleanup(func() { tutorialCleanUp(t, strings.Join(manifests, "---\n")) })

	for _, m := range manifests[:len(tutorialRegions)] {
		kubectlIn(t, m, "apply", "-f", "-")
	}
	took := eventually(t, rollout, "4 proxies Running in each region, each with a Running delegate in default", func(ctx context.Context) (bool, string) {
		return settled(ctx, ns, map[string]int{"us-west-2": 4, "eu-west-3": 4})
	})
	t.Logf("8 pods Running %s after the apply", took.Round(time.Millisecond))
	tutorialOnRegionNodes(ctx, t, ns)

	kubectlIn(t, tutorialServiceAndIngress, "apply", "-f", "-")
	running := tutorialClustersRunning(ctx, t, ns)
	took = eventually(t, followLimit, fmt.Sprintf("Service and Ingress copies in %v", tutorialNames(running)), func(ctx context.Context) (bool, string) {
		return followCopiesIn(ctx, running, ns, "hello-world", true)
	})
	t.Logf("copies in %v %s after the apply", tutorialNames(running), took.Round(time.Millisecond))
	if idle := tutorialOthers(running); len(idle) > 0 {
		if ok, why := followCopiesIn(ctx, idle, ns, "hello-world", false); !ok {
			t.Errorf("copies in a cluster that runs no delegate: %s", why)
		}
	}
	for _, c := range running {
		i, err := c.Client.NetworkingV1().Ingresses(ns).Get(ctx, "hello-world", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if i.Annotations["alb.ingress.kubernetes.io/scheme"] != "internet-facing" || len(i.Spec.Rules) != 1 ||
			i.Spec.Rules[0].HTTP == nil || i.Spec.Rules[0].HTTP.Paths[0].Backend.Service.Name != "hello-world" {
			t.Errorf("%s: Ingress copy %+v %+v", c.Name, i.Annotations, i.Spec)
		}
	}

	// Testing HA: one region scales to zero; its pods go, and its clusters' copies with them.
	kubectl(t, "scale", "deploy", "hello-world-eu-west-3", "--replicas=0")
	took = eventually(t, rollout, "the eu-west-3 pods and delegates gone, us-west-2's still Running", func(ctx context.Context) (bool, string) {
		return settled(ctx, ns, map[string]int{"us-west-2": 4, "eu-west-3": 0})
	})
	t.Logf("eu-west-3 scaled to zero in %s", took.Round(time.Millisecond))
	eventually(t, followRemoval, "copies gone from the eu-west-3 clusters", func(ctx context.Context) (bool, string) {
		return followCopiesIn(ctx, followClusters("eu-west-3"), ns, "hello-world", false)
	})

	// Blue/green upgrade of a cluster: drain its virtual node. TestDrainMovesPodsToTheOtherCluster covers
	// drains in depth (budgets, every pod starting on the drained node); this is the tutorial's command.
	kubectl(t, "scale", "deploy", "hello-world-eu-west-3", "--replicas=4")
	eventually(t, rollout, "eu-west-3 back to 4 pods", func(ctx context.Context) (bool, string) {
		return settled(ctx, ns, map[string]int{"us-west-2": 4, "eu-west-3": 4})
	})
	const drained = "eu-west-3-1"
	t.Cleanup(func() { kubectl(t, "uncordon", drained) })
	kubectl(t, "drain", drained, "--ignore-daemonsets", "--delete-emptydir-data", "--timeout=2m")
	took = eventually(t, rollout, "eu-west-3's pods all on eu-west-3-0, none left in "+drained, func(ctx context.Context) (bool, string) {
		if ok, why := settled(ctx, ns, map[string]int{"us-west-2": 4, "eu-west-3": 4}); !ok {
			return false, why
		}
		left, err := shared.Workload(drained).Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, err.Error()
		}
		return len(left.Items) == 0, fmt.Sprintf("%d delegates left in %s", len(left.Items), drained)
	})
	t.Logf("%s drained in %s", drained, took.Round(time.Millisecond))
}

// tutorialOnRegionNodes checks that every proxy runs on a virtual node of its own region (by the node's
// label, which the nodeSelector chose by) and carries the virtual-node toleration its template lacked.
func tutorialOnRegionNodes(ctx context.Context, t *testing.T, ns string) {
	t.Helper()
	proxies, err := shared.Management.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range proxies.Items {
		n, err := shared.Management.Client.CoreV1().Nodes().Get(ctx, p.Spec.NodeName, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if got := n.Labels[regionLabel]; got != p.Labels["region"] {
			t.Errorf("proxy %s of region %s on node %s of region %q", p.Name, p.Labels["region"], n.Name, got)
		}
		if !slices.ContainsFunc(p.Spec.Tolerations, func(tol corev1.Toleration) bool { return tol.Key == node.TaintKey }) {
			t.Errorf("proxy %s runs on %s without the virtual-node toleration: %+v", p.Name, n.Name, p.Spec.Tolerations)
		}
	}
}

// tutorialClustersRunning lists the workload clusters that run a delegate of the namespace.
func tutorialClustersRunning(ctx context.Context, t *testing.T, ns string) []*lab.Cluster {
	t.Helper()
	var out []*lab.Cluster
	for _, c := range shared.Workloads {
		pods, err := c.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=hello-world"})
		if err != nil {
			t.Fatal(err)
		}
		if len(pods.Items) > 0 {
			out = append(out, c)
		}
	}
	return out
}

// tutorialCleanUp deletes the tutorial's objects and waits until their proxies and delegates are gone;
// any left after that are reported and removed by force, so later tests find `default` empty.
func tutorialCleanUp(t *testing.T, manifests string) {
	if out, err := kubectlInput(manifests, "delete", "--ignore-not-found", "-f", "-"); err != nil {
		t.Errorf("kubectl delete -f -: %v\n%s", err, out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var why string
	if err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		var ok bool
		ok, why = settled(ctx, metav1.NamespaceDefault, map[string]int{})
		return ok, nil
	}); err != nil {
		t.Errorf("the tutorial's pods not gone a minute after their deletion: %s", why)
		for _, c := range append([]*lab.Cluster{shared.Management}, shared.Workloads...) {
			_ = c.Client.CoreV1().Pods(metav1.NamespaceDefault).DeleteCollection(ctx,
				metav1.DeleteOptions{GracePeriodSeconds: new(int64(0))}, metav1.ListOptions{LabelSelector: "app=hello-world"})
		}
	}
}

// tutorialOthers are the workload clusters not among cs.
func tutorialOthers(cs []*lab.Cluster) []*lab.Cluster {
	var out []*lab.Cluster
	for _, c := range shared.Workloads {
		if !slices.Contains(cs, c) {
			out = append(out, c)
		}
	}
	return out
}

func tutorialNames(cs []*lab.Cluster) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c.Name)
	}
	return out
}

// kubectlIn runs the lab's kubectl against the management cluster with input on its standard input, as
// `cat <<EOF | kubectl apply -f -` does, and fails the test if it fails.
func kubectlIn(t *testing.T, input string, args ...string) {
	t.Helper()
	if out, err := kubectlInput(input, args...); err != nil {
		t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

func kubectlInput(input string, args ...string) (string, error) {
	bins, err := lab.Binaries()
	if err != nil {
		return "", err
	}
	cmd := exec.Command(bins["kubectl"], append([]string{"--kubeconfig", shared.Management.Kubeconfig}, args...)...)
	cmd.Stdin = strings.NewReader(input)
	out, err := cmd.CombinedOutput()
	return string(out), err
}
