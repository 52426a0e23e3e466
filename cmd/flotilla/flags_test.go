package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/sirupsen/logrus"

	"github.com/flotilla-io/flotilla/node"
	"github.com/flotilla-io/flotilla/provider"
)

// parsed runs flotilla's command tree on args with stand-ins for what the commands run, and returns the
// exit status, stderr, and the options a command was run with (nil for the command not run).
func parsed(t *testing.T, args ...string) (code int, stderr string, serve *options, webhook *webhookOptions) {
	t.Helper()
	var out bytes.Buffer
	cmd := newCommand(runners{
		serve:   func(_ context.Context, o *options) error { serve = o; return nil },
		webhook: func(_ context.Context, o *webhookOptions) error { webhook = o; return nil },
	})
	cmd.SetOut(&out)
	code = execute(context.Background(), cmd, args, &out)
	return code, out.String(), serve, webhook
}

// labArgs are the flags test/lab gives every flotilla.
var labArgs = []string{
	"--cluster-name=eu-west-3-1", "--management-kubeconfig=/lab/management.kubeconfig",
	"--workload-kubeconfig=/lab/eu-west-3-1.kubeconfig", "--internal-ip=127.0.1.2", "--kubelet-bind-address=127.0.1.2",
	"--tls-cert-file=/lab/kubelet.crt", "--tls-key-file=/lab/kubelet.key", "--client-ca-file=/lab/ca.crt",
	"--metrics-address=127.0.0.1:40000",
}

