package main

import (
	"context"
	"fmt"
	"net"
	"strconv"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/flotilla-io/flotilla/admission"
	"github.com/flotilla-io/flotilla/node"
)

// webhookOptions are the settings of `flotilla webhook`.
type webhookOptions struct {
	TLSCertFile string
	TLSKeyFile  string
	BindAddress string
	LogLevel    string
	LogFormat   string
}

// AddFlags binds the webhook command's flags to o, with their defaults.
func (o *webhookOptions) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.TLSCertFile, "tls-cert-file", "", "serving certificate of the webhook, for the Service's DNS name (required); re-read when it changes")
	fs.StringVar(&o.TLSKeyFile, "tls-key-file", "", "serving key of the webhook (required); re-read when it changes")
	fs.StringVar(&o.BindAddress, "bind-address", "0.0.0.0:8443", "host:port the webhook listens on, for "+admission.MutatePath+", /healthz and /readyz")
	addLogFlags(fs, &o.LogLevel, &o.LogFormat)
}

// Validate reports every problem of the parsed flags at once.
func (o *webhookOptions) Validate() []error {
	var errs []string
	if o.TLSCertFile == "" || o.TLSKeyFile == "" {
		errs = append(errs, "--tls-cert-file and --tls-key-file are required: the apiserver calls webhooks over TLS only")
	}
	if _, port, err := net.SplitHostPort(o.BindAddress); err != nil {
		errs = append(errs, fmt.Sprintf("--bind-address: %v", err))
	} else if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 {
		errs = append(errs, fmt.Sprintf("--bind-address: %q is not a port", port))
	}
	errs = append(errs, loggingProblems(o.LogLevel, o.LogFormat)...)
	return asErrors(errs)
}

func newWebhookCommand(serve func(context.Context, *webhookOptions) error) *cobra.Command {
	o := &webhookOptions{}
	cmd := &cobra.Command{
		Use:   "webhook --tls-cert-file FILE --tls-key-file FILE",
		Short: "Serve the admission webhook that opts pods of enabled namespaces in to the virtual nodes",
		Long: "flotilla webhook serves a mutating admission webhook over TLS at " + admission.MutatePath + ": pods " +
			"created in namespaces the MutatingWebhookConfiguration selects (deploy/charts/flotilla, label " +
			"flotilla.io/enabled=true) get the toleration of the virtual nodes' taint " + node.TaintKey + "=" +
			node.TaintValue + ":NoSchedule unless they tolerate it already. It reads nothing from any cluster, so " +
			"it needs no credentials and keeps answering whatever the workload clusters and their flotillas do.",
		Args:          cobra.NoArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE:          runValidated(o.Validate, &o.LogLevel, &o.LogFormat, func(ctx context.Context) error { return serve(ctx, o) }),
	}
	o.AddFlags(cmd.Flags())
	return cmd
}

// runWebhook serves the admission webhook until ctx ends.
func runWebhook(ctx context.Context, o *webhookOptions) error {
	return admission.Serve(ctx, o.BindAddress, o.TLSCertFile, o.TLSKeyFile, node.Taint())
}
