// Package lab runs real Kubernetes control planes on one machine: a management cluster and workload
// clusters with simulated (kwok) nodes, plus one flotilla process per workload cluster. It backs both
// `make lab` (a lab for people, detached) and the end-to-end tests (a lab per test binary, attached).
package lab

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	corev1 "k8s.io/api/core/v1"
)

// FlotillaGroup is the group of flotilla's client certificates; deploy/charts/flotilla/files/rbac binds its roles to it.
const FlotillaGroup = "flotilla"

// WorkloadSpec describes one workload cluster: its name and where its kwok nodes sit.
type WorkloadSpec struct {
	Name   string   `json:"name"`
	Region string   `json:"region"`
	Zones  []string `json:"zones"` // one node per zone, cycling when Nodes exceeds len(Zones)
	Nodes  int      `json:"nodes"`
	// Allocatable of each node; nil means NodeAllocatable.
	Allocatable corev1.ResourceList `json:"allocatable,omitempty"`
	// Kubernetes names the tools module under test/tools whose control plane the cluster runs ("k8s-1.35");
	// empty is DefaultKubernetes, the version flotilla is built against.
	Kubernetes string `json:"kubernetes,omitempty"`
}

// DefaultWorkloads are the four clusters of the tutorial: two in us-west-2 and two in eu-west-3, each
// with three nodes in three zones.
func DefaultWorkloads() []WorkloadSpec {
	var out []WorkloadSpec
	for _, region := range []string{"us-west-2", "eu-west-3"} {
		for i := range 2 {
			out = append(out, Workload(region+"-"+strconv.Itoa(i), region))
		}
	}
	return out
}

// Workload describes a cluster of three nodes in zones <region>a, b and c.
func Workload(name, region string) WorkloadSpec {
	return WorkloadSpec{Name: name, Region: region, Zones: []string{region + "a", region + "b", region + "c"}, Nodes: 3}
}

// Options choose what a lab runs.
type Options struct {
	// Dir holds the lab's certificates, kubeconfigs, logs and state.
	Dir       string
	Workloads []WorkloadSpec
	// Flotilla starts one flotilla process per workload cluster.
	Flotilla     bool
	FlotillaArgs []string
	// FlotillaEnv is added to the environment of the lab's own flotilla processes (NAME=value): the OTEL_*
	// variables of a trace collector, say.
	FlotillaEnv []string
	// ProxyableKubelet names the workload cluster whose flotilla serves its kubelet API on this machine's
	// own (non-loopback) address, port 10250. The apiserver's node proxy refuses loopback addresses, so
	// only that node answers `kubectl get --raw /api/v1/nodes/<name>/proxy/...`; one lab per machine can
	// ask for it. Others serve on loopback addresses, which logs, exec and port-forward accept.
	ProxyableKubelet string
	// CertificateLifetime is how long the certificates the controller-managers sign from
	// CertificateSigningRequests last (--cluster-signing-duration); zero keeps kube-controller-manager's
	// default of a year. Tests of certificate renewal shorten it.
	CertificateLifetime time.Duration
	// Kubelets makes the clusters answer the kubelet API as clusters of real kubelets do: kwok serves its
	// nodes' kubelet API (logs, exec, attach, port-forward, resource metrics from the pods' usage
	// annotations) on a loopback address with TLS, and metrics-server runs for every cluster, management
	// included (kubectl top, HorizontalPodAutoscalers). `make lab` and the end-to-end lab have them;
	// package tests leave them off, for speed.
	Kubelets bool
	// ManagementNodes are kwok nodes of the management cluster's own, as a real management cluster has for
	// what runs there rather than on a virtual node (flotilla's chart, say): untainted, so any pod may land
	// on them. Zero leaves the management cluster with virtual nodes only, as the end-to-end tests assume.
	ManagementNodes int
	// Attached processes die with the process that started the lab (tests); detached ones outlive it
	// (make lab) and are stopped by Down.
	Attached bool
	// ManagementCPUs and WorkloadCPUs, when set, confine the management cluster's processes (its control
	// plane, flotilla, the webhook) and the workload clusters' to CPUs of their own (taskset(1) CPU lists,
	// see SplitCPUs), as a fleet runs them on machines of their own. The management cluster then has an
	// etcd of its own on its CPUs, as it would: one etcd applies its writes one after another, and the
	// management cluster's would queue the workload clusters' behind them. The workload clusters' etcd runs
	// anywhere. Empty leaves every process free to run on any CPU, competing for them all, and one etcd for all.
	ManagementCPUs, WorkloadCPUs string
}

