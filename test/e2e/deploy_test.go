package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"

	"github.com/flotilla-io/flotilla/join"
	"github.com/flotilla-io/flotilla/tenancy"
	"github.com/flotilla-io/flotilla/test/lab"
)

// TestDeployManifests: the example overlay of deploy/flotilla renders and is accepted by the management
// apiserver (server-side dry run): it mounts the Secret `flotilla join` makes for its node, holds no
// ServiceAccount token of its own, and runs two replicas with leader election.
func TestDeployManifests(t *testing.T) {
	dir := t.TempDir()
	for _, sub := range []string{"base", "example"} {
		if err := os.CopyFS(filepath.Join(dir, sub), os.DirFS(filepath.Join(lab.RepoRoot(), "deploy", "flotilla", sub))); err != nil {
			t.Fatal(err)
		}
	}
	overlay := filepath.Join(dir, "example")

	out, err := kubectlOutput("apply", "--dry-run=server", "-k", overlay)
	if err != nil {
		t.Fatalf("kubectl apply --dry-run=server -k: %v\n%s", err, out)
	}
	for _, want := range []string{"deployment.apps/flotilla-eu-west-3-1", "configmap/flotilla-eu-west-3-1-"} {
		if !strings.Contains(out, want) {
			t.Errorf("dry run did not apply %s:\n%s", want, out)
		}
	}

	rendered, err := kubectlOutput("kustomize", overlay)
	if err != nil {
		t.Fatalf("kubectl kustomize: %v\n%s", err, rendered)
	}
	var d *appsv1.Deployment
	generated := map[string]bool{}
	for _, doc := range strings.Split(rendered, "\n---\n") {
		var obj struct {
			Kind     string `json:"kind"`
			Metadata struct {
				Name string `json:"name"`
			} `json:"metadata"`
		}
		if err := yaml.Unmarshal([]byte(doc), &obj); err != nil {
			t.Fatal(err)
		}
		generated[obj.Metadata.Name] = true
		if obj.Kind == "Deployment" {
			d = &appsv1.Deployment{}
			if err := yaml.Unmarshal([]byte(doc), d); err != nil {
				t.Fatal(err)
			}
		}
	}
	if d == nil {
		t.Fatalf("no Deployment rendered:\n%s", rendered)
	}
	spec := d.Spec.Template.Spec
	if *d.Spec.Replicas != 2 || spec.AutomountServiceAccountToken == nil || *spec.AutomountServiceAccountToken || d.Namespace != "flotilla-system" ||
		!strings.Contains(strings.Join(spec.Containers[0].Args, " "), "--leader-elect") {
		t.Errorf("deployment: replicas %d, automount %v, namespace %q, args %v",
			*d.Spec.Replicas, spec.AutomountServiceAccountToken, d.Namespace, spec.Containers[0].Args)
	}
	var refs []string
	for _, e := range spec.Containers[0].Env {
		if e.ValueFrom != nil && e.ValueFrom.ConfigMapKeyRef != nil {
			refs = append(refs, e.ValueFrom.ConfigMapKeyRef.Name)
		}
	}
	for _, v := range spec.Volumes {
		if v.Secret != nil {
			refs = append(refs, v.Secret.SecretName)
		}
	}
	if len(refs) != 2 || !generated[refs[0]] || refs[1] != join.SecretName("eu-west-3-1") {
		t.Errorf("the Deployment refers to %v, want the overlay's ConfigMap and the Secret of flotilla join, %s", refs, join.SecretName("eu-west-3-1"))
	}
}

