package deploy_test

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io/fs"
	"maps"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	psaapi "k8s.io/pod-security-admission/api"
	psapolicy "k8s.io/pod-security-admission/policy"
	"k8s.io/utils/ptr"

	"github.com/flotilla-io/flotilla/deploy"
	"github.com/flotilla-io/flotilla/join"
	"github.com/flotilla-io/flotilla/tenancy"
	"github.com/flotilla-io/flotilla/test/lab"
)

// The chart's tests that need no cluster: helm lint, the values it refuses, and what it renders. The lab's
// apiservers judge the rendering in test/chart.

// helms returns the helm binaries of lab.Helms, built into .cache on first use.
func helms(t *testing.T) map[string]string {
	t.Helper()
	bins, err := lab.Binaries()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, name := range lab.Helms {
		out[name] = bins[name]
	}
	return out
}

// TestChartLints: helm lint --strict passes for each values file of the chart's ci/ folder, with Helm 4 and 3.
func TestChartLints(t *testing.T) {
	chart := filepath.Join(lab.RepoRoot(), lab.Chart)
	files, err := filepath.Glob(filepath.Join(chart, "ci", "*-values.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no values files in %s/ci: %v", chart, err)
	}
	for name, helm := range helms(t) {
		for _, values := range files {
			t.Run(name+"/"+filepath.Base(values), func(t *testing.T) {
				out, err := exec.Command(helm, "lint", chart, "--strict", "--namespace", tenancy.IdentityNamespace, "--values", values).CombinedOutput()
				if err != nil || !strings.Contains(string(out), "1 chart(s) linted, 0 chart(s) failed") {
					t.Errorf("helm lint: %v\n%s", err, out)
				}
			})
		}
	}
}

// TestChartRefusesBadValues: values no release can work with end in helm's error naming the problem, before
// anything is applied (templates/checks.yaml and values.schema.json).
func TestChartRefusesBadValues(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want []string // all in helm's error
	}{
		{"another namespace", []string{"--set", "cluster.name=eu-west-3-1", "--namespace", "default"},
			[]string{`install flotilla into the namespace flotilla-system`, `not "default"`}},
		{"nothing to install", nil, []string{"nothing to install: set cluster.name", "fleet.enabled=true"}},
		{"a cluster name that is no DNS name", []string{"--set", "cluster.name=EU_West"}, []string{"cluster", "name", "EU_West"}},
		{"a misspelt key", []string{"--set", "cluster.name=eu-west-3-1", "--set", "cluster.replica=3"}, []string{"replica"}},
		{"a flag without its dashes", []string{"--set", "cluster.name=eu-west-3-1", "--set", "cluster.extraArgs={failover-after=30s}"},
			[]string{"extraArgs", "failover-after=30s"}},
		{"no replica", []string{"--set", "cluster.name=eu-west-3-1", "--set", "cluster.replicas=0"}, []string{"replicas"}},
		{"a CA bundle that is no PEM", []string{"--set", "fleet.enabled=true", "--set", "fleet.webhook.caBundle=LS0tLS1CRUdJTg=="},
			[]string{"caBundle"}},
		{"the health port as kubelet port", []string{"--set", "cluster.name=eu-west-3-1", "--set", "cluster.kubeletPort=10248"},
			[]string{"kubeletPort"}},
	} {
		for name, helm := range helms(t) {
			t.Run(name+"/"+tc.name, func(t *testing.T) {
				out, err := lab.RenderChart(helm, "flotilla", tc.args...)
				if err == nil {
					t.Fatalf("helm template accepted %v:\n%s", tc.args, out)
				}
				for _, want := range tc.want {
					if !strings.Contains(err.Error(), want) {
						t.Errorf("helm's error does not say %q:\n%v", want, err)
					}
				}
			})
		}
	}
}

