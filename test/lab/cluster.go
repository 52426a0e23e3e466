package lab

import (
	"context"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// Cluster is one Kubernetes control plane of the lab: the management cluster, or a workload cluster with
// kwok nodes.
type Cluster struct {
	Name string `json:"name"`
	// Workload is a workload cluster's spec; the management cluster's has no name, and nodes only with
	// Options.ManagementNodes.
	Workload WorkloadSpec `json:"workload"`
	Server   string       `json:"server"`
	// Kubeconfig is the admin kubeconfig (system:masters), for people and tests.
	Kubeconfig string `json:"kubeconfig"`
	// FlotillaKubeconfig is flotilla's own identity in this cluster, bound only to the roles of deploy/.
	FlotillaKubeconfig string `json:"flotillaKubeconfig"`

	APIServer         *process `json:"apiserver"`
	Scheduler         *process `json:"scheduler"`
	ControllerManager *process `json:"controllerManager"`
	Kwok              *process `json:"kwok,omitempty"`
	// MetricsServer serves the cluster's metrics API (Options.Kubelets), on MetricsServerPort.
	MetricsServer     *process `json:"metricsServer,omitempty"`
	MetricsServerPort int      `json:"metricsServerPort,omitempty"`
	// KubeletIP is the loopback address where kwok serves its nodes' kubelet API (Options.Kubelets).
	KubeletIP string `json:"kubeletIP,omitempty"`

	// Config and Client are admin access, set once the apiserver answers.
	Config *rest.Config         `json:"-"`
	Client kubernetes.Interface `json:"-"`

	attached bool
}

// IsManagement tells the management cluster from the workload clusters.
func (c *Cluster) IsManagement() bool { return c.Workload.Name == "" }

// managementClientRates are the management controller-manager's and scheduler's client rates: those of
// the four workload clusters' summed, and more, since every pod of the fleet is created and bound there
// (docs/OPERATIONS.md, "Tuning the management cluster").
var managementClientRates = []string{"--kube-api-qps=300", "--kube-api-burst=600"}

func (c *Cluster) processes() []*process {
	ps := []*process{c.APIServer, c.Scheduler, c.ControllerManager, c.Kwok, c.MetricsServer}
	out := ps[:0]
	for _, p := range ps {
		if p != nil {
			out = append(out, p)
		}
	}
	return out
}

// FreezeAPIServer stops the apiserver's process (SIGSTOP): connections hang, as with a network partition.
func (c *Cluster) FreezeAPIServer() error { return c.APIServer.freeze() }

// ResumeAPIServer continues a frozen apiserver.
func (c *Cluster) ResumeAPIServer() error { return c.APIServer.signal(syscall.SIGCONT) }

// FreezeKubelets stops kwok (SIGSTOP), which plays every kubelet of a workload cluster: its pods neither
// start nor stop, as when the cluster's nodes are cut off from its apiserver.
func (c *Cluster) FreezeKubelets() error { return c.Kwok.freeze() }

// ResumeKubelets continues frozen kubelets.
func (c *Cluster) ResumeKubelets() error { return c.Kwok.signal(syscall.SIGCONT) }

// KillAPIServer kills the apiserver: connections are refused until StartAPIServer.
func (c *Cluster) KillAPIServer() error { return c.APIServer.kill() }

// StartAPIServer starts a killed apiserver again, on the same port and data, and waits until it is ready.
func (c *Cluster) StartAPIServer(ctx context.Context) error {
	if err := c.APIServer.start(c.attached); err != nil {
		return err
	}
	return c.waitReady(ctx)
}

// connect builds the admin client.
func (c *Cluster) connect() error {
	cfg, err := restConfig(c.Kubeconfig)
	if err != nil {
		return err
	}
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	c.Config, c.Client = cfg, client
	return nil
}

// waitReady polls the apiserver's /readyz until it answers ok.
func (c *Cluster) waitReady(ctx context.Context) error {
	var last error
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		if !c.APIServer.running() {
			return false, fmt.Errorf("kube-apiserver of %s exited; see %s", c.Name, c.APIServer.LogFile)
		}
		rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		_, last = c.Client.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(rctx)
		return last == nil, nil
	})
	if err != nil {
		return fmt.Errorf("kube-apiserver of %s not ready (last error: %v): %w; see %s", c.Name, last, err, c.APIServer.LogFile)
	}
	return nil
}

