package lab

import "testing"

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