// TestChartRendersAlikeWithHelm3And4: both Helms render the same objects from the same values (their output
// differs in blank lines only).
func TestChartRendersAlikeWithHelm3And4(t *testing.T) {
	rendered := map[string][]runtime.Object{}
	for name, helm := range helms(t) {
		out, err := lab.RenderChart(helm, "flotilla", "--values", filepath.Join(lab.RepoRoot(), lab.Chart, "ci", "all-values.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		if rendered[name], err = lab.DecodeManifests(out); err != nil {
			t.Fatal(err)
		}
	}
	if len(rendered["helm"]) == 0 || !equality.Semantic.DeepEqual(rendered["helm3"], rendered["helm"]) {
		t.Errorf("Helm 3 and Helm 4 render differently (-helm3 +helm):\n%s", cmp.Diff(rendered["helm3"], rendered["helm"]))
	}
}

// rendered is what one helm template made, by kind and name.
type rendered map[string]runtime.Object

func render(t *testing.T, args ...string) rendered {
	t.Helper()
	out, err := lab.RenderChart(helms(t)["helm"], "flotilla", args...)
	if err != nil {
		t.Fatal(err)
	}
	objs, err := lab.DecodeManifests(out)
	if err != nil {
		t.Fatal(err)
	}
	r := rendered{}
	for _, obj := range objs {
		r[key(t, obj)] = obj
	}
	return r
}

func key(t *testing.T, obj runtime.Object) string {
	t.Helper()
	m, err := metaOf(obj)
	if err != nil {
		t.Fatal(err)
	}
	return reflect.TypeOf(obj).Elem().Name() + "/" + m.GetName()
}

func metaOf(obj runtime.Object) (metav1.Object, error) {
	m, ok := obj.(metav1.Object)
	if !ok {
		return nil, fmt.Errorf("%T has no object metadata", obj)
	}
	return m, nil
}

// keys are the kinds and names rendered, sorted.
func (r rendered) keys() []string { return slices.Sorted(maps.Keys(r)) }

// TestChartFleetIsTheFilesJoinApplies: the fleet part renders the management cluster's roles and policies
// exactly as the files `flotilla join` embeds (one copy), the webhook, and nothing per cluster.
func TestChartFleetIsTheFilesJoinApplies(t *testing.T) {
	r := render(t, "--set", "fleet.enabled=true")
	var fromFiles []runtime.Object
	for _, file := range []string{"rbac/management.yaml", "policies/management.yaml"} {
		b, err := fs.ReadFile(deploy.Manifests, file)
		if err != nil {
			t.Fatal(err)
		}
		objs, err := lab.DecodeManifests(b)
		if err != nil {
			t.Fatal(err)
		}
		fromFiles = append(fromFiles, objs...)
	}
	want := []string{"Deployment/flotilla-webhook", "Service/flotilla-webhook", "PodDisruptionBudget/flotilla-webhook",
		"MutatingWebhookConfiguration/flotilla", "Secret/flotilla-webhook-tls"}
	for _, obj := range fromFiles {
		k := key(t, obj)
		want = append(want, k)
		if got, ok := r[k]; !ok {
			t.Errorf("the fleet part lacks %s of the files join applies", k)
		} else if !equality.Semantic.DeepEqual(got, obj) {
			t.Errorf("%s differs from the file join applies: %s", k, cmp.Diff(obj, got))
		}
	}
	if len(fromFiles) != 9 {
		t.Errorf("the files hold %d objects, want 9: the ClusterRoles flotilla-node and flotilla-failover, the Role flotilla-leader-election, three ValidatingAdmissionPolicies and their bindings", len(fromFiles))
	}
	slices.Sort(want)
	if diff := cmp.Diff(want, r.keys()); diff != "" {
		t.Errorf("the fleet part renders (-want +got):\n%s", diff)
	}
}

// TestChartClusterPart: a workload cluster's release runs two replicas with leader election from the Secret
// `flotilla join` made, in pods the restricted Pod Security Standard admits, probed on /healthz and /readyz,
// kept by a PodDisruptionBudget; and nothing of the fleet.
func TestChartClusterPart(t *testing.T) {
	const cluster = "eu-west-3-1"
	r := render(t, "--set", "cluster.name="+cluster)
	if diff := cmp.Diff([]string{"Deployment/flotilla-" + cluster, "PodDisruptionBudget/flotilla-" + cluster}, r.keys()); diff != "" {
		t.Fatalf("a cluster's release renders (-want +got):\n%s", diff)
	}
	d := r["Deployment/flotilla-"+cluster].(*appsv1.Deployment)
	spec := d.Spec.Template.Spec
	c := spec.Containers[0]
	const creds = "/etc/flotilla/credentials/"
	wantArgs := []string{
		"--cluster-name=" + cluster,
		"--management-kubeconfig=" + creds + join.KeyManagementKubeconfig,
		"--failover-kubeconfig=" + creds + join.KeyFailoverKubeconfig,
		"--workload-kubeconfig=" + creds + join.KeyWorkloadKubeconfig,
		"--cert-dir=/var/lib/flotilla",
		"--internal-ip=$(POD_IP)",
		"--kubelet-port=10250",
		"--tls-cert-file=" + creds + join.KeyKubeletCert,
		"--tls-key-file=" + creds + join.KeyKubeletKey,
		"--client-ca-file=" + creds + join.KeyClientCA,
		"--leader-elect",
	}
	if diff := cmp.Diff(wantArgs, c.Args); diff != "" {
		t.Errorf("args (-want +got):\n%s", diff)
	}
	if d.Namespace != tenancy.IdentityNamespace || *d.Spec.Replicas != 2 || c.Image != "ghcr.io/flotilla-io/flotilla:0.1.0" {
		t.Errorf("deployment %s/%s: %d replicas of %s", d.Namespace, d.Name, *d.Spec.Replicas, c.Image)
	}
	wantEnv := []corev1.EnvVar{
		{Name: "POD_IP", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "status.podIP"}}},
		{Name: "GOMEMLIMIT", ValueFrom: &corev1.EnvVarSource{ResourceFieldRef: &corev1.ResourceFieldSelector{Resource: "limits.memory"}}},
	}
	if diff := cmp.Diff(wantEnv, c.Env); diff != "" {
		t.Errorf("env (-want +got):\n%s", diff)
	}
	// Without a memory limit there is nothing for the garbage collector to keep under.
	unlimited := render(t, "--set", "cluster.name="+cluster, "--set", "cluster.resources.limits=null")
	for _, e := range unlimited["Deployment/flotilla-"+cluster].(*appsv1.Deployment).Spec.Template.Spec.Containers[0].Env {
		if e.Name == "GOMEMLIMIT" {
			t.Errorf("without a memory limit the chart still sets GOMEMLIMIT: %+v", e)
		}
	}
	wantPorts := []corev1.ContainerPort{{Name: "kubelet", ContainerPort: 10250}, {Name: "health", ContainerPort: 10248}}
	if diff := cmp.Diff(wantPorts, c.Ports); diff != "" {
		t.Errorf("ports (-want +got):\n%s", diff)
	}
	checkProbes(t, c, "health", corev1.URISchemeHTTP)
	if c.ReadinessProbe.TimeoutSeconds <= 2 {
		t.Errorf("readiness probe times out in %d s, within the 2 s /readyz may wait for the apiserver", c.ReadinessProbe.TimeoutSeconds)
	}
	checkHardened(t, d)
	var secret *corev1.SecretVolumeSource
	for _, v := range spec.Volumes {
		if v.Secret != nil {
			secret = v.Secret
		}
	}
	if secret == nil || secret.SecretName != join.SecretName(cluster) || len(c.VolumeMounts) == 0 || c.VolumeMounts[0].MountPath+"/" != creds {
		t.Errorf("the pod does not mount the Secret of flotilla join, %s, at %s: %+v, %+v", join.SecretName(cluster), creds, spec.Volumes, c.VolumeMounts)
	}
	checkBudget(t, r["PodDisruptionBudget/flotilla-"+cluster].(*policyv1.PodDisruptionBudget), d)
}

