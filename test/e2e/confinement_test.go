package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"

	"github.com/flotilla-io/flotilla/join"
	"github.com/flotilla-io/flotilla/node"
	"github.com/flotilla-io/flotilla/tenancy"
	"github.com/flotilla-io/flotilla/test/lab"
)

// TestConfinement takes every credential `flotilla join` gave one flotilla of the lab (the files of
// shared.Credentials[confinementCluster]) and tries, for real, what would open the fleet to whoever steals
// it: other nodes' Secrets and pods, other virtual nodes, load-balancer statuses it does not follow, system
// namespaces and foreign objects of the workload cluster, role bindings. The apiservers must refuse each,
// and say why (the Node authorizer, RBAC, NodeRestriction, or one of deploy/charts/flotilla/files/policies' admission policies).
// A few rows are allowed on purpose, to show each credential works at all.
//
// Every write the apiserver might let through by mistake is a dry run (metav1.DryRunAll): authorization and
// admission judge it as a real one, and a gap costs the lab nothing. The log is the table of answers.
func TestConfinement(t *testing.T) {
	ctx := testContext(t, 3*time.Minute)
	const own, peer = confinementCluster, confinementPeer
	dir := shared.Credentials[own]
	if dir == "" {
		t.Fatalf("no credentials of %s in the lab", own)
	}
	mc := shared.Management.Client
	wc := shared.Workload(own).Client
	ks, err := mc.CoreV1().Namespaces().Get(ctx, metav1.NamespaceSystem, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	managementID := string(ks.UID)

	creds := map[string]kubernetes.Interface{}
	for _, c := range []struct{ name, file, user string }{
		{credNode, join.KeyManagementKubeconfig, join.NodeUser(own)},
		{credFailover, join.KeyFailoverKubeconfig, "system:serviceaccount:" + join.Namespace + ":" + join.FailoverAccount(own)},
		{credWorkload, join.KeyWorkloadKubeconfig, "system:serviceaccount:" + join.Namespace + ":" + join.WorkloadAccount(managementID, own)},
	} {
		client, user := credentialClient(ctx, t, filepath.Join(dir, c.file))
		if user != c.user {
			t.Fatalf("%s (%s) is %q, want %q", c.name, c.file, user, c.user)
		}
		t.Logf("%s credential (%s): %s", c.name, c.file, user)
		creds[c.name] = client
	}
	n, f, w := creds[credNode], creds[credFailover], creds[credWorkload]

	// What the admins have in place: in the management cluster a namespace nobody enabled, with a Secret, a
	// ConfigMap and a LoadBalancer Service no pod of own's references or follows, and a pod bound to the
	// peer; an enabled namespace with a LoadBalancer Service; a bare Node with the cluster-lost taint. In
	// the workload cluster a namespace nobody opened, with a Secret, and a ConfigMap of the admin's in the
	// opened `default`.
	closed := confinementNamespace(ctx, t, mc, nil)
	enabled := confinementNamespace(ctx, t, mc, map[string]string{tenancy.LabelEnabled: "true"})
	setUp(t, "the unreferenced Secret", func() error {
		_, err := mc.CoreV1().Secrets(closed).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "unreferenced"},
			Data: map[string][]byte{"password": []byte("not the node's")}}, metav1.CreateOptions{})
		return err
	})
	setUp(t, "the unreferenced ConfigMap", func() error {
		_, err := mc.CoreV1().ConfigMaps(closed).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "unreferenced"}}, metav1.CreateOptions{})
		return err
	})
	for _, ns := range []string{closed, enabled} {
		setUp(t, "a LoadBalancer Service in "+ns, func() error {
			_, err := mc.CoreV1().Services(ns).Create(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "lb"},
				Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, Selector: map[string]string{"app": "nothing"},
					Ports: []corev1.ServicePort{{Port: 80}}}}, metav1.CreateOptions{})
			return err
		})
	}
	setUp(t, "a pod bound to "+peer, func() error {
		_, err := mc.CoreV1().Pods(closed).Create(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "elsewhere"},
			Spec: corev1.PodSpec{NodeName: peer, Containers: []corev1.Container{{Name: "c", Image: "registry.k8s.io/pause:3.10"}}}}, metav1.CreateOptions{})
		return err
	})
	t.Cleanup(func() {
		_ = mc.CoreV1().Pods(closed).Delete(context.Background(), "elsewhere", metav1.DeleteOptions{GracePeriodSeconds: ptr.To(int64(0))})
	})
	// A Node no kubelet serves and no pod can land on (its taints), so the failover identity's allowed
	// changes are made for real without evicting anything.
	bare := lab.UniqueName("confinement", "bare")
	setUp(t, "the bare node", func() error {
		_, err := mc.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: bare},
			Spec: corev1.NodeSpec{Taints: []corev1.Taint{
				{Key: node.TaintKey, Value: node.TaintValue, Effect: corev1.TaintEffectNoSchedule},
				{Key: node.LostTaintKey, Effect: corev1.TaintEffectNoExecute},
			}}}, metav1.CreateOptions{})
		return err
	})
	t.Cleanup(func() { _ = mc.CoreV1().Nodes().Delete(context.Background(), bare, metav1.DeleteOptions{}) })

	closedWorkload := confinementNamespace(ctx, t, wc, nil)
	openedWorkload := confinementNamespace(ctx, t, wc, map[string]string{tenancy.LabelOpen: "true"})
	setUp(t, "the workload admin's Secret", func() error {
		_, err := wc.CoreV1().Secrets(closedWorkload).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "admins"},
			Data: map[string][]byte{"password": []byte("the admin's")}}, metav1.CreateOptions{})
		return err
	})
	adminsCM := lab.UniqueName("admins", "")
	setUp(t, "the workload admin's ConfigMap in default", func() error {
		_, err := wc.CoreV1().ConfigMaps(metav1.NamespaceDefault).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: adminsCM},
			Data: map[string]string{"owner": "admin"}}, metav1.CreateOptions{})
		return err
	})
	t.Cleanup(func() {
		_ = wc.CoreV1().ConfigMaps(metav1.NamespaceDefault).Delete(context.Background(), adminsCM, metav1.DeleteOptions{})
	})
	// A namespace of flotilla's own: unlike a stray copy, which flotilla collects at once, it stays for the
	// clean-up's grace period, long enough to try to give it away.
	ownNS := lab.UniqueName("flotillas", "")
	t.Cleanup(func() {
		_ = wc.CoreV1().Namespaces().Delete(context.Background(), ownNS, metav1.DeleteOptions{})
	})

	ownLabels := map[string]string{tenancy.LabelManagement: managementID, "flotilla.io/node": own}
	peerLabels := map[string]string{tenancy.LabelManagement: managementID, "flotilla.io/node": peer}
	dry := metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}}
	dryPatch := metav1.PatchOptions{DryRun: []string{metav1.DryRunAll}}
	dryDelete := metav1.DeleteOptions{DryRun: []string{metav1.DryRunAll}}
	dryUpdate := metav1.UpdateOptions{DryRun: []string{metav1.DryRunAll}}
	mergePatch := func(client kubernetes.Interface, name, patch string) error {
		_, err := client.CoreV1().Nodes().Patch(ctx, name, types.MergePatchType, []byte(patch), dryPatch)
		return err
	}
	configMap := func(name string, labels map[string]string) *corev1.ConfigMap {
		return &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}, Data: map[string]string{"k": "v"}}
	}

	const (
		nodeAuthorizer  = "no relationship found between node '" + confinementCluster + "' and this object"
		failoverPolicy  = "the failover identity may change a node only by adding or removing the flotilla.io/cluster-lost taint"
		ownerLabelsLeft = "flotilla may create or leave only objects carrying its owner labels"
		ownerLabelsHeld = "flotilla may change or delete only objects carrying its owner labels"
		systemNamespace = "flotilla may not write in namespace kube-system"
		notOpened       = "is neither flotilla's (flotilla.io/management) nor opened to it (flotilla.io/open=true)"
		bindOnlyReader  = "flotilla may bind only the ClusterRole flotilla-namespace-reader, and only to itself"
	)
	self := rbacv1.Subject{Kind: rbacv1.ServiceAccountKind, Namespace: join.Namespace, Name: join.WorkloadAccount(managementID, own)}
	defaultAccount := rbacv1.Subject{Kind: rbacv1.ServiceAccountKind, Namespace: metav1.NamespaceDefault, Name: "default"}
	// readGrant is the RoleBinding flotilla makes to read its copies in a namespace, under a name of the
	// test's (dry runs of a name flotilla holds already would only say AlreadyExists).
	readGrant := func(namespace string, subject rbacv1.Subject) *rbacv1.RoleBinding {
		b := tenancy.ReadGrant(namespace, managementID, own, subject)
		b.Name = lab.UniqueName("confinement", "")
		return b
	}
	rows := []confinementRow{
		// The node identity, system:node:<own>, in the management cluster.
		{credNode, "get its own Node", allowedAnswer(), func() error {
			_, err := n.CoreV1().Nodes().Get(ctx, own, metav1.GetOptions{})
			return err
		}},
		{credNode, "get namespace kube-system (the management identity)", allowedAnswer(), func() error {
			_, err := n.CoreV1().Namespaces().Get(ctx, metav1.NamespaceSystem, metav1.GetOptions{})
			return err
		}},
		{credNode, "read a Secret no pod on its node references", refusedAnswer(403, nodeAuthorizer), func() error {
			_, err := n.CoreV1().Secrets(closed).Get(ctx, "unreferenced", metav1.GetOptions{})
			return err
		}},
		{credNode, "read a ConfigMap no pod on its node references", refusedAnswer(403, nodeAuthorizer), func() error {
			_, err := n.CoreV1().ConfigMaps(closed).Get(ctx, "unreferenced", metav1.GetOptions{})
			return err
		}},
		{credNode, "read another flotilla's credentials (Secret " + join.Namespace + "/" + join.SecretName(peer) + ")", refusedAnswer(403, nodeAuthorizer), func() error {
			_, err := n.CoreV1().Secrets(join.Namespace).Get(ctx, join.SecretName(peer), metav1.GetOptions{})
			return err
		}},
		{credNode, "list Secrets cluster-wide", refusedAnswer(403, `cannot list resource "secrets"`), func() error {
			_, err := n.CoreV1().Secrets(metav1.NamespaceAll).List(ctx, metav1.ListOptions{})
			return err
		}},
		{credNode, "list Secrets of namespace " + join.Namespace, refusedAnswer(403, `cannot list resource "secrets"`), func() error {
			_, err := n.CoreV1().Secrets(join.Namespace).List(ctx, metav1.ListOptions{})
			return err
		}},
		{credNode, "request a token of the peer's failover ServiceAccount", refusedAnswer(403, `cannot create resource "serviceaccounts/token"`), func() error {
			_, err := n.CoreV1().ServiceAccounts(join.Namespace).CreateToken(ctx, join.FailoverAccount(peer), &authenticationv1.TokenRequest{}, metav1.CreateOptions{})
			return err
		}},
		{credNode, "label another virtual node (" + peer + ")", refusedAnswer(403, `is not allowed to modify node "`+peer+`"`), func() error {
			return mergePatch(n, peer, `{"metadata":{"labels":{"confinement.flotilla.io/x":"y"}}}`)
		}},
		{credNode, "remove its own " + node.TaintKey + " taint", refusedAnswer(403, "is not allowed to modify taints"), func() error {
			return mergePatch(n, own, `{"spec":{"taints":[]}}`)
		}},
		// Its kubernetes.io/role=cluster label is the failover identity's to set: NodeRestriction lets a node
		// change no kubernetes.io label a kubelet does not own, which would steer workloads to it.
		{credNode, "relabel itself kubernetes.io/role=master", refusedAnswer(403, "is not allowed to modify labels: kubernetes.io/role"), func() error {
			return mergePatch(n, own, `{"metadata":{"labels":{"kubernetes.io/role":"master"}}}`)
		}},
		{credNode, "label itself node-role.kubernetes.io/control-plane", refusedAnswer(403, "is not allowed to modify labels: node-role.kubernetes.io/control-plane"), func() error {
			return mergePatch(n, own, `{"metadata":{"labels":{"node-role.kubernetes.io/control-plane":""}}}`)
		}},
		{credNode, "delete a pod bound to " + peer, refusedAnswer(403, "can only delete pods with spec.nodeName set to itself"), func() error {
			return n.CoreV1().Pods(closed).Delete(ctx, "elsewhere", dryDelete)
		}},
		{credNode, "write the load-balancer status of a Service in a namespace not enabled", refusedAnswer(422, "a node may write load-balancer status only in namespaces labelled flotilla.io/enabled=true"), func() error {
			return patchLoadBalancer(ctx, n, closed, dryPatch)
		}},
		{credNode, "write the load-balancer status of a Service in an enabled namespace (dry run)", allowedAnswer(), func() error {
			return patchLoadBalancer(ctx, n, enabled, dryPatch)
		}},
		// NodeRestriction refuses a node every Lease outside kube-node-lease: the leader Lease of --leader-elect
		// is the failover identity's (rows below).
		{credNode, "hold its own leader Lease (" + join.Namespace + "/flotilla-" + own + ")", refusedAnswer(403, `can only access leases in the "kube-node-lease" system namespace`), func() error {
			_, err := n.CoordinationV1().Leases(join.Namespace).Create(ctx, &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: "flotilla-" + own}}, dry)
			return err
		}},
		{credFailover, "hold the peer's leader Lease (" + join.Namespace + "/flotilla-" + peer + ")", refusedAnswer(422, "may hold only the leader Lease of its own node"), func() error {
			_, err := f.CoordinationV1().Leases(join.Namespace).Create(ctx, &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: "flotilla-" + peer}}, dry)
			return err
		}},
		{credFailover, "hold its own leader Lease (" + join.Namespace + "/flotilla-" + own + ", dry run)", allowedAnswer(), func() error {
			_, err := f.CoordinationV1().Leases(join.Namespace).Create(ctx, &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: "flotilla-" + own}}, dry)
			if apierrors.IsAlreadyExists(err) { // held before, by a run with --leader-elect: admitted, then found taken
				return nil
			}
			return err
		}},
		{credNode, "renew the peer's node Lease (" + corev1.NamespaceNodeLease + "/" + peer + ")", refusedAnswer(403, "can only access node lease with the same name as the requesting node"), func() error {
			_, err := n.CoordinationV1().Leases(corev1.NamespaceNodeLease).Patch(ctx, peer, types.MergePatchType,
				[]byte(`{"spec":{"holderIdentity":"`+own+`"}}`), dryPatch)
			return err
		}},

		// The failover identity, ServiceAccount flotilla-system/flotilla-failover-<own>.
		{credFailover, "get the peer's Node", allowedAnswer(), func() error {
			_, err := f.CoreV1().Nodes().Get(ctx, peer, metav1.GetOptions{})
			return err
		}},
		{credFailover, "taint the peer " + node.LostTaintKey + ":NoExecute (dry run)", allowedAnswer(), func() error {
			return setLostTaint(ctx, f, peer, true, dryPatch)
		}},
		{credFailover, "remove " + node.LostTaintKey + " from a node (the bare node, for real)", allowedAnswer(), func() error {
			return setLostTaint(ctx, f, bare, false, metav1.PatchOptions{})
		}},
		{credFailover, "taint a node " + node.LostTaintKey + ":NoExecute (the bare node, for real)", allowedAnswer(), func() error {
			return setLostTaint(ctx, f, bare, true, metav1.PatchOptions{})
		}},
		{credFailover, "label a node kubernetes.io/role=cluster (the bare node, for real)", allowedAnswer(), func() error {
			_, err := f.CoreV1().Nodes().Patch(ctx, bare, types.MergePatchType, []byte(`{"metadata":{"labels":{"kubernetes.io/role":"cluster"}}}`), metav1.PatchOptions{})
			return err
		}},
		{credFailover, "label the peer (another label)", refusedAnswer(422, failoverPolicy), func() error {
			return mergePatch(f, peer, `{"metadata":{"labels":{"confinement.flotilla.io/x":"y"}}}`)
		}},
		{credFailover, "label the peer kubernetes.io/role=master", refusedAnswer(422, failoverPolicy), func() error {
			return mergePatch(f, peer, `{"metadata":{"labels":{"kubernetes.io/role":"master"}}}`)
		}},
		{credFailover, "cordon the peer (unschedulable)", refusedAnswer(422, failoverPolicy), func() error {
			return mergePatch(f, peer, `{"spec":{"unschedulable":true}}`)
		}},
		{credFailover, "forge the peer's load-balancer annotation", refusedAnswer(422, failoverPolicy), func() error {
			return mergePatch(f, peer, `{"metadata":{"annotations":{"flotilla.io/load-balancers":"{\"Service/x/y\":[{\"ip\":\"203.0.113.7\"}]}"}}}`)
		}},
		{credFailover, "remove the peer's " + node.TaintKey + " taint", refusedAnswer(422, failoverPolicy), func() error {
			return mergePatch(f, peer, `{"spec":{"taints":[]}}`)
		}},
		{credFailover, "write the peer's status (nodes/status)", refusedAnswer(403, `cannot patch resource "nodes/status"`), func() error {
			_, err := f.CoreV1().Nodes().Patch(ctx, peer, types.MergePatchType, []byte(`{"status":{"capacity":{"pods":"0"}}}`), dryPatch, "status")
			return err
		}},
		{credFailover, "delete the peer's Node", refusedAnswer(403, `cannot delete resource "nodes"`), func() error {
			return f.CoreV1().Nodes().Delete(ctx, peer, dryDelete)
		}},
		{credFailover, "create a Node", refusedAnswer(403, `cannot create resource "nodes"`), func() error {
			_, err := f.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "confinement-forged"}}, dry)
			return err
		}},
		{credFailover, "read another flotilla's credentials (Secret " + join.Namespace + "/" + join.SecretName(peer) + ")", refusedAnswer(403, `cannot get resource "secrets"`), func() error {
			_, err := f.CoreV1().Secrets(join.Namespace).Get(ctx, join.SecretName(peer), metav1.GetOptions{})
			return err
		}},
		{credFailover, "list pods", refusedAnswer(403, `cannot list resource "pods"`), func() error {
			_, err := f.CoreV1().Pods(metav1.NamespaceAll).List(ctx, metav1.ListOptions{})
			return err
		}},
		{credFailover, "request a token of the peer's failover ServiceAccount", refusedAnswer(403, `cannot create resource "serviceaccounts/token"`), func() error {
			_, err := f.CoreV1().ServiceAccounts(join.Namespace).CreateToken(ctx, join.FailoverAccount(peer), &authenticationv1.TokenRequest{}, metav1.CreateOptions{})
			return err
		}},

		// The workload identity, ServiceAccount flotilla-system/flotilla.<management>.<own>, in workload
		// cluster <own>.
		{credWorkload, "list the cluster's nodes", allowedAnswer(), func() error {
			_, err := w.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
			return err
		}},
		{credWorkload, "create a ConfigMap with its owner labels in opened default (dry run)", allowedAnswer(), func() error {
			_, err := w.CoreV1().ConfigMaps(metav1.NamespaceDefault).Create(ctx, configMap("confinement", ownLabels), dry)
			return err
		}},
		{credWorkload, "create a namespace of its own (for real)", allowedAnswer(), func() error {
			_, err := w.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ownNS,
				Labels: map[string]string{tenancy.LabelManagement: managementID}}}, metav1.CreateOptions{})
			return err
		}},
		{credWorkload, "give its namespace away (drop flotilla.io/management)", refusedAnswer(422, ownerLabelsLeft), func() error {
			ns, err := w.CoreV1().Namespaces().Get(ctx, ownNS, metav1.GetOptions{})
			if err != nil {
				return err
			}
			delete(ns.Labels, tenancy.LabelManagement)
			_, err = w.CoreV1().Namespaces().Update(ctx, ns, metav1.UpdateOptions{DryRun: []string{metav1.DryRunAll}})
			return err
		}},
		{credWorkload, "create a pod in kube-system", refusedAnswer(422, systemNamespace), func() error {
			_, err := w.CoreV1().Pods(metav1.NamespaceSystem).Create(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "confinement", Labels: ownLabels},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "registry.k8s.io/pause:3.10"}}}}, dry)
			return err
		}},
		{credWorkload, "create a ConfigMap in kube-system", refusedAnswer(422, systemNamespace), func() error {
			_, err := w.CoreV1().ConfigMaps(metav1.NamespaceSystem).Create(ctx, configMap("confinement", ownLabels), dry)
			return err
		}},
		{credWorkload, "create a ConfigMap in a namespace neither its own nor opened", refusedAnswer(422, notOpened), func() error {
			_, err := w.CoreV1().ConfigMaps(closedWorkload).Create(ctx, configMap("confinement", ownLabels), dry)
			return err
		}},
		{credWorkload, "create a ConfigMap without owner labels in opened default", refusedAnswer(422, ownerLabelsLeft), func() error {
			_, err := w.CoreV1().ConfigMaps(metav1.NamespaceDefault).Create(ctx, configMap("confinement", nil), dry)
			return err
		}},
		{credWorkload, "create a ConfigMap with the peer's owner labels in opened default", refusedAnswer(422, ownerLabelsLeft), func() error {
			_, err := w.CoreV1().ConfigMaps(metav1.NamespaceDefault).Create(ctx, configMap("confinement", peerLabels), dry)
			return err
		}},
		{credWorkload, "change the admin's ConfigMap in default", refusedAnswer(422, ownerLabelsHeld), func() error {
			_, err := w.CoreV1().ConfigMaps(metav1.NamespaceDefault).Patch(ctx, adminsCM, types.MergePatchType, []byte(`{"data":{"owner":"flotilla"}}`), dryPatch)
			return err
		}},
		{credWorkload, "claim the admin's ConfigMap (add its owner labels)", refusedAnswer(422, ownerLabelsHeld), func() error {
			patch, _ := json.Marshal(map[string]any{"metadata": map[string]any{"labels": ownLabels}})
			_, err := w.CoreV1().ConfigMaps(metav1.NamespaceDefault).Patch(ctx, adminsCM, types.MergePatchType, patch, dryPatch)
			return err
		}},
		{credWorkload, "delete the admin's ConfigMap in default", refusedAnswer(422, ownerLabelsHeld), func() error {
			return w.CoreV1().ConfigMaps(metav1.NamespaceDefault).Delete(ctx, adminsCM, dryDelete)
		}},
		{credWorkload, "create a namespace without the management label", refusedAnswer(422, ownerLabelsLeft+" (flotilla.io/management="+managementID+")"), func() error {
			_, err := w.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: lab.UniqueName("confinement", "")}}, dry)
			return err
		}},
		{credWorkload, "open kube-system to itself (label flotilla.io/open=true)", refusedAnswer(422, systemNamespace), func() error {
			ns, err := w.CoreV1().Namespaces().Get(ctx, metav1.NamespaceSystem, metav1.GetOptions{})
			if err != nil {
				return err
			}
			ns.Labels[tenancy.LabelOpen] = "true"
			_, err = w.CoreV1().Namespaces().Update(ctx, ns, dryUpdate)
			return err
		}},
		{credWorkload, "delete a namespace its admin opened to it", refusedAnswer(422, ownerLabelsHeld), func() error {
			return w.CoreV1().Namespaces().Delete(ctx, openedWorkload, dryDelete)
		}},
		// RBAC: it may create RoleBindings of flotilla-namespace-reader (to read its copies where it works),
		// and the policy lets it bind that role only to itself, only where it may write.
		{credWorkload, "bind itself flotilla-namespace-reader in opened default (dry run)", allowedAnswer(), func() error {
			_, err := w.RbacV1().RoleBindings(metav1.NamespaceDefault).Create(ctx, readGrant(metav1.NamespaceDefault, self), dry)
			return err
		}},
		{credWorkload, "bind itself flotilla-namespace-reader in a namespace neither its own nor opened", refusedAnswer(422, notOpened), func() error {
			_, err := w.RbacV1().RoleBindings(closedWorkload).Create(ctx, readGrant(closedWorkload, self), dry)
			return err
		}},
		{credWorkload, "bind itself flotilla-namespace-reader in kube-system", refusedAnswer(422, systemNamespace), func() error {
			_, err := w.RbacV1().RoleBindings(metav1.NamespaceSystem).Create(ctx, readGrant(metav1.NamespaceSystem, self), dry)
			return err
		}},
		{credWorkload, "bind flotilla-namespace-reader to another ServiceAccount (default/default)", refusedAnswer(422, bindOnlyReader), func() error {
			_, err := w.RbacV1().RoleBindings(metav1.NamespaceDefault).Create(ctx, readGrant(metav1.NamespaceDefault, defaultAccount), dry)
			return err
		}},
		{credWorkload, "hand its own ClusterRole flotilla-workload to default/default (RoleBinding)", refusedAnswer(422, bindOnlyReader), func() error {
			b := readGrant(metav1.NamespaceDefault, defaultAccount)
			b.RoleRef.Name = "flotilla-workload"
			_, err := w.RbacV1().RoleBindings(metav1.NamespaceDefault).Create(ctx, b, dry)
			return err
		}},
		{credWorkload, "bind cluster-admin in default (RoleBinding)", refusedAnswer(403, "is attempting to grant RBAC permissions not currently held"), func() error {
			_, err := w.RbacV1().RoleBindings(metav1.NamespaceDefault).Create(ctx, &rbacv1.RoleBinding{
				ObjectMeta: metav1.ObjectMeta{Name: "confinement", Labels: ownLabels},
				Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: "default", Namespace: metav1.NamespaceDefault}},
				RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "cluster-admin"},
			}, dry)
			return err
		}},
		{credWorkload, "bind cluster-admin cluster-wide (ClusterRoleBinding)", refusedAnswer(403, `cannot create resource "clusterrolebindings"`), func() error {
			_, err := w.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
				ObjectMeta: metav1.ObjectMeta{Name: "confinement", Labels: ownLabels},
				Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: "default", Namespace: metav1.NamespaceDefault}},
				RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "cluster-admin"},
			}, dry)
			return err
		}},
		{credWorkload, "request a token of kube-system's default ServiceAccount", refusedAnswer(403, `cannot create resource "serviceaccounts/token"`), func() error {
			_, err := w.CoreV1().ServiceAccounts(metav1.NamespaceSystem).CreateToken(ctx, "default", &authenticationv1.TokenRequest{}, metav1.CreateOptions{})
			return err
		}},
		{credWorkload, "delete a node", refusedAnswer(403, `cannot delete resource "nodes"`), func() error {
			return w.CoreV1().Nodes().Delete(ctx, lab.NodeName(own, 0), dryDelete)
		}},
		{credWorkload, "exec into a pod of kube-system", refusedAnswer(422, systemNamespace), func() error {
			return w.CoreV1().RESTClient().Post().Namespace(metav1.NamespaceSystem).Resource("pods").Name("confinement").SubResource("exec").
				Param("command", "true").Param("stdout", "true").Do(ctx).Error()
		}},
		// Reads no admission policy can confine: RBAC grants them only through the RoleBindings above.
		{credWorkload, "read the admin's Secret in a namespace neither its own nor opened", refusedAnswer(403, `cannot get resource "secrets"`), func() error {
			_, err := w.CoreV1().Secrets(closedWorkload).Get(ctx, "admins", metav1.GetOptions{})
			return err
		}},
		{credWorkload, "list Secrets cluster-wide", refusedAnswer(403, `cannot list resource "secrets"`), func() error {
			_, err := w.CoreV1().Secrets(metav1.NamespaceAll).List(ctx, metav1.ListOptions{})
			return err
		}},
		{credWorkload, "list Secrets of kube-system", refusedAnswer(403, `cannot list resource "secrets"`), func() error {
			_, err := w.CoreV1().Secrets(metav1.NamespaceSystem).List(ctx, metav1.ListOptions{})
			return err
		}},
	}

	var table []string
	for _, r := range rows {
		code, message := answerOf(r.do())
		line := fmt.Sprintf("%-8s | %-80s | %3d %s", r.cred, r.action, code, message)
		table = append(table, line)
		t.Log(line)
		if problem := r.want.judge(code, message); problem != "" {
			t.Errorf("%s: %s: %s", r.cred, r.action, problem)
		}
	}
	t.Logf("credential | action | apiserver's answer\n%s", strings.Join(table, "\n"))
}

