// Package chart installs flotilla's Helm chart (deploy/charts/flotilla) into the lab's management cluster,
// which has kwok nodes of its own here (lab.Options.ManagementNodes), as a real management cluster has nodes:
// the chart's Deployments roll out and their pods turn Ready under kwok's stages. The pods are fake (no
// container runs), so the tests judge what the apiservers, controllers and Helm do: admission (Pod Security
// restricted included), rollout, the budgets, the roles and policies, and that uninstalling leaves nothing.
// The chart's tests without a cluster are in package deploy.
package chart

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/restmapper"
	psaapi "k8s.io/pod-security-admission/api"

	"github.com/flotilla-io/flotilla/join"
	"github.com/flotilla-io/flotilla/tenancy"
	"github.com/flotilla-io/flotilla/test/lab"
)

// workload is the lab's one workload cluster, joined as the virtual node of the same name.
const workload = "eu-west-3-1"

// namespace is where the chart installs, and `flotilla join` puts the credentials Secret.
const namespace = tenancy.IdentityNamespace

var shared *lab.Lab

func TestMain(m *testing.M) {
	spec := lab.Workload(workload, "eu-west-3")
	spec.Nodes = 1
	// No flotilla process and no webhook of the lab's: the chart brings its own.
	os.Exit(lab.RunWithLab(m, lab.Options{Workloads: []lab.WorkloadSpec{spec}, ManagementNodes: 2}, func(l *lab.Lab) { shared = l }))
}

// helmCLI runs one helm binary of lab.Helms against the management cluster, with its own cache and config.
type helmCLI struct {
	bin, kubeconfig, home string
}

func newHelm(t *testing.T, name string) *helmCLI {
	t.Helper()
	bins, err := lab.Binaries()
	if err != nil {
		t.Fatal(err)
	}
	return &helmCLI{bin: bins[name], kubeconfig: shared.Management.Kubeconfig, home: t.TempDir()}
}

