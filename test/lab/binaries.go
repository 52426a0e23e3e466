package lab

import (
	"bufio"
	"cmp"
	"crypto/sha256"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// toolchain is one tools module under test/tools and the commands the lab builds from it.
type toolchain struct {
	dir      string            // the tools module, relative to the repository root
	module   string            // the dependency whose version keys the cache folder
	commands map[string]string // binary name -> Go package
	// ldflags stamps the version into binaries built from the module proxy, which otherwise report
	// v0.0.0-master (and kubectl would warn of skew against every server). requires gives the version of
	// another module the tools module requires.
	ldflags func(version string, requires func(module string) (string, error)) (string, error)
}

// DefaultKubernetes is the tools module (under test/tools) of the lab's control planes when a cluster names
// none: the Kubernetes flotilla is built against.
const DefaultKubernetes = "k8s"

// kubernetesToolchain builds a control plane from the tools module test/tools/<module>, which pins one
// k8s.io/kubernetes; another such module (k8s-1.35) gives clusters of an older version beside it.
func kubernetesToolchain(module string, commands map[string]string) toolchain {
	return toolchain{
		dir:      "test/tools/" + module,
		module:   "k8s.io/kubernetes",
		commands: commands,
		ldflags: func(version string, _ func(string) (string, error)) (string, error) {
			major, minor := majorMinor(version)
			var flags []string
			for _, pkg := range []string{"k8s.io/component-base/version", "k8s.io/client-go/pkg/version"} {
				flags = append(flags, "-X", pkg+".gitVersion="+version, "-X", pkg+".gitMajor="+major,
					"-X", pkg+".gitMinor="+minor, "-X", pkg+".gitTreeState=clean")
			}
			return strings.Join(flags, " "), nil
		},
	}
}

// clusterCommands are what one cluster of a given version runs, and the kubectl that speaks to it.
var clusterCommands = map[string]string{
	"kube-apiserver":          "k8s.io/kubernetes/cmd/kube-apiserver",
	"kube-controller-manager": "k8s.io/kubernetes/cmd/kube-controller-manager",
	"kube-scheduler":          "k8s.io/kubernetes/cmd/kube-scheduler",
	"kubectl":                 "k8s.io/kubernetes/cmd/kubectl",
}

// withEtcd is commands and etcd.
func withEtcd(commands map[string]string) map[string]string {
	all := maps.Clone(commands)
	all["etcd"] = "go.etcd.io/etcd/server/v3"
	return all
}

// toolchains are what every lab needs: the default Kubernetes with the one etcd all clusters share (an
// older apiserver speaks the same etcd v3 API), kwok, metrics-server and Helm.
var toolchains = []toolchain{
	kubernetesToolchain(DefaultKubernetes, withEtcd(clusterCommands)),
	{
		dir:      "test/tools/kwok",
		module:   "sigs.k8s.io/kwok",
		commands: map[string]string{"kwok": "sigs.k8s.io/kwok/cmd/kwok"},
	},
	{
		dir:      "test/tools/metrics-server",
		module:   "sigs.k8s.io/metrics-server",
		commands: map[string]string{"metrics-server": "sigs.k8s.io/metrics-server/cmd/metrics-server"},
	},
	// Helm, which installs deploy/charts/flotilla in the chart tests, as Helm's own Makefile stamps it: Helm 4
	// reads the Kubernetes version it assumes offline (helm template, helm lint) from its client-go...
	{
		dir:      "test/tools/helm",
		module:   "helm.sh/helm/v4",
		commands: map[string]string{"helm": "helm.sh/helm/v4/cmd/helm"},
		ldflags: func(version string, _ func(string) (string, error)) (string, error) {
			return "-X helm.sh/helm/v4/internal/version.version=" + version, nil
		},
	},
	// ...Helm 3 from flags, without which it assumes Kubernetes 1.20 and refuses the chart's kubeVersion.
	{
		dir:      "test/tools/helm3",
		module:   "helm.sh/helm/v3",
		commands: map[string]string{"helm3": "helm.sh/helm/v3/cmd/helm"},
		ldflags: func(version string, requires func(string) (string, error)) (string, error) {
			clientGo, err := requires("k8s.io/client-go")
			if err != nil {
				return "", err
			}
			// client-go v0.N is Kubernetes 1.N.
			_, minor := majorMinor(clientGo)
			flags := []string{"-X", "helm.sh/helm/v3/internal/version.version=" + version}
			for _, pkg := range []string{"helm.sh/helm/v3/pkg/lint/rules", "helm.sh/helm/v3/pkg/chartutil"} {
				flags = append(flags, "-X", pkg+".k8sVersionMajor=1", "-X", pkg+".k8sVersionMinor="+minor)
			}
			return strings.Join(flags, " "), nil
		},
	},
}

// majorMinor splits a version vX.Y.Z into X and Y.
func majorMinor(version string) (major, minor string) {
	major, rest, _ := strings.Cut(strings.TrimPrefix(version, "v"), ".")
	minor, _, _ = strings.Cut(rest, ".")
	return major, minor
}

// RepoRoot is the flotilla repository this package was compiled from.
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Dir(filepath.Dir(filepath.Dir(file)))
}

