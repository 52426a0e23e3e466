package lab

import (
	"context"
	"crypto/rand"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/flotilla-io/flotilla/join"
)

// joinWorkload brings workload cluster c in as production does, with `flotilla join` (its package, the code
// behind the command): its credentials, written to files, are exactly what the lab's flotilla of c runs with,
// so a permission flotilla lacks fails here as it would in production. ip is where its kubelet API serves.
func (l *Lab) joinWorkload(ctx context.Context, c *Cluster, ip net.IP) (credentialsDir string, err error) {
	dir := filepath.Join(l.Dir, "flotilla", c.Name, "credentials")
	out, err := os.Create(filepath.Join(l.Dir, "logs", c.Name, "join.log"))
	if err != nil {
		return "", err
	}
	defer out.Close()
	data, err := join.Join(ctx, join.Config{
		Node: c.Name, Management: l.Management.Config, Workload: c.Config, KubeletIPs: []net.IP{ip}, Out: out,
	})
	if err != nil {
		return "", fmt.Errorf("joining %s: %w", c.Name, err)
	}
	return dir, join.WriteFiles(dir, data)
}

// flotillaProcess prepares a flotilla process serving workload cluster c with the credentials `flotilla join`
// made (credentialsDir), its kubelet API at ip, and a metrics and a health port. replica is "" for the lab's own flotilla
// of c, which serves with the join's serving certificate, and names any other (see AddReplica), which gets
// one of its own for its own address from the lab's CA.
func (l *Lab) flotillaProcess(bin string, c *Cluster, credentialsDir, replica string, ip net.IP, extraArgs []string) (p *process, metricsURL string, err error) {
	dir := filepath.Join(l.Dir, "flotilla", c.Name, replica)
	certFile, keyFile := filepath.Join(credentialsDir, join.KeyKubeletCert), filepath.Join(credentialsDir, join.KeyKubeletKey)
	if replica != "" {
		ca := &authority{cert: l.ca.cert, key: l.ca.key, CertPEM: l.ca.CertPEM, dir: dir}
		serving, err := ca.serving("kubelet-"+c.Name, ip)
		if err != nil {
			return nil, "", err
		}
		certFile, keyFile = serving.CertFile, serving.KeyFile
	}
	ports, err := freePorts(2)
	if err != nil {
		return nil, "", err
	}
	args := append([]string{
		"--cluster-name=" + c.Name,
		"--management-kubeconfig=" + filepath.Join(credentialsDir, join.KeyManagementKubeconfig),
		"--failover-kubeconfig=" + filepath.Join(credentialsDir, join.KeyFailoverKubeconfig),
		"--workload-kubeconfig=" + filepath.Join(credentialsDir, join.KeyWorkloadKubeconfig),
		"--cert-dir=" + filepath.Join(dir, "pki"),
		"--internal-ip=" + ip.String(),
		"--kubelet-bind-address=" + ip.String(),
		"--tls-cert-file=" + certFile,
		"--tls-key-file=" + keyFile,
		"--client-ca-file=" + filepath.Join(credentialsDir, join.KeyClientCA),
		"--metrics-address=127.0.0.1:" + strconv.Itoa(ports[0]),
		// Benchmarks read its profiles (see FlotillaProfile); on loopback, as /metrics.
		"--profiling",
		// Several flotillas share the machine: each its own health port rather than the default :10248.
		"--health-address=127.0.0.1:" + strconv.Itoa(ports[1]),
		"--reschedule-after=" + RescheduleAfter.String(),
	}, extraArgs...)
	name, log := c.Name+"/flotilla", "flotilla.log"
	if replica != "" {
		name, log = name+"-"+replica, "flotilla-"+replica+".log"
	}
	return &process{Name: name, Path: bin, Args: args, LogFile: filepath.Join(l.Dir, "logs", c.Name, log), CPUs: l.managementCPUs},
		"http://127.0.0.1:" + strconv.Itoa(ports[0]) + "/metrics", nil
}

// Replica is a flotilla process for a workload cluster besides the lab's own, as a Deployment of several
// replicas with --leader-elect runs them. The test that adds one stops it.
type Replica struct {
	p        *process
	attached bool
	// InternalIP is the address of its kubelet API, which the virtual node shows while it serves.
	InternalIP string
}

// AddReplica prepares, without starting it, another flotilla process for the workload cluster with the
// arguments the lab gives every flotilla (not Options.FlotillaArgs) plus extraArgs, a kubelet API address and metrics port of its own, and a log file
// logs/<cluster>/flotilla-<name>.log.
func (l *Lab) AddReplica(cluster, name string, extraArgs ...string) (*Replica, error) {
	own, err := l.flotilla(cluster)
	if err != nil {
		return nil, err
	}
	ip, err := freeKubeletAddress()
	if err != nil {
		return nil, err
	}
	p, _, err := l.flotillaProcess(own.Path, l.Workload(cluster), l.Credentials[cluster], name, ip, extraArgs)
	if err != nil {
		return nil, err
	}
	return &Replica{p: p, attached: l.attached, InternalIP: ip.String()}, nil
}

// HealthURL is the base URL of the replica's /healthz and /readyz.
func (r *Replica) HealthURL() string { return "http://" + r.p.flag("--health-address") }

// Start starts the replica.
func (r *Replica) Start() error { return r.p.start(r.attached) }

// Stop stops it with SIGTERM, as a rolling update would.
func (r *Replica) Stop() error { return r.p.stop(10 * time.Second) }

// Kill kills it, as a crash would.
func (r *Replica) Kill() error { return r.p.kill() }

