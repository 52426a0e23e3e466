package lab

import (
	"slices"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/util/version"
)

func TestModuleName(t *testing.T) {
	for module, want := range map[string]string{
		"k8s.io/kubernetes":         "kubernetes",
		"sigs.k8s.io/kwok":          "kwok",
		"helm.sh/helm/v4":           "helm",
		"helm.sh/helm/v3":           "helm",
		"example.com/tools/v2beta":  "v2beta", // not a major version suffix
		"example.com/vendor/v":      "v",
		"gopkg.in/yaml.v3":          "yaml.v3",
		"go.etcd.io/etcd/server/v3": "server",
	} {
		if got := moduleName(module); got != want {
			t.Errorf("moduleName(%q) = %q, want %q", module, got, want)
		}
	}
}

// TestKubernetesModules: every Kubernetes tools module pins a version, the default the newest (the others
// are the older clusters of the skew run), and a module that is not there is named in the error.
func TestKubernetesModules(t *testing.T) {
	modules, err := KubernetesModules()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(modules, DefaultKubernetes) || len(modules) < 2 {
		t.Fatalf("tools modules %v: want %q and at least one older version", modules, DefaultKubernetes)
	}
	newest := pinned(t, DefaultKubernetes)
	for _, module := range modules {
		if v := pinned(t, module); module != DefaultKubernetes && !v.LessThan(newest) {
			t.Errorf("%s pins %s, not older than the default's %s", module, v, newest)
		}
	}
	if _, err := ClusterBinaries("k8s-0.1"); err == nil || !strings.Contains(err.Error(), `no Kubernetes tools module "k8s-0.1"`) {
		t.Errorf("ClusterBinaries of a missing module: %v", err)
	}
}

func pinned(t *testing.T, module string) *version.Version {
	t.Helper()
	v, err := KubernetesVersion(module)
	if err != nil {
		t.Fatal(err)
	}
	return version.MustParseSemantic(v)
}
