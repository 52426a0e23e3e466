package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	schedulingv1 "k8s.io/api/scheduling/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	psaapi "k8s.io/pod-security-admission/api"
	"k8s.io/utils/ptr"

	"github.com/flotilla-io/flotilla/join"
	"github.com/flotilla-io/flotilla/provider"
	"github.com/flotilla-io/flotilla/tenancy"
	"github.com/flotilla-io/flotilla/test/lab"
)

// hostileCases is the table of TestHostile. Its last case is a plain pod, played after all others.
func hostileCases() []hostileCase {
	cases := slices.Concat(
		podSecurityCases(),
		optInCases(),
		rbacCases(),
		admissionCases(),
		oddInputCases(),
		shadowingCases(),
		unsupportedReferenceCases(),
		serviceCases(),
		workloadNamespaceCases(),
	)
	return append(cases, hostileCase{
		name: "still-serving",
		// After everything above, a plain pod in an enabled namespace is delegated and Running.
		act: func(ctx context.Context, h *hostile) error { return h.createPod(ctx, h.pod("plain")) },
		want: delegated("delegated and Running", func(ctx context.Context, h *hostile) {
			h.must(ctx, hostileFollowLimit, "the plain proxy Running", func(context.Context) (bool, string) {
				p := h.obs.pod(h.ns, "plain")
				return p != nil && p.Status.Phase == corev1.PodRunning, fmt.Sprintf("%v", p.Status.Phase)
			})
		}),
	})
}

// podSecurityCases: pods the workload cluster's Pod Security admission (baseline, enforced on the
// namespaces flotilla creates) refuses, while the management cluster, without Pod Security labels on her
// namespace, admits them. The proxy shows the workload apiserver's own message.
func podSecurityCases() []hostileCase {
	refused := func(name, text string, mutate func(*corev1.Pod)) hostileCase {
		return hostileCase{
			name: name,
			act:  func(ctx context.Context, h *hostile) error { return h.createPod(ctx, h.pod("p", mutate)) },
			want: proxyReason(provider.ReasonRefused, text),
		}
	}
	return []hostileCase{
		// Root on the workload node: a privileged container.
		refused("privileged", `"baseline:latest": privileged`, func(p *corev1.Pod) {
			p.Spec.Containers[0].SecurityContext = &corev1.SecurityContext{Privileged: ptr.To(true)}
		}),
		// The same, hidden in an init container.
		refused("privileged-init-container", `container "init" must not set securityContext.privileged=true`, func(p *corev1.Pod) {
			init := hostileContainer()
			init.Name, init.SecurityContext = "init", &corev1.SecurityContext{Privileged: ptr.To(true)}
			p.Spec.InitContainers = []corev1.Container{init}
		}),
		// The node's network: sniff and spoof other pods' traffic, reach node-local services.
		refused("host-network", "hostNetwork=true", func(p *corev1.Pod) { p.Spec.HostNetwork = true }),
		// The node's process table: see and signal every process on it.
		refused("host-pid", "hostPID=true", func(p *corev1.Pod) { p.Spec.HostPID = true }),
		// The node's IPC namespace: other pods' shared memory.
		refused("host-ipc", "hostIPC=true", func(p *corev1.Pod) { p.Spec.HostIPC = true }),
		// The node's file system: / mounted, kubelet credentials and all.
		refused("host-path", "hostPath volumes", func(p *corev1.Pod) {
			p.Spec.Volumes = []corev1.Volume{{Name: "host", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/"}}}}
			p.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "host", MountPath: "/host"}}
		}),
		// A port on the node's own address, taking it from node services.
		refused("host-port", "hostPort", func(p *corev1.Pod) {
			p.Spec.Containers[0].Ports = []corev1.ContainerPort{{ContainerPort: 8080, HostPort: 8080}}
		}),
		// A capability that is root in all but name.
		refused("cap-sys-admin", `"SYS_ADMIN"`, func(p *corev1.Pod) {
			p.Spec.Containers[0].SecurityContext = &corev1.SecurityContext{Capabilities: &corev1.Capabilities{Add: []corev1.Capability{"SYS_ADMIN"}}}
		}),
		// A node-wide kernel parameter.
		refused("unsafe-sysctl", "forbidden sysctls", func(p *corev1.Pod) {
			p.Spec.SecurityContext = &corev1.PodSecurityContext{Sysctls: []corev1.Sysctl{{Name: "kernel.msgmax", Value: "65536"}}}
		}),
		// Every system call, unfiltered.
		refused("seccomp-unconfined", "seccompProfile", func(p *corev1.Pod) {
			p.Spec.SecurityContext = &corev1.PodSecurityContext{SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeUnconfined}}
		}),
		{
			name: "restricted-namespace-stays-restricted",
			// Her namespace enforces restricted in the management cluster: the workload namespace flotilla
			// creates for it must not be weaker (baseline), or a later pod could do there what it cannot here.
			nsLabels: map[string]string{psaapi.EnforceLevelLabel: string(psaapi.LevelRestricted)},
			act: func(ctx context.Context, h *hostile) error {
				return h.createPod(ctx, h.pod("p", func(p *corev1.Pod) {
					p.Spec.SecurityContext = &corev1.PodSecurityContext{RunAsNonRoot: ptr.To(true), RunAsUser: ptr.To(int64(65532)),
						SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault}}
					p.Spec.Containers[0].SecurityContext = &corev1.SecurityContext{AllowPrivilegeEscalation: ptr.To(false),
						Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}}}
				}))
			},
			want: delegated("delegated into a namespace enforcing restricted", func(ctx context.Context, h *hostile) {
				ns, err := h.target.Client.CoreV1().Namespaces().Get(ctx, h.ns, metav1.GetOptions{})
				if err != nil {
					h.Fatalf("the workload namespace: %v", err)
				}
				if got := ns.Labels[psaapi.EnforceLevelLabel]; got != string(psaapi.LevelRestricted) {
					h.Errorf("the workload namespace %s enforces %q, want restricted (labels %v)", h.ns, got, ns.Labels)
				}
			}),
		},
	}
}

// daemonSet tolerates every taint, as every CNI, log or monitoring agent does, so the management cluster
// runs a pod of it on every virtual node.
func (h *hostile) daemonSet(name string, mutate ...func(*corev1.PodSpec)) *appsv1.DaemonSet {
	labels := map[string]string{hostileCaseLabel: h.c.name, "app": name}
	ds := &appsv1.DaemonSet{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: h.ns},
		Spec: appsv1.DaemonSetSpec{
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					Tolerations: []corev1.Toleration{tolerateEverything},
					Containers:  []corev1.Container{hostileContainer()},
				},
			},
		},
	}
	for _, m := range mutate {
		m(&ds.Spec.Template.Spec)
	}
	return ds
}

// nodeAgent is what a node agent asks for: the node's network and root.
func nodeAgent(s *corev1.PodSpec) {
	s.HostNetwork = true
	s.Containers[0].SecurityContext = &corev1.SecurityContext{Privileged: ptr.To(true)}
}

