// Command flotilla serves one workload Kubernetes cluster as a virtual node of a management cluster
// (`flotilla`, the root command) or the admission webhook that opts pods of enabled namespaces in to
// virtual nodes (`flotilla webhook`).
//
// This package holds flags, their validation, and process concerns only; the behaviour lives in package
// node (the virtual node), package provider (pods and what follows them) and package admission (the webhook).
package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/bombsimon/logrusr/v4"
	"github.com/sirupsen/logrus"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/klog/v2"

	"github.com/flotilla-io/flotilla/join"
	"github.com/flotilla-io/flotilla/node"
	"github.com/flotilla-io/flotilla/provider"
	"github.com/flotilla-io/flotilla/tenancy"
)

// options are the settings of the root command, which serves one workload cluster as a virtual node.
type options struct {
	ClusterName          string
	NodeName             string
	ManagementKubeconfig string
	WorkloadKubeconfig   string
	// FailoverKubeconfig is the failover identity's (see join); empty uses the management kubeconfig's.
	FailoverKubeconfig string
	// CertDir keeps the node client certificates flotilla renews.
	CertDir      string
	ManagementID string

	ManagementQPS   float64
	ManagementBurst int
	WorkloadQPS     float64
	WorkloadBurst   int
	PodWorkers      int
	PodQueueQPS     float64
	PodQueueBurst   int
	APICompression  bool

	InternalIP      string
	KubeletPort     int
	KubeletBind     string
	TLSCertFile     string
	TLSKeyFile      string
	ClientCAFile    string
	MetricsAddr     string
	Profiling       bool // Go's profiles under /debug/pprof/ beside /metrics
	HealthAddr      string
	Taint           bool
	ExcludeLabels   string
	ProbeInterval   time.Duration
	ProbeTimeout    time.Duration
	ProbeTimeoutMax time.Duration
	FailoverAfter   time.Duration
	// RescheduleAfter is how long a delegate may stay unschedulable in the workload cluster before its proxy
	// is evicted for its controller to replace it (0: never).
	RescheduleAfter time.Duration
	LeaderElect     bool
	// LeaderElectNamespace holds the Lease flotilla-<node> with --leader-elect.
	LeaderElectNamespace string
	LogLevel             string
	LogFormat            string
	// IngressClasses maps management ingress classes to workload ones (--ingress-class-map a=b,c=d).
	IngressClasses map[string]string
	// PodSecurityLevel is the least Pod Security level enforced in the workload namespaces flotilla creates.
	PodSecurityLevel string
}

