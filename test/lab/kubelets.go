package lab

import (
	"context"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/dynamic"
)

// With Options.Kubelets, the lab's clusters behave as clusters with real kubelets do for the kubelet API:
// kwok serves it for its nodes (logs, exec, attach, port-forward, resource metrics), and metrics-server runs
// for every cluster, registered through the aggregation layer, so `kubectl top` and HorizontalPodAutoscalers
// work in each workload cluster and, through flotilla, in the management cluster.

// resourceMetricsPathAnnotation tells metrics-server where a node's resource metrics are, when not at the
// kubelet's /metrics/resource: kwok serves every node of a cluster on one address, each under its own path.
const resourceMetricsPathAnnotation = "metrics.k8s.io/resource-metrics-path"

// kwokMetricsFiles are the kwok module's configuration of usage, read from pod annotations
// kwok.x-k8s.io/usage-cpu and kwok.x-k8s.io/usage-memory (defaults 1m and 1Mi); the lab's own
// test/lab/kubelet/metrics-resource.yaml serves it as the kubelet's /metrics/resource of each node.
var kwokMetricsFiles = []string{"kustomize/metrics/usage/usage-from-annotation.yaml"}

// Annotations that set a kwok pod's simulated usage (kustomize/metrics/usage in kwok's module). A delegate
// carries its proxy's annotations, so they work on management pods too.
const (
	UsageCPUAnnotation    = "kwok.x-k8s.io/usage-cpu"
	UsageMemoryAnnotation = "kwok.x-k8s.io/usage-memory"
)

// kwokKubeletConfig is the kwok --config that answers the kubelet API's streams for every container: logs and
// attach read the lab's log file (which the lab's logger keeps appending to, so `logs -f` has something to
// follow), exec runs the command on this machine in a scratch folder, and port-forward reaches the lab's echo
// server whatever the port.
const kwokKubeletConfig = `apiVersion: kwok.x-k8s.io/v1alpha1
kind: ClusterLogs
metadata:
  name: lab-logs
spec:
  logs:
  - logsFile: %[1]q
    follow: true
---
apiVersion: kwok.x-k8s.io/v1alpha1
kind: ClusterAttach
metadata:
  name: lab-attach
spec:
  attaches:
  - logsFile: %[1]q
---
apiVersion: kwok.x-k8s.io/v1alpha1
kind: ClusterExec
metadata:
  name: lab-exec
spec:
  execs:
  - local:
      workDir: %[2]q
---
apiVersion: kwok.x-k8s.io/v1alpha1
kind: ClusterPortForward
metadata:
  name: lab-port-forward
spec:
  forwards:
  - target:
      address: 127.0.0.1
      port: %[3]d
`

// kubeletSide is what every cluster's kubelet simulation shares: the log file, the exec folder, the echo
// server.
type kubeletSide struct {
	logFile, execDir string
	echoPort         int
	metricsFiles     []string
}

// startKubeletSide starts the lab's logger (a CRI-format log line a second) and echo server (a TCP server
// that sends back what it receives), the processes behind every kwok container's logs and port-forward.
func (l *Lab) startKubeletSide(binDir string) (*kubeletSide, error) {
	dir, err := kwokModuleDir()
	if err != nil {
		return nil, err
	}
	ks := &kubeletSide{logFile: filepath.Join(l.Dir, "kubelet", "container.log"), execDir: filepath.Join(l.Dir, "kubelet", "exec")}
	for _, f := range kwokMetricsFiles {
		ks.metricsFiles = append(ks.metricsFiles, filepath.Join(dir, f))
	}
	ks.metricsFiles = append(ks.metricsFiles, filepath.Join(RepoRoot(), "test/lab/kubelet/metrics-resource.yaml"))
	if err := os.MkdirAll(ks.execDir, 0o755); err != nil {
		return nil, err
	}
	if err := os.WriteFile(ks.logFile, nil, 0o644); err != nil {
		return nil, err
	}
	sh, err := filepath.EvalSymlinks("/bin/sh") // running() compares the resolved executable
	if err != nil {
		return nil, err
	}
	l.Logger = &process{
		Name: "kubelet/logger", Path: sh, LogFile: filepath.Join(l.Dir, "logs", "logger.log"),
		Args: []string{"-c", `i=0; while :; do i=$((i+1)); echo "$(date -u +%Y-%m-%dT%H:%M:%S.%NZ) stdout F lab log line $i" >> "$0"; sleep 1; done`, ks.logFile},
	}
	if err := l.Logger.start(l.attached); err != nil {
		return nil, err
	}
	echo := filepath.Join(binDir, "echo-server")
	cmd := exec.Command("go", "build", "-o", echo, "./test/lab/cmd/echo-server")
	cmd.Dir = RepoRoot()
	if b, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("building the echo server: %w\n%s", err, b)
	}
	ports, err := freePorts(1)
	if err != nil {
		return nil, err
	}
	ks.echoPort = ports[0]
	addr := "127.0.0.1:" + strconv.Itoa(ks.echoPort)
	l.Echo = &process{Name: "kubelet/echo-server", Path: echo, Args: []string{"--listen=" + addr}, LogFile: filepath.Join(l.Dir, "logs", "echo-server.log")}
	if err := l.Echo.start(l.attached); err != nil {
		return nil, err
	}
	return ks, waitTCP(context.Background(), addr, l.Echo)
}

