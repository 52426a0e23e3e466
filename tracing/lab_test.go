package tracing_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/flotilla-io/flotilla/node"
	"github.com/flotilla-io/flotilla/test/lab"
	"github.com/flotilla-io/flotilla/tracing"
)

// TestDelegationTrace runs a real flotilla (a lab's, with one workload cluster) pointed at an in-process
// OTLP receiver by the OTEL_* variables alone, delegates one pod that references a ConfigMap, and reads the
// delegation's trace: one tree under virtual-kubelet's pod controller span, holding flotilla's sync of the
// delegate (the pod's namespace, name and UID and the cluster as attributes) with the workload cluster's
// calls beneath it, and the management cluster's write of the proxy's status; and the ConfigMap's follow
// with its write.
// The same flotilla logs with --log-format=json: its log is JSON lines, and those about the pod name the
// cluster.
func TestDelegationTrace(t *testing.T) {
	const cluster = "eu-west-3-1"
	r := startReceiver(t)
	var env []string
	for k, v := range r.environment() {
		env = append(env, k+"="+v)
	}
	l := lab.ForTest(t, lab.Options{
		Workloads: []lab.WorkloadSpec{lab.Workload(cluster, "eu-west-3")},
		Flotilla:  true, FlotillaEnv: env, FlotillaArgs: []string{"--log-format=json"},
	})
	mgmt := l.Management.Client
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ns := lab.UniqueName("traced", "")
	lab.Namespace(t, mgmt, ns)
	if _, err := mgmt.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "settings"}, Data: map[string]string{"MODE": "traced"},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	proxy, err := mgmt.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: corev1.PodSpec{
			NodeName:    cluster,
			Tolerations: []corev1.Toleration{{Key: node.TaintKey, Operator: corev1.TolerationOpEqual, Value: node.TaintValue, Effect: corev1.TaintEffectNoSchedule}},
			Containers: []corev1.Container{{Name: "web", Image: "nginx",
				EnvFrom: []corev1.EnvFromSource{{ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "settings"}}}}}},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	lab.Poll(t, time.Minute, "the proxy Running", func() (bool, error) {
		p, err := mgmt.CoreV1().Pods(ns).Get(ctx, proxy.Name, metav1.GetOptions{})
		return err == nil && p.Status.Phase == corev1.PodRunning, nil
	})
	// The spans come in batches, a tenth of a second apart.
	var problems []string
	_ = wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
		problems = delegationTraceProblems(r.Spans(), string(proxy.UID), ns, proxy.Name, cluster)
		return len(problems) == 0, nil
	})
	if len(problems) > 0 {
		t.Errorf("the delegation's trace:\n%s", strings.Join(problems, "\n"))
	}
	t.Logf("the traces of pod %s:\n%s", proxy.UID, traceTree(r.Spans(), string(proxy.UID)))

	logged, err := os.ReadFile(l.Flotillas[cluster].LogFile)
	if err != nil {
		t.Fatal(err)
	}
	if problems := jsonLogProblems(string(logged), ns, proxy.Name, cluster); len(problems) > 0 {
		t.Errorf("flotilla's log %s:\n%s", l.Flotillas[cluster].LogFile, strings.Join(problems, "\n"))
	}
}

// jsonLogProblems is what is wrong with a flotilla's log in JSON: a line that is not a JSON object, a line
// about the pod namespace/name without the cluster, or no line about the pod at all.
func jsonLogProblems(logged, namespace, name, cluster string) []string {
	var problems []string
	about := 0
	for _, l := range strings.Split(logged, "\n") {
		if l == "" || strings.HasPrefix(l, "==== ") { // the lab's own line before each start
			continue
		}
		var line map[string]any
		if err := json.Unmarshal([]byte(l), &line); err != nil {
			problems = append(problems, fmt.Sprintf("not JSON: %s", l))
			continue
		}
		// virtual-kubelet names a pod by namespace and pod (its name), or key; flotilla by pod (its key).
		key := namespace + "/" + name
		if (line["namespace"] == namespace && line["pod"] == name) || line["pod"] == key || line["key"] == key {
			about++
			if line["cluster"] != cluster {
				problems = append(problems, fmt.Sprintf("about the pod, without cluster %s: %s", cluster, l))
			}
		}
	}
	if about == 0 {
		problems = append(problems, "no line about the pod")
	}
	return problems
}

