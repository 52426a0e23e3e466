package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/flotilla-io/flotilla/join"
)

// joinOptions are the settings of `flotilla join` and `flotilla unjoin`.
type joinOptions struct {
	ManagementKubeconfig string
	WorkloadKubeconfig   string
	NodeName             string
	ManagementID         string
	KubeletIPs           []net.IP
	KubeletDNSNames      []string
	TokenTTL             time.Duration
	OutputDir            string
	DryRun               bool
	Force                bool
	LogLevel             string
	LogFormat            string
}

func (o *joinOptions) addCommonFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.ManagementKubeconfig, "management-kubeconfig", "", "admin kubeconfig of the management cluster (required)")
	fs.StringVar(&o.WorkloadKubeconfig, "workload-kubeconfig", "", "admin kubeconfig of the workload cluster (required)")
	fs.StringVar(&o.NodeName, "node-name", "", "name of the virtual node (required)")
	fs.StringVar(&o.ManagementID, "management-id", "", "identity of the management cluster, as given to flotilla's --management-id (default: UID of its kube-system namespace)")
	fs.BoolVar(&o.DryRun, "dry-run", false, "say what would be done, and do nothing")
	addLogFlags(fs, &o.LogLevel, &o.LogFormat)
}

// Validate reports every problem of the parsed flags at once.
func (o *joinOptions) Validate() []error {
	var errs []string
	for _, required := range []struct{ flag, value string }{
		{"--management-kubeconfig", o.ManagementKubeconfig}, {"--workload-kubeconfig", o.WorkloadKubeconfig}, {"--node-name", o.NodeName},
	} {
		if required.value == "" {
			errs = append(errs, required.flag+" is required")
		}
	}
	if o.TokenTTL < 0 {
		errs = append(errs, fmt.Sprintf("--token-ttl: %s is negative", o.TokenTTL))
	}
	errs = append(errs, loggingProblems(o.LogLevel, o.LogFormat)...)
	return asErrors(errs)
}

// config loads both admin kubeconfigs into a join.Config.
func (o *joinOptions) config() (join.Config, error) {
	management, err := loadKubeconfig("management", o.ManagementKubeconfig, 50, 100, false)
	if err != nil {
		return join.Config{}, err
	}
	workload, err := loadKubeconfig("workload", o.WorkloadKubeconfig, 50, 100, false)
	if err != nil {
		return join.Config{}, err
	}
	return join.Config{
		Node: o.NodeName, ManagementID: o.ManagementID, Management: management, Workload: workload,
		KubeletIPs: o.KubeletIPs, KubeletDNSNames: o.KubeletDNSNames, TokenTTL: o.TokenTTL,
		DryRun: o.DryRun, Out: os.Stdout,
	}, nil
}

func newJoinCommand(run func(context.Context, *joinOptions) error) *cobra.Command {
	o := &joinOptions{}
	cmd := &cobra.Command{
		Use:   "join --management-kubeconfig FILE --workload-kubeconfig FILE --node-name NAME",
		Short: "Set up a workload cluster as a virtual node of a management cluster, with credentials confined by both apiservers",
		Long: "flotilla join uses admin kubeconfigs of both clusters to set up one virtual node: in the management " +
			"cluster its node identity system:node:<node> (a client certificate from a CertificateSigningRequest, " +
			"which flotilla renews itself), the roles kubelets never need (deploy/charts/flotilla/files/rbac/management.yaml) bound to it, " +
			"its failover identity, the admission policies of deploy/charts/flotilla/files/policies/management.yaml, a kubelet serving " +
			"certificate, and the Secret " + join.Namespace + "/flotilla-<node> holding flotilla's credentials; in the " +
			"workload cluster its ServiceAccount " + join.Namespace + "/flotilla.<management>.<node>, the role of " +
			"deploy/charts/flotilla/files/rbac/workload.yaml bound to it, and the admission policy of deploy/charts/flotilla/files/policies/workload.yaml. Each " +
			"step prints one line; a second run changes nothing and says so.",
		Args:          cobra.NoArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE:          runValidated(o.Validate, &o.LogLevel, &o.LogFormat, func(ctx context.Context) error { return run(ctx, o) }),
	}
	fs := cmd.Flags()
	o.addCommonFlags(fs)
	fs.IPSliceVar(&o.KubeletIPs, "kubelet-ip", nil, "address the management apiserver reaches flotilla's kubelet API on, named in its serving certificate (repeatable)")
	fs.StringSliceVar(&o.KubeletDNSNames, "kubelet-dns-name", nil, "DNS name of flotilla's kubelet API, named in its serving certificate (default: the node name when no --kubelet-ip is given)")
	fs.DurationVar(&o.TokenTTL, "token-ttl", join.DefaultTokenTTL, "lifetime of the tokens in the credentials Secret: how long a flotilla may stay stopped before join must run again (a running flotilla renews its own)")
	fs.StringVar(&o.OutputDir, "output-dir", "", "also write the credentials as files into this folder, for a flotilla that runs outside the management cluster")
	return cmd
}

func newUnjoinCommand(run func(context.Context, *joinOptions) error) *cobra.Command {
	o := &joinOptions{}
	cmd := &cobra.Command{
		Use:   "unjoin --management-kubeconfig FILE --workload-kubeconfig FILE --node-name NAME",
		Short: "Remove what flotilla join set up for a virtual node, the node itself included",
		Long: "flotilla unjoin deletes, in both clusters, what flotilla join made for one virtual node, and the virtual " +
			"node with its Leases. The roles and policies all virtual nodes share stay. Stop the node's flotilla and " +
			"drain the node first (kubectl drain); unjoin refuses while pods are bound to it unless --force.",
		Args:          cobra.NoArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE:          runValidated(o.Validate, &o.LogLevel, &o.LogFormat, func(ctx context.Context) error { return run(ctx, o) }),
	}
	o.addCommonFlags(cmd.Flags())
	cmd.Flags().BoolVar(&o.Force, "force", false, "unjoin even though pods are still bound to the virtual node")
	return cmd
}

// runJoin joins, then writes the credentials where --output-dir says.
func runJoin(ctx context.Context, o *joinOptions) error {
	cfg, err := o.config()
	if err != nil {
		return err
	}
	data, err := join.Join(ctx, cfg)
	if err != nil || o.OutputDir == "" || o.DryRun {
		return err
	}
	if err := join.WriteFiles(o.OutputDir, data); err != nil {
		return fmt.Errorf("--output-dir: %w", err)
	}
	fmt.Fprintf(cfg.Out, "wrote the credentials to %s\n", o.OutputDir)
	return nil
}

func runUnjoin(ctx context.Context, o *joinOptions) error {
	cfg, err := o.config()
	if err != nil {
		return err
	}
	return join.Unjoin(ctx, cfg, o.Force)
}
