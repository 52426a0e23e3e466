package node

import (
	"maps"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/cache"
)

// equalResources compares resource lists by value ("1000m" equals "1") and by their set of names.
func equalResources(a, b corev1.ResourceList) bool {
	if len(a) != len(b) {
		return false
	}
	for name, qa := range a {
		qb, ok := b[name]
		if !ok || qa.Cmp(qb) != 0 {
			return false
		}
	}
	return true
}

func TestResources(t *testing.T) {
	own := labels.SelectorFromSet(labels.Set{"flotilla.io/node": "vn"})
	three := []*corev1.Node{wnode("a"), wnode("b"), wnode("c")}
	threeLab := rl("cpu", "12", "memory", "48Gi", "pods", "330", "ephemeral-storage", "300Gi")
	withLabel := func(k, v string) func(*corev1.Pod) { return func(p *corev1.Pod) { p.Labels[k] = v } }
	inPhase := func(phase corev1.PodPhase) func(*corev1.Pod) { return func(p *corev1.Pod) { p.Status.Phase = phase } }

	for _, tc := range []struct {
		name                         string
		nodes                        []*corev1.Node
		pods                         []*corev1.Pod
		wantCapacity, wantAllocatble corev1.ResourceList
	}{
		{
			name:           "sums Ready schedulable nodes",
			nodes:          three,
			wantCapacity:   threeLab,
			wantAllocatble: threeLab,
		},
		{
			name:           "NotReady and cordoned nodes don't count",
			nodes:          []*corev1.Node{wnode("a"), wnode("b", notReady), wnode("c", cordoned)},
			wantCapacity:   lab,
			wantAllocatble: lab,
		},
		{
			name: "capacity and allocatable are summed separately",
			nodes: []*corev1.Node{wnode("a", func(n *corev1.Node) {
				n.Status.Allocatable = rl("cpu", "3500m", "memory", "15Gi", "pods", "110")
			})},
			wantCapacity:   lab,
			wantAllocatble: rl("cpu", "3500m", "memory", "15Gi", "pods", "110"),
		},
		{
			name:           "a foreign pod takes its requests and a pod slot",
			nodes:          three,
			pods:           []*corev1.Pod{wpod("p", "a", rl("cpu", "1", "memory", "1Gi", "ephemeral-storage", "1Gi"))},
			wantCapacity:   threeLab,
			wantAllocatble: rl("cpu", "11", "memory", "47Gi", "pods", "329", "ephemeral-storage", "299Gi"),
		},
		{
			name:           "a pod without requests still takes a slot",
			nodes:          three,
			pods:           []*corev1.Pod{wpod("p", "a", nil)},
			wantCapacity:   threeLab,
			wantAllocatble: rl("cpu", "12", "memory", "48Gi", "pods", "329", "ephemeral-storage", "300Gi"),
		},
		{
			name:           "our own delegates are counted by their proxies, not here",
			nodes:          three,
			pods:           []*corev1.Pod{wpod("p", "a", rl("cpu", "1"), withLabel("flotilla.io/node", "vn"))},
			wantCapacity:   threeLab,
			wantAllocatble: threeLab,
		},
		{
			name:           "another virtual node's delegates are foreign",
			nodes:          three,
			pods:           []*corev1.Pod{wpod("p", "a", rl("cpu", "1"), withLabel("flotilla.io/node", "other"))},
			wantCapacity:   threeLab,
			wantAllocatble: rl("cpu", "11", "memory", "48Gi", "pods", "329", "ephemeral-storage", "300Gi"),
		},
		{
			name:  "terminal pods hold nothing",
			nodes: three,
			pods: []*corev1.Pod{
				wpod("done", "a", rl("cpu", "1"), inPhase(corev1.PodSucceeded)),
				wpod("failed", "a", rl("cpu", "1"), inPhase(corev1.PodFailed)),
			},
			wantCapacity:   threeLab,
			wantAllocatble: threeLab,
		},
		{
			name:           "pending pods hold their requests once bound",
			nodes:          three,
			pods:           []*corev1.Pod{wpod("p", "a", rl("cpu", "1"), inPhase(corev1.PodPending))},
			wantCapacity:   threeLab,
			wantAllocatble: rl("cpu", "11", "memory", "48Gi", "pods", "329", "ephemeral-storage", "300Gi"),
		},
		{
			name:  "pods on nodes that don't count, or on none, take nothing",
			nodes: []*corev1.Node{wnode("a"), wnode("b", cordoned), wnode("c", notReady)},
			pods: []*corev1.Pod{
				wpod("cordoned", "b", rl("cpu", "1")),
				wpod("notready", "c", rl("cpu", "1")),
				wpod("unbound", "", rl("cpu", "1")),
				wpod("elsewhere", "z", rl("cpu", "1")),
			},
			wantCapacity:   lab,
			wantAllocatble: lab,
		},
		{
			name:  "init containers, sidecars and overhead count as the kubelet counts them",
			nodes: []*corev1.Node{wnode("a")},
			pods: []*corev1.Pod{wpod("p", "a", rl("cpu", "1"), func(p *corev1.Pod) {
				always := corev1.ContainerRestartPolicyAlways
				p.Spec.InitContainers = []corev1.Container{
					// A sidecar runs alongside the containers: its 500m adds to theirs.
					{Name: "sidecar", RestartPolicy: &always, Resources: corev1.ResourceRequirements{Requests: rl("cpu", "500m")}},
					// A plain init container runs alone, with the sidecar before it: max(2+0.5, 1+0.5).
					{Name: "init", Resources: corev1.ResourceRequirements{Requests: rl("cpu", "2")}},
				}
				p.Spec.Overhead = rl("cpu", "250m")
			})},
			wantCapacity:   lab,
			wantAllocatble: rl("cpu", "1250m", "memory", "16Gi", "pods", "109", "ephemeral-storage", "100Gi"),
		},
		{
			name: "every resource name counts",
			nodes: []*corev1.Node{
				wnode("a", offering(rl("cpu", "4", "memory", "16Gi", "pods", "110", "nvidia.com/gpu", "2", "hugepages-2Mi", "1Gi"))),
				wnode("b", offering(rl("cpu", "4", "memory", "16Gi", "pods", "110", "nvidia.com/gpu", "4"))),
			},
			pods:         []*corev1.Pod{wpod("p", "a", rl("nvidia.com/gpu", "1", "hugepages-2Mi", "512Mi"))},
			wantCapacity: rl("cpu", "8", "memory", "32Gi", "pods", "220", "nvidia.com/gpu", "6", "hugepages-2Mi", "1Gi"),
			wantAllocatble: rl("cpu", "8", "memory", "32Gi", "pods", "219", "nvidia.com/gpu", "5",
				"hugepages-2Mi", "512Mi"),
		},
		{
			name:           "requests for resources no node offers add nothing",
			nodes:          []*corev1.Node{wnode("a")},
			pods:           []*corev1.Pod{wpod("p", "a", rl("example.com/dongle", "1"))},
			wantCapacity:   lab,
			wantAllocatble: rl("cpu", "4", "memory", "16Gi", "pods", "109", "ephemeral-storage", "100Gi"),
		},
		{
			name:  "never below zero",
			nodes: []*corev1.Node{wnode("a", offering(rl("cpu", "1", "memory", "1Gi", "pods", "1")))},
			pods: []*corev1.Pod{
				wpod("p", "a", rl("cpu", "750m", "memory", "1Gi")),
				wpod("q", "a", rl("cpu", "750m", "memory", "1Gi")),
			},
			wantCapacity:   rl("cpu", "1", "memory", "1Gi", "pods", "1"),
			wantAllocatble: rl("cpu", "0", "memory", "0", "pods", "0"),
		},
		{
			name:           "no schedulable node reports zero cpu, memory and pods",
			nodes:          []*corev1.Node{wnode("a", notReady)},
			wantCapacity:   rl("cpu", "0", "memory", "0", "pods", "0"),
			wantAllocatble: rl("cpu", "0", "memory", "0", "pods", "0"),
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			capacity, allocatable := resources(tc.nodes, tc.pods, own, podRequests)
			if !equalResources(capacity, tc.wantCapacity) {
				t.Errorf("capacity = %v, want %v", capacity, tc.wantCapacity)
			}
			if !equalResources(allocatable, tc.wantAllocatble) {
				t.Errorf("allocatable = %v, want %v", allocatable, tc.wantAllocatble)
			}
		})
	}
}