// delegationTraceProblems is what is wrong with the trace of the delegation of the proxy of that UID among
// spans; none when it is whole.
func delegationTraceProblems(spans []span, uid, namespace, name, cluster string) []string {
	// The trace is the one of the sync that created the delegate.
	byID := map[string]span{}
	for _, s := range spans {
		byID[s.SpanID] = s
	}
	var sync *span
	for _, s := range spans {
		if s.Name == "workload create pods" {
			if p, ok := byID[s.ParentID]; ok && p.Name == tracing.SpanSyncDelegate && p.Attributes[tracing.AttrPodUID] == uid {
				sync = &p
			}
		}
	}
	if sync == nil {
		return []string{fmt.Sprintf("no %s span of pod UID %s with a child \"workload create pods\" among %d spans", tracing.SpanSyncDelegate, uid, len(spans))}
	}
	var trace []span
	children := map[string][]span{}
	for _, s := range spans {
		if s.TraceID == sync.TraceID {
			trace = append(trace, s)
			children[s.ParentID] = append(children[s.ParentID], s)
		}
	}
	var problems []string
	check := func(ok bool, format string, args ...any) {
		if !ok {
			problems = append(problems, fmt.Sprintf(format, args...))
		}
	}
	// One tree: a single root, and every other span's parent in the trace.
	var roots []string
	for _, s := range trace {
		if s.ParentID == "" {
			roots = append(roots, s.Name)
		} else if _, ok := byID[s.ParentID]; !ok || byID[s.ParentID].TraceID != s.TraceID {
			check(false, "span %s has parent %s, not in the trace", s.Name, s.ParentID)
		}
		check(s.Resource["service.name"] == tracing.ServiceName && s.Resource[tracing.AttrCluster] == cluster,
			"span %s: resource %v", s.Name, s.Resource)
	}
	check(len(roots) == 1 && roots[0] == "handleQueueItem", "roots %v, want virtual-kubelet's handleQueueItem alone", roots)
	ancestors := func(s span) []string {
		var names []string
		for p, ok := byID[s.ParentID]; ok; p, ok = byID[p.ParentID] {
			names = append(names, p.Name)
		}
		return names
	}
	check(slices.Contains(ancestors(*sync), "createOrUpdatePod"), "%s is not under virtual-kubelet's createOrUpdatePod: %v", tracing.SpanSyncDelegate, ancestors(*sync))
	wantPod := map[string]string{tracing.AttrNamespace: namespace, tracing.AttrPodName: name, tracing.AttrPodUID: uid, tracing.AttrCluster: cluster}
	for k, v := range wantPod {
		check(sync.Attributes[k] == v, "%s: attribute %s=%q, want %q", tracing.SpanSyncDelegate, k, sync.Attributes[k], v)
	}
	// Beneath the sync: the workload cluster's calls.
	var calls []string
	for _, c := range children[sync.SpanID] {
		calls = append(calls, c.Name)
	}
	check(slices.Contains(calls, "workload create pods") && slices.ContainsFunc(calls, func(c string) bool { return strings.HasSuffix(c, " namespaces") }),
		"%s's children %v: want the workload namespace's and the delegate's calls", tracing.SpanSyncDelegate, calls)
	// The ConfigMap's copy: beneath the sync when the sync made it, or a trace of its own when the
	// followers' queue got there first.
	var follows int
	for _, s := range spans {
		if s.Name != tracing.SpanFollow || s.Attributes[tracing.AttrName] != "settings" || s.Attributes[tracing.AttrNamespace] != namespace {
			continue
		}
		follows++
		check(s.Attributes[tracing.AttrKind] == "ConfigMap", "%s attributes %v", tracing.SpanFollow, s.Attributes)
		var writes []string
		for _, c := range spans {
			if c.ParentID == s.SpanID {
				writes = append(writes, c.Name)
			}
		}
		check(slices.ContainsFunc(writes, func(c string) bool { return strings.HasSuffix(c, " configmaps") }),
			"%s of the ConfigMap: no workload call beneath it, only %v", tracing.SpanFollow, writes)
	}
	check(follows > 0, "no %s span of ConfigMap %s/settings", tracing.SpanFollow, namespace)
	// The management cluster's write of the proxy's status, in the same trace.
	var wrote bool
	for _, s := range trace {
		if s.Name != tracing.SpanUpdateProxyStatus {
			continue
		}
		for k, v := range wantPod {
			check(s.Attributes[k] == v, "%s: attribute %s=%q, want %q", s.Name, k, s.Attributes[k], v)
		}
		check(len(s.Links) == 1, "%s links %v: want virtual-kubelet's status span", s.Name, s.Links)
		for _, c := range children[s.SpanID] {
			wrote = wrote || (c.Name == "management update pods/status" && c.Attributes[tracing.AttrClusterRole] == "management")
		}
	}
	check(wrote, "no %s with a \"management update pods/status\" call beneath it in the trace", tracing.SpanUpdateProxyStatus)
	return problems
}

// traceTree draws the traces holding a span about the pod of that UID, a span a line, children indented
// under their parent.
func traceTree(spans []span, uid string) string {
	traces := map[string]bool{}
	children := map[string][]span{}
	for _, s := range spans {
		if s.Attributes[tracing.AttrPodUID] == uid {
			traces[s.TraceID] = true
		}
		children[s.ParentID] = append(children[s.ParentID], s)
	}
	var b strings.Builder
	var draw func(s span, depth int)
	draw = func(s span, depth int) {
		fmt.Fprintf(&b, "%s%s\n", strings.Repeat("  ", depth), s.Name)
		for _, c := range children[s.SpanID] {
			draw(c, depth+1)
		}
	}
	for _, root := range children[""] {
		if traces[root.TraceID] {
			fmt.Fprintf(&b, "trace %s\n", root.TraceID)
			draw(root, 1)
		}
	}
	return b.String()
}