// optInCases: only enabled namespaces take part; pods of others that end up on a virtual node anyway
// are never delegated.
func optInCases() []hostileCase {
	notEnabled := proxyReason(tenancy.ReasonNamespaceNotEnabled, "")
	everywhereNotEnabled := notEnabled
	everywhereNotEnabled.pods = everyNode
	return []hostileCase{
		{
			name: "daemonset-everywhere-enabled",
			// A node agent's toleration in an enabled namespace: it lands on every virtual node, and so in every
			// workload cluster, but only as her own pod in her own namespace there (never kube-system).
			act: func(ctx context.Context, h *hostile) error {
				_, err := h.alice.AppsV1().DaemonSets(h.ns).Create(ctx, h.daemonSet("agent"), metav1.CreateOptions{})
				return err
			},
			want: hostileWant{outcome: "delegated once per cluster, into her namespace", delegated: true, pods: everyNode,
				check: func(ctx context.Context, h *hostile) {
					clusters := map[string]bool{}
					for _, p := range h.obs.casePods(h.ns, h.c.name) {
						clusters[p.Spec.NodeName] = true
					}
					if len(clusters) != h.virtualNodes {
						h.Errorf("proxies on %d nodes, want %d", len(clusters), h.virtualNodes)
					}
				}},
		},
		{
			name: "daemonset-everywhere-not-enabled", disabled: true,
			// The same agent, privileged and on the host network, in a namespace nobody enabled.
			act: func(ctx context.Context, h *hostile) error {
				_, err := h.alice.AppsV1().DaemonSets(h.ns).Create(ctx, h.daemonSet("agent", nodeAgent), metav1.CreateOptions{})
				return err
			},
			want: everywhereNotEnabled,
		},
		{
			name: "daemonset-in-kube-system",
			// The first finding: a node agent in kube-system. alice may not create one there at all.
			act: func(ctx context.Context, h *hostile) error {
				ds := h.daemonSet("agent", nodeAgent)
				ds.Namespace = metav1.NamespaceSystem
				_, err := h.alice.AppsV1().DaemonSets(metav1.NamespaceSystem).Create(ctx, ds, metav1.CreateOptions{})
				return err
			},
			want: refusedByManagement(forbidden, `cannot create resource "daemonsets"`),
		},
		{
			name: "admin-daemonset-in-kube-system", namespace: metav1.NamespaceSystem,
			// The management admin's own node agent (kube-system is never enabled): it must not reach the
			// kube-system of any workload cluster, whose admins never agreed to run it.
			act: func(ctx context.Context, h *hostile) error {
				mc := shared.Management.Client
				ds := h.daemonSet("hostile-agent", nodeAgent)
				if _, err := mc.AppsV1().DaemonSets(h.ns).Create(ctx, ds, metav1.CreateOptions{}); err != nil {
					return err
				}
				h.cleanup(func() {
					_ = mc.AppsV1().DaemonSets(h.ns).Delete(context.Background(), ds.Name, metav1.DeleteOptions{})
					_ = mc.CoreV1().Pods(h.ns).DeleteCollection(context.Background(), metav1.DeleteOptions{GracePeriodSeconds: ptr.To(int64(0))},
						metav1.ListOptions{LabelSelector: hostileCaseLabel + "=" + h.c.name})
				})
				return nil
			},
			want: hostileWant{outcome: everywhereNotEnabled.outcome + ", nothing in workload kube-system", reason: tenancy.ReasonNamespaceNotEnabled, pods: everyNode,
				check: func(ctx context.Context, h *hostile) {
					for _, c := range shared.Workloads {
						pods, err := c.Client.CoreV1().Pods(metav1.NamespaceSystem).List(ctx, metav1.ListOptions{LabelSelector: "app=hostile-agent"})
						if err != nil || len(pods.Items) > 0 {
							h.Errorf("%s: kube-system pods of the agent: %v, %v", c.Name, podNames(pods), err)
						}
					}
				}},
		},
		{
			name: "preset-node-name-not-enabled", disabled: true,
			// A pod that skips the scheduler, and so every taint, by naming a virtual node itself. The reason
			// is written once: no write storm on a proxy that will never run.
			act: func(ctx context.Context, h *hostile) error {
				return h.createPod(ctx, h.pod("p", h.presetNode, func(p *corev1.Pod) { p.Spec.Tolerations = nil }))
			},
			want: hostileWant{outcome: notEnabled.outcome + ", written once", reason: notEnabled.reason, check: func(ctx context.Context, h *hostile) {
				// The contract asks for both: the status and one Warning Event. Once the status shows it,
				// nothing writes the proxy again.
				var before *corev1.Pod
				h.sinceBinding(ctx, h.obs.pod(h.ns, "p"), "the reason in the proxy's status", func(context.Context) (bool, string) {
					before = h.obs.pod(h.ns, "p")
					return before.Status.Reason == tenancy.ReasonNamespaceNotEnabled, fmt.Sprintf("status reason %q", before.Status.Reason)
				})
				time.Sleep(5 * time.Second)
				after := h.obs.pod(h.ns, "p")
				if after.ResourceVersion != before.ResourceVersion {
					h.Errorf("the proxy was written again after its reason: status then %+v, now %+v", before.Status, after.Status)
				}
				count := int32(0)
				for _, e := range h.obs.eventsOn(h.ns, "Pod", "p", "") {
					if e.Reason == tenancy.ReasonNamespaceNotEnabled {
						count += max(e.Count, 1)
						if e.Type != corev1.EventTypeWarning {
							h.Errorf("the %s Event is of type %s, want Warning", e.Reason, e.Type)
						}
					}
				}
				if count != 1 {
					h.Errorf("%d %s Events on the proxy, want one", count, tenancy.ReasonNamespaceNotEnabled)
				}
			}},
		},
		{
			name: "preset-node-name-not-enabled-with-objects", disabled: true,
			// The same pod past the scheduler, with what follows a pod of an enabled namespace: a ConfigMap and
			// a Secret it references, and a LoadBalancer Service selecting it. Nothing of it may reach any
			// workload cluster, not even her namespace.
			act: func(ctx context.Context, h *hostile) error {
				if _, err := h.alice.CoreV1().ConfigMaps(h.ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "web-config"},
					Data: map[string]string{"MODE": "hers"}}, metav1.CreateOptions{}); err != nil {
					h.Fatalf("creating her ConfigMap: %v", err)
				}
				if _, err := h.alice.CoreV1().Secrets(h.ns).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "web-creds"},
					Data: map[string][]byte{"password": []byte("hers")}}, metav1.CreateOptions{}); err != nil {
					h.Fatalf("creating her Secret: %v", err)
				}
				if _, err := h.alice.CoreV1().Services(h.ns).Create(ctx, h.service("web", nil), metav1.CreateOptions{}); err != nil {
					h.Fatalf("creating her Service: %v", err)
				}
				return h.createPod(ctx, h.pod("p", h.presetNode, withVolume(corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "web-creds"}}),
					func(p *corev1.Pod) {
						p.Spec.Tolerations = nil
						p.Labels["app"] = "web"
						p.Spec.Containers[0].EnvFrom = []corev1.EnvFromSource{{ConfigMapRef: &corev1.ConfigMapEnvSource{
							LocalObjectReference: corev1.LocalObjectReference{Name: "web-config"}}}}
					}))
			},
			want: hostileWant{outcome: notEnabled.outcome + ", nothing in any workload cluster", reason: notEnabled.reason,
				check: func(ctx context.Context, h *hostile) {
					// As long as copies take to appear for an enabled namespace, and then some; the sweep then
					// looks at every workload cluster again.
					_, appeared, why := poll(ctx, hostileReasonLimit, func(ctx context.Context) (bool, string) {
						for _, c := range shared.Workloads {
							ns, err := c.Client.CoreV1().Namespaces().Get(ctx, h.ns, metav1.GetOptions{})
							if err == nil {
								return true, fmt.Sprintf("namespace %s in %s (labels %v)", h.ns, c.Name, ns.Labels)
							}
						}
						return false, "no namespace " + h.ns + " in any workload cluster"
					})
					if appeared {
						h.Errorf("for a namespace that is not enabled: %s", why)
					}
					h.observe(0, "%s", why)
				}},
		},
		{
			name: "tolerate-everything-not-enabled", disabled: true,
			// The management scheduler's route: a privileged hostNetwork pod tolerating every taint.
			act: func(ctx context.Context, h *hostile) error {
				return h.createPod(ctx, h.pod("p", func(p *corev1.Pod) {
					p.Spec.Tolerations = []corev1.Toleration{tolerateEverything}
					nodeAgent(&p.Spec)
				}))
			},
			want: notEnabled,
		},
		{
			name: "enabled-label-removed",
			// The opt-out while a pod runs: her admin removes the label. What runs keeps running (an opt-out
			// is never an outage); a pod that comes after is not delegated.
			act: func(ctx context.Context, h *hostile) error {
				if err := h.createPod(ctx, h.pod("before")); err != nil {
					return err
				}
				h.expectDelegate(ctx, h.boundPod(ctx, "before"))
				patch := fmt.Sprintf(`{"metadata":{"labels":{%q:null}}}`, tenancy.LabelEnabled)
				if _, err := shared.Management.Client.CoreV1().Namespaces().Patch(ctx, h.ns, types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
					h.Fatalf("removing the label: %v", err)
				}
				time.Sleep(time.Second) // flotilla's cache of namespaces catches up
				return h.createPod(ctx, h.pod("after"))
			},
			want: hostileWant{outcome: "the running delegate stays; the new pod NamespaceNotEnabled", check: func(ctx context.Context, h *hostile) {
				h.expectReason(ctx, h.boundPod(ctx, "after"), tenancy.ReasonNamespaceNotEnabled, "")
				was := h.delegate("before")
				time.Sleep(3 * time.Second)
				d, err := h.target.Client.CoreV1().Pods(h.ns).Get(ctx, "before", metav1.GetOptions{})
				if err != nil || d.UID != was.UID || d.DeletionTimestamp != nil {
					h.Errorf("the delegate of the pod that ran before the opt-out: %v (deleted %v)", err, d.DeletionTimestamp)
				}
				if p := h.obs.pod(h.ns, "before"); p == nil || p.Status.Phase == corev1.PodFailed {
					h.Errorf("the proxy that ran before the opt-out: %+v", p)
				}
			}},
		},
		{
			name: "node-name-of-a-workload-node",
			// A pod naming a workload cluster's own node: no virtual node has that name, so no flotilla
			// takes it up, and nothing reaches that node.
			act: func(ctx context.Context, h *hostile) error {
				return h.createPod(ctx, h.pod("p", func(p *corev1.Pod) {
					p.Spec.NodeSelector, p.Spec.NodeName = nil, lab.NodeName(h.target.Name, 0)
				}))
			},
			want: hostileWant{outcome: "never delegated", check: func(ctx context.Context, h *hostile) {
				time.Sleep(hostileReasonLimit)
				if p := h.obs.pod(h.ns, "p"); p != nil {
					h.observe(0, "phase %q, node %s", p.Status.Phase, p.Spec.NodeName)
				}
			}},
		},
	}
}