func TestResourcesLeavesInputsAlone(t *testing.T) {
	n := wnode("a")
	resources([]*corev1.Node{n}, []*corev1.Pod{wpod("p", "a", rl("cpu", "1"))}, labels.Nothing(), podRequests)
	if !equalResources(n.Status.Allocatable, lab) {
		t.Errorf("workload node's allocatable changed to %v", n.Status.Allocatable)
	}
}

func TestMaxPodLabels(t *testing.T) {
	four := []*corev1.Node{wnode("a"), wnode("b"), wnode("c")}
	own := func(p *corev1.Pod) { p.Labels["flotilla.io/node"] = "vn" }
	for _, tc := range []struct {
		name     string
		nodes    []*corev1.Node
		pods     []*corev1.Pod
		cpu, mem string
	}{
		{name: "no nodes", cpu: "0", mem: "0"},
		{name: "an empty node", nodes: four, cpu: "4000", mem: "16384"},
		{
			name:  "each node with 1 CPU free: not the 3 CPU summed",
			nodes: four,
			pods: []*corev1.Pod{
				wpod("f1", "a", rl("cpu", "3")), wpod("f2", "b", rl("cpu", "3")), wpod("f3", "c", rl("cpu", "3")),
			},
			cpu: "1000", mem: "16384",
		},
		{
			name:  "CPU and memory maxima may come from different nodes",
			nodes: four,
			pods: []*corev1.Pod{
				wpod("f1", "a", rl("cpu", "3", "memory", "1Gi")), wpod("f2", "b", rl("cpu", "1", "memory", "10Gi")),
				wpod("f3", "c", rl("cpu", "2", "memory", "8Gi")),
			},
			cpu: "3000", mem: "15360",
		},
		{
			name:  "rounded down to 100m and 64Mi",
			nodes: []*corev1.Node{wnode("a")},
			pods:  []*corev1.Pod{wpod("p", "a", rl("cpu", "1250m", "memory", "100Mi"))},
			cpu:   "2700", mem: "16256",
		},
		{
			name:  "flotilla's own delegates take room on their node",
			nodes: []*corev1.Node{wnode("a")},
			pods:  []*corev1.Pod{wpod("p", "a", rl("cpu", "3"), own)},
			cpu:   "1000", mem: "16384",
		},
		{
			name:  "terminal pods hold nothing",
			nodes: []*corev1.Node{wnode("a")},
			pods:  []*corev1.Pod{wpod("p", "a", rl("cpu", "3"), func(p *corev1.Pod) { p.Status.Phase = corev1.PodSucceeded })},
			cpu:   "4000", mem: "16384",
		},
		{
			name:  "NotReady and cordoned nodes take nothing",
			nodes: []*corev1.Node{wnode("a", notReady), wnode("b", cordoned), wnode("c", offering(rl("cpu", "1", "memory", "1Gi", "pods", "10")))},
			cpu:   "1000", mem: "1024",
		},
		{
			name:  "a node with no pod slot left takes nothing",
			nodes: []*corev1.Node{wnode("a", offering(rl("cpu", "4", "memory", "16Gi", "pods", "1"))), wnode("b", offering(rl("cpu", "1", "memory", "1Gi", "pods", "10")))},
			pods:  []*corev1.Pod{wpod("p", "a", nil)},
			cpu:   "1000", mem: "1024",
		},
		{
			name:  "overcommitted: zero, not negative",
			nodes: []*corev1.Node{wnode("a")},
			pods:  []*corev1.Pod{wpod("p", "a", rl("cpu", "5", "memory", "20Gi"))},
			cpu:   "0", mem: "0",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := maxPodLabels(tc.nodes, tc.pods, podRequests)
			want := map[string]string{LabelMaxPodCPU: tc.cpu, LabelMaxPodMemory: tc.mem}
			if !maps.Equal(got, want) {
				t.Errorf("maxPodLabels = %v, want %v", got, want)
			}
		})
	}
}