// AddFlags binds the root command's flags to o, with their defaults.
func (o *options) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.ClusterName, "cluster-name", "", "name of the workload cluster (required); also the virtual node's name unless --node-name is set")
	fs.StringVar(&o.NodeName, "node-name", "", "name of the virtual node (default: the cluster name)")
	fs.StringVar(&o.ManagementKubeconfig, "management-kubeconfig", "", "kubeconfig of the management cluster (default: in-cluster configuration)")
	fs.StringVar(&o.WorkloadKubeconfig, "workload-kubeconfig", "", "kubeconfig of the workload cluster (required)")
	fs.StringVar(&o.FailoverKubeconfig, "failover-kubeconfig", "", "kubeconfig of the identity that sets the cluster-lost taint and the role label on virtual nodes, which NodeRestriction forbids the node identity (default: the management kubeconfig's)")
	fs.StringVar(&o.CertDir, "cert-dir", "", "folder keeping the renewed client certificates of the node identity (default: a folder per node under the system's temporary folder)")
	fs.StringVar(&o.ManagementID, "management-id", "", "identity of the management cluster on the objects flotilla creates (default: UID of its kube-system namespace)")
	fs.Float64Var(&o.ManagementQPS, "management-qps", 100, "client-side request rate limit against the management cluster")
	fs.IntVar(&o.ManagementBurst, "management-burst", 200, "client-side request burst against the management cluster")
	fs.Float64Var(&o.WorkloadQPS, "workload-qps", 100, "client-side request rate limit against the workload cluster")
	fs.IntVar(&o.WorkloadBurst, "workload-burst", 200, "client-side request burst against the workload cluster")
	fs.BoolVar(&o.APICompression, "api-compression", false, "ask both apiservers for gzip-compressed responses and watches: less traffic, more CPU on both ends")
	fs.IntVar(&o.PodWorkers, "pod-workers", 20, "pods synchronised concurrently")
	fs.Float64Var(&o.PodQueueQPS, "pod-queue-qps", 200, "rate at which pod work queues admit retried items")
	fs.IntVar(&o.PodQueueBurst, "pod-queue-burst", 1000, "burst of the pod work queues' rate limit")
	fs.StringVar(&o.InternalIP, "internal-ip", "", "address the management apiserver reaches this process's kubelet API on (required)")
	fs.IntVar(&o.KubeletPort, "kubelet-port", 10250, "port of the kubelet API (logs, exec, port-forward)")
	fs.StringVar(&o.KubeletBind, "kubelet-bind-address", "", "address the kubelet API listens on (default: all addresses)")
	fs.StringVar(&o.TLSCertFile, "tls-cert-file", "", "serving certificate of the kubelet API (required)")
	fs.StringVar(&o.TLSKeyFile, "tls-key-file", "", "serving key of the kubelet API (required)")
	fs.StringVar(&o.ClientCAFile, "client-ca-file", "", "CA that signs the management apiserver's kubelet client certificate (required: without it the apiserver cannot reach the kubelet API, so kubectl logs, exec, port-forward and top would fail)")
	fs.StringVar(&o.MetricsAddr, "metrics-address", "127.0.0.1:10255", "address of the Prometheus /metrics endpoint: plain HTTP to anyone on a loopback address; on any other, HTTPS (--tls-cert-file) for callers the management apiserver authenticates and authorizes to get /metrics; empty disables it")
	fs.BoolVar(&o.Profiling, "profiling", false, "also serve Go's pprof profiles under /debug/pprof/ on --metrics-address, on the same terms as /metrics except that off loopback a caller needs the right to get the non-resource URL /debug/pprof/* (a right to /metrics is not enough)")
	fs.StringVar(&o.HealthAddr, "health-address", ":10248", "address of the /healthz and /readyz endpoints, for the kubelet's probes (no credentials needed); empty disables them")
	fs.BoolVar(&o.Taint, "taint", true, "taint the virtual node "+node.TaintKey+"="+node.TaintValue+":NoSchedule so only pods that opt in land on it")
	fs.StringVar(&o.ExcludeLabels, "exclude-labels", node.DefaultExcludeLabels.String(), "regular expression of workload node label keys never copied to the virtual node")
	fs.DurationVar(&o.ProbeInterval, "probe-interval", node.DefaultProbeInterval, "how often the workload cluster's health is probed")
	fs.DurationVar(&o.ProbeTimeout, "probe-timeout", node.DefaultProbeTimeout, "how long a health probe may take before the cluster counts as unreachable")
	fs.DurationVar(&o.ProbeTimeoutMax, "probe-timeout-max", node.DefaultProbeTimeoutMax, "the longest the workload apiserver may be silent before the cluster counts as unreachable, for ten minutes after it came back from a silence longer than --probe-timeout (then it may be silent twice as long as that); --probe-timeout or less allows the probe timeout alone, 0 means the default")
	fs.DurationVar(&o.FailoverAfter, "failover-after", node.DefaultFailoverAfter, "how long the workload cluster may be unreachable or without Ready nodes before the virtual node is tainted "+node.LostTaintKey+":NoExecute and its pods are replaced elsewhere; 0 leaves them to Kubernetes' not-ready toleration (5 minutes by default)")
	fs.DurationVar(&o.RescheduleAfter, "reschedule-after", provider.DefaultRescheduleAfter, "how long a pod may stay unschedulable in the workload cluster before it is evicted (Eviction API, honouring PodDisruptionBudgets) so its controller replaces it, and the management scheduler places the replacement again; each further re-placement of one controller's pods from this cluster waits twice as long (up to 8 times this); pods without a controller are never evicted; 0 turns re-placement off")
	fs.BoolVar(&o.LeaderElect, "leader-elect", false, "run as one of several replicas of this flotilla: serve the virtual node only while holding its leader Lease in the management cluster, and stand by otherwise")
	fs.StringVar(&o.LeaderElectNamespace, "leader-elect-namespace", "flotilla-system", "namespace of the management cluster holding the leader Lease flotilla-<node> (with --leader-elect)")
	addLogFlags(fs, &o.LogLevel, &o.LogFormat)
	o.IngressClasses = map[string]string{}
	fs.Var(pairs{&o.IngressClasses}, "ingress-class-map", "ingress classes to rename in this workload cluster, as management=workload pairs, comma-separated (e.g. public=alb)")
	fs.StringVar(&o.PodSecurityLevel, "pod-security-level", tenancy.DefaultLevel, "least Pod Security level (privileged, baseline, restricted) enforced in the workload namespaces flotilla creates; a management namespace's own stricter pod-security.kubernetes.io/enforce level wins")
}