// TestRootFlags: `flotilla` with no verb serves a workload cluster with the flags and defaults it had before
// it had subcommands (deploy/ and the lab pass them).
func TestRootFlags(t *testing.T) {
	code, stderr, got, webhook := parsed(t, labArgs...)
	if code != 0 || got == nil || webhook != nil {
		t.Fatalf("exit %d, served %v, webhook %v: %s", code, got != nil, webhook != nil, stderr)
	}
	want := &options{
		ClusterName: "eu-west-3-1", NodeName: "eu-west-3-1", ManagementKubeconfig: "/lab/management.kubeconfig",
		WorkloadKubeconfig: "/lab/eu-west-3-1.kubeconfig", CertDir: filepath.Join(os.TempDir(), "flotilla-eu-west-3-1", "pki"),
		ManagementQPS: 100, ManagementBurst: 200, WorkloadQPS: 100, WorkloadBurst: 200,
		PodWorkers: 20, PodQueueQPS: 200, PodQueueBurst: 1000,
		InternalIP: "127.0.1.2", KubeletPort: 10250, KubeletBind: "127.0.1.2",
		TLSCertFile: "/lab/kubelet.crt", TLSKeyFile: "/lab/kubelet.key", ClientCAFile: "/lab/ca.crt",
		MetricsAddr: "127.0.0.1:40000", HealthAddr: ":10248", Taint: true, ExcludeLabels: node.DefaultExcludeLabels.String(),
		ProbeInterval: time.Second, ProbeTimeout: 2 * time.Second, ProbeTimeoutMax: node.DefaultProbeTimeoutMax, FailoverAfter: node.DefaultFailoverAfter,
		RescheduleAfter: provider.DefaultRescheduleAfter, LeaderElectNamespace: "flotilla-system", LogLevel: "info", LogFormat: "text", IngressClasses: map[string]string{},
		PodSecurityLevel: "baseline",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("options (-want +got):\n%s", diff)
	}

	// Every flag of the chart (deploy/charts/flotilla) and of the tests, spelled as they spell it.
	code, stderr, got, _ = parsed(t, append(labArgs,
		"--node-name", "vn", "--management-id=m-1", "--taint=false", "--leader-elect", "--leader-elect-namespace=ops",
		"--failover-after=0", "--reschedule-after=30s", "--probe-interval=500ms", "--pod-workers=5", "--management-qps=1.5",
		"--ingress-class-map", "public=alb, internal=nlb", "--exclude-labels=^gpu$", "--log-level=debug", "--pod-security-level=restricted")...)
	if code != 0 || got == nil {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if got.NodeName != "vn" || got.ManagementID != "m-1" || got.Taint || !got.LeaderElect || got.LeaderElectNamespace != "ops" ||
		got.FailoverAfter != 0 || got.RescheduleAfter != 30*time.Second || got.ProbeInterval != 500*time.Millisecond || got.PodWorkers != 5 || got.ManagementQPS != 1.5 ||
		!cmp.Equal(got.IngressClasses, map[string]string{"public": "alb", "internal": "nlb"}) || got.ExcludeLabels != "^gpu$" ||
		got.LogLevel != "debug" || got.PodSecurityLevel != "restricted" {
		t.Errorf("options %+v", got)
	}
}

func TestWebhookFlags(t *testing.T) {
	code, stderr, serve, got := parsed(t, "webhook", "--tls-cert-file=/tls/tls.crt", "--tls-key-file=/tls/tls.key")
	if code != 0 || got == nil || serve != nil {
		t.Fatalf("exit %d, webhook %v, served %v: %s", code, got != nil, serve != nil, stderr)
	}
	want := &webhookOptions{TLSCertFile: "/tls/tls.crt", TLSKeyFile: "/tls/tls.key", BindAddress: "0.0.0.0:8443", LogLevel: "info", LogFormat: "text"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("options (-want +got):\n%s", diff)
	}
	code, stderr, _, got = parsed(t, "webhook", "--tls-cert-file", "c", "--tls-key-file", "k", "--bind-address=127.0.0.1:9443", "--log-level=warn")
	if code != 0 || got == nil || got.BindAddress != "127.0.0.1:9443" || got.LogLevel != "warn" {
		t.Errorf("exit %d, options %+v: %s", code, got, stderr)
	}
}

// TestBadCommandLines: a command line flotilla cannot run with exits 2 with every problem named, and runs
// nothing.
func TestBadCommandLines(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want []string // in stderr
	}{
		{"no flags", nil, []string{"missing required flags: --cluster-name --workload-kubeconfig --internal-ip --tls-cert-file --tls-key-file"}},
		{"every problem at once", append(labArgs[:1:1], "--failover-after=-1s", "--exclude-labels=(", "--log-level=loud"),
			[]string{"missing required flags: --workload-kubeconfig", "--failover-after: -1s is negative", "--exclude-labels:", "--log-level:"}},
		// The management apiserver reaches kubelets with a client certificate: without its CA, every kubectl
		// logs, exec and top on the node's pods would fail; flotilla refuses to start and says so.
		{"no client CA", withoutFlag(labArgs, "--client-ca-file"), []string{"--client-ca-file is required",
			"kubectl logs, exec, attach, port-forward and top", "401 Unauthorized"}},
		{"a node name the apiserver would refuse", append(labArgs, "--node-name=US_West"),
			[]string{`the node name "US_West" (--node-name, or else --cluster-name) is not a DNS-1123 subdomain`}},
		{"a cluster name that cannot name the node", append(withoutFlag(labArgs, "--cluster-name"), "--cluster-name=eu.west."),
			[]string{`the node name "eu.west."`}},
		{"a bad ingress class map", append(labArgs, "--ingress-class-map=public"), []string{`"public" is not from=to`}},
		{"a bad Pod Security level", append(labArgs, "--pod-security-level=strict"), []string{`--pod-security-level: "strict" is not a Pod Security level`}},
		{"an unknown flag", append(labArgs, "--no-such-flag"), []string{"unknown flag: --no-such-flag"}},
		{"a single dash", []string{"-cluster-name=x"}, []string{"unknown shorthand flag"}},
		{"an unknown command", []string{"enlist"}, []string{`unknown command "enlist"`}},
		{"webhook without a certificate", []string{"webhook"}, []string{"--tls-cert-file and --tls-key-file are required"}},
		{"webhook with a bad address", []string{"webhook", "--tls-cert-file=c", "--tls-key-file=k", "--bind-address=8443"},
			[]string{"--bind-address:"}},
		{"webhook with a bad port", []string{"webhook", "--tls-cert-file=c", "--tls-key-file=k", "--bind-address=:https"},
			[]string{`--bind-address: "https" is not a port`}},
		{"webhook does not take the root's flags", []string{"webhook", "--tls-cert-file=c", "--tls-key-file=k", "--cluster-name=x"},
			[]string{"unknown flag: --cluster-name"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, stderr, serve, webhook := parsed(t, tc.args...)
			if code != 2 || serve != nil || webhook != nil {
				t.Errorf("exit %d, served %v, webhook %v; want exit 2 and nothing run", code, serve != nil, webhook != nil)
			}
			for _, w := range tc.want {
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr does not say %q:\n%s", w, stderr)
				}
			}
		})
	}
}