// TestRequestsMemo: a pod's requests are computed again only when its resourceVersion changed, and a pod no
// longer observed is forgotten.
func TestRequestsMemo(t *testing.T) {
	at := func(uid, rv, cpu string) *corev1.Pod {
		return wpod(uid, "a", rl("cpu", cpu), func(p *corev1.Pod) { p.UID, p.ResourceVersion = types.UID(uid), rv })
	}
	// What the memo says of a pod it knows is what it remembered, even where podRequests would now say
	// otherwise: the memo holds 9 CPUs for p@1, and p@1 asks for 1.
	remembered := rl("cpu", "9")
	memo := requestsMemo{"p": {resourceVersion: "1", requests: remembered}, "gone": {resourceVersion: "1", requests: remembered}}
	for _, tc := range []struct {
		name string
		pod  *corev1.Pod
		want corev1.ResourceList
	}{
		{"an unchanged pod: remembered", at("p", "1", "1"), remembered},
		{"a changed pod: computed again", at("p", "2", "2"), rl("cpu", "2", "pods", "1")},
		{"a new pod: computed", at("q", "1", "3"), rl("cpu", "3", "pods", "1")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := memo.refresh([]*corev1.Pod{tc.pod}).of(tc.pod); !equalResources(got, tc.want) {
				t.Errorf("requests %v, want %v", got, tc.want)
			}
			if got := memo.of(tc.pod); tc.pod.UID == "p" && tc.pod.ResourceVersion == "2" && !equalResources(got, tc.want) {
				t.Errorf("of a pod changed since the memo: %v, want %v", got, tc.want)
			}
		})
	}
	if _, kept := memo.refresh([]*corev1.Pod{at("p", "1", "1")})["gone"]; kept {
		t.Error("a pod no longer observed is still remembered")
	}
	if got := requestsMemo(nil).of(at("p", "1", "1")); !equalResources(got, rl("cpu", "1", "pods", "1")) {
		t.Errorf("a nil memo: %v", got)
	}
}

