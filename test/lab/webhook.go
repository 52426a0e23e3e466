package lab

import (
	"context"
	"fmt"
	"path/filepath"
	"strconv"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/yaml"

	"github.com/flotilla-io/flotilla/node"
	"github.com/flotilla-io/flotilla/tenancy"
)

// webhookTemplate is the chart's MutatingWebhookConfiguration, which the lab registers as the chart renders
// it except for where the apiserver calls the webhook.
const webhookTemplate = "templates/fleet/webhook-configuration.yaml"

// webhookCheckNamespace is the enabled namespace in which startWebhook waits for the management apiserver
// to call the webhook; it is deleted afterwards.
const webhookCheckNamespace = "flotilla-lab-webhook-check"

// startWebhook runs `flotilla webhook` (bin) on a loopback port with a serving certificate of the lab's CA,
// registers it with the management apiserver by the chart's MutatingWebhookConfiguration (rendered by helm)
// with its URL in place of the in-cluster Service, and waits until the apiserver calls it. It runs beside the
// flotillas, not inside any of them, as the chart runs it; stopping a flotilla leaves it serving.
func (l *Lab) startWebhook(ctx context.Context, bin, helm string) error {
	dir := filepath.Join(l.Dir, "webhook")
	ca := &authority{cert: l.ca.cert, key: l.ca.key, CertPEM: l.ca.CertPEM, dir: dir}
	serving, err := ca.serving("webhook")
	if err != nil {
		return err
	}
	ports, err := freePorts(1)
	if err != nil {
		return err
	}
	addr := "127.0.0.1:" + strconv.Itoa(ports[0])
	l.Webhook = &process{
		Name: "management/flotilla-webhook", Path: bin, LogFile: filepath.Join(l.Dir, "logs", "management", "flotilla-webhook.log"),
		Args: []string{"webhook", "--bind-address=" + addr, "--tls-cert-file=" + serving.CertFile,
			"--tls-key-file=" + serving.KeyFile, "--log-level=debug"},
		CPUs: l.managementCPUs,
	}
	if err := l.Webhook.start(l.attached); err != nil {
		return err
	}
	if err := waitTCP(ctx, addr, l.Webhook); err != nil {
		return err
	}
	registration, err := webhookRegistration(helm, "https://"+addr, l.ca.CertPEM)
	if err != nil {
		return err
	}
	if _, err := l.Management.Client.AdmissionregistrationV1().MutatingWebhookConfigurations().Create(ctx, registration, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("registering the webhook: %w", err)
	}
	return l.waitWebhookCalled(ctx)
}

// webhookRegistration renders webhookTemplate with helm and points each of its webhooks at base (plus the
// path the chart gives its Service), trusting caPEM.
func webhookRegistration(helm, base string, caPEM []byte) (*admissionregistrationv1.MutatingWebhookConfiguration, error) {
	b, err := RenderChart(helm, "flotilla", "--set", "fleet.enabled=true", "--set", "fleet.webhook.generateCertificate=false",
		"--show-only", webhookTemplate)
	if err != nil {
		return nil, err
	}
	mwc := &admissionregistrationv1.MutatingWebhookConfiguration{}
	if err := yaml.UnmarshalStrict(b, mwc); err != nil {
		return nil, fmt.Errorf("%s: %w", webhookTemplate, err)
	}
	for i := range mwc.Webhooks {
		cc := &mwc.Webhooks[i].ClientConfig
		if cc.Service == nil || cc.Service.Path == nil {
			return nil, fmt.Errorf("%s: webhook %s calls no Service path", webhookTemplate, mwc.Webhooks[i].Name)
		}
		url := base + *cc.Service.Path
		*cc = admissionregistrationv1.WebhookClientConfig{URL: &url, CABundle: caPEM}
	}
	return mwc, nil
}

// waitWebhookCalled waits until a pod created (dry run) in an enabled namespace comes back with the
// virtual nodes' toleration: the apiserver picks up a new registration, and the namespace's labels,
// from its caches, shortly after they are created.
func (l *Lab) waitWebhookCalled(ctx context.Context) error {
	c := l.Management.Client
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: webhookCheckNamespace, Labels: map[string]string{tenancy.LabelEnabled: "true"}}}
	if _, err := c.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	defer func() { _ = c.CoreV1().Namespaces().Delete(context.Background(), ns.Name, metav1.DeleteOptions{}) }()
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "check", Namespace: ns.Name},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "check", Image: "registry.k8s.io/pause:3.10"}}},
	}
	var last error
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		if !l.Webhook.running() {
			return false, fmt.Errorf("%s exited; see %s", l.Webhook.Name, l.Webhook.LogFile)
		}
		// Until the namespace's default ServiceAccount exists, admission refuses pods.
		got, err := c.CoreV1().Pods(ns.Name).Create(ctx, pod, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		if last = err; err != nil {
			return false, nil
		}
		for _, t := range got.Spec.Tolerations {
			if t.Key == node.TaintKey {
				return true, nil
			}
		}
		last = fmt.Errorf("a pod in %s came back without the toleration", ns.Name)
		return false, nil
	})
	if err != nil {
		return fmt.Errorf("the management apiserver does not call the webhook: %w (last: %v); see %s", err, last, l.Webhook.LogFile)
	}
	return nil
}