// rbacCases: what `edit` does not allow, the management apiserver refuses; flotilla must not be a way
// around it.
func rbacCases() []hostileCase {
	podIn := func(name, ns string) hostileCase {
		return hostileCase{
			name: name,
			act: func(ctx context.Context, h *hostile) error {
				p := h.pod("p", func(p *corev1.Pod) { p.Namespace = ns })
				_, err := h.alice.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{})
				return err
			},
			want: refusedByManagement(forbidden, `cannot create resource "pods"`),
		}
	}
	return []hostileCase{
		// A pod in a management namespace named like a workload system namespace, where flotilla would
		// look for the workload namespace of the same name.
		podIn("pods-in-kube-system", metav1.NamespaceSystem),
		podIn("pods-in-kube-public", metav1.NamespacePublic),
		podIn("pods-in-kube-node-lease", corev1.NamespaceNodeLease),
		{
			name: "enable-own-namespace", disabled: true,
			// Opting her namespace in herself.
			act: func(ctx context.Context, h *hostile) error {
				patch := fmt.Sprintf(`{"metadata":{"labels":{%q:"true"}}}`, tenancy.LabelEnabled)
				_, err := h.alice.CoreV1().Namespaces().Patch(ctx, h.ns, types.MergePatchType, []byte(patch), metav1.PatchOptions{})
				return err
			},
			want: refusedByManagement(forbidden, `cannot patch resource "namespaces"`),
		},
		{
			name: "rolebinding-to-cluster-admin",
			// Granting herself cluster-admin in her namespace, so her pods' ServiceAccounts carry it.
			act: func(ctx context.Context, h *hostile) error {
				_, err := h.alice.RbacV1().RoleBindings(h.ns).Create(ctx, &rbacv1.RoleBinding{
					ObjectMeta: metav1.ObjectMeta{Name: "mine", Namespace: h.ns},
					Subjects:   []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: hostileUser}},
					RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "cluster-admin"},
				}, metav1.CreateOptions{})
				return err
			},
			want: refusedByManagement(forbidden, `cannot create resource "rolebindings"`),
		},
		{
			name: "impersonate-flotilla-user",
			// Acting as a flotilla's node identity (system:node:<node> in system:nodes, as `flotilla join`
			// makes it), which may read the Secrets its pods reference and write load-balancer statuses.
			act: func(ctx context.Context, h *hostile) error {
				return h.asImpersonated(ctx, rest.ImpersonationConfig{UserName: join.NodeUser(h.target.Name), Groups: []string{"system:nodes"}})
			},
			want: refusedByManagement(forbidden, `cannot impersonate resource "users"`),
		},
		{
			name: "impersonate-flotilla-serviceaccount",
			// edit may impersonate the ServiceAccounts of her own namespace; a flotilla's failover identity,
			// which may taint virtual nodes, lives in flotilla-system.
			act: func(ctx context.Context, h *hostile) error {
				return h.asImpersonated(ctx, rest.ImpersonationConfig{UserName: "system:serviceaccount:" + join.Namespace + ":" + join.FailoverAccount(h.target.Name)})
			},
			// 1.37's constrained impersonation names the verb it checked first (impersonate-on:serviceaccount:list
			// on pods) where 1.35 said `cannot impersonate resource "serviceaccounts"`: the same refusal.
			want: refusedByManagement(forbidden, `User "alice" cannot impersonate`),
		},
		{
			name: "write-services-status",
			// Writing the load-balancer address herself (what external-dns publishes).
			act: func(ctx context.Context, h *hostile) error {
				svc, err := h.alice.CoreV1().Services(h.ns).Create(ctx, h.service("web", nil), metav1.CreateOptions{})
				if err != nil {
					h.Fatalf("creating her Service: %v", err)
				}
				svc.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: forgedIP}}
				_, err = h.alice.CoreV1().Services(h.ns).UpdateStatus(ctx, svc, metav1.UpdateOptions{})
				return err
			},
			want: refusedByManagement(forbidden, `cannot update resource "services/status"`),
		},
		{
			name: "write-ingresses-status",
			// The same for an Ingress.
			act: func(ctx context.Context, h *hostile) error {
				ing, err := h.alice.NetworkingV1().Ingresses(h.ns).Create(ctx, h.ingress("web", nil, ""), metav1.CreateOptions{})
				if err != nil {
					h.Fatalf("creating her Ingress: %v", err)
				}
				ing.Status.LoadBalancer.Ingress = []networkingv1.IngressLoadBalancerIngress{{IP: forgedIP}}
				_, err = h.alice.NetworkingV1().Ingresses(h.ns).UpdateStatus(ctx, ing, metav1.UpdateOptions{})
				return err
			},
			want: refusedByManagement(forbidden, `cannot update resource "ingresses/status"`),
		},
		{
			name: "annotate-virtual-node",
			// Forging the place flotilla publishes load-balancer addresses: her virtual node's annotation.
			act: func(ctx context.Context, h *hostile) error {
				patch := fmt.Sprintf(`{"metadata":{"annotations":{"flotilla.io/load-balancers":%q}}}`,
					fmt.Sprintf(`{"Service/%s/web":[{"ip":%q}]}`, h.ns, forgedIP))
				_, err := h.alice.CoreV1().Nodes().Patch(ctx, h.target.Name, types.MergePatchType, []byte(patch), metav1.PatchOptions{})
				return err
			},
			want: refusedByManagement(forbidden, `cannot patch resource "nodes"`),
		},
		{
			name: "write-pods-status", disabled: true,
			// Forging a proxy's status (Running, a pod IP) to fool Services and controllers.
			act: func(ctx context.Context, h *hostile) error {
				p, err := h.alice.CoreV1().Pods(h.ns).Create(ctx, h.pod("p"), metav1.CreateOptions{})
				if err != nil {
					h.Fatalf("creating her pod: %v", err)
				}
				p.Status.Phase, p.Status.PodIP = corev1.PodRunning, "10.96.0.1"
				_, err = h.alice.CoreV1().Pods(h.ns).UpdateStatus(ctx, p, metav1.UpdateOptions{})
				return err
			},
			want: refusedByManagement(forbidden, `cannot update resource "pods/status"`),
		},
	}
}

// asImpersonated lists pods in her namespace with an impersonating copy of her client.
func (h *hostile) asImpersonated(ctx context.Context, as rest.ImpersonationConfig) error {
	cfg := rest.CopyConfig(h.aliceConfig)
	cfg.Impersonate = as
	c, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		h.Fatalf("%v", err)
	}
	_, err = c.CoreV1().Pods(h.ns).List(ctx, metav1.ListOptions{})
	return err
}

// admissionCases: specs the management apiserver's validation or admission refuses.
func admissionCases() []hostileCase {
	return []hostileCase{
		{
			name: "unknown-priority-class",
			// A PriorityClass that exists nowhere (in the management cluster, at least).
			act: func(ctx context.Context, h *hostile) error {
				return h.createPod(ctx, h.pod("p", func(p *corev1.Pod) { p.Spec.PriorityClassName = "hostile-evil" }))
			},
			want: refusedByManagement(forbidden, "no PriorityClass with name hostile-evil was found"),
		},
		{
			name: "unknown-runtime-class",
			// A RuntimeClass that exists nowhere (a workload's unsandboxed handler, say).
			act: func(ctx context.Context, h *hostile) error {
				return h.createPod(ctx, h.pod("p", func(p *corev1.Pod) { p.Spec.RuntimeClassName = ptr.To("hostile-evil") }))
			},
			want: refusedByManagement(forbidden, `RuntimeClass "hostile-evil" not found`),
		},
		{
			name: "image-with-newline",
			// An image reference that smuggles a second line into whatever logs or templates it.
			act: func(ctx context.Context, h *hostile) error {
				return h.createPod(ctx, h.pod("p", func(p *corev1.Pod) { p.Spec.Containers[0].Image = "registry.k8s.io/pause:3.10\n" }))
			},
			want: refusedByManagement(invalid, "must not have leading or trailing whitespace"),
		},
	}
}

