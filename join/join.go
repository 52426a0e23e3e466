package join

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	"k8s.io/client-go/tools/clientcmd"
	certutil "k8s.io/client-go/util/cert"

	"github.com/flotilla-io/flotilla/credentials"
	"github.com/flotilla-io/flotilla/deploy"
)

// FieldManager owns, for server-side apply, what join writes.
const FieldManager = "flotilla-join"

// DefaultTokenTTL is how long the tokens in the credentials Secret last. They only start flotilla: a running
// flotilla renews its tokens through TokenRequest long before they expire (credentials package), so this
// bounds how long a flotilla may stay stopped before `flotilla join` must run again, and how long a copy of
// the Secret stays usable.
const DefaultTokenTTL = 7 * 24 * time.Hour

// Config is one join (or unjoin) of a workload cluster as a virtual node.
type Config struct {
	// Node is the virtual node's name.
	Node string
	// ManagementID is the management cluster's identity on what flotilla creates in the workload cluster;
	// empty means the UID of its kube-system namespace, as flotilla defaults to.
	ManagementID string
	// Management and Workload are admin access to each cluster.
	Management, Workload *rest.Config
	// KubeletIPs and KubeletDNSNames are the names of the kubelet API's serving certificate: where the
	// management apiserver reaches flotilla.
	KubeletIPs      []net.IP
	KubeletDNSNames []string
	// TokenTTL is the lifetime of the Secret's tokens (DefaultTokenTTL when zero).
	TokenTTL time.Duration
	// DryRun says what would be done and does nothing.
	DryRun bool
	// Out gets one line per step.
	Out io.Writer
}

// Join sets up both sides of the virtual node and returns its credentials: the data of the management
// Secret SecretName(node) in Namespace, under the Key* names.
func Join(ctx context.Context, cfg Config) (map[string][]byte, error) {
	j, err := newJoiner(ctx, &cfg)
	if err != nil {
		return nil, err
	}
	for _, step := range []func(context.Context) error{
		func(ctx context.Context) error {
			return j.management.applyManifests(ctx, deploy.NamespaceManifest, "rbac/management.yaml", "policies/management.yaml")
		},
		func(ctx context.Context) error { return j.management.applyAll(ctx, ManagementObjects(cfg.Node)) },
		func(ctx context.Context) error {
			return j.workload.applyManifests(ctx, deploy.NamespaceManifest, "rbac/workload.yaml", "policies/workload.yaml")
		},
		func(ctx context.Context) error {
			return j.workload.applyAll(ctx, WorkloadObjects(cfg.ManagementID, cfg.Node))
		},
	} {
		if err := step(ctx); err != nil {
			return nil, err
		}
	}
	data, err := j.credentials(ctx)
	if err != nil {
		return nil, err
	}
	secret := &corev1.Secret{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"},
		ObjectMeta: objectMeta(SecretName(cfg.Node), Namespace, cfg.Node),
		Type:       corev1.SecretTypeOpaque,
		Data:       data,
	}
	if err := j.management.apply(ctx, secret); err != nil {
		return nil, err
	}
	return data, nil
}

