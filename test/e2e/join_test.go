package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/flotilla-io/flotilla/join"
	"github.com/flotilla-io/flotilla/test/lab"
)

// joinCluster is the workload cluster TestJoin joins once more, under a new node name.
const joinCluster = "eu-west-3-0"

// TestJoin runs `flotilla join` and `flotilla unjoin` as a user does, with the lab's admin kubeconfigs, for
// a virtual node that does not exist yet: a dry run makes nothing; a join makes the credentials Secret,
// whose kubeconfigs are the identities the design names; a second join changes nothing and says so; unjoin
// removes what join made for the node in both clusters and leaves what all nodes share; a second unjoin
// finds everything absent.
func TestJoin(t *testing.T) {
	ctx := testContext(t, 4*time.Minute)
	mc, wc := shared.Management.Client, shared.Workload(joinCluster).Client
	nodeName := lab.UniqueName("joined", "")
	ks, err := mc.CoreV1().Namespaces().Get(ctx, metav1.NamespaceSystem, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	managementID := string(ks.UID)
	common := []string{
		"--management-kubeconfig=" + shared.Management.Kubeconfig,
		"--workload-kubeconfig=" + shared.Workload(joinCluster).Kubeconfig,
		"--node-name=" + nodeName,
	}
	joinArgs := append([]string{"join", "--kubelet-ip=127.0.0.1"}, common...)
	unjoinArgs := append([]string{"unjoin"}, common...)
	t.Cleanup(func() { _, _, _ = runFlotilla(context.Background(), t, append(unjoinArgs, "--force")...) })

	// The per-node objects a join makes, by cluster, and whether each exists.
	type object struct {
		cluster, what string
		get           func(context.Context) error
	}
	var perNode []object
	add := func(cluster string, client kubernetes.Interface, objs []any) {
		for _, o := range objs {
			get, what := getter(client, o)
			if get == nil {
				t.Fatalf("%s: no getter for %T", cluster, o)
			}
			perNode = append(perNode, object{cluster, what, get})
		}
	}
	add("management", mc, join.ManagementObjects(nodeName))
	add("management", mc, []any{&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: join.SecretName(nodeName), Namespace: join.Namespace}}})
	add(joinCluster, wc, join.WorkloadObjects(managementID, nodeName))
	absent := func(step string) {
		t.Helper()
		for _, o := range perNode {
			if err := o.get(ctx); !apierrors.IsNotFound(err) {
				t.Errorf("after %s: %s %s: %v, want NotFound", step, o.cluster, o.what, err)
			}
		}
	}

	// Dry run: what it would do, and nothing done.
	stdout, stderr, code := runFlotilla(ctx, t, append(joinArgs, "--dry-run")...)
	if code != 0 {
		t.Fatalf("join --dry-run: exit %d\n%s", code, stderr)
	}
	lines := outputLines(stdout)
	for _, l := range lines {
		if !strings.Contains(l, "would") && !strings.HasSuffix(l, " unchanged") {
			t.Errorf("join --dry-run printed %q: neither a \"would\" line nor an unchanged shared object", l)
		}
	}
	if !slices.ContainsFunc(lines, func(l string) bool {
		return strings.Contains(l, "Secret "+join.Namespace+"/"+join.SecretName(nodeName)) && strings.Contains(l, "would be created")
	}) {
		t.Errorf("join --dry-run does not say it would create the Secret:\n%s", stdout)
	}
	absent("join --dry-run")

	// The join.
	out := t.TempDir()
	stdout, stderr, code = runFlotilla(ctx, t, append(joinArgs, "--output-dir="+out)...)
	if code != 0 {
		t.Fatalf("join: exit %d\n%s\n%s", code, stdout, stderr)
	}
	for _, o := range perNode {
		if err := o.get(ctx); err != nil {
			t.Errorf("after join: %s %s: %v", o.cluster, o.what, err)
		}
	}
	secret, err := mc.CoreV1().Secrets(join.Namespace).Get(ctx, join.SecretName(nodeName), metav1.GetOptions{})
	if err != nil {
		t.Fatalf("the credentials Secret: %v", err)
	}
	keys := []string{join.KeyManagementKubeconfig, join.KeyFailoverKubeconfig, join.KeyWorkloadKubeconfig, join.KeyKubeletCert, join.KeyKubeletKey, join.KeyClientCA}
	for _, k := range keys {
		if len(secret.Data[k]) == 0 {
			t.Errorf("the credentials Secret has no %s (keys %v)", k, mapKeys(secret.Data))
		}
		if b, err := os.ReadFile(filepath.Join(out, k)); err != nil || !bytes.Equal(b, secret.Data[k]) {
			t.Errorf("--output-dir %s: %s is not the Secret's (%v)", out, k, err)
		}
	}
	if len(secret.Data) != len(keys) {
		t.Errorf("the credentials Secret has keys %v, want %v", mapKeys(secret.Data), keys)
	}
	for key, want := range map[string]string{
		join.KeyManagementKubeconfig: join.NodeUser(nodeName),
		join.KeyFailoverKubeconfig:   "system:serviceaccount:" + join.Namespace + ":" + join.FailoverAccount(nodeName),
		join.KeyWorkloadKubeconfig:   "system:serviceaccount:" + join.Namespace + ":" + join.WorkloadAccount(managementID, nodeName),
	} {
		info, err := whoAmI(ctx, secret.Data[key])
		switch {
		case err != nil:
			t.Errorf("%s: %v", key, err)
		case info.Username != want:
			t.Errorf("%s is %q, want %q", key, info.Username, want)
		case key == join.KeyManagementKubeconfig && !slices.Contains(info.Groups, "system:nodes"):
			t.Errorf("%s is in groups %v, want system:nodes", key, info.Groups)
		default:
			t.Logf("%s: %s %v", key, info.Username, info.Groups)
		}
	}

	// Again: nothing to do.
	stdout, stderr, code = runFlotilla(ctx, t, joinArgs...)
	if code != 0 {
		t.Fatalf("second join: exit %d\n%s\n%s", code, stdout, stderr)
	}
	for _, l := range outputLines(stdout) {
		if !strings.HasSuffix(l, " unchanged") || strings.Contains(l, "created") || strings.Contains(l, "configured") || strings.Contains(l, "issued") {
			t.Errorf("second join printed %q, want only unchanged lines", l)
		}
	}
	if again, err := mc.CoreV1().Secrets(join.Namespace).Get(ctx, join.SecretName(nodeName), metav1.GetOptions{}); err != nil {
		t.Errorf("the credentials Secret after the second join: %v", err)
	} else if again.ResourceVersion != secret.ResourceVersion {
		t.Errorf("the second join wrote the credentials Secret (resourceVersion %s, was %s)", again.ResourceVersion, secret.ResourceVersion)
	}

	// Unjoin: the node's objects go, what all nodes share stays.
	stdout, stderr, code = runFlotilla(ctx, t, unjoinArgs...)
	if code != 0 {
		t.Fatalf("unjoin: exit %d\n%s\n%s", code, stdout, stderr)
	}
	for _, o := range perNode {
		line := o.cluster + ": " + o.what + " deleted"
		if o.cluster != "management" {
			line = "workload: " + o.what + " deleted"
		}
		if !strings.Contains(stdout, line) {
			t.Errorf("unjoin did not print %q:\n%s", line, stdout)
		}
	}
	absent("unjoin")
	for _, shared := range []struct {
		cluster string
		client  kubernetes.Interface
		roles   []string
	}{
		{"management", mc, []string{"flotilla-node", "flotilla-failover"}},
		{joinCluster, wc, []string{"flotilla-workload"}},
	} {
		for _, role := range shared.roles {
			if _, err := shared.client.RbacV1().ClusterRoles().Get(ctx, role, metav1.GetOptions{}); err != nil {
				t.Errorf("after unjoin: %s ClusterRole %s: %v", shared.cluster, role, err)
			}
		}
	}
	for _, policy := range []string{"flotilla-failover-taint", "flotilla-load-balancer-status", "flotilla-leader-lease"} {
		if _, err := mc.AdmissionregistrationV1().ValidatingAdmissionPolicies().Get(ctx, policy, metav1.GetOptions{}); err != nil {
			t.Errorf("after unjoin: management ValidatingAdmissionPolicy %s: %v", policy, err)
		}
	}
	if _, err := wc.AdmissionregistrationV1().ValidatingAdmissionPolicies().Get(ctx, "flotilla-workload-owner", metav1.GetOptions{}); err != nil {
		t.Errorf("after unjoin: %s ValidatingAdmissionPolicy flotilla-workload-owner: %v", joinCluster, err)
	}

	// Again: all absent, and that is no failure.
	stdout, stderr, code = runFlotilla(ctx, t, unjoinArgs...)
	if code != 0 {
		t.Fatalf("second unjoin: exit %d\n%s\n%s", code, stdout, stderr)
	}
	lines = outputLines(stdout)
	if len(lines) == 0 {
		t.Errorf("second unjoin printed nothing")
	}
	for _, l := range lines {
		if !strings.HasSuffix(l, " absent") {
			t.Errorf("second unjoin printed %q, want only absent lines", l)
		}
	}
}