// TestChartClusterOptions: the values a workload cluster's release may change reach the pod.
func TestChartClusterOptions(t *testing.T) {
	r := render(t, "--set", "cluster.name=eu-west-3-1", "--set", "cluster.nodeName=eu-west-3-1-b", "--set", "cluster.credentialsSecret=creds",
		"--set", "cluster.replicas=1", "--set", "cluster.metrics.expose=true", "--set", "cluster.kubeletPort=11250",
		"--set", "cluster.extraArgs={--failover-after=30s}", "--set", "image.tag=dev")
	d, ok := r["Deployment/flotilla-eu-west-3-1-b"].(*appsv1.Deployment)
	if !ok {
		t.Fatalf("no Deployment named after the node: %v", r.keys())
	}
	if _, ok := r["PodDisruptionBudget/flotilla-eu-west-3-1-b"]; ok {
		t.Error("a PodDisruptionBudget for one replica, which would block every drain")
	}
	c := d.Spec.Template.Spec.Containers[0]
	args := strings.Join(c.Args, " ")
	for _, want := range []string{"--node-name=eu-west-3-1-b", "--metrics-address=:10255", "--kubelet-port=11250", "--failover-after=30s"} {
		if !strings.Contains(args, want) {
			t.Errorf("args lack %s: %v", want, c.Args)
		}
	}
	ports := map[string]int32{}
	for _, p := range c.Ports {
		ports[p.Name] = p.ContainerPort
	}
	if ports["metrics"] != 10255 || ports["kubelet"] != 11250 || c.Image != "ghcr.io/flotilla-io/flotilla:dev" ||
		d.Spec.Template.Spec.Volumes[0].Secret.SecretName != "creds" || *d.Spec.Replicas != 1 {
		t.Errorf("ports %v, image %s, volumes %+v, replicas %d", ports, c.Image, d.Spec.Template.Spec.Volumes, *d.Spec.Replicas)
	}
}