// Unjoin removes what Join made for the node in both clusters, with the virtual node itself and its Leases.
// The shared manifests stay: other virtual nodes use them. A node with pods still bound is left alone unless
// force is set: drain it first (kubectl drain), so its pods are replaced elsewhere rather than orphaned.
func Unjoin(ctx context.Context, cfg Config, force bool) error {
	j, err := newJoiner(ctx, &cfg)
	if err != nil {
		return err
	}
	bound, err := j.management.client.CoreV1().Pods(metav1.NamespaceAll).List(ctx, metav1.ListOptions{
		FieldSelector: "spec.nodeName=" + cfg.Node, Limit: 1,
	})
	if err != nil {
		return fmt.Errorf("management cluster: listing the pods bound to %s: %w", cfg.Node, err)
	}
	if len(bound.Items) > 0 && !force {
		return fmt.Errorf("pods are still bound to virtual node %s (e.g. %s/%s): drain it first (kubectl drain %s --ignore-daemonsets), or unjoin with --force",
			cfg.Node, bound.Items[0].Namespace, bound.Items[0].Name, cfg.Node)
	}
	management := append(ManagementObjects(cfg.Node),
		&corev1.Secret{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"}, ObjectMeta: objectMeta(SecretName(cfg.Node), Namespace, cfg.Node)},
		&corev1.Node{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Node"}, ObjectMeta: metav1.ObjectMeta{Name: cfg.Node}},
		lease(corev1.NamespaceNodeLease, cfg.Node), lease(Namespace, "flotilla-"+cfg.Node),
	)
	if err := j.management.deleteAll(ctx, management); err != nil {
		return err
	}
	return j.workload.deleteAll(ctx, WorkloadObjects(cfg.ManagementID, cfg.Node))
}

func lease(namespace, name string) *unstructured.Unstructured {
	u := &unstructured.Unstructured{}
	u.SetAPIVersion("coordination.k8s.io/v1")
	u.SetKind("Lease")
	u.SetNamespace(namespace)
	u.SetName(name)
	return u
}

// joiner holds admin access to both sides.
type joiner struct {
	cfg                  *Config
	management, workload *side
	managementCA         []byte
	workloadCA           []byte
}

func newJoiner(ctx context.Context, cfg *Config) (*joiner, error) {
	if cfg.Out == nil {
		cfg.Out = io.Discard
	}
	if cfg.TokenTTL == 0 {
		cfg.TokenTTL = DefaultTokenTTL
	}
	j := &joiner{cfg: cfg}
	var err error
	if j.management, err = newSide("management", cfg.Management, cfg.DryRun, cfg.Out); err != nil {
		return nil, err
	}
	if j.workload, err = newSide("workload", cfg.Workload, cfg.DryRun, cfg.Out); err != nil {
		return nil, err
	}
	if j.managementCA, err = caData(cfg.Management); err != nil {
		return nil, fmt.Errorf("management cluster: %w", err)
	}
	if j.workloadCA, err = caData(cfg.Workload); err != nil {
		return nil, fmt.Errorf("workload cluster: %w", err)
	}
	if cfg.ManagementID == "" {
		ns, err := j.management.client.CoreV1().Namespaces().Get(ctx, metav1.NamespaceSystem, metav1.GetOptions{})
		if err != nil {
			return nil, fmt.Errorf("management cluster: reading its identity (namespace kube-system): %w", err)
		}
		cfg.ManagementID = string(ns.UID)
	}
	return j, Validate(cfg.ManagementID, cfg.Node)
}

// caData is the CA a kubeconfig trusts for its server, which the kubeconfigs join writes trust too.
func caData(cfg *rest.Config) ([]byte, error) {
	loaded := rest.CopyConfig(cfg)
	if err := rest.LoadTLSFiles(loaded); err != nil {
		return nil, err
	}
	return loaded.CAData, nil
}

// credentials keeps each credential of an earlier join that is still good and issues the others.
func (j *joiner) credentials(ctx context.Context) (map[string][]byte, error) {
	cfg := j.cfg
	old := map[string][]byte{}
	secret, err := j.management.client.CoreV1().Secrets(Namespace).Get(ctx, SecretName(cfg.Node), metav1.GetOptions{})
	switch {
	case err == nil:
		old = secret.Data
	case !apierrors.IsNotFound(err):
		return nil, fmt.Errorf("management cluster: reading Secret %s/%s: %w", Namespace, SecretName(cfg.Node), err)
	}
	now := time.Now()
	data := map[string][]byte{KeyClientCA: j.managementCA}
	keep := func(key, server string) bool {
		c, ok := parseKubeconfig(old[key])
		if ok && stillGood(c, server, now) {
			data[key] = old[key]
			return true
		}
		return false
	}
	say := func(what string) { fmt.Fprintf(j.cfg.Out, "%s\n", what) }
	verb := "issued"
	if cfg.DryRun {
		verb = "would issue"
	}

	if !keep(KeyManagementKubeconfig, cfg.Management.Host) {
		if cfg.DryRun {
			say(fmt.Sprintf("management: %s the client certificate of %s (CertificateSigningRequest, signer kubernetes.io/kube-apiserver-client-kubelet)", verb, NodeUser(cfg.Node)))
		} else {
			certPEM, keyPEM, err := credentials.IssueNodeClientCertificate(ctx, j.management.client, cfg.Node)
			if err != nil {
				return nil, fmt.Errorf("management cluster: %w", err)
			}
			if data[KeyManagementKubeconfig], err = kubeconfig(cfg.Management.Host, j.managementCA, certPEM, keyPEM, ""); err != nil {
				return nil, err
			}
			say(fmt.Sprintf("management: %s the client certificate of %s", verb, NodeUser(cfg.Node)))
		}
	}
	tokens := []struct {
		key     string
		side    *side
		host    string
		ca      []byte
		account string
	}{
		{KeyFailoverKubeconfig, j.management, cfg.Management.Host, j.managementCA, FailoverAccount(cfg.Node)},
		{KeyWorkloadKubeconfig, j.workload, cfg.Workload.Host, j.workloadCA, WorkloadAccount(cfg.ManagementID, cfg.Node)},
	}
	for _, t := range tokens {
		if keep(t.key, t.host) {
			continue
		}
		if !cfg.DryRun {
			token, err := t.side.token(ctx, t.account, cfg.TokenTTL)
			if err != nil {
				return nil, err
			}
			if data[t.key], err = kubeconfig(t.host, t.ca, nil, nil, token); err != nil {
				return nil, err
			}
		}
		say(fmt.Sprintf("%s: %s a token of ServiceAccount %s/%s valid for %s", t.side.name, verb, Namespace, t.account, cfg.TokenTTL))
	}
	if certificateCovers(old[KeyKubeletCert], cfg.KubeletIPs, cfg.KubeletDNSNames, now) {
		data[KeyKubeletCert], data[KeyKubeletKey] = old[KeyKubeletCert], old[KeyKubeletKey]
	} else if cfg.DryRun {
		say(fmt.Sprintf("management: %s the kubelet serving certificate of %s (signer kubernetes.io/kubelet-serving)", verb, cfg.Node))
	} else if err := j.servingCertificate(ctx, data); err != nil {
		return nil, err
	}
	return data, nil
}

// servingCertificate asks the management cluster's kubelet-serving signer, as the node itself, for the
// kubelet API's certificate. A cluster whose signer refuses virtual nodes (EKS signs only for its own
// instances) gets a self-signed certificate instead: its apiserver does not verify kubelet certificates
// either, since it could not verify its real nodes' otherwise.
func (j *joiner) servingCertificate(ctx context.Context, data map[string][]byte) error {
	cfg := j.cfg
	nodeConfig, err := clientcmd.RESTConfigFromKubeConfig(data[KeyManagementKubeconfig])
	if err != nil {
		return err
	}
	nodeClient, err := kubernetes.NewForConfig(nodeConfig)
	if err != nil {
		return err
	}
	dnsNames := cfg.KubeletDNSNames
	if len(dnsNames) == 0 && len(cfg.KubeletIPs) == 0 {
		dnsNames = []string{cfg.Node}
	}
	certPEM, keyPEM, err := credentials.IssueKubeletServingCertificate(ctx, j.management.client, nodeClient, cfg.Node, cfg.KubeletIPs, dnsNames)
	switch {
	case err == nil:
		fmt.Fprintf(cfg.Out, "management: issued the kubelet serving certificate of %s (signer kubernetes.io/kubelet-serving)\n", cfg.Node)
	case errors.Is(err, credentials.ErrServingSignerRefused):
		if certPEM, keyPEM, err = certutil.GenerateSelfSignedCertKey(cfg.Node, cfg.KubeletIPs, dnsNames); err != nil {
			return err
		}
		fmt.Fprintf(cfg.Out, "management: the kubelet-serving signer refused %s (%v); made a self-signed serving certificate instead\n", cfg.Node, err)
	default:
		return fmt.Errorf("management cluster: %w", err)
	}
	data[KeyKubeletCert], data[KeyKubeletKey] = certPEM, keyPEM
	return nil
}

// parseKubeconfig reads the server and validity of the one credential a kubeconfig of join holds.
func parseKubeconfig(data []byte) (credential, bool) {
	if len(data) == 0 {
		return credential{}, false
	}
	cfg, err := clientcmd.Load(data)
	if err != nil {
		return credential{}, false
	}
	kc := cfg.Contexts[cfg.CurrentContext]
	if kc == nil || cfg.Clusters[kc.Cluster] == nil || cfg.AuthInfos[kc.AuthInfo] == nil {
		return credential{}, false
	}
	c := credential{server: cfg.Clusters[kc.Cluster].Server}
	auth := cfg.AuthInfos[kc.AuthInfo]
	if auth.Token != "" {
		var ok bool
		c.notBefore, c.expires, ok = credentials.TokenLifetime(auth.Token)
		return c, ok
	}
	block, _ := pem.Decode(auth.ClientCertificateData)
	if block == nil {
		return credential{}, false
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return credential{}, false
	}
	c.notBefore, c.expires = cert.NotBefore, cert.NotAfter
	return c, true
}

// side is admin access to one cluster, which applies and deletes objects and says what it did.
type side struct {
	name    string
	client  kubernetes.Interface
	dynamic dynamic.Interface
	mapper  meta.RESTMapper
	dryRun  bool
	out     io.Writer
}

func newSide(name string, cfg *rest.Config, dryRun bool, out io.Writer) (*side, error) {
	if cfg == nil {
		return nil, fmt.Errorf("%s cluster: no admin kubeconfig", name)
	}
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("%s cluster: %w", name, err)
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("%s cluster: %w", name, err)
	}
	disco, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("%s cluster: %w", name, err)
	}
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(disco))
	return &side{name: name, client: client, dynamic: dyn, mapper: mapper, dryRun: dryRun, out: out}, nil
}