// SplitCPUs divides the CPUs this process may run on between the workload clusters (the first half, rounded
// up) and the management cluster (the rest), as Options.WorkloadCPUs and ManagementCPUs; ok is false when
// they are fewer than two, which cannot be divided, or cannot be read.
func SplitCPUs() (management, workload string, ok bool) {
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		return "", "", false
	}
	return splitCPUs(&set)
}

// splitCPUs is SplitCPUs of a given affinity set.
func splitCPUs(set *unix.CPUSet) (management, workload string, ok bool) {
	var cpus []string
	for _, cpu := range CPUsOf(set) {
		cpus = append(cpus, strconv.Itoa(cpu))
	}
	if len(cpus) < 2 {
		return "", "", false
	}
	half := (len(cpus) + 1) / 2
	return strings.Join(cpus[half:], ","), strings.Join(cpus[:half], ","), true
}

// CPUsOf lists the CPUs of an affinity set, in order.
func CPUsOf(set *unix.CPUSet) []int {
	var cpus []int
	for cpu := 0; len(cpus) < set.Count(); cpu++ {
		if set.IsSet(cpu) {
			cpus = append(cpus, cpu)
		}
	}
	return cpus
}

// managementSpec places the management cluster's own nodes (Options.ManagementNodes); its empty name is
// what tells it from a workload cluster.
func managementSpec(nodes int) WorkloadSpec {
	spec := Workload("", "lab")
	spec.Nodes = nodes
	return spec
}

// Lab is a running lab.
type Lab struct {
	Dir  string   `json:"dir"`
	Etcd *process `json:"etcd"`
	// ManagementEtcd is the management cluster's own etcd, when it runs apart (Options.ManagementCPUs).
	ManagementEtcd *process            `json:"managementEtcd,omitempty"`
	Management     *Cluster            `json:"management"`
	Workloads      []*Cluster          `json:"workloads"`
	Flotillas      map[string]*process `json:"flotillas"`
	// Webhook is `flotilla webhook`, registered with the management apiserver (see startWebhook); it runs
	// when flotilla does.
	Webhook *process `json:"webhook,omitempty"`
	// Logger keeps appending to the log file every kwok container's logs read, and Echo is the TCP server
	// every kwok container's port-forward reaches (Options.Kubelets).
	Logger *process `json:"logger,omitempty"`
	Echo   *process `json:"echo,omitempty"`
	// FlotillaMetrics is the Prometheus endpoint of each workload cluster's flotilla.
	FlotillaMetrics map[string]string `json:"flotillaMetrics"`
	// Credentials is, per workload cluster, the folder of the credentials `flotilla join` made for its
	// flotilla (files named as the keys of the join's Secret).
	Credentials map[string]string `json:"credentials"`

	attached bool
	ca       *authority
	// managementCPUs is Options.ManagementCPUs, for the flotillas and webhook started after the clusters.
	managementCPUs string
}

const stateFile = "lab.json"