// TestChartMakesTheWebhookCertificate: unless the operator brings the webhook's trust (a caBundle, a CA
// injector's annotations), the fleet part makes it: a kubernetes.io/tls Secret whose serving certificate the
// registration's caBundle verifies for the Service's name. When the operator brings it, the chart makes no
// Secret (theirs is left alone).
func TestChartMakesTheWebhookCertificate(t *testing.T) {
	r := render(t, "--set", "fleet.enabled=true")
	secret, ok := r["Secret/flotilla-webhook-tls"].(*corev1.Secret)
	if !ok {
		t.Fatalf("no Secret flotilla-webhook-tls among %v", r.keys())
	}
	caBundle := r["MutatingWebhookConfiguration/flotilla"].(*admissionregistrationv1.MutatingWebhookConfiguration).Webhooks[0].ClientConfig.CABundle
	if secret.Type != corev1.SecretTypeTLS || !bytes.Equal(caBundle, secret.Data["ca.crt"]) {
		t.Fatalf("Secret of type %s; caBundle %q, the Secret's ca.crt %q", secret.Type, caBundle, secret.Data["ca.crt"])
	}
	pair, err := tls.X509KeyPair(secret.Data["tls.crt"], secret.Data["tls.key"])
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(caBundle) {
		t.Fatalf("caBundle holds no certificate: %q", caBundle)
	}
	name := "flotilla-webhook." + tenancy.IdentityNamespace + ".svc"
	if _, err := leaf.Verify(x509.VerifyOptions{DNSName: name, Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
		t.Errorf("the apiserver would not trust the webhook's certificate for %s: %v", name, err)
	}

	caPEM := "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
	for name, args := range map[string][]string{
		"a caBundle":              {"--set-string", "fleet.webhook.caBundle=" + caPEM},
		"a CA injector":           {"--set", "fleet.webhook.annotations.cert-manager\\.io/inject-ca-from=flotilla-system/flotilla-webhook"},
		"generation switched off": {"--set", "fleet.webhook.generateCertificate=false"},
	} {
		if r := render(t, append([]string{"--set", "fleet.enabled=true"}, args...)...); r["Secret/flotilla-webhook-tls"] != nil {
			t.Errorf("with %s the chart still makes the Secret", name)
		}
	}
}

// TestChartWebhook: the fleet part's webhook is the registration of the tenancy contract (docs/DESIGN.md),
// served by hardened replicas without API credentials behind the Service flotilla-webhook, kept by a budget.
func TestChartWebhook(t *testing.T) {
	caPEM := "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
	r := render(t, "--set", "fleet.enabled=true", "--set-string", "fleet.webhook.caBundle="+caPEM)
	mwc := r["MutatingWebhookConfiguration/flotilla"].(*admissionregistrationv1.MutatingWebhookConfiguration)
	fail, none, never, equivalent := admissionregistrationv1.Fail, admissionregistrationv1.SideEffectClassNone,
		admissionregistrationv1.NeverReinvocationPolicy, admissionregistrationv1.Equivalent
	namespaced := admissionregistrationv1.NamespacedScope
	want := []admissionregistrationv1.MutatingWebhook{{
		Name: "tolerations.flotilla.io",
		ClientConfig: admissionregistrationv1.WebhookClientConfig{
			Service: &admissionregistrationv1.ServiceReference{
				Namespace: tenancy.IdentityNamespace, Name: "flotilla-webhook", Path: ptr.To("/mutate-pods"), Port: ptr.To[int32](443)},
			CABundle: []byte(caPEM),
		},
		Rules: []admissionregistrationv1.RuleWithOperations{{
			Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create},
			Rule:       admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"}, Scope: &namespaced},
		}},
		FailurePolicy:           &fail,
		MatchPolicy:             &equivalent,
		NamespaceSelector:       &metav1.LabelSelector{MatchLabels: map[string]string{tenancy.LabelEnabled: "true"}},
		SideEffects:             &none,
		TimeoutSeconds:          ptr.To[int32](5),
		AdmissionReviewVersions: []string{"v1"},
		ReinvocationPolicy:      &never,
	}}
	if diff := cmp.Diff(want, mwc.Webhooks); diff != "" {
		t.Errorf("webhooks (-want +got):\n%s", diff)
	}

	d := r["Deployment/flotilla-webhook"].(*appsv1.Deployment)
	c := d.Spec.Template.Spec.Containers[0]
	if diff := cmp.Diff([]string{"webhook", "--bind-address=0.0.0.0:8443", "--tls-cert-file=/etc/flotilla/webhook/tls.crt",
		"--tls-key-file=/etc/flotilla/webhook/tls.key"}, c.Args); diff != "" {
		t.Errorf("webhook args (-want +got):\n%s", diff)
	}
	if *d.Spec.Replicas != 2 || d.Spec.Template.Spec.Volumes[0].Secret.SecretName != "flotilla-webhook-tls" {
		t.Errorf("webhook: %d replicas, volumes %+v", *d.Spec.Replicas, d.Spec.Template.Spec.Volumes)
	}
	checkProbes(t, c, "https", corev1.URISchemeHTTPS)
	checkHardened(t, d)
	svc := r["Service/flotilla-webhook"].(*corev1.Service)
	if len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].Port != 443 || svc.Spec.Ports[0].TargetPort != intstr.FromString("https") ||
		c.Ports[0].Name != "https" || c.Ports[0].ContainerPort != 8443 || !labels.SelectorFromSet(svc.Spec.Selector).Matches(labels.Set(d.Spec.Template.Labels)) {
		t.Errorf("service %+v does not lead to the pods' port 8443 (%+v)", svc.Spec, c.Ports)
	}
	checkBudget(t, r["PodDisruptionBudget/flotilla-webhook"].(*policyv1.PodDisruptionBudget), d)
}