func TestRequestsOnly(t *testing.T) {
	always := corev1.ContainerRestartPolicyAlways
	full := func(edit func(*corev1.Pod)) *corev1.Pod {
		p := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{
				Name: "p", Namespace: "ns", UID: "u", ResourceVersion: "7",
				Labels:      map[string]string{"app": "web"},
				Annotations: map[string]string{"big": strings.Repeat("x", 4096)},
			},
			Spec: corev1.PodSpec{
				NodeName: "a",
				Volumes:  []corev1.Volume{{Name: "token", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{}}}},
				Containers: []corev1.Container{{
					Name: "app", Image: "registry.k8s.io/pause:3.10",
					Env:       []corev1.EnvVar{{Name: "A", Value: "b"}},
					Resources: corev1.ResourceRequirements{Requests: rl("cpu", "1", "memory", "1Gi")},
				}},
				Tolerations: []corev1.Toleration{{Key: "k", Operator: corev1.TolerationOpExists}},
			},
			Status: corev1.PodStatus{
				Phase:             corev1.PodRunning,
				ContainerStatuses: []corev1.ContainerStatus{{Name: "app", Image: "pause", Ready: true}},
			},
		}
		if edit != nil {
			edit(p)
		}
		return p
	}
	for _, tc := range []struct {
		name string
		pod  *corev1.Pod
	}{
		{"containers", full(nil)},
		{"init containers and a sidecar", full(func(p *corev1.Pod) {
			p.Spec.InitContainers = []corev1.Container{
				{Name: "proxy", RestartPolicy: &always, Resources: corev1.ResourceRequirements{Requests: rl("cpu", "500m")}},
				{Name: "setup", Resources: corev1.ResourceRequirements{Requests: rl("cpu", "4")}}, // beside the sidecar: 4.5
			}
		})},
		{"overhead and pod-level resources", full(func(p *corev1.Pod) {
			p.Spec.Overhead = rl("cpu", "100m")
			p.Spec.Resources = &corev1.ResourceRequirements{Requests: rl("cpu", "3", "memory", "2Gi")}
		})},
		{"resized in place: the status's resources count", full(func(p *corev1.Pod) {
			p.Status.ContainerStatuses[0].AllocatedResources = rl("cpu", "2", "memory", "1Gi")
			p.Status.ContainerStatuses[0].Resources = &corev1.ResourceRequirements{Requests: rl("cpu", "2", "memory", "1Gi")}
			p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodResizeInProgress, Status: corev1.ConditionTrue}}
		})},
		{"terminal", full(func(p *corev1.Pod) { p.Status.Phase = corev1.PodSucceeded })},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := tc.pod.DeepCopy()
			obj, err := requestsOnly(tc.pod)
			if err != nil {
				t.Fatal(err)
			}
			got := obj.(*corev1.Pod)
			if want := podRequests(before); !equalResources(podRequests(got), want) {
				t.Errorf("requests %v after the trim, %v before", podRequests(got), want)
			}
			if got.Name != "p" || got.Namespace != "ns" || got.UID != "u" || got.ResourceVersion != "7" ||
				got.Spec.NodeName != "a" || !maps.Equal(got.Labels, before.Labels) || isTerminal(got) != isTerminal(before) {
				t.Errorf("lost what the capacity rules read: %+v", got)
			}
			if got.Annotations != nil || got.Spec.Volumes != nil || got.Spec.Tolerations != nil ||
				got.Spec.Containers[0].Env != nil || got.Spec.Containers[0].Image != "" ||
				(len(got.Status.ContainerStatuses) > 0 && got.Status.ContainerStatuses[0].Image != "") {
				t.Errorf("kept what the capacity rules never read: %+v", got)
			}
		})
	}
	tombstone := cache.DeletedFinalStateUnknown{Key: "ns/p"}
	if got, err := requestsOnly(tombstone); err != nil || got != tombstone {
		t.Errorf("a tombstone became %v, %v", got, err)
	}
}