// oddImage is valid to both apiservers: a shell's metacharacters, a non-ASCII letter, a digest.
const oddImage = "registry.example.com:5000/ñ/$(reboot);rm -rf /|x:`id`@sha256:0000000000000000000000000000000000000000000000000000000000000000"

// oddInputCases: inputs at the edges of what the API accepts. Each ends readably; none reaches beyond the
// delegate.
func oddInputCases() []hostileCase {
	longKey := strings.Repeat("p", 63) + "." + strings.Repeat("q", 63) + "." + strings.Repeat("r", 63) + "." + strings.Repeat("s", 61) + "/" + strings.Repeat("n", 63)
	longLabels := map[string]string{strings.Repeat("k", 63): strings.Repeat("v", 63), longKey: strings.Repeat("w", 63)}
	return []hostileCase{
		{
			name: "odd-image-name",
			// An image reference full of shell metacharacters: carried over verbatim, never interpreted.
			act: func(ctx context.Context, h *hostile) error {
				return h.createPod(ctx, h.pod("p", func(p *corev1.Pod) { p.Spec.Containers[0].Image = oddImage }))
			},
			want: delegated("delegated with the image verbatim", func(ctx context.Context, h *hostile) {
				if got := h.delegate("p").Spec.Containers[0].Image; got != oddImage {
					h.Errorf("the delegate's image is %q, want %q", got, oddImage)
				}
			}),
		},
		{
			name: "pod-name-253-characters",
			// The longest pod name the API allows: names derived from it (Events, hostnames) overflow.
			act: func(ctx context.Context, h *hostile) error {
				return h.createPod(ctx, h.pod(strings.Repeat("a", 253)))
			},
			want: delegated("delegated under the same name", nil),
		},
		{
			name: "label-values-63-characters",
			// The longest label keys and values: flotilla's own bookkeeping of them must not overflow.
			act: func(ctx context.Context, h *hostile) error {
				return h.createPod(ctx, h.pod("p", func(p *corev1.Pod) {
					for k, v := range longLabels {
						p.Labels[k] = v
					}
				}))
			},
			want: delegated("delegated with the labels intact", func(ctx context.Context, h *hostile) {
				d := h.delegate("p")
				for k, v := range longLabels {
					if d.Labels[k] != v {
						h.Errorf("the delegate's label %s is %q, want %q", k, d.Labels[k], v)
					}
				}
			}),
		},
		{
			name: "forged-ownership-labels",
			// Her pod carries flotilla's ownership labels, naming another management cluster, another node and
			// a made-up parent: the delegate must carry flotilla's real ones, and no other flotilla take it up.
			act: func(ctx context.Context, h *hostile) error {
				return h.createPod(ctx, h.pod("p", func(p *corev1.Pod) {
					p.Labels[provider.LabelManagement] = "other-management"
					p.Labels[provider.LabelNode] = h.otherCluster().Name
					p.Labels[provider.LabelParentUID] = "00000000-0000-0000-0000-000000000000"
				}))
			},
			want: delegated("delegated with flotilla's own ownership labels", func(ctx context.Context, h *hostile) {
				d, p := h.delegate("p"), h.obs.pod(h.ns, "p")
				want := map[string]string{provider.LabelManagement: h.managementID, provider.LabelNode: h.target.Name, provider.LabelParentUID: string(p.UID)}
				for k, v := range want {
					if d.Labels[k] != v {
						h.Errorf("the delegate's %s is %q, want %q", k, d.Labels[k], v)
					}
				}
			}),
		},
		{
			name: "scheduler-name-nobody",
			// A scheduler no workload cluster runs (placed past the management scheduler too): the delegate
			// must not wait Pending for good.
			act: func(ctx context.Context, h *hostile) error {
				return h.createPod(ctx, h.pod("p", h.presetNode, func(p *corev1.Pod) { p.Spec.SchedulerName = "nobody" }))
			},
			want: delegated("delegated to the workload's default scheduler, scheduled", func(ctx context.Context, h *hostile) {
				if s := h.delegate("p").Spec.SchedulerName; s != corev1.DefaultSchedulerName {
					h.Errorf("the delegate's schedulerName is %q", s)
				}
				h.must(ctx, 10*time.Second, "the delegate scheduled in "+h.target.Name, func(ctx context.Context) (bool, string) {
					d, err := h.target.Client.CoreV1().Pods(h.ns).Get(ctx, "p", metav1.GetOptions{})
					if err != nil {
						return false, err.Error()
					}
					return d.Spec.NodeName != "", podConditions(d)
				})
			}),
		},
		{
			name: "management-only-priority-class",
			// A PriorityClass only the management cluster has (version skew between the clusters' set-ups):
			// the delegate runs at the workload's default priority rather than being refused.
			setup: func(ctx context.Context, h *hostile) {
				mc := shared.Management.Client
				name := "hostile-top-" + h.ns
				if _, err := mc.SchedulingV1().PriorityClasses().Create(ctx, &schedulingv1.PriorityClass{
					ObjectMeta: metav1.ObjectMeta{Name: name}, Value: 1000000,
				}, metav1.CreateOptions{}); err != nil {
					h.Fatalf("creating the PriorityClass: %v", err)
				}
				h.cleanup(func() {
					_ = mc.SchedulingV1().PriorityClasses().Delete(context.Background(), name, metav1.DeleteOptions{})
				})
			},
			act: func(ctx context.Context, h *hostile) error {
				return h.createPod(ctx, h.pod("p", func(p *corev1.Pod) { p.Spec.PriorityClassName = "hostile-top-" + h.ns }))
			},
			want: delegated("delegated at the workload's default priority", func(ctx context.Context, h *hostile) {
				d := h.delegate("p")
				if d.Spec.PriorityClassName != "" || ptr.Deref(d.Spec.Priority, 0) != 0 {
					h.Errorf("the delegate's priority: class %q, value %v", d.Spec.PriorityClassName, ptr.Deref(d.Spec.Priority, 0))
				}
			}),
		},
		{
			name: "huge-configmap",
			// A ConfigMap near the apiserver's 1 MiB limit: flotilla's copy (labels, annotations,
			// managedFields added) must still fit, or say why.
			act: func(ctx context.Context, h *hostile) error {
				if _, err := h.alice.CoreV1().ConfigMaps(h.ns).Create(ctx, &corev1.ConfigMap{
					ObjectMeta: metav1.ObjectMeta{Name: "huge", Namespace: h.ns}, Data: map[string]string{"blob": strings.Repeat("x", hugeConfigMap)},
				}, metav1.CreateOptions{}); err != nil {
					h.Fatalf("creating her ConfigMap: %v", err)
				}
				h.allow(h.target, "ConfigMap", "huge")
				return h.createPod(ctx, h.pod("p", withVolume(corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
					LocalObjectReference: corev1.LocalObjectReference{Name: "huge"}}})))
			},
			want: delegated("delegated, the ConfigMap copied whole", func(ctx context.Context, h *hostile) {
				cm, err := h.target.Client.CoreV1().ConfigMaps(h.ns).Get(ctx, "huge", metav1.GetOptions{})
				if err != nil || len(cm.Data["blob"]) != hugeConfigMap {
					h.Errorf("the copy of the huge ConfigMap: %v (%d bytes)", err, len(cm.Data["blob"]))
				}
			}),
		},
	}
}

const hugeConfigMap = 1_040_000

// otherCluster is a workload cluster that is not the case's target.
func (h *hostile) otherCluster() *lab.Cluster {
	for _, c := range shared.Workloads {
		if c != h.target {
			return c
		}
	}
	return h.target
}

// withVolume mounts a volume named "v" of the given source into the pod's container.
func withVolume(src corev1.VolumeSource) func(*corev1.Pod) {
	return func(p *corev1.Pod) {
		p.Spec.Volumes = append(p.Spec.Volumes, corev1.Volume{Name: "v", VolumeSource: src})
		p.Spec.Containers[0].VolumeMounts = append(p.Spec.Containers[0].VolumeMounts, corev1.VolumeMount{Name: "v", MountPath: "/v"})
	}
}