// RescheduleAfter is the lab flotillas' --reschedule-after: short, so tests see a re-placement (or see that
// none happens) within seconds rather than the default five minutes. A later --reschedule-after in extraArgs
// or Options.FlotillaArgs wins.
const RescheduleAfter = 10 * time.Second

// kubeletPort is the kubelet API's well-known port. Tools such as virtual-kubelet's e2e suite reach a
// node's kubelet through the apiserver's node proxy at this port, whatever the node reports.
const kubeletPort = 10250

// freeKubeletAddress picks a loopback address (127.x.y.z) whose kubelet port is free, so that each
// flotilla of each lab serves its kubelet API on the well-known port at an address of its own, as each
// real node does.
func freeKubeletAddress() (net.IP, error) {
	for range 100 {
		n, err := rand.Int(rand.Reader, big.NewInt(254*254*254))
		if err != nil {
			return nil, err
		}
		v := int(n.Int64())
		ip := net.IPv4(127, byte(1+v/(254*254)), byte(1+v/254%254), byte(1+v%254))
		l, err := net.Listen("tcp", net.JoinHostPort(ip.String(), strconv.Itoa(kubeletPort)))
		if err != nil {
			continue
		}
		l.Close()
		return ip, nil
	}
	return nil, fmt.Errorf("no free loopback address for a kubelet API on port %d", kubeletPort)
}

// hostAddress is the machine's first non-loopback IPv4 address, if its kubelet port is free.
func hostAddress() (net.IP, error) {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil, err
	}
	for _, a := range addrs {
		ipnet, ok := a.(*net.IPNet)
		if !ok || ipnet.IP.IsLoopback() || ipnet.IP.To4() == nil || ipnet.IP.IsLinkLocalUnicast() {
			continue
		}
		l, err := net.Listen("tcp", net.JoinHostPort(ipnet.IP.String(), strconv.Itoa(kubeletPort)))
		if err != nil {
			return nil, fmt.Errorf("kubelet port on %s: %w (another lab holds it?)", ipnet.IP, err)
		}
		l.Close()
		return ipnet.IP, nil
	}
	return nil, fmt.Errorf("no non-loopback IPv4 address on this machine")
}

// waitVirtualNodes waits until every workload cluster's virtual node is registered and Ready.
func (l *Lab) waitVirtualNodes(ctx context.Context) error {
	for _, c := range l.Workloads {
		if err := l.WaitVirtualNodeReady(ctx, c.Name); err != nil {
			return err
		}
	}
	return nil
}

// WaitVirtualNodeReady waits until the virtual node of a workload cluster is Ready in the management
// cluster, served by the lab's own flotilla of that cluster (its InternalIP), and has stayed so for
// settleReady: a node status left Ready by a flotilla that just stopped (a replica, the previous process)
// is not taken for the new one's, which first reports NotReady until it has probed its cluster.
func (l *Lab) WaitVirtualNodeReady(ctx context.Context, name string) error {
	p := l.Flotillas[name]
	var readySince time.Time
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		if p != nil && !p.running() {
			return false, fmt.Errorf("flotilla for %s exited", name)
		}
		n, err := l.Management.Client.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		if err != nil || !NodeReady(n) || (p != nil && !hasInternalIP(n, p.flag("--internal-ip"))) {
			readySince = time.Time{}
			return false, nil
		}
		if readySince.IsZero() {
			readySince = time.Now()
		}
		return time.Since(readySince) >= settleReady, nil
	})
	if err != nil {
		return fmt.Errorf("virtual node %s not Ready: %w; see %s", name, err, p.LogFile)
	}
	return nil
}

// settleReady is how long a virtual node must stay Ready before WaitVirtualNodeReady trusts it: longer than
// a flotilla's first probe of its cluster (every 2 s).
const settleReady = 3 * time.Second

// hasInternalIP says whether the node reports ip as its InternalIP.
func hasInternalIP(n *corev1.Node, ip string) bool {
	for _, a := range n.Status.Addresses {
		if a.Type == corev1.NodeInternalIP && a.Address == ip {
			return true
		}
	}
	return false
}

func (l *Lab) flotilla(name string) (*process, error) {
	p := l.Flotillas[name]
	if p == nil {
		return nil, fmt.Errorf("no flotilla for workload cluster %q", name)
	}
	return p, nil
}

// StopFlotilla stops the flotilla process of a workload cluster (SIGTERM, as a rolling update would).
func (l *Lab) StopFlotilla(name string) error {
	p, err := l.flotilla(name)
	if err != nil {
		return err
	}
	return p.stop(10 * time.Second)
}

// KillFlotilla kills the flotilla process of a workload cluster, as a crash would.
func (l *Lab) KillFlotilla(name string) error {
	p, err := l.flotilla(name)
	if err != nil {
		return err
	}
	return p.kill()
}

// StartFlotilla starts a stopped flotilla process again with the same arguments.
func (l *Lab) StartFlotilla(name string) error {
	p, err := l.flotilla(name)
	if err != nil {
		return err
	}
	return p.start(l.attached)
}

// FlotillaHealth is the base URL of the /healthz and /readyz endpoints of a workload cluster's flotilla.
func (l *Lab) FlotillaHealth(name string) (string, error) {
	p, err := l.flotilla(name)
	if err != nil {
		return "", err
	}
	return "http://" + p.flag("--health-address"), nil
}

// RestartFlotilla stops and starts the flotilla process of a workload cluster.
func (l *Lab) RestartFlotilla(name string) error {
	if err := l.StopFlotilla(name); err != nil {
		return err
	}
	return l.StartFlotilla(name)
}