// confinementCluster is the workload cluster whose flotilla's credentials TestConfinement tries;
// confinementPeer another virtual node of the lab.
const (
	confinementCluster = "us-west-2-1"
	confinementPeer    = "us-west-2-0"
)

// The credentials of one flotilla, by what they are for.
const (
	credNode     = "node"
	credFailover = "failover"
	credWorkload = "workload"
)

type confinementRow struct {
	cred, action string
	want         confinementWant
	do           func() error
}

// confinementWant is the answer a row expects: allowed, or refused with a status code and a message
// naming why.
type confinementWant struct {
	allowed bool
	code    int32
	text    string
}

func allowedAnswer() confinementWant { return confinementWant{allowed: true} }
func refusedAnswer(code int32, text string) confinementWant {
	return confinementWant{code: code, text: text}
}

// judge says what is wrong with an answer, or "".
func (w confinementWant) judge(code int32, message string) string {
	switch {
	case w.allowed && code >= 300:
		return fmt.Sprintf("refused (%d %s), want allowed", code, message)
	case w.allowed:
		return ""
	case code < 300:
		return fmt.Sprintf("ALLOWED, want refused with %d %q", w.code, w.text)
	case code != w.code || !strings.Contains(message, w.text):
		return fmt.Sprintf("answered %d %q, want %d naming %q", code, message, w.code, w.text)
	}
	return ""
}

