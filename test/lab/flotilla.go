package lab

import (
	"context"
	"crypto/rand"
	"fmt"
	"math/big"
	"net"
	"path/filepath"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
)

// flotillaProcess prepares a flotilla process serving workload cluster c: its own identity in the
// management cluster, its identity in c, a serving certificate for its kubelet API at an address of its own,
// and a metrics port. replica is "" for the lab's own flotilla of c and names any other (see AddReplica).
func (l *Lab) flotillaProcess(bin string, c *Cluster, replica string, extraArgs []string, proxyable bool) (p *process, ip net.IP, metricsURL string, err error) {
	dir := filepath.Join(l.Dir, "flotilla", c.Name, replica)
	ca := &authority{cert: l.ca.cert, key: l.ca.key, CertPEM: l.ca.CertPEM, dir: dir}
	id, err := ca.client("management-identity", "flotilla:"+c.Name, FlotillaGroup)
	if err != nil {
		return nil, nil, "", err
	}
	managementKubeconfig := filepath.Join(dir, "management.kubeconfig")
	if err := writeKubeconfig(managementKubeconfig, "management", l.Management.Server, ca.CertPEM, id); err != nil {
		return nil, nil, "", err
	}
	pick := freeKubeletAddress
	if proxyable {
		pick = hostAddress
	}
	if ip, err = pick(); err != nil {
		return nil, nil, "", err
	}
	serving, err := ca.serving("kubelet-"+c.Name, ip)
	if err != nil {
		return nil, nil, "", err
	}
	ports, err := freePorts(1)
	if err != nil {
		return nil, nil, "", err
	}
	args := append([]string{
		"--cluster-name=" + c.Name,
		"--management-kubeconfig=" + managementKubeconfig,
		"--workload-kubeconfig=" + c.FlotillaKubeconfig,
		"--internal-ip=" + ip.String(),
		"--kubelet-bind-address=" + ip.String(),
		"--tls-cert-file=" + serving.CertFile,
		"--tls-key-file=" + serving.KeyFile,
		"--client-ca-file=" + l.ca.CertFile(),
		"--metrics-address=127.0.0.1:" + strconv.Itoa(ports[0]),
	}, extraArgs...)
	name, log := c.Name+"/flotilla", "flotilla.log"
	if replica != "" {
		name, log = name+"-"+replica, "flotilla-"+replica+".log"
	}
	return &process{Name: name, Path: bin, Args: args, LogFile: filepath.Join(l.Dir, "logs", c.Name, log)},
		ip, "http://127.0.0.1:" + strconv.Itoa(ports[0]) + "/metrics", nil
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
	p, ip, _, err := l.flotillaProcess(own.Path, l.Workload(cluster), name, extraArgs, false)
	if err != nil {
		return nil, err
	}
	return &Replica{p: p, attached: l.attached, InternalIP: ip.String()}, nil
}

// Start starts the replica.
func (r *Replica) Start() error { return r.p.start(r.attached) }

// Stop stops it with SIGTERM, as a rolling update would.
func (r *Replica) Stop() error { return r.p.stop(10 * time.Second) }

// Kill kills it, as a crash would.
func (r *Replica) Kill() error { return r.p.kill() }

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

// RestartFlotilla stops and starts the flotilla process of a workload cluster.
func (l *Lab) RestartFlotilla(name string) error {
	if err := l.StopFlotilla(name); err != nil {
		return err
	}
	return l.StartFlotilla(name)
}