// Binaries returns the path of every binary a lab runs, building those that are missing. Builds land in
// .cache/<module>-<version>-<recipe>/ so a version bump builds afresh and an unchanged one is never
// rebuilt; a file lock keeps concurrent test packages from building the same thing twice.
func Binaries() (map[string]string, error) {
	return build(toolchains)
}

// KubernetesModules are the tools modules under test/tools that each pin a Kubernetes (k8s, k8s-1.35, ...).
func KubernetesModules() ([]string, error) {
	gomods, err := filepath.Glob(filepath.Join(RepoRoot(), "test/tools/k8s*/go.mod"))
	var modules []string
	for _, gomod := range gomods {
		modules = append(modules, filepath.Base(filepath.Dir(gomod)))
	}
	return modules, err
}

// ClusterBinaries returns the paths of one Kubernetes version's cluster binaries (apiserver,
// controller-manager, scheduler and kubectl) from the tools module test/tools/<module>, building those
// that are missing.
func ClusterBinaries(module string) (map[string]string, error) {
	module = cmp.Or(module, DefaultKubernetes)
	if _, err := os.Stat(filepath.Join(RepoRoot(), "test/tools", module, "go.mod")); err != nil {
		return nil, fmt.Errorf("no Kubernetes tools module %q under test/tools: %w", module, err)
	}
	return build([]toolchain{kubernetesToolchain(module, clusterCommands)})
}

// KubernetesVersion is the version of Kubernetes the tools module test/tools/<module> pins (empty: the
// default).
func KubernetesVersion(module string) (string, error) {
	return moduleVersion(filepath.Join(RepoRoot(), "test/tools", cmp.Or(module, DefaultKubernetes), "go.mod"), "k8s.io/kubernetes")
}