// answerOf is the apiserver's answer to a request: its status code and message (200 "allowed" for none).
func answerOf(err error) (int32, string) {
	if err == nil {
		return 200, "allowed"
	}
	var status apierrors.APIStatus
	if errors.As(err, &status) {
		s := status.Status()
		return s.Code, s.Message
	}
	return 0, err.Error()
}

// credentialClient is a client of one kubeconfig `flotilla join` wrote, and the user the apiserver takes
// it for.
func credentialClient(ctx context.Context, t *testing.T, kubeconfig string) (kubernetes.Interface, string) {
	t.Helper()
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		t.Fatalf("%s: %v", kubeconfig, err)
	}
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatalf("%s: %v", kubeconfig, err)
	}
	review, err := client.AuthenticationV1().SelfSubjectReviews().Create(ctx, &authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("%s: who am I: %v", kubeconfig, err)
	}
	return client, review.Status.UserInfo.Username
}

// confinementNamespace creates a namespace of the test with exactly these labels and deletes it afterwards.
func confinementNamespace(ctx context.Context, t *testing.T, c kubernetes.Interface, labels map[string]string) string {
	t.Helper()
	name := lab.UniqueName("confinement", "")
	if _, err := c.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating namespace %s: %v", name, err)
	}
	t.Cleanup(func() { _ = c.CoreV1().Namespaces().Delete(context.Background(), name, metav1.DeleteOptions{}) })
	return name
}