// controlPlane holds what the lab hands every cluster: binaries, the CA, the shared etcd.
type controlPlane struct {
	dir  string
	bins map[string]string // Binaries(): every tool, and the default Kubernetes
	// versions holds the cluster binaries of each other Kubernetes a workload asks for (WorkloadSpec.Kubernetes).
	versions   map[string]map[string]string
	ca         *authority
	etcdURL    string
	kwokStages []string
	attached   bool
	// certificateLifetime is Options.CertificateLifetime.
	certificateLifetime time.Duration
	// kubelets is set with Options.Kubelets: what every cluster's kubelet simulation shares.
	kubelets *kubeletSide
}

// clusterBinaries are the apiserver, controller-manager, scheduler and kubectl of spec's Kubernetes.
func (cp *controlPlane) clusterBinaries(spec WorkloadSpec) map[string]string {
	if bins, ok := cp.versions[spec.Kubernetes]; ok {
		return bins
	}
	return cp.bins
}

// newCluster writes the certificates and kubeconfigs of one cluster and prepares (without starting) its
// processes.
func (cp *controlPlane) newCluster(name string, spec WorkloadSpec, index int) (*Cluster, error) {
	dir := filepath.Join(cp.dir, "clusters", name)
	logs := filepath.Join(cp.dir, "logs", name)
	ports, err := freePorts(3)
	if err != nil {
		return nil, err
	}
	apiPort, schedPort, kcmPort := ports[0], ports[1], ports[2]
	kube := cp.clusterBinaries(spec)
	c := &Cluster{
		Name:               name,
		Workload:           spec,
		Server:             "https://127.0.0.1:" + strconv.Itoa(apiPort),
		Kubeconfig:         filepath.Join(cp.dir, name+".kubeconfig"),
		FlotillaKubeconfig: filepath.Join(dir, "flotilla.kubeconfig"),
		attached:           cp.attached,
	}

	ca := cp.ca
	pki := filepath.Join(dir, "pki")
	pkiCA := &authority{cert: ca.cert, key: ca.key, CertPEM: ca.CertPEM, dir: pki}
	serving, err := pkiCA.serving("apiserver")
	if err != nil {
		return nil, err
	}
	kubeletClient, err := pkiCA.client("apiserver-kubelet-client", "kube-apiserver-kubelet-client", "system:masters")
	if err != nil {
		return nil, err
	}
	saPrivate, saPublic, err := serviceAccountKey(pki, "service-account")
	if err != nil {
		return nil, err
	}
	identities := []struct {
		file, user, group, kubeconfig string
	}{
		{"admin", "lab-admin", "system:masters", c.Kubeconfig},
		{"scheduler", "system:kube-scheduler", "", filepath.Join(dir, "scheduler.kubeconfig")},
		{"controller-manager", "system:kube-controller-manager", "", filepath.Join(dir, "controller-manager.kubeconfig")},
		// kwok plays every kubelet of the cluster; it is a simulator, not the system under test.
		{"kwok", "kwok", "system:masters", filepath.Join(dir, "kwok.kubeconfig")},
		// flotilla's identity: the group is what deploy/charts/flotilla/files/rbac binds to.
		{"flotilla", "flotilla:" + name, FlotillaGroup, c.FlotillaKubeconfig},
	}
	for _, id := range identities {
		var groups []string
		if id.group != "" {
			groups = []string{id.group}
		}
		kp, err := pkiCA.client(id.file, id.user, groups...)
		if err != nil {
			return nil, err
		}
		if err := writeKubeconfig(id.kubeconfig, name, c.Server, ca.CertPEM, kp); err != nil {
			return nil, err
		}
	}

	c.APIServer = &process{
		Name: name + "/kube-apiserver", Path: kube["kube-apiserver"], LogFile: filepath.Join(logs, "kube-apiserver.log"),
		Args: []string{
			"--etcd-servers=" + cp.etcdURL,
			// One etcd serves the whole lab; each cluster keeps its own key space.
			"--etcd-prefix=/clusters/" + name,
			"--bind-address=127.0.0.1",
			"--advertise-address=127.0.0.1",
			"--secure-port=" + strconv.Itoa(apiPort),
			"--cert-dir=" + pki,
			"--tls-cert-file=" + serving.CertFile,
			"--tls-private-key-file=" + serving.KeyFile,
			"--client-ca-file=" + ca.CertFile(),
			// As kubeadm, EKS and GKE clusters run: nodes are confined to their own Node, pods and the
			// objects those pods reference by the Node authorizer and NodeRestriction admission.
			"--authorization-mode=Node,RBAC",
			"--enable-admission-plugins=NodeRestriction",
			"--service-account-issuer=https://kubernetes.default.svc",
			"--service-account-key-file=" + saPublic,
			"--service-account-signing-key-file=" + saPrivate,
			"--service-cluster-ip-range=10.96.0.0/16",
			"--kubelet-client-certificate=" + kubeletClient.CertFile,
			"--kubelet-client-key=" + kubeletClient.KeyFile,
			"--kubelet-certificate-authority=" + ca.CertFile(),
			"--kubelet-preferred-address-types=InternalIP",
			"--allow-privileged=true",
			// /debug/pprof, for cluster-admins only: the rollout benchmark profiles a workload apiserver.
			"--profiling=true",
			"--endpoint-reconciler-type=none",
			"--v=1",
		},
	}
	common := func(kubeconfig string, port int) []string {
		return []string{
			"--kubeconfig=" + kubeconfig,
			"--authentication-kubeconfig=" + kubeconfig,
			"--authorization-kubeconfig=" + kubeconfig,
			"--leader-elect=false",
			"--bind-address=127.0.0.1",
			"--secure-port=" + strconv.Itoa(port),
			"--cert-dir=" + filepath.Join(pki, "serving-"+strconv.Itoa(port)),
			"--v=1",
		}
	}
	schedulerArgs := common(filepath.Join(dir, "scheduler.kubeconfig"), schedPort)
	kcmArgs := common(filepath.Join(dir, "controller-manager.kubeconfig"), kcmPort)
	if c.IsManagement() {
		// The management cluster creates and binds every pod of the fleet: tuned as docs/OPERATIONS.md
		// advises, not at the defaults sized for one cluster's (20 and 50 requests/s).
		schedulerArgs = append(schedulerArgs, managementClientRates...)
		kcmArgs = append(kcmArgs, managementClientRates...)
		// A virtual node reports its cluster NotReady itself; notice it within a second rather than five, so
		// pods tolerating not-ready for a few seconds leave in about that time. A fleet has few nodes, so the
		// shorter period costs nothing.
		kcmArgs = append(kcmArgs, "--node-monitor-period=1s")
	}
	c.Scheduler = &process{
		Name: name + "/kube-scheduler", Path: kube["kube-scheduler"], LogFile: filepath.Join(logs, "kube-scheduler.log"),
		Args: schedulerArgs,
	}
	kcmArgs = append(kcmArgs,
		"--cluster-name="+name,
		"--service-account-private-key-file="+saPrivate,
		"--root-ca-file="+ca.CertFile(),
		"--use-service-account-credentials=true",
		// No node IPAM: kwok nodes need no pod CIDR. The cloud controllers need no disabling: 1.36 moved
		// them out of kube-controller-manager, and from 1.37 it refuses names it does not know.
		"--controllers=*,-nodeipam",
		// The lab's nodes live on one machine: notice a silent node sooner than the 40 s default.
		"--node-monitor-grace-period=20s",
		// Approved CertificateSigningRequests are signed by the lab's CA, which every apiserver trusts.
		"--cluster-signing-cert-file="+ca.CertFile(),
		"--cluster-signing-key-file="+ca.KeyFile(),
	)
	if cp.certificateLifetime > 0 {
		kcmArgs = append(kcmArgs, "--cluster-signing-duration="+cp.certificateLifetime.String())
	}
	c.ControllerManager = &process{
		Name: name + "/kube-controller-manager", Path: kube["kube-controller-manager"], LogFile: filepath.Join(logs, "kube-controller-manager.log"),
		Args: kcmArgs,
	}
	// kwok plays every workload cluster's kubelets, and the management cluster's own (Options.ManagementNodes).
	if !c.IsManagement() || spec.Nodes > 0 {
		c.Kwok = &process{
			Name: name + "/kwok", Path: cp.bins["kwok"], LogFile: filepath.Join(logs, "kwok.log"),
			Args: []string{
				"--kubeconfig=" + filepath.Join(dir, "kwok.kubeconfig"),
				"--manage-all-nodes=false",
				"--manage-nodes-with-annotation-selector=" + kwokNodeAnnotation + "=fake",
				// kwok renews a Lease per node, as a kubelet does, so the node lifecycle controller keeps
				// the nodes Ready without status heartbeats.
				"--node-lease-duration-seconds=40",
				"--server-address=",
				"--config=" + strings.Join(cp.kwokStages, ","),
				// Each cluster its own pod network, as real clusters have, so a pod IP names one pod.
				fmt.Sprintf("--cidr=10.%d.0.0/16", 100+index),
			},
		}
	}
	if cp.kubelets != nil {
		if err := cp.withKubelets(c, cp.kubelets); err != nil {
			return nil, err
		}
	}
	return c, nil
}