// withoutFlag is args without the flag name (given as --name=value).
func withoutFlag(args []string, name string) []string {
	var out []string
	for _, a := range args {
		if !strings.HasPrefix(a, name+"=") {
			out = append(out, a)
		}
	}
	return out
}

// TestHelp: --help prints the flags and runs nothing.
func TestHelp(t *testing.T) {
	for _, args := range [][]string{{"--help"}, {"webhook", "--help"}, {"help", "webhook"}} {
		code, out, serve, webhook := parsed(t, args...)
		if code != 0 || serve != nil || webhook != nil || !strings.Contains(out, "--tls-cert-file") {
			t.Errorf("%v: exit %d, served %v, webhook %v:\n%s", args, code, serve != nil, webhook != nil, out)
		}
	}
	if _, out, _, _ := parsed(t, "--help"); !strings.Contains(out, "webhook") || !strings.Contains(out, "--failover-after") {
		t.Errorf("root help lists neither the webhook command nor the root's flags:\n%s", out)
	}
}

// TestExitStatus: a failure while running exits 1, a stop by signal (context canceled) 0.
func TestExitStatus(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want int
	}{{nil, 0}, {context.Canceled, 0}, {errors.New("management cluster: unreachable"), 1}} {
		cmd := newCommand(runners{
			serve:   func(context.Context, *options) error { return tc.err },
			webhook: func(context.Context, *webhookOptions) error { return tc.err },
		})
		var stderr bytes.Buffer
		if code := execute(context.Background(), cmd, labArgs, &stderr); code != tc.want {
			t.Errorf("serve returning %v: exit %d, want %d", tc.err, code, tc.want)
		}
		cmd = newCommand(runners{webhook: func(context.Context, *webhookOptions) error { return tc.err }})
		if code := execute(context.Background(), cmd, []string{"webhook", "--tls-cert-file=c", "--tls-key-file=k"}, &stderr); code != tc.want {
			t.Errorf("webhook returning %v: exit %d, want %d", tc.err, code, tc.want)
		}
	}
}

// TestLogFlags: --log-level and --log-format, on every command, each value either taken or refused with a
// message naming the flag; the formatter each format makes.
func TestLogFlags(t *testing.T) {
	webhook := []string{"webhook", "--tls-cert-file=c", "--tls-key-file=k"}
	for _, tc := range []struct {
		name       string
		args       []string
		wantFormat string // "" when refused
		wantErr    []string
	}{
		{"root: text by default", labArgs, "text", nil},
		{"root: json", append(labArgs, "--log-format=json"), "json", nil},
		{"root: text said", append(labArgs, "--log-format", "text"), "text", nil},
		{"root: an unknown format", append(labArgs, "--log-format=logfmt"), "", []string{`--log-format: "logfmt" is neither text nor json`}},
		{"root: formats are spelled in lower case", append(labArgs, "--log-format=JSON"), "", []string{`--log-format: "JSON" is neither text nor json`}},
		{"root: both wrong, both told", append(labArgs, "--log-format=yaml", "--log-level=loud"), "", []string{`--log-format: "yaml"`, "--log-level:"}},
		{"webhook: text by default", webhook, "text", nil},
		{"webhook: json", append(webhook, "--log-format=json"), "json", nil},
		{"webhook: an unknown format", append(webhook, "--log-format=xml"), "", []string{`--log-format: "xml" is neither text nor json`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, stderr, serve, hook := parsed(t, tc.args...)
			var got string
			switch {
			case serve != nil:
				got = serve.LogFormat
			case hook != nil:
				got = hook.LogFormat
			}
			if tc.wantFormat != "" {
				if code != 0 || got != tc.wantFormat {
					t.Errorf("exit %d, format %q, want %q: %s", code, got, tc.wantFormat, stderr)
				}
				return
			}
			if code != 2 {
				t.Errorf("exit %d, want 2", code)
			}
			for _, want := range tc.wantErr {
				if !strings.Contains(stderr, want) {
					t.Errorf("stderr does not say %q:\n%s", want, stderr)
				}
			}
		})
	}
	for format, want := range map[string]any{"text": &logrus.TextFormatter{}, "json": &logrus.JSONFormatter{}} {
		f, err := logFormatter(format)
		if err != nil || reflect.TypeOf(f) != reflect.TypeOf(want) {
			t.Errorf("%s: formatter %T, %v; want %T", format, f, err, want)
		}
	}
}