// create runs an admin's step of the setup.
func setUp(t *testing.T, what string, do func() error) {
	t.Helper()
	if err := do(); err != nil {
		t.Fatalf("creating %s: %v", what, err)
	}
}

// patchLoadBalancer writes a load-balancer address into the status of Service lb, as flotilla does.
func patchLoadBalancer(ctx context.Context, c kubernetes.Interface, namespace string, opts metav1.PatchOptions) error {
	opts.FieldManager = "flotilla"
	_, err := c.CoreV1().Services(namespace).Patch(ctx, "lb", types.MergePatchType,
		[]byte(`{"status":{"loadBalancer":{"ingress":[{"ip":"203.0.113.7"}]}}}`), opts, "status")
	return err
}

// setLostTaint adds or removes the cluster-lost taint as flotilla's failover does: the whole taint list,
// patched with the resourceVersion it was computed from, retried on conflict.
func setLostTaint(ctx context.Context, c kubernetes.Interface, nodeName string, lost bool, opts metav1.PatchOptions) error {
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		n, err := c.CoreV1().Nodes().Get(ctx, nodeName, metav1.GetOptions{})
		if err != nil {
			return err
		}
		var taints []corev1.Taint
		for _, t := range n.Spec.Taints {
			if t.Key != node.LostTaintKey {
				taints = append(taints, t)
			}
		}
		if lost {
			taints = append(taints, corev1.Taint{Key: node.LostTaintKey, Effect: corev1.TaintEffectNoExecute, TimeAdded: ptr.To(metav1.Now())})
		}
		patch, err := json.Marshal(map[string]any{
			"metadata": map[string]any{"resourceVersion": n.ResourceVersion},
			"spec":     map[string]any{"taints": taints},
		})
		if err != nil {
			return err
		}
		_, err = c.CoreV1().Nodes().Patch(ctx, nodeName, types.MergePatchType, patch, opts)
		return err
	})
}