// The workload admin's own objects that alice's references try to resolve to.
const (
	workloadSecret    = "workload-only-secret"
	workloadConfigMap = "workload-only-config"
	workloadRegistry  = "workload-registry"
)

// withWorkloadObjects opens the case's workload namespace and puts the workload admin's Secret, ConfigMap
// and registry credentials in it: objects of names missing in her management namespace.
func withWorkloadObjects(ctx context.Context, h *hostile) {
	h.openWorkloadNamespace(ctx, nil)
	h.foreignSecret(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: workloadSecret}, Data: map[string][]byte{"password": []byte("the workload's")}})
	h.foreignConfigMap(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: workloadConfigMap}, Data: map[string]string{"MODE": "the workload's"}})
	h.foreignSecret(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: workloadRegistry}, Type: corev1.SecretTypeDockerConfigJson,
		Data: map[string][]byte{corev1.DockerConfigJsonKey: []byte(`{"auths":{"registry.example.com":{"auth":"d29ya2xvYWQ6c2VjcmV0"}}}`)}})
}

// shadowingCases: references that would resolve to a workload object of the same name that flotilla did
// not copy (nothing resolves to a foreign object).
func shadowingCases() []hostileCase {
	dropped := func(name, what string, mutate func(*corev1.Pod), check func(h *hostile, d *corev1.Pod)) hostileCase {
		return hostileCase{
			name:  name,
			setup: withWorkloadObjects,
			act:   func(ctx context.Context, h *hostile) error { return h.createPod(ctx, h.pod("p", mutate)) },
			want: delegated("delegated without the "+what, func(ctx context.Context, h *hostile) {
				d := h.delegate("p")
				for _, n := range []string{workloadSecret, workloadConfigMap, workloadRegistry} {
					h.noReference(d, n)
				}
				if check != nil {
					check(h, d)
				}
			}),
		}
	}
	return []hostileCase{
		// An optional Secret key she does not have: the delegate would read the workload admin's.
		dropped("optional-secret-key-ref", "optional env reference", func(p *corev1.Pod) {
			p.Spec.Containers[0].Env = []corev1.EnvVar{{Name: "PASSWORD", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
				LocalObjectReference: corev1.LocalObjectReference{Name: workloadSecret}, Key: "password", Optional: ptr.To(true)}}}}
		}, nil),
		// The same as a volume: it becomes an emptyDir, as the kubelet mounts a missing optional Secret.
		dropped("optional-secret-volume", "optional Secret volume", withVolume(corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{
			SecretName: workloadSecret, Optional: ptr.To(true)}}), func(h *hostile, d *corev1.Pod) {
			i := slices.IndexFunc(d.Spec.Volumes, func(v corev1.Volume) bool { return v.Name == "v" })
			if i < 0 || d.Spec.Volumes[i].EmptyDir == nil {
				h.Errorf("the delegate's volume v is not an emptyDir: %+v", d.Spec.Volumes)
			}
		}),
		// An optional ConfigMap as environment.
		dropped("optional-configmap-env-from", "optional envFrom", func(p *corev1.Pod) {
			p.Spec.Containers[0].EnvFrom = []corev1.EnvFromSource{{ConfigMapRef: &corev1.ConfigMapEnvSource{
				LocalObjectReference: corev1.LocalObjectReference{Name: workloadConfigMap}, Optional: ptr.To(true)}}}
		}, nil),
		// The workload's registry credentials, to pull its private images.
		dropped("image-pull-secret", "image pull secret", func(p *corev1.Pod) {
			p.Spec.ImagePullSecrets = []corev1.LocalObjectReference{{Name: workloadRegistry}}
		}, nil),
		// Optional projections of both.
		dropped("optional-projected-sources", "optional projections", withVolume(corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{Sources: []corev1.VolumeProjection{
			{ConfigMap: &corev1.ConfigMapProjection{LocalObjectReference: corev1.LocalObjectReference{Name: workloadConfigMap}, Optional: ptr.To(true)}},
			{Secret: &corev1.SecretProjection{LocalObjectReference: corev1.LocalObjectReference{Name: workloadSecret}, Optional: ptr.To(true)}},
			{DownwardAPI: &corev1.DownwardAPIProjection{Items: []corev1.DownwardAPIVolumeFile{{Path: "name", FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}}}},
		}}}), nil),
		{
			name:  "mandatory-secret-shadowing",
			setup: withWorkloadObjects,
			// A mandatory Secret she does not have: not delegated (it would read the workload's), the kubelet's
			// reason instead.
			act: func(ctx context.Context, h *hostile) error {
				return h.createPod(ctx, h.pod("p", func(p *corev1.Pod) {
					p.Spec.Containers[0].Env = []corev1.EnvVar{{Name: "PASSWORD", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
						LocalObjectReference: corev1.LocalObjectReference{Name: workloadSecret}, Key: "password"}}}}
				}))
			},
			want: hostileWant{outcome: provider.ReasonCreateContainerConfigError + " (" + reasonMandatorySecretNotFound + ")",
				reason: provider.ReasonCreateContainerConfigError, check: func(ctx context.Context, h *hostile) {
					h.must(ctx, hostileReasonLimit, "a "+reasonMandatorySecretNotFound+" Event naming "+workloadSecret, func(context.Context) (bool, string) {
						return h.obs.objectEvent(h.ns, "Pod", "p", reasonMandatorySecretNotFound, workloadSecret)
					})
				}},
		},
		{
			name: "powerful-service-account",
			// Running as a workload ServiceAccount the workload admin made and bound to cluster-admin, by
			// naming it (she makes one of that name in the management cluster, so admission lets the pod in).
			setup: func(ctx context.Context, h *hostile) {
				h.openWorkloadNamespace(ctx, nil)
				c := h.target
				sa, err := c.Client.CoreV1().ServiceAccounts(h.ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "deployer", Namespace: h.ns}}, metav1.CreateOptions{})
				if err != nil {
					h.Fatalf("creating the workload's ServiceAccount: %v", err)
				}
				h.foreign(c, "ServiceAccount", sa, false, func(ctx context.Context) (runtime.Object, error) {
					return c.Client.CoreV1().ServiceAccounts(h.ns).Get(ctx, "deployer", metav1.GetOptions{})
				})
				crb, err := c.Client.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
					ObjectMeta: metav1.ObjectMeta{Name: "deployer-" + h.ns},
					Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: h.ns, Name: "deployer"}},
					RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "cluster-admin"},
				}, metav1.CreateOptions{})
				if err != nil {
					h.Fatalf("binding the workload's ServiceAccount: %v", err)
				}
				h.foreign(c, "ClusterRoleBinding", crb, false, func(ctx context.Context) (runtime.Object, error) {
					return c.Client.RbacV1().ClusterRoleBindings().Get(ctx, crb.Name, metav1.GetOptions{})
				})
				h.cleanup(func() {
					_ = c.Client.RbacV1().ClusterRoleBindings().Delete(context.Background(), crb.Name, metav1.DeleteOptions{})
				})
			},
			act: func(ctx context.Context, h *hostile) error {
				if _, err := h.alice.CoreV1().ServiceAccounts(h.ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "deployer"}}, metav1.CreateOptions{}); err != nil {
					h.Fatalf("creating her ServiceAccount: %v", err)
				}
				return h.createPod(ctx, h.pod("p", func(p *corev1.Pod) { p.Spec.ServiceAccountName = "deployer" }))
			},
			want: proxyReason(tenancy.ReasonNameConflict, "deployer"),
		},
		{
			name: "configmap-name-taken",
			// Her ConfigMap's name is taken in the workload namespace: a copy over it would rewrite the
			// workload's configuration; a delegate without it would read the workload's.
			setup: func(ctx context.Context, h *hostile) {
				h.openWorkloadNamespace(ctx, nil)
				h.foreignConfigMap(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "app-config"}, Data: map[string]string{"owner": "workload"}})
			},
			act: func(ctx context.Context, h *hostile) error {
				if _, err := h.alice.CoreV1().ConfigMaps(h.ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "app-config"},
					Data: map[string]string{"owner": "alice"}}, metav1.CreateOptions{}); err != nil {
					h.Fatalf("creating her ConfigMap: %v", err)
				}
				return h.createPod(ctx, h.pod("p", func(p *corev1.Pod) {
					p.Spec.Containers[0].EnvFrom = []corev1.EnvFromSource{{ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "app-config"}}}}
				}))
			},
			want: proxyReason(provider.ReasonNameConflict, "app-config"),
		},
		{
			name: "secret-name-taken",
			// The same for a Secret.
			setup: func(ctx context.Context, h *hostile) {
				h.openWorkloadNamespace(ctx, nil)
				h.foreignSecret(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "app-secret"}, Data: map[string][]byte{"owner": []byte("workload")}})
			},
			act: func(ctx context.Context, h *hostile) error {
				if _, err := h.alice.CoreV1().Secrets(h.ns).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "app-secret"},
					Data: map[string][]byte{"owner": []byte("alice")}}, metav1.CreateOptions{}); err != nil {
					h.Fatalf("creating her Secret: %v", err)
				}
				return h.createPod(ctx, h.pod("p", withVolume(corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "app-secret"}})))
			},
			want: proxyReason(provider.ReasonNameConflict, "app-secret"),
		},
		{
			name: "pod-name-taken",
			// Her pod's name is taken in the workload namespace by a pod of its own: flotilla must neither
			// adopt it nor replace it.
			setup: func(ctx context.Context, h *hostile) {
				h.openWorkloadNamespace(ctx, nil)
				c := h.target
				theirs := h.pod("web")
				theirs.Labels = map[string]string{"owner": "workload"}
				theirs.Spec.NodeSelector, theirs.Spec.Tolerations = nil, nil
				if _, err := c.Client.CoreV1().Pods(h.ns).Create(ctx, theirs, metav1.CreateOptions{}); err != nil {
					h.Fatalf("creating the workload's pod: %v", err)
				}
				var running *corev1.Pod
				h.must(ctx, 30*time.Second, "the workload's pod Running", func(ctx context.Context) (bool, string) {
					var err error
					running, err = c.Client.CoreV1().Pods(h.ns).Get(ctx, "web", metav1.GetOptions{})
					if err != nil {
						return false, err.Error()
					}
					return running.Status.Phase == corev1.PodRunning, string(running.Status.Phase)
				})
				h.foreign(c, "Pod", running, true, func(ctx context.Context) (runtime.Object, error) {
					return c.Client.CoreV1().Pods(h.ns).Get(ctx, "web", metav1.GetOptions{})
				})
			},
			act:  func(ctx context.Context, h *hostile) error { return h.createPod(ctx, h.pod("web")) },
			want: proxyReason(provider.ReasonNameConflict, "web"),
		},
		{
			name: "ingress-tls-secret-shadowing",
			// Her Ingress terminates TLS with a Secret she does not have, named like the workload's wildcard
			// certificate: the copy must not serve her host with the workload's certificate.
			setup: func(ctx context.Context, h *hostile) {
				h.openWorkloadNamespace(ctx, nil)
				h.foreignSecret(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "wildcard-tls"}, Type: corev1.SecretTypeTLS,
					Data: map[string][]byte{corev1.TLSCertKey: []byte("the workload's certificate"), corev1.TLSPrivateKeyKey: []byte("the workload's key")}})
			},
			act: func(ctx context.Context, h *hostile) error {
				if err := h.serve(ctx, h.service("web", nil)); err != nil {
					return err
				}
				_, err := h.alice.NetworkingV1().Ingresses(h.ns).Create(ctx, h.ingress("web", nil, "wildcard-tls"), metav1.CreateOptions{})
				return err
			},
			want: delegated("the Ingress copy never names the workload's Secret", func(ctx context.Context, h *hostile) {
				h.allow(h.target, "Service", "web")
				h.allow(h.target, "Ingress", "web")
				var copied *networkingv1.Ingress
				_, ok, why := poll(ctx, hostileFollowLimit, func(ctx context.Context) (bool, string) {
					var err error
					copied, err = h.target.Client.NetworkingV1().Ingresses(h.ns).Get(ctx, "web", metav1.GetOptions{})
					if err == nil {
						return true, "copied"
					}
					copied = nil
					for _, e := range h.obs.eventsOn(h.ns, "Ingress", "web", "") {
						if e.Type == corev1.EventTypeWarning {
							return true, e.Reason + ": " + e.Message
						}
					}
					return false, err.Error()
				})
				h.observe(0, "%s", why)
				if !ok {
					h.Errorf("neither an Ingress copy nor a Warning Event on the Ingress within %s: %s", hostileFollowLimit, why)
				}
				if copied != nil {
					for _, tls := range copied.Spec.TLS {
						if tls.SecretName == "wildcard-tls" {
							h.Errorf("the Ingress copy in %s terminates TLS with the workload's own Secret wildcard-tls, which flotilla did not copy: %+v", h.target.Name, copied.Spec.TLS)
						}
					}
				}
			}),
		},
	}
}

