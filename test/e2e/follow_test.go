package e2e

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/flotilla-io/flotilla/node"
	"github.com/flotilla-io/flotilla/provider/follow"
	"github.com/flotilla-io/flotilla/test/lab"
)

// Services, Ingresses, ConfigMaps and Secrets follow the proxy pods that need them to their workload
// clusters, and load-balancer addresses come back.

const (
	// followLimit is how long a copy may take to appear after its pods are placed (delegates first need
	// scheduling in the management cluster).
	followLimit = 30 * time.Second
	// followRemoval is how long a copy may outlive the last pod of its cluster that needs it.
	followRemoval = 10 * time.Second
	// followStatus is how long a change of a copy's load-balancer status may take to show in the
	// management cluster, and a change of a management object to reach its copies.
	followStatus = 5 * time.Second
)

// TestServiceAndIngressFollowPods: a Service and an Ingress for regional Deployments appear in all four
// workload clusters, leave the eu-west-3 clusters when the eu-west-3 Deployment scales to zero, and come
// back when it scales up; the management Service and Ingress list the load-balancer addresses of all
// copies, and drop those of copies that go.
func TestServiceAndIngressFollowPods(t *testing.T) {
	ctx := testContext(t, 5*time.Minute)
	mc := shared.Management.Client
	ns := followNamespace(t)
	labels := map[string]string{"app": "hello-world"}
	for _, region := range []string{"us-west-2", "eu-west-3"} {
		createFollowDeployment(ctx, t, ns, "hello-world-"+region, region, labels, 4)
	}
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "hello-world", Labels: map[string]string{"team": "web"}},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, Selector: labels,
			Ports: []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080)}}},
	}
	if _, err := mc.CoreV1().Services(ns).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	pathType := networkingv1.PathTypePrefix
	ing := &networkingv1.Ingress{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "hello-world", Annotations: map[string]string{"example.com/owner": "web"}},
		Spec: networkingv1.IngressSpec{Rules: []networkingv1.IngressRule{{Host: "hello.example.com",
			IngressRuleValue: networkingv1.IngressRuleValue{HTTP: &networkingv1.HTTPIngressRuleValue{Paths: []networkingv1.HTTPIngressPath{{
				Path: "/", PathType: &pathType,
				Backend: networkingv1.IngressBackend{Service: &networkingv1.IngressServiceBackend{Name: "hello-world", Port: networkingv1.ServiceBackendPort{Number: 80}}},
			}}}}}}},
	}
	if _, err := mc.NetworkingV1().Ingresses(ns).Create(ctx, ing, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	all := shared.Workloads
	eu := followClusters("eu-west-3")
	took := eventually(t, followLimit, "Service and Ingress copies in all four clusters", func(ctx context.Context) (bool, string) {
		return followCopiesIn(ctx, all, ns, "hello-world", true)
	})
	t.Logf("copies in all clusters %s after creation", took.Round(time.Millisecond))
	for _, c := range all {
		s, err := c.Client.CoreV1().Services(ns).Get(ctx, "hello-world", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if s.Labels["flotilla.io/node"] != c.Name || s.Labels["flotilla.io/management"] == "" || s.Labels["team"] != "web" {
			t.Errorf("%s: copy labels %v", c.Name, s.Labels)
		}
		if s.Spec.Type != corev1.ServiceTypeLoadBalancer || s.Spec.Selector["app"] != "hello-world" || s.Spec.Ports[0].TargetPort.IntVal != 8080 {
			t.Errorf("%s: copy spec %+v", c.Name, s.Spec)
		}
		i, err := c.Client.NetworkingV1().Ingresses(ns).Get(ctx, "hello-world", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if i.Annotations["example.com/owner"] != "web" || len(i.Spec.Rules) != 1 || i.Spec.Rules[0].Host != "hello.example.com" {
			t.Errorf("%s: ingress copy %+v", c.Name, i)
		}
	}

	// Each cluster's load balancer gives its copies an address; the management objects list all of them.
	var wantAll []string
	for n, c := range all {
		ip := fmt.Sprintf("10.0.%d.1", n)
		wantAll = append(wantAll, ip)
		followSetLoadBalancer(ctx, t, c, ns, "hello-world", ip, c.Name+".lb.example.com")
	}
	took = eventually(t, followStatus, "the union of all copies' addresses on the management Service and Ingress", func(ctx context.Context) (bool, string) {
		return followAddresses(ctx, ns, "hello-world", wantAll)
	})
	t.Logf("load-balancer union %s after the last copy's status", took.Round(time.Millisecond))

	// eu-west-3 scales to zero: its copies go, and so do their addresses.
	scale(ctx, t, ns, "hello-world-eu-west-3", 0)
	took = eventually(t, followRemoval, "copies gone from the eu-west-3 clusters", func(ctx context.Context) (bool, string) {
		return followCopiesIn(ctx, eu, ns, "hello-world", false)
	})
	t.Logf("eu-west-3 copies removed %s after scaling to zero", took.Round(time.Millisecond))
	if ok, why := followCopiesIn(ctx, followClusters("us-west-2"), ns, "hello-world", true); !ok {
		t.Errorf("us-west-2 copies: %s", why)
	}
	eventually(t, followStatus, "the eu-west-3 addresses dropped from the management objects", func(ctx context.Context) (bool, string) {
		return followAddresses(ctx, ns, "hello-world", wantAll[:2])
	})

	// And back.
	scale(ctx, t, ns, "hello-world-eu-west-3", 4)
	eventually(t, followLimit, "copies back in the eu-west-3 clusters", func(ctx context.Context) (bool, string) {
		return followCopiesIn(ctx, eu, ns, "hello-world", true)
	})
}

// TestConfigMapAndSecretFollowJob: a Job's ConfigMap (envFrom) and Secret (volume) exist in its workload
// cluster before its delegate, follow changes, never appear in the delegate's spec as values, and go once
// the Job is deleted.
func TestConfigMapAndSecretFollowJob(t *testing.T) {
	ctx := testContext(t, 5*time.Minute)
	mc := shared.Management.Client
	ns := followNamespace(t)
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "job-config"}, Data: map[string]string{"GREETING": "hello"}}
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "job-secret"}, Data: map[string][]byte{"token": []byte("s3cret-value")}}
	if _, err := mc.CoreV1().ConfigMaps(ns).Create(ctx, cm, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := mc.CoreV1().Secrets(ns).Create(ctx, secret, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	job := &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "greeter"},
		Spec: batchv1.JobSpec{Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{
			RestartPolicy: corev1.RestartPolicyNever,
			Tolerations:   []corev1.Toleration{{Key: node.TaintKey, Operator: corev1.TolerationOpExists}},
			Containers: []corev1.Container{{Name: "greet", Image: "busybox",
				EnvFrom:      []corev1.EnvFromSource{{ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "job-config"}}}},
				VolumeMounts: []corev1.VolumeMount{{Name: "secret", MountPath: "/secret"}}}},
			Volumes: []corev1.Volume{{Name: "secret", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "job-secret"}}}},
		}}},
	}
	if _, err := mc.BatchV1().Jobs(ns).Create(ctx, job, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	// The Job's pod lands on a virtual node; its cluster gets the copies.
	var cluster *lab.Cluster
	var podName string
	eventually(t, followLimit, "the Job's pod bound to a virtual node", func(ctx context.Context) (bool, string) {
		pods, err := mc.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "batch.kubernetes.io/job-name=greeter"})
		if err != nil || len(pods.Items) == 0 || pods.Items[0].Spec.NodeName == "" {
			return false, fmt.Sprintf("pods %v, err %v", len(followPods(pods)), err)
		}
		podName = pods.Items[0].Name
		cluster = shared.Workload(pods.Items[0].Spec.NodeName)
		return cluster != nil, "bound to " + pods.Items[0].Spec.NodeName
	})
	wc := cluster.Client
	var delegate *corev1.Pod
	eventually(t, followLimit, "the delegate and the copies in "+cluster.Name, func(ctx context.Context) (bool, string) {
		var err error
		if delegate, err = wc.CoreV1().Pods(ns).Get(ctx, podName, metav1.GetOptions{}); err != nil {
			return false, "delegate: " + err.Error()
		}
		return true, ""
	})
	c, err := wc.CoreV1().ConfigMaps(ns).Get(ctx, "job-config", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("ConfigMap copy missing though the delegate exists: %v", err)
	}
	s, err := wc.CoreV1().Secrets(ns).Get(ctx, "job-secret", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("Secret copy missing though the delegate exists: %v", err)
	}
	if c.CreationTimestamp.After(delegate.CreationTimestamp.Time) || s.CreationTimestamp.After(delegate.CreationTimestamp.Time) {
		t.Errorf("copies created at %s and %s, after the delegate (%s)", c.CreationTimestamp, s.CreationTimestamp, delegate.CreationTimestamp)
	}
	if c.Data["GREETING"] != "hello" || string(s.Data["token"]) != "s3cret-value" || c.Labels["flotilla.io/node"] != cluster.Name {
		t.Errorf("copies: %v %v", c, s.Labels)
	}
	if spec := fmt.Sprintf("%+v", delegate.Spec); strings.Contains(spec, "s3cret-value") || strings.Contains(spec, "hello") {
		t.Errorf("the delegate's spec carries values: %s", spec)
	}
	for _, other := range shared.Workloads {
		if other != cluster {
			if _, err := other.Client.CoreV1().ConfigMaps(ns).Get(ctx, "job-config", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
				t.Errorf("%s holds a copy though no pod there needs it (%v)", other.Name, err)
			}
		}
	}

	// A change in the management cluster reaches the copy.
	cm.Data["GREETING"] = "bonjour"
	if _, err := mc.CoreV1().ConfigMaps(ns).Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	took := eventually(t, followStatus, "the ConfigMap change in the copy", func(ctx context.Context) (bool, string) {
		c, err := wc.CoreV1().ConfigMaps(ns).Get(ctx, "job-config", metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		return c.Data["GREETING"] == "bonjour", fmt.Sprintf("data %v", c.Data)
	})
	t.Logf("ConfigMap change followed in %s", took.Round(time.Millisecond))

	eventually(t, time.Minute, "the Job complete", func(ctx context.Context) (bool, string) {
		j, err := mc.BatchV1().Jobs(ns).Get(ctx, "greeter", metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		return j.Status.Succeeded == 1, fmt.Sprintf("status %+v", j.Status)
	})
	// Completed, its pod still references them: the copies stay until the Job and its pod are deleted.
	if _, err := wc.CoreV1().Secrets(ns).Get(ctx, "job-secret", metav1.GetOptions{}); err != nil {
		t.Errorf("Secret copy gone while the completed pod exists: %v", err)
	}
	if err := mc.BatchV1().Jobs(ns).Delete(ctx, "greeter", metav1.DeleteOptions{PropagationPolicy: ptr.To(metav1.DeletePropagationForeground)}); err != nil {
		t.Fatal(err)
	}
	eventually(t, followLimit, "the copies gone after the Job", func(ctx context.Context) (bool, string) {
		_, cerr := wc.CoreV1().ConfigMaps(ns).Get(ctx, "job-config", metav1.GetOptions{})
		_, serr := wc.CoreV1().Secrets(ns).Get(ctx, "job-secret", metav1.GetOptions{})
		return apierrors.IsNotFound(cerr) && apierrors.IsNotFound(serr), fmt.Sprintf("configmap: %v; secret: %v", cerr, serr)
	})
}

// TestMissingReferences: a pod whose mandatory Secret does not exist gets the kubelet's reason and no
// delegate; a pod whose missing ConfigMap is optional runs.
func TestMissingReferences(t *testing.T) {
	ctx := testContext(t, 3*time.Minute)
	mc := shared.Management.Client
	ns := followNamespace(t)
	tolerate := []corev1.Toleration{{Key: node.TaintKey, Operator: corev1.TolerationOpExists}}
	mandatory := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "needs-secret"}, Spec: corev1.PodSpec{
		Tolerations: tolerate,
		Containers: []corev1.Container{{Name: "c", Image: "nginx", Env: []corev1.EnvVar{{Name: "TOKEN", ValueFrom: &corev1.EnvVarSource{
			SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "absent"}, Key: "token"}}}}}},
	}}
	optional := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "optional-config"}, Spec: corev1.PodSpec{
		Tolerations: tolerate,
		Containers: []corev1.Container{{Name: "c", Image: "nginx", EnvFrom: []corev1.EnvFromSource{{ConfigMapRef: &corev1.ConfigMapEnvSource{
			LocalObjectReference: corev1.LocalObjectReference{Name: "absent"}, Optional: ptr.To(true)}}}}},
	}}
	for _, p := range []*corev1.Pod{mandatory, optional} {
		if _, err := mc.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, followLimit, "a "+follow.ReasonMandatorySecretNotFound+" event on the pod", func(ctx context.Context) (bool, string) {
		return followEvent(ctx, ns, "Pod", "needs-secret", follow.ReasonMandatorySecretNotFound, "absent")
	})
	eventually(t, followLimit, "the pod with an optional missing ConfigMap Running", func(ctx context.Context) (bool, string) {
		p, err := mc.CoreV1().Pods(ns).Get(ctx, "optional-config", metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		return p.Status.Phase == corev1.PodRunning, string(p.Status.Phase)
	})
	p, err := mc.CoreV1().Pods(ns).Get(ctx, "needs-secret", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if p.Spec.NodeName != "" {
		if _, err := shared.Workload(p.Spec.NodeName).Client.CoreV1().Pods(ns).Get(ctx, "needs-secret", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Errorf("a delegate exists for a pod whose mandatory Secret is missing (%v)", err)
		}
	}
}

// TestForeignServiceLeftAlone: a Service of the same name that flotilla did not create in a workload
// cluster is never changed; the management Service shows an Event naming the conflict.
func TestForeignServiceLeftAlone(t *testing.T) {
	ctx := testContext(t, 3*time.Minute)
	mc := shared.Management.Client
	target := shared.Workloads[0]
	ns := followNamespace(t, target.Client)
	foreign, err := target.Client.CoreV1().Services(ns).Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "hello-world", Labels: map[string]string{"owner": "someone-else"}},
		Spec:       corev1.ServiceSpec{Selector: map[string]string{"app": "theirs"}, Ports: []corev1.ServicePort{{Port: 81}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	labels := map[string]string{"app": "hello-world"}
	d := followDeployment(ns, "hello-world", "", labels, 1)
	d.Spec.Template.Spec.NodeSelector = map[string]string{node.LabelCluster: target.Name}
	if _, err := mc.AppsV1().Deployments(ns).Create(ctx, d, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := mc.CoreV1().Services(ns).Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "hello-world"},
		Spec:       corev1.ServiceSpec{Selector: labels, Ports: []corev1.ServicePort{{Port: 80}}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, followLimit, "a "+follow.ReasonNameConflict+" event on the management Service", func(ctx context.Context) (bool, string) {
		return followEvent(ctx, ns, "Service", "hello-world", follow.ReasonNameConflict, ns+"/hello-world")
	})
	// Give flotilla time to do anything it should not.
	time.Sleep(2 * time.Second)
	now, err := target.Client.CoreV1().Services(ns).Get(ctx, "hello-world", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("the foreign Service is gone: %v", err)
	}
	if now.ResourceVersion != foreign.ResourceVersion || now.Labels["flotilla.io/management"] != "" || now.Spec.Ports[0].Port != 81 {
		t.Errorf("the foreign Service was changed: %+v", now)
	}
}

// followClusters are the lab's workload clusters in a region.
func followClusters(region string) []*lab.Cluster {
	var out []*lab.Cluster
	for _, c := range shared.Workloads {
		if c.Workload.Region == region {
			out = append(out, c)
		}
	}
	return out
}

// followDeployment runs replicas pods with the given labels in a region ("" for anywhere), tolerating the
// virtual nodes' taint, and spread evenly over the clusters: the scheduler's own preference would leave a
// cluster out whenever another scores better (one still finishing an earlier test's pods, say).
func followDeployment(ns, name, region string, labels map[string]string, replicas int32) *appsv1.Deployment {
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To(replicas),
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"deployment": name}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"deployment": name}},
				Spec: corev1.PodSpec{
					Containers:  []corev1.Container{{Name: "app", Image: "registry.k8s.io/pause:3.10"}},
					Tolerations: []corev1.Toleration{{Key: node.TaintKey, Operator: corev1.TolerationOpExists}},
					TopologySpreadConstraints: []corev1.TopologySpreadConstraint{{
						MaxSkew: 1, TopologyKey: node.LabelCluster, WhenUnsatisfiable: corev1.DoNotSchedule,
						LabelSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"deployment": name}},
					}},
				},
			},
		},
	}
	for k, v := range labels {
		d.Spec.Template.Labels[k] = v
	}
	if region != "" {
		d.Spec.Template.Spec.NodeSelector = map[string]string{regionLabel: region}
	}
	return d
}