// TestJoinNamesMissingPermission: an admin kubeconfig of the management cluster that may do everything a
// join needs but write ClusterRoleBindings fails the join, and its message names that permission.
func TestJoinNamesMissingPermission(t *testing.T) {
	ctx := testContext(t, 2*time.Minute)
	mc := shared.Management.Client
	user := lab.UniqueName("joiner", "")
	nodeName := lab.UniqueName("joined", "")
	all := []string{"*"}
	role := &rbacv1.ClusterRole{
		ObjectMeta: metav1.ObjectMeta{Name: user},
		Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{"", "networking.k8s.io", "admissionregistration.k8s.io", "certificates.k8s.io", "coordination.k8s.io", "authentication.k8s.io"},
				Resources: all, Verbs: all},
			{APIGroups: []string{rbacv1.GroupName}, Resources: []string{"clusterroles", "roles", "rolebindings"}, Verbs: all},
			{APIGroups: []string{rbacv1.GroupName}, Resources: []string{"clusterrolebindings"}, Verbs: []string{"get", "list", "watch"}},
		},
	}
	if _, err := mc.RbacV1().ClusterRoles().Create(ctx, role, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = mc.RbacV1().ClusterRoles().Delete(context.Background(), role.Name, metav1.DeleteOptions{}) })
	binding := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: user},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: user}},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role.Name},
	}
	if _, err := mc.RbacV1().ClusterRoleBindings().Create(ctx, binding, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = mc.RbacV1().ClusterRoleBindings().Delete(context.Background(), binding.Name, metav1.DeleteOptions{})
	})
	_, cfg, err := shared.UserClient(user)
	if err != nil {
		t.Fatal(err)
	}
	kubeconfig := filepath.Join(t.TempDir(), "management.kubeconfig")
	if err := writeRESTKubeconfig(kubeconfig, cfg); err != nil {
		t.Fatal(err)
	}
	common := []string{
		"--workload-kubeconfig=" + shared.Workload(joinCluster).Kubeconfig,
		"--node-name=" + nodeName,
	}
	t.Cleanup(func() {
		_, _, _ = runFlotilla(context.Background(), t, append([]string{"unjoin", "--force", "--management-kubeconfig=" + shared.Management.Kubeconfig}, common...)...)
	})

	stdout, stderr, code := runFlotilla(ctx, t, append([]string{"join", "--kubelet-ip=127.0.0.1", "--management-kubeconfig=" + kubeconfig}, common...)...)
	if code == 0 {
		t.Fatalf("join without the right to write ClusterRoleBindings succeeded:\n%s", stdout)
	}
	message := strings.ReplaceAll(stderr, `\"`, `"`)
	for _, want := range []string{`cannot patch resource "clusterrolebindings"`, `"flotilla-node:` + nodeName + `"`, `User "` + user + `"`} {
		if !strings.Contains(message, want) {
			t.Errorf("join failed (exit %d) without naming %s:\n%s", code, want, stderr)
		}
	}
	t.Logf("join as %s: exit %d: %s", user, code, strings.TrimSpace(stderr))
	if _, err := mc.CoreV1().Secrets(join.Namespace).Get(ctx, join.SecretName(nodeName), metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("the failed join left the credentials Secret: %v", err)
	}
}