// unsupportedReferenceCases: references to workload objects that do not follow are refused.
func unsupportedReferenceCases() []hostileCase {
	unsupported := proxyReason(reasonUnsupportedReference, "")
	withToken := func(optional bool) func(ctx context.Context, h *hostile) error {
		return func(ctx context.Context, h *hostile) error {
			// A Secret the management cluster's token controller fills with a management token.
			if _, err := h.alice.CoreV1().Secrets(h.ns).Create(ctx, &corev1.Secret{
				ObjectMeta: metav1.ObjectMeta{Name: "mgmt-token", Annotations: map[string]string{corev1.ServiceAccountNameKey: "default"}},
				Type:       corev1.SecretTypeServiceAccountToken,
			}, metav1.CreateOptions{}); err != nil {
				h.Fatalf("creating her token Secret: %v", err)
			}
			return h.createPod(ctx, h.pod("p", withVolume(corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "mgmt-token", Optional: ptr.To(optional)}})))
		}
	}
	return []hostileCase{
		{
			name: "pvc-volume",
			// A claim named like the workload admin's: it would mount the workload's volume. (Placed past the
			// management scheduler, which waits for claims to bind.)
			setup: func(ctx context.Context, h *hostile) {
				h.openWorkloadNamespace(ctx, nil)
				c := h.target
				pvc, err := c.Client.CoreV1().PersistentVolumeClaims(h.ns).Create(ctx, hostileClaim("data"), metav1.CreateOptions{})
				if err != nil {
					h.Fatalf("creating the workload's claim: %v", err)
				}
				h.foreign(c, "PersistentVolumeClaim", pvc, true, func(ctx context.Context) (runtime.Object, error) {
					return c.Client.CoreV1().PersistentVolumeClaims(h.ns).Get(ctx, "data", metav1.GetOptions{})
				})
			},
			act: func(ctx context.Context, h *hostile) error {
				if _, err := h.alice.CoreV1().PersistentVolumeClaims(h.ns).Create(ctx, hostileClaim("data"), metav1.CreateOptions{}); err != nil {
					h.Fatalf("creating her claim: %v", err)
				}
				return h.createPod(ctx, h.pod("p", h.presetNode, withVolume(corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "data"}})))
			},
			want: unsupported,
		},
		{
			name: "ephemeral-volume",
			// A generic ephemeral volume: a claim the workload cluster would create and provision.
			act: func(ctx context.Context, h *hostile) error {
				return h.createPod(ctx, h.pod("p", h.presetNode, withVolume(corev1.VolumeSource{Ephemeral: &corev1.EphemeralVolumeSource{
					VolumeClaimTemplate: &corev1.PersistentVolumeClaimTemplate{Spec: hostileClaim("").Spec}}})))
			},
			want: unsupported,
		},
		{
			name:  "csi-node-publish-secret",
			setup: withWorkloadObjects,
			// An inline CSI volume whose driver is handed the workload's Secret.
			act: func(ctx context.Context, h *hostile) error {
				return h.createPod(ctx, h.pod("p", withVolume(corev1.VolumeSource{CSI: &corev1.CSIVolumeSource{
					Driver: "secrets-store.csi.k8s.io", NodePublishSecretRef: &corev1.LocalObjectReference{Name: workloadSecret}}})))
			},
			want: unsupported,
		},
		{
			name:  "flex-volume-secret",
			setup: withWorkloadObjects,
			// Another volume plugin's secret reference.
			act: func(ctx context.Context, h *hostile) error {
				return h.createPod(ctx, h.pod("p", withVolume(corev1.VolumeSource{FlexVolume: &corev1.FlexVolumeSource{
					Driver: "example.com/evil", SecretRef: &corev1.LocalObjectReference{Name: workloadSecret}}})))
			},
			want: unsupported,
		},
		{
			name: "resource-claim",
			// A device claim named like one of the workload's (a GPU someone else reserved).
			act: func(ctx context.Context, h *hostile) error {
				return h.createPod(ctx, h.pod("p", h.presetNode, func(p *corev1.Pod) {
					p.Spec.ResourceClaims = []corev1.PodResourceClaim{{Name: "gpu", ResourceClaimName: ptr.To("workload-gpu")}}
					p.Spec.Containers[0].Resources.Claims = []corev1.ResourceClaim{{Name: "gpu"}}
				}))
			},
			want: unsupported,
		},
		{
			name: "sa-token-secret-mandatory",
			// A management ServiceAccount token, mounted: copied, it would carry a management credential into
			// the workload cluster (and fight its token controller).
			act:  withToken(false),
			want: unsupported,
		},
		{
			name: "sa-token-secret-optional",
			// The same, optional: dropped, never copied.
			act: withToken(true),
			want: delegated("delegated without the token Secret", func(ctx context.Context, h *hostile) {
				h.noReference(h.delegate("p"), "mgmt-token")
			}),
		},
	}
}