// kwokModuleDir is kwok's module as downloaded for the kwok tools module.
func kwokModuleDir() (string, error) {
	cmd := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "sigs.k8s.io/kwok")
	cmd.Dir = filepath.Join(RepoRoot(), "test/tools/kwok")
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("locating kwok's module: %w", err)
	}
	return strings.TrimSpace(string(out)), nil
}

// withKubelets makes a prepared cluster serve the kubelet API and resource metrics: its apiserver gets the
// aggregation layer, kwok (of a workload cluster) serves its nodes' kubelet API over TLS on a loopback
// address of its own, and a metrics-server process is prepared for it.
func (cp *controlPlane) withKubelets(c *Cluster, ks *kubeletSide) error {
	dir := filepath.Join(cp.dir, "clusters", c.Name)
	pki := filepath.Join(dir, "pki")
	ca := &authority{cert: cp.ca.cert, key: cp.ca.key, CertPEM: cp.ca.CertPEM, dir: pki}
	// The aggregation layer: the apiserver proxies metrics.k8s.io to metrics-server as front-proxy-client,
	// which metrics-server trusts for the user it names in request headers.
	front, err := ca.client("front-proxy-client", "front-proxy-client")
	if err != nil {
		return err
	}
	c.APIServer.Args = append(c.APIServer.Args,
		"--requestheader-client-ca-file="+cp.ca.CertFile(),
		"--requestheader-allowed-names=front-proxy-client",
		"--requestheader-username-headers=X-Remote-User",
		"--requestheader-group-headers=X-Remote-Group",
		"--requestheader-extra-headers-prefix=X-Remote-Extra-",
		"--proxy-client-cert-file="+front.CertFile,
		"--proxy-client-key-file="+front.KeyFile,
	)

	if c.Kwok != nil {
		ip, err := freeKubeletAddress()
		if err != nil {
			return err
		}
		serving, err := ca.serving("kwok-kubelet", ip)
		if err != nil {
			return err
		}
		config := filepath.Join(dir, "kwok-kubelet.yaml")
		if err := os.WriteFile(config, fmt.Appendf(nil, kwokKubeletConfig, ks.logFile, ks.execDir, ks.echoPort), 0o644); err != nil {
			return err
		}
		c.KubeletIP = ip.String()
		for i, a := range c.Kwok.Args {
			if a == "--server-address=" {
				c.Kwok.Args[i] = "--server-address=" + net.JoinHostPort(ip.String(), strconv.Itoa(kubeletPort))
			}
			if v, ok := strings.CutPrefix(a, "--config="); ok {
				c.Kwok.Args[i] = "--config=" + strings.Join(append([]string{v, config}, ks.metricsFiles...), ",")
			}
		}
		// kwok's node-initialize stage gives its nodes this InternalIP and kubelet port; its kubelet server
		// does no authentication at all, hence loopback.
		c.Kwok.Args = append(c.Kwok.Args, "--node-ip="+ip.String(), "--node-port="+strconv.Itoa(kubeletPort),
			"--tls-cert-file="+serving.CertFile, "--tls-private-key-file="+serving.KeyFile)
	}

	// metrics-server: serving for the aggregator (which checks the name <service>.<namespace>.svc), and a
	// client identity that may read nodes and pods and scrape kubelets (flotilla's authorizes it with a
	// SubjectAccessReview; kwok's asks nothing).
	serving, err := ca.issue("metrics-server", &x509.Certificate{
		Subject:     pkix.Name{CommonName: "metrics-server"},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:    []string{"localhost", metricsServerName + "." + metav1.NamespaceSystem + ".svc"},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
	})
	if err != nil {
		return err
	}
	id, err := ca.client("metrics-server-client", "system:metrics-server", "system:masters")
	if err != nil {
		return err
	}
	kubeconfig := filepath.Join(dir, "metrics-server.kubeconfig")
	if err := writeKubeconfig(kubeconfig, c.Name, c.Server, cp.ca.CertPEM, id); err != nil {
		return err
	}
	ports, err := freePorts(1)
	if err != nil {
		return err
	}
	c.MetricsServerPort = ports[0]
	c.MetricsServer = &process{
		Name: c.Name + "/metrics-server", Path: cp.bins["metrics-server"], LogFile: filepath.Join(cp.dir, "logs", c.Name, "metrics-server.log"),
		Args: []string{
			"--kubeconfig=" + kubeconfig,
			"--authentication-kubeconfig=" + kubeconfig,
			"--authorization-kubeconfig=" + kubeconfig,
			"--bind-address=127.0.0.1",
			"--secure-port=" + strconv.Itoa(ports[0]),
			"--tls-cert-file=" + serving.CertFile,
			"--tls-private-key-file=" + serving.KeyFile,
			"--kubelet-use-node-status-port",
			"--kubelet-preferred-address-types=InternalIP",
			"--kubelet-certificate-authority=" + cp.ca.CertFile(),
			// The shortest resolution metrics-server allows, so HPAs react in the lab's time scale.
			"--metric-resolution=10s",
			"--kubelet-request-timeout=5s",
			"--v=1",
		},
	}
	return nil
}