// runFlotilla runs the lab's flotilla binary and returns its output and exit status.
func runFlotilla(ctx context.Context, t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errOut bytes.Buffer
	cmd := exec.CommandContext(ctx, filepath.Join(shared.Dir, "bin", "flotilla"), args...)
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exit):
		code = exit.ExitCode()
	default:
		t.Fatalf("flotilla %s: %v", strings.Join(args, " "), err)
	}
	t.Logf("flotilla %s: exit %d\n%s%s", args[0], code, out.String(), errOut.String())
	return out.String(), errOut.String(), code
}

func outputLines(s string) []string {
	var lines []string
	for _, l := range strings.Split(strings.TrimSpace(s), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			lines = append(lines, l)
		}
	}
	return lines
}

// getter reads one object of the kinds join makes per node, as its describe() names it in join's output.
func getter(c kubernetes.Interface, obj any) (func(context.Context) error, string) {
	switch o := obj.(type) {
	case *rbacv1.ClusterRoleBinding:
		return func(ctx context.Context) error {
			_, err := c.RbacV1().ClusterRoleBindings().Get(ctx, o.Name, metav1.GetOptions{})
			return err
		}, "ClusterRoleBinding " + o.Name
	case *rbacv1.RoleBinding:
		return func(ctx context.Context) error {
			_, err := c.RbacV1().RoleBindings(o.Namespace).Get(ctx, o.Name, metav1.GetOptions{})
			return err
		}, fmt.Sprintf("RoleBinding %s/%s", o.Namespace, o.Name)
	case *rbacv1.Role:
		return func(ctx context.Context) error {
			_, err := c.RbacV1().Roles(o.Namespace).Get(ctx, o.Name, metav1.GetOptions{})
			return err
		}, fmt.Sprintf("Role %s/%s", o.Namespace, o.Name)
	case *corev1.ServiceAccount:
		return func(ctx context.Context) error {
			_, err := c.CoreV1().ServiceAccounts(o.Namespace).Get(ctx, o.Name, metav1.GetOptions{})
			return err
		}, fmt.Sprintf("ServiceAccount %s/%s", o.Namespace, o.Name)
	case *corev1.Secret:
		return func(ctx context.Context) error {
			_, err := c.CoreV1().Secrets(o.Namespace).Get(ctx, o.Name, metav1.GetOptions{})
			return err
		}, fmt.Sprintf("Secret %s/%s", o.Namespace, o.Name)
	}
	return nil, ""
}