func checkProbes(t *testing.T, c corev1.Container, port string, scheme corev1.URIScheme) {
	t.Helper()
	for path, p := range map[string]*corev1.Probe{"/readyz": c.ReadinessProbe, "/healthz": c.LivenessProbe} {
		if p == nil || p.HTTPGet == nil || p.HTTPGet.Path != path || p.HTTPGet.Port != intstr.FromString(port) || p.HTTPGet.Scheme != scheme {
			t.Errorf("probe of %s: %+v", path, p)
		}
	}
}

// checkHardened: the restricted Pod Security Standard admits the pod (Kubernetes' own checks), it runs with
// no ServiceAccount token, and on a read-only root file system.
func checkHardened(t *testing.T, d *appsv1.Deployment) {
	t.Helper()
	evaluator, err := psapolicy.NewEvaluator(psapolicy.DefaultChecks(), nil)
	if err != nil {
		t.Fatal(err)
	}
	restricted := psaapi.LevelVersion{Level: psaapi.LevelRestricted, Version: psaapi.LatestVersion()}
	for _, result := range evaluator.EvaluatePod(restricted, &d.Spec.Template.ObjectMeta, &d.Spec.Template.Spec) {
		if !result.Allowed {
			t.Errorf("%s: restricted Pod Security refuses the pod: %s: %s", d.Name, result.ForbiddenReason, result.ForbiddenDetail)
		}
	}
	spec := d.Spec.Template.Spec
	if spec.AutomountServiceAccountToken == nil || *spec.AutomountServiceAccountToken {
		t.Errorf("%s: the pod gets a ServiceAccount token", d.Name)
	}
	for _, c := range spec.Containers {
		if sc := c.SecurityContext; sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
			t.Errorf("%s: container %s may write its root file system", d.Name, c.Name)
		}
	}
}

// checkBudget: the budget keeps one of the Deployment's pods, and only its.
func checkBudget(t *testing.T, pdb *policyv1.PodDisruptionBudget, d *appsv1.Deployment) {
	t.Helper()
	selector, err := metav1.LabelSelectorAsSelector(pdb.Spec.Selector)
	if err != nil {
		t.Fatal(err)
	}
	if pdb.Spec.MinAvailable == nil || pdb.Spec.MinAvailable.IntValue() != 1 || !selector.Matches(labels.Set(d.Spec.Template.Labels)) ||
		selector.String() != labels.SelectorFromSet(d.Spec.Selector.MatchLabels).String() {
		t.Errorf("budget %s (%s, min available %v) does not keep one pod of %s (%v)", pdb.Name, selector, pdb.Spec.MinAvailable, d.Name, d.Spec.Selector.MatchLabels)
	}
}