// Start brings a lab up and returns when every apiserver is ready, every kwok node is Ready and, when
// flotilla runs, every virtual node is registered. On error, whatever was started is stopped.
func Start(ctx context.Context, opts Options) (_ *Lab, err error) {
	if err := os.MkdirAll(opts.Dir, 0o755); err != nil {
		return nil, err
	}
	dir, err := filepath.Abs(opts.Dir)
	if err != nil {
		return nil, err
	}
	bins, err := Binaries()
	if err != nil {
		return nil, err
	}
	stages, err := kwokStageFiles()
	if err != nil {
		return nil, err
	}
	l := &Lab{Dir: dir, attached: opts.Attached, managementCPUs: opts.ManagementCPUs, Flotillas: map[string]*process{}, FlotillaMetrics: map[string]string{}, Credentials: map[string]string{}}
	defer func() {
		if err != nil {
			_ = l.Stop()
		}
	}()
	if l.ca, err = newAuthority(filepath.Join(dir, "pki")); err != nil {
		return nil, err
	}

	ports, err := freePorts(2)
	if err != nil {
		return nil, err
	}
	l.Etcd = etcdProcess(bins["etcd"], dir, "etcd", ports[0], ports[1])
	etcdURL := "http://127.0.0.1:" + strconv.Itoa(ports[0])
	managementEtcdURL := etcdURL
	if opts.ManagementCPUs != "" {
		more, err := freePorts(2)
		if err != nil {
			return nil, err
		}
		l.ManagementEtcd = etcdProcess(bins["etcd"], dir, "management/etcd", more[0], more[1])
		l.ManagementEtcd.CPUs = opts.ManagementCPUs
		managementEtcdURL = "http://127.0.0.1:" + strconv.Itoa(more[0])
	}
	versions := map[string]map[string]string{}
	for _, spec := range opts.Workloads {
		if spec.Kubernetes == "" || versions[spec.Kubernetes] != nil {
			continue
		}
		if versions[spec.Kubernetes], err = ClusterBinaries(spec.Kubernetes); err != nil {
			return nil, err
		}
	}
	cp := &controlPlane{dir: dir, bins: bins, versions: versions, ca: l.ca, etcdURL: etcdURL, kwokStages: stages, attached: opts.Attached, certificateLifetime: opts.CertificateLifetime}
	// The lab's kubectl matches its servers (the machine's may not): linked beside flotilla's binary.
	binDir := filepath.Join(dir, "bin")
	if err := os.MkdirAll(binDir, 0o755); err != nil {
		return nil, err
	}
	if opts.Kubelets {
		if cp.kubelets, err = l.startKubeletSide(binDir); err != nil {
			return nil, err
		}
	}
	management := *cp
	management.etcdURL = managementEtcdURL
	if l.Management, err = management.newCluster("management", managementSpec(opts.ManagementNodes), 0); err != nil {
		return nil, err
	}
	for i, spec := range opts.Workloads {
		c, err := cp.newCluster(spec.Name, spec, i+1)
		if err != nil {
			return nil, err
		}
		l.Workloads = append(l.Workloads, c)
	}
	pin(opts.ManagementCPUs, l.Management.processes()...)
	for _, c := range l.Workloads {
		pin(opts.WorkloadCPUs, c.processes()...)
	}
	for _, etcd := range l.etcds() {
		if err := etcd.start(opts.Attached); err != nil {
			return nil, err
		}
	}
	for _, etcd := range l.etcds() {
		if err := waitTCP(ctx, strings.TrimPrefix(etcd.flag("--listen-client-urls"), "http://"), etcd); err != nil {
			return nil, err
		}
	}

	// Clusters come up concurrently: apiserver start-up dominates and the machine has cores to spare
	// while each waits on etcd.
	// Each with its own version's kubectl, which kubectl's skew policy (one minor) asks for.
	if err := l.eachCluster(func(c *Cluster) error { return bootCluster(ctx, c, cp.clusterBinaries(c.Workload)["kubectl"]) }); err != nil {
		return nil, err
	}
	// Helm too, for the chart (README, "Install with Helm").
	for _, tool := range []string{"kubectl", "helm"} {
		if err := os.Symlink(bins[tool], filepath.Join(binDir, tool)); err != nil && !errors.Is(err, fs.ErrExist) {
			return nil, err
		}
	}
	if opts.Flotilla {
		// As the workload clusters' admins would, before any flotilla looks: the tutorial runs in `default`.
		for _, c := range l.Workloads {
			if err := openDefaultNamespace(ctx, c); err != nil {
				return nil, err
			}
		}
		flotilla, err := buildFlotilla(binDir)
		if err != nil {
			return nil, err
		}
		// Before any flotilla, as in a management cluster set up by the chart: pods of enabled namespaces get
		// the virtual nodes' toleration from the moment there are virtual nodes.
		if err := l.startWebhook(ctx, flotilla, bins["helm"]); err != nil {
			return nil, err
		}
		for _, c := range l.Workloads {
			pick := freeKubeletAddress
			if c.Name == opts.ProxyableKubelet {
				pick = hostAddress
			}
			ip, err := pick()
			if err != nil {
				return nil, err
			}
			if l.Credentials[c.Name], err = l.joinWorkload(ctx, c, ip); err != nil {
				return nil, err
			}
			p, metrics, err := l.flotillaProcess(flotilla, c, l.Credentials[c.Name], "", ip, opts.FlotillaArgs)
			if err != nil {
				return nil, err
			}
			p.Env = opts.FlotillaEnv
			l.Flotillas[c.Name], l.FlotillaMetrics[c.Name] = p, metrics
			if err := p.start(opts.Attached); err != nil {
				return nil, err
			}
		}
		if err := l.waitVirtualNodes(ctx); err != nil {
			return nil, err
		}
	}
	// A process that failed right after its start (a port taken, a bad flag) is not always one the checks
	// above wait for: a lab without its scheduler looks up, and leaves every pod Pending.
	for _, p := range l.processes() {
		if !p.running() {
			return nil, fmt.Errorf("%s exited; see %s", p.Name, p.LogFile)
		}
	}
	return l, l.save()
}