func hostileClaim(name string) *corev1.PersistentVolumeClaim {
	return &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			Resources:   corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}},
		},
	}
}

// service is her Service of the pods labelled app=<name>.
func (h *hostile) service(name string, annotations map[string]string) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: h.ns, Annotations: annotations},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, Selector: map[string]string{"app": name},
			Ports: []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080)}}},
	}
}

// ingress is her Ingress to the Service of that name, terminating TLS with tlsSecret unless it is "".
func (h *hostile) ingress(name string, annotations map[string]string, tlsSecret string) *networkingv1.Ingress {
	prefix := networkingv1.PathTypePrefix
	ing := &networkingv1.Ingress{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: h.ns, Annotations: annotations},
		Spec: networkingv1.IngressSpec{Rules: []networkingv1.IngressRule{{Host: "alice.example.com",
			IngressRuleValue: networkingv1.IngressRuleValue{HTTP: &networkingv1.HTTPIngressRuleValue{Paths: []networkingv1.HTTPIngressPath{{
				Path: "/", PathType: &prefix,
				Backend: networkingv1.IngressBackend{Service: &networkingv1.IngressServiceBackend{Name: name, Port: networkingv1.ServiceBackendPort{Number: 80}}},
			}}}}}}},
	}
	if tlsSecret != "" {
		ing.Spec.TLS = []networkingv1.IngressTLS{{Hosts: []string{"alice.example.com"}, SecretName: tlsSecret}}
	}
	return ing
}

// serve creates her pod "web" (app=web) on the case's cluster and the Service, so that the Service follows
// the pod there.
func (h *hostile) serve(ctx context.Context, svc *corev1.Service) error {
	if err := h.createPod(ctx, h.pod("web", func(p *corev1.Pod) { p.Labels["app"] = svc.Name })); err != nil {
		return err
	}
	_, err := h.alice.CoreV1().Services(h.ns).Create(ctx, svc, metav1.CreateOptions{})
	return err
}

// forgedAnnotations are what alice writes on her object to have flotilla publish forgedIP: the annotation
// of the per-node scheme for any node and for the case's own, and the node annotation's format.
func (h *hostile) forgedAnnotations(kind, name string) map[string]string {
	entry := fmt.Sprintf(`[{"ip":%q}]`, forgedIP)
	return map[string]string{
		"lb.flotilla.io/x":                entry,
		"lb.flotilla.io/" + h.target.Name: entry,
		"flotilla.io/load-balancers":      fmt.Sprintf(`{"%s/%s/%s":%s}`, kind, h.ns, name, entry),
	}
}

// lbStatus is the load-balancer addresses in the status of her Service or Ingress.
func (h *hostile) lbStatus(ctx context.Context, kind, name string) ([]string, error) {
	var ips []string
	switch kind {
	case "Service":
		s, err := shared.Management.Client.CoreV1().Services(h.ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return nil, err
		}
		for _, e := range s.Status.LoadBalancer.Ingress {
			ips = append(ips, e.IP)
		}
	default:
		i, err := shared.Management.Client.NetworkingV1().Ingresses(h.ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return nil, err
		}
		for _, e := range i.Status.LoadBalancer.Ingress {
			ips = append(ips, e.IP)
		}
	}
	return ips, nil
}

