// Command flotilla serves one workload Kubernetes cluster as a virtual node of a management cluster.
//
// This file holds flags and process concerns only; the behaviour lives in package node (the virtual
// node) and package provider (pods and what follows them).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"regexp"
	"strings"
	"syscall"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/flotilla-io/flotilla/node"
)

// options are flotilla's command-line settings.
type options struct {
	ClusterName          string
	NodeName             string
	ManagementKubeconfig string
	WorkloadKubeconfig   string
	ManagementID         string

	ManagementQPS   float64
	ManagementBurst int
	WorkloadQPS     float64
	WorkloadBurst   int
	PodWorkers      int
	PodQueueQPS     float64
	PodQueueBurst   int

	InternalIP    string
	KubeletPort   int
	KubeletBind   string
	TLSCertFile   string
	TLSKeyFile    string
	ClientCAFile  string
	MetricsAddr   string
	Taint         bool
	ExcludeLabels string
	ProbeInterval time.Duration
	ProbeTimeout  time.Duration
	FailoverAfter time.Duration
	LeaderElect   bool
	// LeaderElectNamespace holds the Lease flotilla-<node> with --leader-elect.
	LeaderElectNamespace string
	LogLevel             string
	// IngressClasses maps management ingress classes to workload ones (--ingress-class-map a=b,c=d).
	IngressClasses map[string]string
}