// applyManifests applies files of package deploy, in order.
func (s *side) applyManifests(ctx context.Context, files ...string) error {
	for _, file := range files {
		raw, err := fs.ReadFile(deploy.Manifests, file)
		if err != nil {
			return err
		}
		decoder := yaml.NewYAMLOrJSONDecoder(bytes.NewReader(raw), 4096)
		for {
			u := &unstructured.Unstructured{}
			if err := decoder.Decode(&u.Object); errors.Is(err, io.EOF) {
				break
			} else if err != nil {
				return fmt.Errorf("%s/%s: %w", deploy.ManifestsDir, file, err)
			}
			if len(u.Object) == 0 {
				continue
			}
			if err := s.apply(ctx, u); err != nil {
				return err
			}
		}
	}
	return nil
}

func (s *side) applyAll(ctx context.Context, objs []any) error {
	for _, obj := range objs {
		if err := s.apply(ctx, obj); err != nil {
			return err
		}
	}
	return nil
}

// resource finds where an object lives.
func (s *side) resource(obj any) (*unstructured.Unstructured, dynamic.ResourceInterface, error) {
	u, ok := obj.(*unstructured.Unstructured)
	if !ok {
		m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
		if err != nil {
			return nil, nil, err
		}
		u = &unstructured.Unstructured{Object: m}
	}
	gvk := u.GroupVersionKind()
	mapping, err := s.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if err != nil {
		return nil, nil, fmt.Errorf("%s cluster: %s: %w", s.name, gvk.Kind, err)
	}
	if mapping.Scope.Name() == meta.RESTScopeNameNamespace {
		return u, s.dynamic.Resource(mapping.Resource).Namespace(u.GetNamespace()), nil
	}
	return u, s.dynamic.Resource(mapping.Resource), nil
}