// neverForged checks the status of her Service or Ingress, which some virtual node follows: once the
// workload's load balancer gives the copy an address, that address shows and forgedIP never does, even
// after she writes her forged annotations again.
func (h *hostile) neverForged(ctx context.Context, kind, name string, annotations map[string]string) {
	c := h.target
	h.allow(c, "Service", name)
	if kind == "Ingress" {
		h.allow(c, "Ingress", name)
	}
	h.must(ctx, hostileFollowLimit, kind+" copy in "+c.Name, func(ctx context.Context) (bool, string) {
		var err error
		if kind == "Service" {
			_, err = c.Client.CoreV1().Services(h.ns).Get(ctx, name, metav1.GetOptions{})
		} else {
			_, err = c.Client.NetworkingV1().Ingresses(h.ns).Get(ctx, name, metav1.GetOptions{})
		}
		return err == nil, fmt.Sprint(err)
	})
	// The workload's load balancer gives the copy an address, as in TestServiceAndIngressFollowPods.
	real := fmt.Sprintf("10.250.%d.1", h.index)
	err := retryOnConflict(func() error {
		if kind == "Service" {
			s, err := c.Client.CoreV1().Services(h.ns).Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			s.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: real}}
			_, err = c.Client.CoreV1().Services(h.ns).UpdateStatus(ctx, s, metav1.UpdateOptions{})
			return err
		}
		i, err := c.Client.NetworkingV1().Ingresses(h.ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		i.Status.LoadBalancer.Ingress = []networkingv1.IngressLoadBalancerIngress{{IP: real}}
		_, err = c.Client.NetworkingV1().Ingresses(h.ns).UpdateStatus(ctx, i, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		h.Fatalf("setting the copy's address: %v", err)
	}
	forged := func(ctx context.Context) (bool, string) {
		ips, err := h.lbStatus(ctx, kind, name)
		if err != nil {
			return false, err.Error()
		}
		if slices.Contains(ips, forgedIP) {
			h.Fatalf("the %s's status shows the forged address: %v", kind, ips)
		}
		return slices.Contains(ips, real), fmt.Sprintf("status %v", ips)
	}
	took, ok, why := poll(ctx, hostileReasonLimit, forged)
	if !ok {
		h.Errorf("the copy's address %s did not reach the %s's status within %s (%s)", real, kind, hostileReasonLimit, why)
	} else {
		h.observe(took, "status %s, no forged address", why)
	}
	// Again, written after the copy exists.
	for k := range annotations {
		annotations[k] = strings.Replace(annotations[k], forgedIP, forgedIP+`"},{"ip":"`+forgedIP, 1)
	}
	patch, _ := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": annotations}})
	if kind == "Service" {
		_, err = h.alice.CoreV1().Services(h.ns).Patch(ctx, name, types.MergePatchType, patch, metav1.PatchOptions{})
	} else {
		_, err = h.alice.NetworkingV1().Ingresses(h.ns).Patch(ctx, name, types.MergePatchType, patch, metav1.PatchOptions{})
	}
	if err != nil {
		h.Fatalf("annotating her %s again: %v", kind, err)
	}
	poll(ctx, 3*time.Second, func(ctx context.Context) (bool, string) {
		forged(ctx)
		return false, ""
	})
}

func retryOnConflict(f func() error) error {
	var err error
	for range 5 {
		if err = f(); err == nil || !strings.Contains(err.Error(), "the object has been modified") {
			return err
		}
	}
	return err
}

// serviceCases: Services and Ingresses whose copies or statuses would act beyond her rights.
func serviceCases() []hostileCase {
	forgedOn := func(name string, keys ...string) hostileCase {
		return hostileCase{
			name: name,
			act: func(ctx context.Context, h *hostile) error {
				return h.serve(ctx, h.service("web", pick(h.forgedAnnotations("Service", "web"), keys)))
			},
			want: delegated("followed; the status never shows "+forgedIP, func(ctx context.Context, h *hostile) {
				h.neverForged(ctx, "Service", "web", pick(h.forgedAnnotations("Service", "web"), keys))
			}),
		}
	}
	return []hostileCase{
		// The finding: a per-node load-balancer annotation, for a node that does not exist.
		forgedOn("lb-annotation-any-node", "lb.flotilla.io/x"),
		// The same for the very node that follows her Service.
		forgedOn("lb-annotation-own-node", "own"),
		// The node annotation's format, on her Service instead of a node.
		forgedOn("load-balancers-annotation", "flotilla.io/load-balancers"),
		{
			name: "lb-annotations-unfollowed-service",
			// All of them on a Service no pod backs: no flotilla follows it, so none may write its status.
			act: func(ctx context.Context, h *hostile) error {
				_, err := h.alice.CoreV1().Services(h.ns).Create(ctx, h.service("lonely", h.forgedAnnotations("Service", "lonely")), metav1.CreateOptions{})
				return err
			},
			want: hostileWant{outcome: "not followed; the status untouched", check: func(ctx context.Context, h *hostile) {
				_, touched, why := poll(ctx, hostileReasonLimit, func(ctx context.Context) (bool, string) {
					ips, err := h.lbStatus(ctx, "Service", "lonely")
					return err != nil || len(ips) > 0, fmt.Sprintf("status %v (%v)", ips, err)
				})
				if touched {
					h.Errorf("the status of a Service nobody follows was written: %s", why)
				}
				h.observe(0, "%s", why)
			}},
		},
		{
			name: "lb-annotations-on-ingress",
			// The forged annotations on her Ingress.
			act: func(ctx context.Context, h *hostile) error {
				if err := h.serve(ctx, h.service("web", nil)); err != nil {
					return err
				}
				_, err := h.alice.NetworkingV1().Ingresses(h.ns).Create(ctx, h.ingress("web", h.forgedAnnotations("Ingress", "web"), ""), metav1.CreateOptions{})
				return err
			},
			want: delegated("followed; the status never shows "+forgedIP, func(ctx context.Context, h *hostile) {
				h.neverForged(ctx, "Ingress", "web", h.forgedAnnotations("Ingress", "web"))
			}),
		},
		{
			name: "service-external-ips",
			// CVE-2020-8554: externalIPs let a Service intercept traffic to any address in the workload
			// cluster. The copy has none, and her Service says so.
			act: func(ctx context.Context, h *hostile) error {
				svc := h.service("web", nil)
				svc.Spec.Type, svc.Spec.ExternalIPs = corev1.ServiceTypeClusterIP, []string{"203.0.113.9"}
				return h.serve(ctx, svc)
			},
			want: delegated("copied without externalIPs, "+reasonExternalIPsNotFollowed+" Event", func(ctx context.Context, h *hostile) {
				h.allow(h.target, "Service", "web")
				p := h.obs.pod(h.ns, "web")
				var seen string
				took := h.sinceBinding(ctx, p, "a "+reasonExternalIPsNotFollowed+" Event on the Service", func(context.Context) (bool, string) {
					ok, why := h.obs.objectEvent(h.ns, "Service", "web", reasonExternalIPsNotFollowed, "")
					seen = why
					return ok, why
				})
				h.observe(took, "%s", seen)
				var copied *corev1.Service
				h.must(ctx, hostileFollowLimit, "the Service copy in "+h.target.Name, func(ctx context.Context) (bool, string) {
					var err error
					copied, err = h.target.Client.CoreV1().Services(h.ns).Get(ctx, "web", metav1.GetOptions{})
					return err == nil, fmt.Sprint(err)
				})
				if len(copied.Spec.ExternalIPs) > 0 {
					h.Errorf("the copy in %s has externalIPs %v", h.target.Name, copied.Spec.ExternalIPs)
				}
			}),
		},
	}
}

// pick keeps the entries of m with the given keys; "own" stands for the case's own node's annotation.
func pick(m map[string]string, keys []string) map[string]string {
	out := map[string]string{}
	for _, k := range keys {
		if k == "own" {
			for mk, v := range m {
				if strings.HasPrefix(mk, "lb.flotilla.io/") && mk != "lb.flotilla.io/x" {
					out[mk] = v
				}
			}
			continue
		}
		out[k] = m[k]
	}
	return out
}

// workloadNamespaceCases: workload namespaces flotilla may not use, and what a workload admin's own
// admission refuses in one it may.
func workloadNamespaceCases() []hostileCase {
	return []hostileCase{
		{
			name: "namespace-taken-by-someone-else",
			// Her namespace's name is taken in the workload cluster by a team that never opened it.
			setup: func(ctx context.Context, h *hostile) {
				h.workloadNamespace(ctx, map[string]string{"owner": "another-team"})
			},
			act:  func(ctx context.Context, h *hostile) error { return h.createPod(ctx, h.pod("p")) },
			want: proxyReason(tenancy.ReasonWorkloadNamespaceForbidden, "was not opened"),
		},
		{
			name: "namespace-of-another-management",
			// The namespace another management cluster's flotilla created there.
			setup: func(ctx context.Context, h *hostile) {
				h.workloadNamespace(ctx, map[string]string{tenancy.LabelManagement: "other", psaapi.EnforceLevelLabel: string(psaapi.LevelBaseline)})
			},
			act:  func(ctx context.Context, h *hostile) error { return h.createPod(ctx, h.pod("p")) },
			want: proxyReason(tenancy.ReasonWorkloadNamespaceForbidden, "another management cluster"),
		},
		{
			name: "workload-limit-range",
			// A spec the management cluster accepts and the workload admin's LimitRange refuses.
			setup: func(ctx context.Context, h *hostile) {
				h.openWorkloadNamespace(ctx, nil)
				c := h.target
				lr, err := c.Client.CoreV1().LimitRanges(h.ns).Create(ctx, &corev1.LimitRange{
					ObjectMeta: metav1.ObjectMeta{Name: "max-cpu"},
					Spec: corev1.LimitRangeSpec{Limits: []corev1.LimitRangeItem{{Type: corev1.LimitTypeContainer,
						Max: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("500m")}}}},
				}, metav1.CreateOptions{})
				if err != nil {
					h.Fatalf("creating the LimitRange: %v", err)
				}
				h.foreign(c, "LimitRange", lr, false, func(ctx context.Context) (runtime.Object, error) {
					return c.Client.CoreV1().LimitRanges(h.ns).Get(ctx, "max-cpu", metav1.GetOptions{})
				})
			},
			act: func(ctx context.Context, h *hostile) error {
				return h.createPod(ctx, h.pod("p", func(p *corev1.Pod) {
					p.Spec.Containers[0].Resources.Limits = corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1")}
				}))
			},
			want: proxyReason(provider.ReasonRefused, "maximum cpu usage per Container is 500m, but limit is 1"),
		},
		{
			name: "system-priority-vs-workload-quota",
			// system-node-critical, which the management cluster lets anyone use (it would preempt the
			// workload's own pods), against the workload admin's quota of zero pods at system priorities.
			setup: func(ctx context.Context, h *hostile) {
				h.openWorkloadNamespace(ctx, nil)
				c := h.target
				q, err := c.Client.CoreV1().ResourceQuotas(h.ns).Create(ctx, &corev1.ResourceQuota{
					ObjectMeta: metav1.ObjectMeta{Name: "no-system-priorities"},
					Spec: corev1.ResourceQuotaSpec{
						Hard: corev1.ResourceList{corev1.ResourcePods: resource.MustParse("0")},
						ScopeSelector: &corev1.ScopeSelector{MatchExpressions: []corev1.ScopedResourceSelectorRequirement{{
							ScopeName: corev1.ResourceQuotaScopePriorityClass, Operator: corev1.ScopeSelectorOpIn,
							Values: []string{"system-node-critical", "system-cluster-critical"}}}},
					},
				}, metav1.CreateOptions{})
				if err != nil {
					h.Fatalf("creating the quota: %v", err)
				}
				// Until the quota controller has counted the namespace, admission refuses with "status unknown".
				h.must(ctx, 30*time.Second, "the quota counted", func(ctx context.Context) (bool, string) {
					q, err := c.Client.CoreV1().ResourceQuotas(h.ns).Get(ctx, q.Name, metav1.GetOptions{})
					return err == nil && q.Status.Hard != nil, fmt.Sprint(err)
				})
				h.foreign(c, "ResourceQuota", q, true, func(ctx context.Context) (runtime.Object, error) {
					return c.Client.CoreV1().ResourceQuotas(h.ns).Get(ctx, q.Name, metav1.GetOptions{})
				})
			},
			act: func(ctx context.Context, h *hostile) error {
				return h.createPod(ctx, h.pod("p", func(p *corev1.Pod) { p.Spec.PriorityClassName = "system-node-critical" }))
			},
			want: proxyReason(provider.ReasonRefused, "exceeded quota"),
		},
	}
}