// run runs helm and fails the test, with helm's output, if it fails.
func (h *helmCLI) run(t *testing.T, args ...string) string {
	t.Helper()
	cmd := exec.Command(h.bin, append(args, "--kubeconfig", h.kubeconfig)...)
	cmd.Env = append(os.Environ(), "HELM_CACHE_HOME="+filepath.Join(h.home, "cache"),
		"HELM_CONFIG_HOME="+filepath.Join(h.home, "config"), "HELM_DATA_HOME="+filepath.Join(h.home, "data"))
	started := time.Now()
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("helm %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	t.Logf("helm %s: %s", strings.Join(args, " "), time.Since(started).Round(time.Millisecond))
	return string(out)
}

func chartPath() string { return filepath.Join(lab.RepoRoot(), lab.Chart) }

func testContext(t *testing.T, limit time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	t.Cleanup(cancel)
	return ctx
}

// TestChartAcceptedByAPIServer: what helm template renders for both parts, with every option set or none,
// the management apiserver accepts (server-side apply, dry run): schemas, the admission policies' CEL, the
// webhook registration.
func TestChartAcceptedByAPIServer(t *testing.T) {
	bins, err := lab.Binaries()
	if err != nil {
		t.Fatal(err)
	}
	for name, args := range map[string][]string{
		"defaults":           {"--set", "fleet.enabled=true", "--set", "cluster.name=" + workload},
		"every option given": {"--values", filepath.Join(chartPath(), "ci", "all-values.yaml")},
	} {
		t.Run(name, func(t *testing.T) {
			out, err := lab.RenderChart(bins["helm"], "flotilla", args...)
			if err != nil {
				t.Fatal(err)
			}
			objs, err := lab.DecodeManifests(out)
			if err != nil {
				t.Fatal(err)
			}
			file := filepath.Join(t.TempDir(), "rendered.yaml")
			if err := os.WriteFile(file, out, 0o600); err != nil {
				t.Fatal(err)
			}
			// The lab applied the roles and policies already: apply, not create, and take their fields.
			applied, err := exec.Command(bins["kubectl"], "--kubeconfig", shared.Management.Kubeconfig, "apply", "--server-side",
				"--force-conflicts", "--field-manager=chart-test", "--dry-run=server", "-f", file).CombinedOutput()
			if err != nil {
				t.Fatalf("kubectl apply --dry-run=server: %v\n%s", err, applied)
			}
			for _, obj := range objs {
				m := obj.(metav1.Object)
				if !strings.Contains(string(applied), "/"+m.GetName()+" serverside-applied (server dry run)") {
					t.Errorf("the dry run did not apply %T %s:\n%s", obj, m.GetName(), applied)
				}
			}
		})
	}
}

// TestChartInstallUpgradeUninstall: after `flotilla join`, helm installs the fleet part and a workload
// cluster's release into the lab's management cluster; both roll out to Ready pods on its nodes, admitted
// under Pod Security restricted, kept by their budgets; the fleet upgrades after another join applied its
// roles and policies again; an upgrade of the cluster's release with more replicas and another flag rolls
// out; uninstalling both leaves nothing of them, and the join's Secret in place. With Helm 4, then Helm 3.
func TestChartInstallUpgradeUninstall(t *testing.T) {
	ctx := testContext(t, 15*time.Minute)
	data := joinWorkload(ctx, t)
	if ns, err := shared.Management.Client.CoreV1().Namespaces().Get(ctx, namespace, metav1.GetOptions{}); err != nil ||
		ns.Labels[psaapi.EnforceLevelLabel] != string(psaapi.LevelRestricted) {
		t.Fatalf("namespace %s does not enforce Pod Security restricted: %v, %v", namespace, err, ns.Labels)
	}
	for _, name := range lab.Helms {
		t.Run(name, func(t *testing.T) {
			installUpgradeUninstall(ctx, t, newHelm(t, name))
			secret, err := shared.Management.Client.CoreV1().Secrets(namespace).Get(ctx, join.SecretName(workload), metav1.GetOptions{})
			if err != nil || len(secret.Data) != len(data) {
				t.Errorf("uninstalling took the Secret of flotilla join along: %v", err)
			}
		})
	}
}

// joinWorkload runs `flotilla join` for the workload cluster and returns the credentials Secret's data.
func joinWorkload(ctx context.Context, t *testing.T) map[string][]byte {
	t.Helper()
	data, err := join.Join(ctx, join.Config{Node: workload, Management: shared.Management.Config,
		Workload: shared.Workload(workload).Config, KubeletDNSNames: []string{workload}})
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func installUpgradeUninstall(ctx context.Context, t *testing.T, h *helmCLI) {
	fleet, cluster := "flotilla-fleet", "flotilla-"+workload
	deployment := "flotilla-" + workload
	// A failure leaves no release behind for the next Helm to trip over.
	t.Cleanup(func() {
		if t.Failed() {
			for _, release := range []string{cluster, fleet} {
				_, _ = exec.Command(h.bin, "uninstall", release, "--namespace", namespace, "--ignore-not-found", "--kubeconfig", h.kubeconfig).CombinedOutput()
			}
		}
	})
	// The lab and `flotilla join` applied the fleet's roles and policies already (the same files): the
	// fleet release takes them over.
	h.run(t, "install", fleet, chartPath(), "--namespace", namespace, "--set", "fleet.enabled=true", "--take-ownership",
		"--wait", "--timeout", "3m")
	h.run(t, "install", cluster, chartPath(), "--namespace", namespace, "--set", "cluster.name="+workload,
		"--wait", "--timeout", "3m")

	checkRolledOut(t, "flotilla-webhook", 2, "webhook")
	checkRolledOut(t, deployment, 2, "--leader-elect")
	checkBudget(t, deployment, 2)
	checkBudget(t, "flotilla-webhook", 2)
	checkOwned(ctx, t, fleet)
	trust := webhookTrust(ctx, t)

	// Joining again applies the fleet's roles and policies again (server-side, forced); the fleet release
	// upgrades over them without a conflict.
	joinWorkload(ctx, t)
	h.run(t, "upgrade", fleet, chartPath(), "--namespace", namespace, "--set", "fleet.enabled=true",
		"--set", "fleet.webhook.replicas=3", "--wait", "--timeout", "3m")
	checkRolledOut(t, "flotilla-webhook", 3, "webhook")
	checkOwned(ctx, t, fleet)
	// The upgrade found the certificate the install made (lookup) and kept it: a new one would leave running
	// webhook pods serving a certificate the new caBundle does not trust.
	if again := webhookTrust(ctx, t); !maps.EqualFunc(again, trust, bytes.Equal) {
		t.Errorf("the fleet upgrade replaced the webhook's certificate")
	}

	h.run(t, "upgrade", cluster, chartPath(), "--namespace", namespace, "--set", "cluster.name="+workload,
		"--set", "cluster.replicas=3", "--set", "cluster.extraArgs={--failover-after=30s}", "--wait", "--timeout", "3m")
	checkRolledOut(t, deployment, 3, "--failover-after=30s")
	checkBudget(t, deployment, 3)
	if status := h.run(t, "status", cluster, "--namespace", namespace); !strings.Contains(status, "REVISION: 2") {
		t.Errorf("helm status after the upgrade:\n%s", status)
	}

	// What the releases made, as Helm recorded it.
	var made []runtime.Object
	for _, release := range []string{cluster, fleet} {
		objs, err := lab.DecodeManifests([]byte(h.run(t, "get", "manifest", release, "--namespace", namespace)))
		if err != nil {
			t.Fatal(err)
		}
		made = append(made, objs...)
	}
	for _, release := range []string{cluster, fleet} {
		h.run(t, "uninstall", release, "--namespace", namespace, "--wait", "--timeout", "2m")
	}
	checkAllGone(ctx, t, made, fleet, cluster)
	if left := h.run(t, "list", "--namespace", namespace, "--short"); strings.TrimSpace(left) != "" {
		t.Errorf("helm still lists releases: %s", left)
	}
}

// webhookTrust is the webhook's Secret the chart made, after checking that the registration trusts its CA.
func webhookTrust(ctx context.Context, t *testing.T) map[string][]byte {
	t.Helper()
	c := shared.Management.Client
	secret, err := c.CoreV1().Secrets(namespace).Get(ctx, "flotilla-webhook-tls", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	mwc, err := c.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, "flotilla", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if ca := secret.Data["ca.crt"]; len(ca) == 0 || !bytes.Equal(mwc.Webhooks[0].ClientConfig.CABundle, ca) {
		t.Errorf("the webhook's caBundle is not the CA of its Secret (%d bytes)", len(ca))
	}
	return secret.Data
}

// checkRolledOut: the Deployment has replicas pods, all of its latest template (whose container args hold
// arg), Ready, on the management cluster's own nodes, and no other.
func checkRolledOut(t *testing.T, name string, replicas int32, arg string) {
	t.Helper()
	c := shared.Management.Client
	lab.Eventually(t, 2*time.Minute, "deployment "+name+" rolled out", func(ctx context.Context) (bool, string) {
		d, err := c.AppsV1().Deployments(namespace).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		s := d.Status
		if s.ObservedGeneration < d.Generation || s.Replicas != replicas || s.UpdatedReplicas != replicas || s.ReadyReplicas != replicas || s.AvailableReplicas != replicas {
			return false, fmt.Sprintf("generation %d observed %d; replicas %d, updated %d, ready %d, available %d",
				d.Generation, s.ObservedGeneration, s.Replicas, s.UpdatedReplicas, s.ReadyReplicas, s.AvailableReplicas)
		}
		return podsReady(ctx, d, int(replicas), arg)
	})
}

func podsReady(ctx context.Context, d *appsv1.Deployment, want int, arg string) (bool, string) {
	selector, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
	if err != nil {
		return false, err.Error()
	}
	pods, err := shared.Management.Client.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{LabelSelector: selector.String()})
	if err != nil {
		return false, err.Error()
	}
	if len(pods.Items) != want {
		return false, fmt.Sprintf("%d pods, want %d", len(pods.Items), want)
	}
	for _, p := range pods.Items {
		ready := false
		for _, cond := range p.Status.Conditions {
			ready = ready || cond.Type == corev1.PodReady && cond.Status == corev1.ConditionTrue
		}
		if !ready || !strings.HasPrefix(p.Spec.NodeName, "management-node-") {
			return false, fmt.Sprintf("pod %s on node %q, ready %v", p.Name, p.Spec.NodeName, ready)
		}
		if !slices.Contains(p.Spec.Containers[0].Args, arg) {
			return false, fmt.Sprintf("pod %s runs with %v, without %s", p.Name, p.Spec.Containers[0].Args, arg)
		}
	}
	return true, ""
}

// checkBudget: the disruption controller counts the Deployment's pods under its budget and lets one go.
func checkBudget(t *testing.T, name string, pods int32) {
	t.Helper()
	lab.Eventually(t, time.Minute, "budget "+name, func(ctx context.Context) (bool, string) {
		pdb, err := shared.Management.Client.PolicyV1().PodDisruptionBudgets(namespace).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		s := pdb.Status
		return s.ExpectedPods == pods && s.CurrentHealthy == pods && s.DesiredHealthy == 1 && s.DisruptionsAllowed == pods-1,
			fmt.Sprintf("%+v", s)
	})
}

// checkOwned: the fleet release owns the shared roles, policies and webhook registration it took over.
func checkOwned(ctx context.Context, t *testing.T, release string) {
	t.Helper()
	c := shared.Management.Client
	var metas []metav1.Object
	for _, name := range []string{"flotilla-node", "flotilla-failover"} {
		r, err := c.RbacV1().ClusterRoles().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		metas = append(metas, r)
	}
	role, err := c.RbacV1().Roles(namespace).Get(ctx, "flotilla-leader-election", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	metas = append(metas, role)
	for _, name := range []string{"flotilla-failover-taint", "flotilla-load-balancer-status", "flotilla-leader-lease"} {
		p, err := c.AdmissionregistrationV1().ValidatingAdmissionPolicies().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		metas = append(metas, p)
	}
	mwc, err := c.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, "flotilla", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range append(metas, mwc) {
		if got := m.GetAnnotations()["meta.helm.sh/release-name"]; got != release {
			t.Errorf("%s belongs to release %q, want %s", m.GetName(), got, release)
		}
	}
}

// checkAllGone: every object the releases made is gone, their pods and ReplicaSets too, and Helm's records
// of the releases.
func checkAllGone(ctx context.Context, t *testing.T, made []runtime.Object, releases ...string) {
	t.Helper()
	cfg := shared.Management.Config
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	disco, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(disco))
	var names []string
	for _, obj := range made {
		gvks, _, err := scheme.Scheme.ObjectKinds(obj)
		if err != nil {
			t.Fatal(err)
		}
		mapping, err := mapper.RESTMapping(gvks[0].GroupKind(), gvks[0].Version)
		if err != nil {
			t.Fatal(err)
		}
		m := obj.(metav1.Object)
		names = append(names, gvks[0].Kind+" "+m.GetName())
		resource := dyn.Resource(mapping.Resource)
		lab.Eventually(t, time.Minute, gvks[0].Kind+" "+m.GetName()+" gone", func(ctx context.Context) (bool, string) {
			var err error
			if m.GetNamespace() != "" {
				_, err = resource.Namespace(m.GetNamespace()).Get(ctx, m.GetName(), metav1.GetOptions{})
			} else {
				_, err = resource.Get(ctx, m.GetName(), metav1.GetOptions{})
			}
			return apierrors.IsNotFound(err), fmt.Sprintf("get: %v", err)
		})
	}
	t.Logf("the releases made, and uninstalling removed: %s", strings.Join(names, ", "))
	c := shared.Management.Client
	for _, release := range releases {
		instance := "app.kubernetes.io/instance=" + release
		lab.Eventually(t, time.Minute, "the pods and ReplicaSets of "+release+" gone", func(ctx context.Context) (bool, string) {
			pods, err := c.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{LabelSelector: instance})
			if err != nil {
				return false, err.Error()
			}
			sets, err := c.AppsV1().ReplicaSets(namespace).List(ctx, metav1.ListOptions{LabelSelector: instance})
			if err != nil {
				return false, err.Error()
			}
			return len(pods.Items)+len(sets.Items) == 0, fmt.Sprintf("%d pods, %d ReplicaSets", len(pods.Items), len(sets.Items))
		})
		records, err := c.CoreV1().Secrets(namespace).List(ctx, metav1.ListOptions{LabelSelector: "owner=helm,name=" + release})
		if err != nil || len(records.Items) > 0 {
			t.Errorf("Helm's records of %s are left: %v %v", release, err, records)
		}
	}
}