// apply server-side applies one object and says whether it was created, changed or already so.
func (s *side) apply(ctx context.Context, obj any) error {
	u, ri, err := s.resource(obj)
	if err != nil {
		return err
	}
	what := describe(u)
	before, err := ri.Get(ctx, u.GetName(), metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		before = nil
	} else if err != nil {
		return fmt.Errorf("%s cluster: reading %s: %w", s.name, what, err)
	}
	opts := metav1.ApplyOptions{FieldManager: FieldManager, Force: true}
	if s.dryRun {
		opts.DryRun = []string{metav1.DryRunAll}
	}
	after, err := ri.Apply(ctx, u.GetName(), u, opts)
	if err != nil {
		return fmt.Errorf("%s cluster: applying %s: %w", s.name, what, err)
	}
	outcome := "created"
	switch {
	case before != nil && sameContent(before, after):
		outcome = "unchanged"
	case before != nil:
		outcome = "configured"
	}
	if s.dryRun && outcome != "unchanged" {
		outcome = "would be " + outcome
	}
	fmt.Fprintf(s.out, "%s: %s %s\n", s.name, what, outcome)
	return nil
}

// deleteAll deletes objects and says which were there.
func (s *side) deleteAll(ctx context.Context, objs []any) error {
	for _, obj := range objs {
		u, ri, err := s.resource(obj)
		if err != nil {
			return err
		}
		opts := metav1.DeleteOptions{}
		if s.dryRun {
			opts.DryRun = []string{metav1.DryRunAll}
		}
		outcome := "deleted"
		if err := ri.Delete(ctx, u.GetName(), opts); apierrors.IsNotFound(err) {
			outcome = "absent"
		} else if err != nil {
			return fmt.Errorf("%s cluster: deleting %s: %w", s.name, describe(u), err)
		} else if s.dryRun {
			outcome = "would be deleted"
		}
		fmt.Fprintf(s.out, "%s: %s %s\n", s.name, describe(u), outcome)
	}
	return nil
}

// token issues a token of a ServiceAccount of Namespace.
func (s *side) token(ctx context.Context, account string, ttl time.Duration) (string, error) {
	seconds := int64(ttl.Seconds())
	tr, err := s.client.CoreV1().ServiceAccounts(Namespace).CreateToken(ctx, account, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &seconds},
	}, metav1.CreateOptions{})
	if err != nil {
		return "", fmt.Errorf("%s cluster: requesting a token of ServiceAccount %s/%s: %w", s.name, Namespace, account, err)
	}
	return tr.Status.Token, nil
}

func describe(u *unstructured.Unstructured) string {
	if u.GetNamespace() != "" {
		return fmt.Sprintf("%s %s/%s", u.GetKind(), u.GetNamespace(), u.GetName())
	}
	return fmt.Sprintf("%s %s", u.GetKind(), u.GetName())
}

// sameContent compares two versions of an object but for the bookkeeping the apiserver does on every write.
func sameContent(a, b *unstructured.Unstructured) bool {
	strip := func(u *unstructured.Unstructured) map[string]any {
		c := u.DeepCopy()
		for _, f := range []string{"managedFields", "resourceVersion", "generation", "creationTimestamp", "uid"} {
			unstructured.RemoveNestedField(c.Object, "metadata", f)
		}
		return c.Object
	}
	return equality.Semantic.DeepEqual(strip(a), strip(b))
}