// metricsServerName is the Service (kube-system) behind the APIService v1beta1.metrics.k8s.io.
const metricsServerName = "metrics-server"

// registerMetricsServer starts a cluster's metrics-server and registers it with the aggregation layer: an
// ExternalName Service for localhost (the aggregator resolves ExternalName Services itself, where a
// ClusterIP would need a kube-proxy the lab does not run) and the APIService, trusting the lab's CA.
func registerMetricsServer(ctx context.Context, c *Cluster) error {
	if err := c.MetricsServer.start(c.attached); err != nil {
		return err
	}
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: metricsServerName, Namespace: metav1.NamespaceSystem},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeExternalName, ExternalName: "localhost",
			Ports: []corev1.ServicePort{{Name: "https", Port: int32(c.MetricsServerPort)}}},
	}
	if _, err := c.Client.CoreV1().Services(svc.Namespace).Create(ctx, svc, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("metrics-server Service in %s: %w", c.Name, err)
	}
	caPEM := c.Config.TLSClientConfig.CAData
	if len(caPEM) == 0 {
		var err error
		if caPEM, err = os.ReadFile(c.Config.TLSClientConfig.CAFile); err != nil {
			return err
		}
	}
	dyn, err := dynamic.NewForConfig(c.Config)
	if err != nil {
		return err
	}
	as := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService",
		"metadata": map[string]any{"name": "v1beta1.metrics.k8s.io"},
		"spec": map[string]any{
			"group": "metrics.k8s.io", "version": "v1beta1", "groupPriorityMinimum": int64(100), "versionPriority": int64(100),
			"service":  map[string]any{"namespace": metav1.NamespaceSystem, "name": metricsServerName, "port": int64(c.MetricsServerPort)},
			"caBundle": base64.StdEncoding.EncodeToString(caPEM),
		},
	}}
	apiServices := schema.GroupVersionResource{Group: "apiregistration.k8s.io", Version: "v1", Resource: "apiservices"}
	if _, err := dyn.Resource(apiServices).Create(ctx, as, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("APIService v1beta1.metrics.k8s.io in %s: %w", c.Name, err)
	}
	return nil
}

// WaitMetricsAPI waits until a cluster's metrics API answers for its nodes: metrics-server has scraped
// each at least twice (a CPU rate needs two points).
func (c *Cluster) WaitMetricsAPI(ctx context.Context, timeout time.Duration) error {
	var last error
	err := wait.PollUntilContextTimeout(ctx, time.Second, timeout, true, func(ctx context.Context) (bool, error) {
		var b []byte
		b, last = c.Client.Discovery().RESTClient().Get().AbsPath("/apis/metrics.k8s.io/v1beta1/nodes").DoRaw(ctx)
		return last == nil && strings.Contains(string(b), `"usage"`), nil
	})
	if err != nil {
		return fmt.Errorf("metrics API of %s: %w (last error: %v); see %s", c.Name, err, last, c.MetricsServer.LogFile)
	}
	return nil
}
