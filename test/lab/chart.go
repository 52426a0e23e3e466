package lab

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"path/filepath"
	"strings"

	"k8s.io/apimachinery/pkg/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes/scheme"

	"github.com/flotilla-io/flotilla/tenancy"
)

// Chart is flotilla's Helm chart, relative to the repository root.
const Chart = "deploy/charts/flotilla"

// Helms name the helm binaries of Binaries the chart is tested with: Helm 4, which the lab uses, and Helm 3.
var Helms = []string{"helm", "helm3"}

// RenderChart is `helm template` of the chart as release into flotilla-system, with further helm arguments
// (--set, --show-only, ...): the manifests a helm install would apply, or helm's own error.
func RenderChart(helm, release string, args ...string) ([]byte, error) {
	args = append([]string{"template", release, filepath.Join(RepoRoot(), Chart), "--namespace", tenancy.IdentityNamespace}, args...)
	var stderr bytes.Buffer
	cmd := exec.Command(helm, args...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("helm %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return out, nil
}

// DecodeManifests decodes a stream of YAML documents (helm's output, a manifest file) into typed objects
// of client-go's scheme, skipping documents that hold only comments.
func DecodeManifests(manifests []byte) ([]runtime.Object, error) {
	reader := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(manifests)))
	var objs []runtime.Object
	for {
		doc, err := reader.Read()
		if errors.Is(err, io.EOF) {
			return objs, nil
		} else if err != nil {
			return nil, err
		}
		var content any
		if err := utilyaml.Unmarshal(doc, &content); err != nil {
			return nil, fmt.Errorf("%w:\n%s", err, doc)
		}
		if content == nil {
			continue // only comments
		}
		obj, _, err := scheme.Codecs.UniversalDeserializer().Decode(doc, nil, nil)
		if err != nil {
			return nil, fmt.Errorf("%w:\n%s", err, doc)
		}
		objs = append(objs, obj)
	}
}