func createFollowDeployment(ctx context.Context, t *testing.T, ns, name, region string, labels map[string]string, replicas int32) {
	t.Helper()
	if _, err := shared.Management.Client.AppsV1().Deployments(ns).Create(ctx, followDeployment(ns, name, region, labels, replicas), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// followCopiesIn says whether every cluster holds (present) or none holds (!present) a Service and an Ingress of
// the name.
func followCopiesIn(ctx context.Context, clusters []*lab.Cluster, ns, name string, present bool) (bool, string) {
	for _, c := range clusters {
		_, serr := c.Client.CoreV1().Services(ns).Get(ctx, name, metav1.GetOptions{})
		_, ierr := c.Client.NetworkingV1().Ingresses(ns).Get(ctx, name, metav1.GetOptions{})
		for kind, err := range map[string]error{"Service": serr, "Ingress": ierr} {
			switch {
			case present && err != nil:
				return false, fmt.Sprintf("%s: %s: %v", c.Name, kind, err)
			case !present && !apierrors.IsNotFound(err):
				return false, fmt.Sprintf("%s: %s still there (%v)", c.Name, kind, err)
			}
		}
	}
	return true, ""
}

// followSetLoadBalancer gives a cluster's Service and Ingress copies an address, as its load-balancer controller
// would.
func followSetLoadBalancer(ctx context.Context, t *testing.T, c *lab.Cluster, ns, name, ip, hostname string) {
	t.Helper()
	s, err := c.Client.CoreV1().Services(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	s.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: ip}}
	if _, err := c.Client.CoreV1().Services(ns).UpdateStatus(ctx, s, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("%s: %v", c.Name, err)
	}
	i, err := c.Client.NetworkingV1().Ingresses(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	i.Status.LoadBalancer.Ingress = []networkingv1.IngressLoadBalancerIngress{{IP: ip, Hostname: hostname}}
	if _, err := c.Client.NetworkingV1().Ingresses(ns).UpdateStatus(ctx, i, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("%s: %v", c.Name, err)
	}
}

// followAddresses says whether the management Service and Ingress list exactly the given IPs, sorted.
func followAddresses(ctx context.Context, ns, name string, ips []string) (bool, string) {
	want := slices.Sorted(slices.Values(ips))
	s, err := shared.Management.Client.CoreV1().Services(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return false, err.Error()
	}
	var got []string
	for _, e := range s.Status.LoadBalancer.Ingress {
		got = append(got, e.IP)
	}
	if !slices.Equal(got, want) {
		return false, fmt.Sprintf("Service lists %v, want %v", got, want)
	}
	i, err := shared.Management.Client.NetworkingV1().Ingresses(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return false, err.Error()
	}
	got = nil
	for _, e := range i.Status.LoadBalancer.Ingress {
		got = append(got, e.IP)
		if e.Hostname == "" {
			return false, fmt.Sprintf("Ingress entry %+v without its hostname", e)
		}
	}
	if !slices.Equal(got, want) {
		return false, fmt.Sprintf("Ingress lists %v, want %v", got, want)
	}
	return true, ""
}

// followEvent says whether the management cluster holds an Event of the reason on the object, whose message
// contains text.
func followEvent(ctx context.Context, ns, kind, name, reason, text string) (bool, string) {
	events, err := shared.Management.Client.CoreV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: fields.Set{
		"involvedObject.kind": kind, "involvedObject.name": name}.String()})
	if err != nil {
		return false, err.Error()
	}
	var seen []string
	for _, e := range events.Items {
		if e.Reason == reason && strings.Contains(e.Message, text) {
			return true, ""
		}
		seen = append(seen, e.Reason+": "+e.Message)
	}
	return false, fmt.Sprintf("events %v", seen)
}

// followNamespace is a namespace of the test's own in the management cluster (and in the given workload
// clusters); after the test, it is deleted there and in every workload cluster, where flotilla created it.
func followNamespace(t *testing.T, workloads ...kubernetes.Interface) string {
	var ns string
	// Registered first, so it runs last, after the management namespace's deletion has begun.
	t.Cleanup(func() {
		for _, c := range shared.Workloads {
			_ = c.Client.CoreV1().Namespaces().Delete(context.Background(), ns, metav1.DeleteOptions{})
		}
	})
	ns = namespace(t, append([]kubernetes.Interface{shared.Management.Client}, workloads...)...)
	return ns
}

func followPods(l *corev1.PodList) []corev1.Pod {
	if l == nil {
		return nil
	}
	return l.Items
}