// whoAmI is the user a kubeconfig authenticates as.
func whoAmI(ctx context.Context, kubeconfig []byte) (authenticationv1.UserInfo, error) {
	cfg, err := clientcmd.RESTConfigFromKubeConfig(kubeconfig)
	if err != nil {
		return authenticationv1.UserInfo{}, err
	}
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return authenticationv1.UserInfo{}, err
	}
	review, err := client.AuthenticationV1().SelfSubjectReviews().Create(ctx, &authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{})
	if err != nil {
		return authenticationv1.UserInfo{}, err
	}
	return review.Status.UserInfo, nil
}

// writeRESTKubeconfig writes a kubeconfig of a client certificate configuration, as a user hands one to
// flotilla join.
func writeRESTKubeconfig(path string, cfg *rest.Config) error {
	read := func(data []byte, file string) ([]byte, error) {
		if len(data) > 0 || file == "" {
			return data, nil
		}
		return os.ReadFile(file)
	}
	ca, err := read(cfg.CAData, cfg.CAFile)
	if err != nil {
		return err
	}
	cert, err := read(cfg.CertData, cfg.CertFile)
	if err != nil {
		return err
	}
	key, err := read(cfg.KeyData, cfg.KeyFile)
	if err != nil {
		return err
	}
	kc := clientcmdapi.NewConfig()
	kc.Clusters["management"] = &clientcmdapi.Cluster{Server: cfg.Host, CertificateAuthorityData: ca}
	kc.AuthInfos["user"] = &clientcmdapi.AuthInfo{ClientCertificateData: cert, ClientKeyData: key}
	kc.Contexts["user"] = &clientcmdapi.Context{Cluster: "management", AuthInfo: "user"}
	kc.CurrentContext = "user"
	return clientcmd.WriteToFile(*kc, path)
}

func mapKeys(m map[string][]byte) []string {
	var keys []string
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