// Validate reports every problem of the parsed flags at once.
func (o *options) Validate() []error {
	var errs, missing []string
	for _, required := range []struct{ flag, value string }{
		{"--cluster-name", o.ClusterName}, {"--workload-kubeconfig", o.WorkloadKubeconfig}, {"--internal-ip", o.InternalIP},
		{"--tls-cert-file", o.TLSCertFile}, {"--tls-key-file", o.TLSKeyFile},
	} {
		if required.value == "" {
			missing = append(missing, required.flag)
		}
	}
	if len(missing) > 0 {
		errs = append(errs, "missing required flags: "+strings.Join(missing, " "))
	}
	if o.ClientCAFile == "" {
		errs = append(errs, missingClientCA)
	}
	// The virtual node's name: virtual-kubelet's node controller refuses one that is no DNS-1123 subdomain,
	// and so does the apiserver; say so before anything starts.
	if nodeName := cmp.Or(o.NodeName, o.ClusterName); nodeName != "" {
		if problems := validation.IsDNS1123Subdomain(nodeName); len(problems) > 0 {
			errs = append(errs, fmt.Sprintf("the node name %q (--node-name, or else --cluster-name) is not a DNS-1123 subdomain: %s",
				nodeName, strings.Join(problems, "; ")))
		}
	}
	if o.FailoverAfter < 0 {
		errs = append(errs, fmt.Sprintf("--failover-after: %s is negative", o.FailoverAfter))
	}
	if o.RescheduleAfter < 0 {
		errs = append(errs, fmt.Sprintf("--reschedule-after: %s is negative", o.RescheduleAfter))
	}
	if _, err := regexp.Compile(o.ExcludeLabels); err != nil {
		errs = append(errs, fmt.Sprintf("--exclude-labels: %v", err))
	}
	errs = append(errs, loggingProblems(o.LogLevel, o.LogFormat)...)
	if _, err := tenancy.ParseLevel(o.PodSecurityLevel); err != nil {
		errs = append(errs, fmt.Sprintf("--pod-security-level: %v", err))
	}
	return asErrors(errs)
}

// missingClientCA says why flotilla refuses to serve without --client-ca-file: the management apiserver
// reaches every kubelet with a client certificate (its --kubelet-client-certificate), which the kubelet API
// can only accept by that certificate's CA.
const missingClientCA = "--client-ca-file is required: it is the CA of the management apiserver's kubelet client certificate " +
	"(kube-apiserver --kubelet-client-certificate; `flotilla join` writes it as " + join.KeyClientCA + "); without it the kubelet API " +
	"cannot authenticate the apiserver, and every kubectl logs, exec, attach, port-forward and top on this node's pods, and " +
	"metrics-server's scrapes, would fail with 401 Unauthorized"

// Complete fills in what defaults to another flag's value; call it after Validate.
func (o *options) Complete() {
	if o.NodeName == "" {
		o.NodeName = o.ClusterName
	}
	if o.CertDir == "" {
		o.CertDir = filepath.Join(os.TempDir(), "flotilla-"+o.NodeName, "pki")
	}
}

// pairs is a flag of "a=b,c=d" pairs, read into a map.
type pairs struct{ m *map[string]string }

func (p pairs) Set(s string) error {
	m, err := parsePairs(s)
	if err != nil {
		return err
	}
	*p.m = m
	return nil
}

func (p pairs) String() string {
	if p.m == nil {
		return ""
	}
	var out []string
	for k, v := range *p.m {
		out = append(out, k+"="+v)
	}
	return strings.Join(out, ",")
}

func (pairs) Type() string { return "pairs" }

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

func addLogFlags(fs *pflag.FlagSet, level, format *string) {
	fs.StringVar(level, "log-level", "info", "log level: debug, info, warn, error")
	fs.StringVar(format, "log-format", "text", "log format: text (key=value), or json (one object a line, for a log collector)")
}

// loggingProblems are what is wrong with --log-level and --log-format.
func loggingProblems(level, format string) []string {
	var problems []string
	if _, err := logrus.ParseLevel(level); err != nil {
		problems = append(problems, fmt.Sprintf("--log-level: %v", err))
	}
	if _, err := logFormatter(format); err != nil {
		problems = append(problems, fmt.Sprintf("--log-format: %v", err))
	}
	return problems
}

// logFormatter is the logrus formatter of a --log-format.
func logFormatter(format string) (logrus.Formatter, error) {
	switch format {
	case "text":
		return &logrus.TextFormatter{FullTimestamp: true}, nil
	case "json":
		return &logrus.JSONFormatter{}, nil
	default:
		return nil, fmt.Errorf("%q is neither text nor json", format)
	}
}