func parseFlags(args []string) (*options, error) {
	o := &options{}
	fs := flag.NewFlagSet("flotilla", flag.ContinueOnError)
	fs.StringVar(&o.ClusterName, "cluster-name", "", "name of the workload cluster (required); also the virtual node's name unless --node-name is set")
	fs.StringVar(&o.NodeName, "node-name", "", "name of the virtual node (default: the cluster name)")
	fs.StringVar(&o.ManagementKubeconfig, "management-kubeconfig", "", "kubeconfig of the management cluster (default: in-cluster configuration)")
	fs.StringVar(&o.WorkloadKubeconfig, "workload-kubeconfig", "", "kubeconfig of the workload cluster (required)")
	fs.StringVar(&o.ManagementID, "management-id", "", "identity of the management cluster on the objects flotilla creates (default: UID of its kube-system namespace)")
	fs.Float64Var(&o.ManagementQPS, "management-qps", 100, "client-side request rate limit against the management cluster")
	fs.IntVar(&o.ManagementBurst, "management-burst", 200, "client-side request burst against the management cluster")
	fs.Float64Var(&o.WorkloadQPS, "workload-qps", 100, "client-side request rate limit against the workload cluster")
	fs.IntVar(&o.WorkloadBurst, "workload-burst", 200, "client-side request burst against the workload cluster")
	fs.IntVar(&o.PodWorkers, "pod-workers", 20, "pods synchronised concurrently")
	fs.Float64Var(&o.PodQueueQPS, "pod-queue-qps", 200, "rate at which pod work queues admit retried items")
	fs.IntVar(&o.PodQueueBurst, "pod-queue-burst", 1000, "burst of the pod work queues' rate limit")
	fs.StringVar(&o.InternalIP, "internal-ip", "", "address the management apiserver reaches this process's kubelet API on (required)")
	fs.IntVar(&o.KubeletPort, "kubelet-port", 10250, "port of the kubelet API (logs, exec, port-forward)")
	fs.StringVar(&o.KubeletBind, "kubelet-bind-address", "", "address the kubelet API listens on (default: all addresses)")
	fs.StringVar(&o.TLSCertFile, "tls-cert-file", "", "serving certificate of the kubelet API (required)")
	fs.StringVar(&o.TLSKeyFile, "tls-key-file", "", "serving key of the kubelet API (required)")
	fs.StringVar(&o.ClientCAFile, "client-ca-file", "", "CA that signs the management apiserver's kubelet client certificate")
	fs.StringVar(&o.MetricsAddr, "metrics-address", "127.0.0.1:10255", "address of the Prometheus /metrics endpoint; empty disables it")
	fs.BoolVar(&o.Taint, "taint", true, "taint the virtual node "+node.TaintKey+"="+node.TaintValue+":NoSchedule so only pods that opt in land on it")
	fs.StringVar(&o.ExcludeLabels, "exclude-labels", node.DefaultExcludeLabels.String(), "regular expression of workload node label keys never copied to the virtual node")
	fs.DurationVar(&o.ProbeInterval, "probe-interval", 2*time.Second, "how often the workload cluster's health is probed")
	fs.DurationVar(&o.ProbeTimeout, "probe-timeout", time.Second, "how long a health probe may take before the cluster counts as unreachable")
	fs.DurationVar(&o.FailoverAfter, "failover-after", node.DefaultFailoverAfter, "how long the workload cluster may be unreachable or without Ready nodes before the virtual node is tainted "+node.LostTaintKey+":NoExecute and its pods are replaced elsewhere; 0 leaves them to Kubernetes' not-ready toleration (5 minutes by default)")
	fs.BoolVar(&o.LeaderElect, "leader-elect", false, "run as one of several replicas of this flotilla: serve the virtual node only while holding its leader Lease in the management cluster, and stand by otherwise")
	fs.StringVar(&o.LeaderElectNamespace, "leader-elect-namespace", "flotilla-system", "namespace of the management cluster holding the leader Lease flotilla-<node> (with --leader-elect)")
	fs.StringVar(&o.LogLevel, "log-level", "info", "log level: debug, info, warn, error")
	ingressClassMap := fs.String("ingress-class-map", "", "ingress classes to rename in this workload cluster, as management=workload pairs, comma-separated (e.g. public=alb)")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	var err error
	if o.IngressClasses, err = parsePairs(*ingressClassMap); err != nil {
		return nil, fmt.Errorf("--ingress-class-map: %w", err)
	}
	if o.NodeName == "" {
		o.NodeName = o.ClusterName
	}
	var missing []string
	for _, required := range []struct{ flag, value string }{
		{"--cluster-name", o.ClusterName}, {"--workload-kubeconfig", o.WorkloadKubeconfig}, {"--internal-ip", o.InternalIP},
		{"--tls-cert-file", o.TLSCertFile}, {"--tls-key-file", o.TLSKeyFile},
	} {
		if required.value == "" {
			missing = append(missing, required.flag)
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("missing required flags: %s", strings.Join(missing, " "))
	}
	if o.FailoverAfter < 0 {
		return nil, fmt.Errorf("--failover-after: %s is negative", o.FailoverAfter)
	}
	if _, err := regexp.Compile(o.ExcludeLabels); err != nil {
		return nil, fmt.Errorf("--exclude-labels: %w", err)
	}
	return o, nil
}

// parsePairs reads "a=b,c=d" into a map.
func parsePairs(s string) (map[string]string, error) {
	pairs := map[string]string{}
	if s == "" {
		return pairs, nil
	}
	for _, pair := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(pair), "=")
		if !ok || k == "" || v == "" {
			return nil, fmt.Errorf("%q is not from=to", pair)
		}
		pairs[k] = v
	}
	return pairs, nil
}

func main() {
	o, err := parseFlags(os.Args[1:])
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "flotilla: %v\n", err)
		os.Exit(2)
	}
	level, err := logrus.ParseLevel(o.LogLevel)
	if err != nil {
		fmt.Fprintf(os.Stderr, "flotilla: --log-level: %v\n", err)
		os.Exit(2)
	}
	logrus.SetLevel(level)
	logrus.SetFormatter(&logrus.TextFormatter{FullTimestamp: true})

	// SIGTERM (a rolling update, make lab-down) ends flotilla cleanly; the virtual node and its pods stay,
	// and the next flotilla picks them up.
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	if err := run(ctx, o); err != nil && !errors.Is(err, context.Canceled) {
		logrus.Errorf("flotilla: %v", err)
		os.Exit(1)
	}
}