// pin confines processes to cpus (Options.ManagementCPUs); empty leaves them free.
func pin(cpus string, processes ...*process) {
	for _, p := range processes {
		p.CPUs = cpus
	}
}

// bootCluster starts one cluster's processes in order and waits until it can run pods.
func bootCluster(ctx context.Context, c *Cluster, kubectl string) error {
	if err := c.APIServer.start(c.attached); err != nil {
		return err
	}
	if err := c.connect(); err != nil {
		return err
	}
	if err := c.waitReady(ctx); err != nil {
		return err
	}
	if err := applyRBAC(ctx, c, kubectl); err != nil {
		return err
	}
	for _, p := range []*process{c.Scheduler, c.ControllerManager, c.Kwok} {
		if p == nil {
			continue
		}
		if err := p.start(c.attached); err != nil {
			return err
		}
	}
	if c.MetricsServer != nil {
		if err := registerMetricsServer(ctx, c); err != nil {
			return err
		}
	}
	if c.Workload.Nodes == 0 {
		return nil
	}
	if err := createNodes(ctx, c); err != nil {
		return err
	}
	return waitNodesReady(ctx, c)
}

func (l *Lab) clusters() []*Cluster {
	return append([]*Cluster{l.Management}, l.Workloads...)
}

// eachCluster runs f for every cluster concurrently and joins their errors.
func (l *Lab) eachCluster(f func(*Cluster) error) error {
	cs := l.clusters()
	errs := make([]error, len(cs))
	var wg sync.WaitGroup
	for i, c := range cs {
		wg.Go(func() { errs[i] = f(c) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

// Workload returns the workload cluster of that name, or nil.
func (l *Lab) Workload(name string) *Cluster {
	for _, c := range l.Workloads {
		if c.Name == name {
			return c
		}
	}
	return nil
}

// tiers lists the lab's processes in the order they stop: flotillas first, then the clusters'
// components, etcd last, so nothing logs errors about a dependency that vanished before it.
func (l *Lab) tiers() [][]*process {
	var flotillas, components []*process
	for _, c := range l.Workloads {
		if p := l.Flotillas[c.Name]; p != nil {
			flotillas = append(flotillas, p)
		}
	}
	if l.Webhook != nil {
		flotillas = append(flotillas, l.Webhook)
	}
	for _, p := range []*process{l.Logger, l.Echo} {
		if p != nil {
			components = append(components, p)
		}
	}
	for _, c := range l.clusters() {
		if c != nil {
			components = append(components, c.processes()...)
		}
	}
	tiers := [][]*process{flotillas, components}
	if etcds := l.etcds(); len(etcds) > 0 {
		tiers = append(tiers, etcds)
	}
	return tiers
}

// etcds are the lab's etcd processes: the one the clusters share, and the management cluster's own.
func (l *Lab) etcds() []*process {
	var out []*process
	for _, p := range []*process{l.Etcd, l.ManagementEtcd} {
		if p != nil {
			out = append(out, p)
		}
	}
	return out
}

func (l *Lab) processes() []*process {
	var ps []*process
	for _, tier := range l.tiers() {
		ps = append(ps, tier...)
	}
	return ps
}

// Stop ends every process of the lab, tier by tier, the processes of a tier concurrently.
func (l *Lab) Stop() error {
	var errs []error
	var mu sync.Mutex
	for _, tier := range l.tiers() {
		var wg sync.WaitGroup
		for _, p := range tier {
			wg.Go(func() {
				if err := p.stop(5 * time.Second); err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
				}
			})
		}
		wg.Wait()
	}
	return errors.Join(errs...)
}

// Running reports whether every process of the lab is alive.
func (l *Lab) Running() bool {
	for _, p := range l.processes() {
		if !p.running() {
			return false
		}
	}
	return len(l.processes()) > 0
}

func (l *Lab) save() error {
	b, err := json.MarshalIndent(l, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(l.Dir, stateFile), b, 0o644)
}

// Load reads the state of a lab started earlier (by make lab) from its folder.
func Load(dir string) (*Lab, error) {
	b, err := os.ReadFile(filepath.Join(dir, stateFile))
	if err != nil {
		return nil, err
	}
	l := &Lab{}
	if err := json.Unmarshal(b, l); err != nil {
		return nil, fmt.Errorf("reading %s: %w", filepath.Join(dir, stateFile), err)
	}
	for _, c := range l.clusters() {
		if err := c.connect(); err != nil {
			return nil, err
		}
	}
	return l, nil
}

// Down stops a lab started earlier in dir and removes its state file, so a later Load fails cleanly.
func Down(dir string) error {
	l, err := Load(dir)
	if err != nil {
		return err
	}
	if err := l.Stop(); err != nil {
		return err
	}
	return os.Remove(filepath.Join(dir, stateFile))
}

// freePorts asks the kernel for n free loopback ports that this process has not handed out before. The
// kernel only knows which ports are bound now: a port handed out for a server that has not started yet is
// free to it, and it hands the same port out again readily (a lab's management scheduler and a workload
// apiserver once got the same one). Labs of concurrent test binaries draw from the kernel too, so they do
// not collide while their servers run.
func freePorts(n int) ([]int, error) {
	handedOut.mu.Lock()
	defer handedOut.mu.Unlock()
	var ports []int
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	for tries := 0; len(ports) < n; tries++ {
		if tries == 100*n {
			return nil, fmt.Errorf("no %d loopback ports left that were not handed out before", n)
		}
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l) // held until all n are found, so the kernel does not return one twice here
		port := l.Addr().(*net.TCPAddr).Port
		if handedOut.ports[port] {
			continue
		}
		handedOut.ports[port] = true
		ports = append(ports, port)
	}
	return ports, nil
}

// handedOut are the ports freePorts has handed out in this process.
var handedOut = struct {
	mu    sync.Mutex
	ports map[int]bool
}{ports: map[int]bool{}}

// waitTCP waits until addr accepts connections, failing early if p exits.
func waitTCP(ctx context.Context, addr string, p *process) error {
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		if !p.running() {
			return fmt.Errorf("%s exited; see %s", p.Name, p.LogFile)
		}
		if conn, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			conn.Close()
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return fmt.Errorf("%s does not listen on %s; see %s", p.Name, addr, p.LogFile)
}

// etcdProcess is an etcd named name ("etcd", or "<cluster>/etcd" for one cluster's own), its data and log
// named after it.
func etcdProcess(bin, dir, name string, clientPort, peerPort int) *process {
	client := "http://127.0.0.1:" + strconv.Itoa(clientPort)
	peer := "http://127.0.0.1:" + strconv.Itoa(peerPort)
	file := strings.ReplaceAll(name, "/", "-")
	return &process{
		Name: name, Path: bin, LogFile: filepath.Join(dir, "logs", file+".log"),
		Args: []string{
			"--name=lab",
			"--data-dir=" + filepath.Join(dir, file),
			"--listen-client-urls=" + client,
			"--advertise-client-urls=" + client,
			"--listen-peer-urls=" + peer,
			"--initial-advertise-peer-urls=" + peer,
			"--initial-cluster=lab=" + peer,
			// A lab's data is disposable: skipping fsync keeps five clusters fast on a shared disk.
			"--unsafe-no-fsync",
			"--quota-backend-bytes=8589934592",
			"--log-level=warn",
		},
	}
}