// setupLogging configures logrus, flotilla's logger, which virtual-kubelet's and client-go's (klog) lines
// go through too, so every line has the chosen format; level and format are validated.
func setupLogging(level, format string) {
	l, _ := logrus.ParseLevel(level)
	f, _ := logFormatter(format)
	logrus.SetLevel(l)
	logrus.SetFormatter(f)
	klog.SetLogger(logrusr.New(logrus.StandardLogger()))
}

// asErrors turns problems into errors, nil for none.
func asErrors(problems []string) []error {
	var errs []error
	for _, p := range problems {
		errs = append(errs, errors.New(p))
	}
	return errs
}

// failure is an error of a command that got as far as running (exit status 1); any other error from the
// command tree is a command line flotilla cannot run with (exit status 2): an unknown command or flag, a
// stray argument, a flag value Validate refuses.
type failure struct{ error }

func (f failure) Unwrap() error { return f.error }

// validated joins the problems Validate found into one error.
func validated(errs []error) error { return errors.Join(errs...) }

// runners are what the commands run once their flags are valid: run, runWebhook, runJoin and runUnjoin, or a
// test's stand-ins.
type runners struct {
	serve        func(context.Context, *options) error
	webhook      func(context.Context, *webhookOptions) error
	join, unjoin func(context.Context, *joinOptions) error
}

// newCommand is flotilla's command tree: the root command serves a workload cluster as before subcommands
// existed (every flag of deploy/ and the lab keeps its name and default), `webhook` serves the admission
// webhook.
func newCommand(r runners) *cobra.Command {
	o := &options{}
	root := &cobra.Command{
		Use:   "flotilla --cluster-name NAME --workload-kubeconfig FILE --internal-ip IP --tls-cert-file FILE --tls-key-file FILE --client-ca-file FILE",
		Short: "Serve a workload Kubernetes cluster as a virtual node of a management cluster",
		Long: "flotilla serves one workload Kubernetes cluster as a virtual node of a management cluster: pods the " +
			"management cluster's scheduler binds to the node run as delegate pods in the workload cluster.",
		Args:          cobra.NoArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: runValidated(o.Validate, &o.LogLevel, &o.LogFormat, func(ctx context.Context) error {
			o.Complete()
			return r.serve(ctx, o)
		}),
	}
	root.CompletionOptions.DisableDefaultCmd = true
	o.AddFlags(root.Flags())
	root.AddCommand(newWebhookCommand(r.webhook), newJoinCommand(r.join), newUnjoinCommand(r.unjoin))
	return root
}

// runValidated is a command's RunE: the flags' problems all at once (exit 2), then logging at the chosen
// level and format, then run, whose error is a failure while running (exit 1).
func runValidated(validate func() []error, logLevel, logFormat *string, run func(context.Context) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, _ []string) error {
		if err := validated(validate()); err != nil {
			return err
		}
		setupLogging(*logLevel, *logFormat)
		if err := run(cmd.Context()); err != nil {
			return failure{err}
		}
		return nil
	}
}

// execute runs the command line args and returns the process's exit status: 0, 1 when the command failed
// while running (logged), 2 when the command line is wrong (told on stderr).
func execute(ctx context.Context, cmd *cobra.Command, args []string, stderr io.Writer) int {
	cmd.SetArgs(args)
	cmd.SetErr(stderr)
	err := cmd.ExecuteContext(ctx)
	var failed failure
	switch {
	case err == nil || errors.Is(err, context.Canceled): // SIGTERM, SIGINT: a clean stop
		return 0
	case errors.As(err, &failed):
		logrus.Errorf("flotilla: %v", failed.error)
		return 1
	default:
		fmt.Fprintf(stderr, "flotilla: %v\n", err)
		return 2
	}
}

// defaultGCPercent is the garbage collector's target flotilla runs with unless GOGC says otherwise: a new
// collection once the heap has grown by half of what was live after the last, rather than Go's default of
// all of it. flotilla's live heap is small (caches of its own pods, about 25 KiB each) but it allocates fast
// while a rollout passes through it, and at Go's default its resident memory ran at three times its live heap
// (BenchmarkDeploymentRollout, 10,000 pods). Prometheus lowers its own likewise (to 75, since v2.53).
const defaultGCPercent = 50

func main() {
	if _, set := os.LookupEnv("GOGC"); !set {
		debug.SetGCPercent(defaultGCPercent)
	}
	// SIGTERM (a rolling update, make lab-down) ends flotilla cleanly; the virtual node and its pods stay,
	// and the next flotilla picks them up.
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := execute(ctx, newCommand(runners{serve: run, webhook: runWebhook, join: runJoin, unjoin: runUnjoin}), os.Args[1:], os.Stderr)
	cancel()
	os.Exit(code)
}