func build(toolchains []toolchain) (map[string]string, error) {
	root := RepoRoot()
	cache := filepath.Join(root, ".cache")
	if err := os.MkdirAll(cache, 0o755); err != nil {
		return nil, err
	}
	// A worktree may link .cache to another checkout's; a process's /proc/<pid>/exe names the resolved
	// path, which running() compares with the path the lab started.
	resolved, err := filepath.EvalSymlinks(cache)
	if err != nil {
		return nil, err
	}
	cache = resolved
	lock, err := os.OpenFile(filepath.Join(cache, "build.lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return nil, err
	}

	paths := map[string]string{}
	for _, tc := range toolchains {
		gomod := filepath.Join(root, tc.dir, "go.mod")
		version, err := moduleVersion(gomod, tc.module)
		if err != nil {
			return nil, err
		}
		var ldflags string
		if tc.ldflags != nil {
			requires := func(module string) (string, error) { return moduleVersion(gomod, module) }
			if ldflags, err = tc.ldflags(version, requires); err != nil {
				return nil, err
			}
		}
		// The folder's name carries the version and a digest of how it was built, so a change of
		// either builds afresh.
		recipe := sha256.Sum256([]byte(ldflags))
		bin := filepath.Join(cache, fmt.Sprintf("%s-%s-%x", moduleName(tc.module), version, recipe[:3]))
		var missing []string
		for name, pkg := range tc.commands {
			paths[name] = filepath.Join(bin, name)
			if _, err := os.Stat(paths[name]); err != nil {
				missing = append(missing, name+"="+pkg)
			}
		}
		for _, m := range missing {
			name, pkg, _ := strings.Cut(m, "=")
			fmt.Fprintf(os.Stderr, "lab: building %s from %s %s (first time only, several minutes)\n", name, tc.module, version)
			started := time.Now()
			tmp := paths[name] + ".tmp"
			cmd := exec.Command("go", "build", "-ldflags", ldflags, "-o", tmp, pkg)
			cmd.Dir = filepath.Join(root, tc.dir)
			cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
			if err := cmd.Run(); err != nil {
				return nil, fmt.Errorf("building %s: %w", name, err)
			}
			if err := os.Rename(tmp, paths[name]); err != nil {
				return nil, err
			}
			fmt.Fprintf(os.Stderr, "lab: built %s in %s\n", name, time.Since(started).Round(time.Second))
		}
	}
	return paths, nil
}

// moduleName is a module's path without its host and folders, and without the major version suffix
// semantic import versioning adds (helm.sh/helm/v4 is helm).
func moduleName(module string) string {
	name := path.Base(module)
	if _, err := strconv.Atoi(strings.TrimPrefix(name, "v")); err == nil && strings.HasPrefix(name, "v") {
		return path.Base(path.Dir(module))
	}
	return name
}

// moduleVersion reads the version of module from a go.mod's require lines.
func moduleVersion(gomod, module string) (string, error) {
	f, err := os.Open(gomod)
	if err != nil {
		return "", err
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		fields := strings.Fields(strings.TrimPrefix(strings.TrimSpace(s.Text()), "require "))
		if len(fields) >= 2 && fields[0] == module {
			return fields[1], nil
		}
	}
	return "", fmt.Errorf("%s does not require %s", gomod, module)
}

// kwokStages are the stage files kwok v0.8 ships for fast simulation: nodes become Ready at once and
// keep a Lease, pods go Running at once, complete when their containers would, and vanish on delete.
var kwokStages = []string{
	"kustomize/stage/node/heartbeat-with-lease/node-heartbeat-with-lease.yaml",
	"kustomize/stage/pod/fast/pod-ready.yaml",
	"kustomize/stage/pod/fast/pod-complete.yaml",
	"kustomize/stage/pod/fast/pod-delete.yaml",
}

// kwokStageFiles finds kwok's stage files in its module, as downloaded for the kwok tools module.
func kwokStageFiles() ([]string, error) {
	dir, err := kwokModuleDir()
	if err != nil {
		return nil, err
	}
	var files []string
	for _, s := range kwokStages {
		f := filepath.Join(dir, s)
		if _, err := os.Stat(f); err != nil {
			return nil, fmt.Errorf("kwok stage file: %w", err)
		}
		files = append(files, f)
	}
	// The lab's own stages, for what kwok's do not cover.
	own, err := filepath.Glob(filepath.Join(RepoRoot(), "test/lab/stages/*.yaml"))
	return append(files, own...), err
}

// buildFlotilla compiles the flotilla binary of this checkout into dir. Go's build cache makes this a
// matter of seconds when nothing changed.
func buildFlotilla(dir string) (string, error) {
	out := filepath.Join(dir, "flotilla")
	cmd := exec.Command("go", "build", "-o", out, "./cmd/flotilla")
	cmd.Dir = RepoRoot()
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building flotilla: %w\n%s", err, b)
	}
	return out, nil
}