// TestWebhookManifests: deploy/webhook renders the webhook of the tenancy contract (docs/DESIGN.md) and the
// management apiserver accepts it (server-side dry run). The lab has registered its own webhook under the
// same name, so the dry run creates this one under another.
func TestWebhookManifests(t *testing.T) {
	rendered, err := kubectlOutput("kustomize", filepath.Join(lab.RepoRoot(), "deploy", "webhook"))
	if err != nil {
		t.Fatalf("kubectl kustomize: %v\n%s", err, rendered)
	}
	var (
		mwc     *admissionregistrationv1.MutatingWebhookConfiguration
		d       *appsv1.Deployment
		svc     *corev1.Service
		pdb     *policyv1.PodDisruptionBudget
		renamed []string
	)
	for _, doc := range strings.Split(rendered, "\n---\n") {
		var obj struct {
			Kind string `json:"kind"`
		}
		if err := yaml.Unmarshal([]byte(doc), &obj); err != nil {
			t.Fatal(err)
		}
		var into any
		switch obj.Kind {
		case "MutatingWebhookConfiguration":
			mwc = &admissionregistrationv1.MutatingWebhookConfiguration{}
			into = mwc
		case "Deployment":
			d = &appsv1.Deployment{}
			into = d
		case "Service":
			svc = &corev1.Service{}
			into = svc
		case "PodDisruptionBudget":
			pdb = &policyv1.PodDisruptionBudget{}
			into = pdb
		default:
			t.Errorf("unexpected %s in deploy/webhook", obj.Kind)
			continue
		}
		if err := yaml.UnmarshalStrict([]byte(doc), into); err != nil {
			t.Fatalf("%s: %v", obj.Kind, err)
		}
		if obj.Kind == "MutatingWebhookConfiguration" {
			dryRun := mwc.DeepCopy()
			dryRun.Name = "flotilla-dry-run"
			b, err := yaml.Marshal(dryRun)
			if err != nil {
				t.Fatal(err)
			}
			doc = string(b)
		}
		renamed = append(renamed, doc)
	}
	if mwc == nil || d == nil || svc == nil || pdb == nil {
		t.Fatalf("deploy/webhook renders a MutatingWebhookConfiguration, a Deployment, a Service and a PodDisruptionBudget:\n%s", rendered)
	}

	file := filepath.Join(t.TempDir(), "webhook.yaml")
	if err := os.WriteFile(file, []byte(strings.Join(renamed, "\n---\n")), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := kubectlOutput("create", "--dry-run=server", "-f", file)
	if err != nil {
		t.Fatalf("kubectl create --dry-run=server: %v\n%s", err, out)
	}
	for _, want := range []string{"mutatingwebhookconfiguration.admissionregistration.k8s.io/flotilla-dry-run",
		"deployment.apps/flotilla-webhook", "service/flotilla-webhook", "poddisruptionbudget.policy/flotilla-webhook"} {
		if !strings.Contains(out, want) {
			t.Errorf("dry run did not create %s:\n%s", want, out)
		}
	}

	// The registration of the contract.
	fail, none, never, equivalent := admissionregistrationv1.Fail, admissionregistrationv1.SideEffectClassNone,
		admissionregistrationv1.NeverReinvocationPolicy, admissionregistrationv1.Equivalent
	namespaced := admissionregistrationv1.NamespacedScope
	want := admissionregistrationv1.MutatingWebhook{
		Name: "tolerations.flotilla.io",
		ClientConfig: admissionregistrationv1.WebhookClientConfig{Service: &admissionregistrationv1.ServiceReference{
			Namespace: "flotilla-system", Name: "flotilla-webhook", Path: ptr.To("/mutate-pods"), Port: ptr.To[int32](443)}},
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
	}
	if mwc.Name != "flotilla" || len(mwc.Webhooks) != 1 {
		t.Fatalf("MutatingWebhookConfiguration %q with %d webhooks, want flotilla with one", mwc.Name, len(mwc.Webhooks))
	}
	if diff := cmp.Diff(want, mwc.Webhooks[0]); diff != "" {
		t.Errorf("webhook (-want +got):\n%s", diff)
	}

	// What serves it: two replicas with no API credentials, behind the Service, kept by the budget.
	spec := d.Spec.Template.Spec
	c := spec.Containers[0]
	if d.Name != "flotilla-webhook" || d.Namespace != "flotilla-system" || *d.Spec.Replicas != 2 ||
		spec.AutomountServiceAccountToken == nil || *spec.AutomountServiceAccountToken ||
		len(c.Args) == 0 || c.Args[0] != "webhook" || c.ReadinessProbe == nil || c.ReadinessProbe.HTTPGet.Path != "/readyz" ||
		c.LivenessProbe == nil || c.LivenessProbe.HTTPGet.Path != "/healthz" || c.ReadinessProbe.HTTPGet.Scheme != corev1.URISchemeHTTPS {
		t.Errorf("deployment %s/%s: replicas %d, automount %v, args %v, probes %+v %+v",
			d.Namespace, d.Name, *d.Spec.Replicas, spec.AutomountServiceAccountToken, c.Args, c.ReadinessProbe, c.LivenessProbe)
	}
	if sc := c.SecurityContext; sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem ||
		sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation || spec.SecurityContext == nil ||
		spec.SecurityContext.RunAsNonRoot == nil || !*spec.SecurityContext.RunAsNonRoot {
		t.Errorf("the webhook's pod is not hardened like flotilla's: %+v, %+v", spec.SecurityContext, sc)
	}
	mounted := false
	for _, v := range spec.Volumes {
		mounted = mounted || v.Secret != nil && v.Secret.SecretName == "flotilla-webhook-tls"
	}
	args := strings.Join(c.Args, " ")
	if !mounted || !strings.Contains(args, "--tls-cert-file=/etc/flotilla/webhook/tls.crt") || !strings.Contains(args, "--bind-address=0.0.0.0:8443") {
		t.Errorf("the webhook does not serve the Secret flotilla-webhook-tls on 8443: volumes %+v, args %v", spec.Volumes, c.Args)
	}
	podLabels := labels.Set(d.Spec.Template.Labels)
	if len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].Port != 443 || svc.Spec.Ports[0].TargetPort.String() != "https" ||
		c.Ports[0].Name != "https" || c.Ports[0].ContainerPort != 8443 || !labels.SelectorFromSet(svc.Spec.Selector).Matches(podLabels) {
		t.Errorf("service %+v does not lead to the pods' port 8443 (%+v)", svc.Spec, c.Ports)
	}
	selector, err := metav1.LabelSelectorAsSelector(pdb.Spec.Selector)
	if err != nil || pdb.Spec.MinAvailable == nil || pdb.Spec.MinAvailable.IntValue() != 1 || !selector.Matches(podLabels) {
		t.Errorf("pod disruption budget %+v does not keep one webhook pod", pdb.Spec)
	}
}
