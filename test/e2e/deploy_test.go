package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	"sigs.k8s.io/yaml"

	"github.com/flotilla-io/flotilla/test/lab"
)

// TestDeployManifests: the example overlay of deploy/flotilla, given the files it asks for, renders and is
// accepted by the management apiserver (server-side dry run, after deploy/rbac/management.yaml, which the
// lab applies): every name it generates is referenced, and the pods run as the ServiceAccount the RBAC binds,
// as two replicas with leader election.
func TestDeployManifests(t *testing.T) {
	dir := t.TempDir()
	for _, sub := range []string{"base", "example"} {
		if err := os.CopyFS(filepath.Join(dir, sub), os.DirFS(filepath.Join(lab.RepoRoot(), "deploy", "flotilla", sub))); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{"workload.kubeconfig", "kubelet.crt", "kubelet.key"} {
		if err := os.WriteFile(filepath.Join(dir, "example", f), []byte("stand-in\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	overlay := filepath.Join(dir, "example")

	out, err := kubectlOutput("apply", "--dry-run=server", "-k", overlay)
	if err != nil {
		t.Fatalf("kubectl apply --dry-run=server -k: %v\n%s", err, out)
	}
	for _, want := range []string{"deployment.apps/flotilla-eu-west-3-1", "configmap/flotilla-eu-west-3-1-", "secret/flotilla-workload-eu-west-3-1-", "secret/flotilla-kubelet-tls-eu-west-3-1-"} {
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
	if *d.Spec.Replicas != 2 || spec.ServiceAccountName != "flotilla" || d.Namespace != "flotilla-system" ||
		!strings.Contains(strings.Join(spec.Containers[0].Args, " "), "--leader-elect") {
		t.Errorf("deployment: replicas %d, service account %q, namespace %q, args %v",
			*d.Spec.Replicas, spec.ServiceAccountName, d.Namespace, spec.Containers[0].Args)
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
	if len(refs) != 3 {
		t.Errorf("the Deployment refers to %v, want one ConfigMap and two Secrets", refs)
	}
	for _, r := range refs {
		if !generated[r] {
			t.Errorf("the Deployment refers to %q, which the overlay does not generate", r)
		}
	}
}
