package provider

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/flotilla-io/flotilla/metrics"
	"github.com/flotilla-io/flotilla/provider/follow"
	"github.com/flotilla-io/flotilla/tenancy"
)

func TestProxyStatus(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 600, time.UTC)
	at := metav1.NewTime(now.Truncate(time.Second))
	started := metav1.NewTime(time.Date(2026, 1, 2, 3, 0, 0, 0, time.UTC))
	env := statusEnv{cluster: "eu-west-3-1", hostIP: "10.0.0.7", now: now}
	host := []corev1.HostIP{{IP: "10.0.0.7"}}
	scheduled := corev1.PodCondition{Type: corev1.PodScheduled, Status: corev1.ConditionTrue, ObservedGeneration: 1}

	// pending is a proxy just bound to the virtual node.
	pending := func() *corev1.Pod {
		return &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web-1", UID: "proxy-uid", Generation: 1},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "nginx:1"}}},
			Status: corev1.PodStatus{Phase: corev1.PodPending, QOSClass: corev1.PodQOSBestEffort, ObservedGeneration: 1,
				Conditions: []corev1.PodCondition{scheduled}},
		}
	}
	runningContainer := corev1.ContainerStatus{Name: "app", Image: "nginx:1", Ready: true, Started: new(true),
		State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: started}}}
	// running is a proxy showing its running delegate.
	running := func() *corev1.Pod {
		p := pending()
		p.Status = corev1.PodStatus{Phase: corev1.PodRunning, QOSClass: corev1.PodQOSBestEffort, ObservedGeneration: 1,
			Conditions: []corev1.PodCondition{scheduled,
				{Type: corev1.PodReady, Status: corev1.ConditionTrue}, {Type: corev1.ContainersReady, Status: corev1.ConditionTrue}},
			HostIP: "10.0.0.7", HostIPs: host, PodIP: "10.244.1.5", PodIPs: []corev1.PodIP{{IP: "10.244.1.5"}}, StartTime: &started,
			ContainerStatuses: []corev1.ContainerStatus{runningContainer}}
		return p
	}
	delegate := func() *corev1.Pod {
		return &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web-1", UID: "delegate-uid", Generation: 3},
			Status: corev1.PodStatus{Phase: corev1.PodRunning, QOSClass: corev1.PodQOSBurstable, ObservedGeneration: 3,
				NominatedNodeName: "eu-west-3-1-node-b",
				Conditions: []corev1.PodCondition{
					{Type: corev1.PodReady, Status: corev1.ConditionTrue, ObservedGeneration: 3},
					{Type: corev1.ContainersReady, Status: corev1.ConditionTrue},
				},
				HostIP: "172.18.0.3", HostIPs: []corev1.HostIP{{IP: "172.18.0.3"}},
				PodIP: "10.244.1.5", PodIPs: []corev1.PodIP{{IP: "10.244.1.5"}}, StartTime: &started,
				InitContainerStatuses: []corev1.ContainerStatus{{Name: "init", State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{Reason: "Completed"}}}},
				ContainerStatuses:     []corev1.ContainerStatus{runningContainer},
			},
		}
	}
	// deleting is a proxy being deleted that a finalizer keeps until it is terminal; removing one that goes
	// at once.
	removing := func(p *corev1.Pod) *corev1.Pod {
		p.DeletionTimestamp = &at
		return p
	}
	deleting := func(p *corev1.Pod) *corev1.Pod {
		p = removing(p)
		p.Finalizers = []string{"batch.kubernetes.io/job-tracking"}
		return p
	}
	unknown := func(startedAt metav1.Time) corev1.ContainerStatus {
		return corev1.ContainerStatus{Name: "app", Image: "nginx:1", Started: new(false),
			State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 137, Reason: "ContainerStatusUnknown",
				Message: "The container could not be located when the pod was terminated", StartedAt: startedAt, FinishedAt: at}}}
	}
	notReady := func(t corev1.PodConditionType) corev1.PodCondition {
		return corev1.PodCondition{Type: t, Status: corev1.ConditionFalse, Reason: "PodCompleted", LastTransitionTime: at}
	}

	tests := []struct {
		name     string
		proxy    *corev1.Pod
		delegate *corev1.Pod
		problem  *problem
		down     string // the virtual node's Ready reason while it is not Ready (env.clusterNotReady)
		unknown  bool   // the delegate could not be read (env.delegateUnknown)
		want     *corev1.PodStatus
	}{
		{name: "nothing to say while the delegate is being created", proxy: pending()},
		{
			name:     "a terminal proxy is final",
			proxy:    func() *corev1.Pod { p := running(); p.Status.Phase = corev1.PodSucceeded; return p }(),
			delegate: delegate(),
		},
		{
			name:     "the delegate's status on the virtual node, keeping the proxy's QoS and generations",
			proxy:    pending(),
			delegate: delegate(),
			want: &corev1.PodStatus{Phase: corev1.PodRunning, QOSClass: corev1.PodQOSBestEffort, ObservedGeneration: 1,
				Conditions: []corev1.PodCondition{
					{Type: corev1.PodReady, Status: corev1.ConditionTrue},
					{Type: corev1.ContainersReady, Status: corev1.ConditionTrue},
					scheduled,
				},
				HostIP: "10.0.0.7", HostIPs: host, PodIP: "10.244.1.5", PodIPs: []corev1.PodIP{{IP: "10.244.1.5"}}, StartTime: &started,
				InitContainerStatuses: delegate().Status.InitContainerStatuses,
				ContainerStatuses:     []corev1.ContainerStatus{runningContainer},
			},
		},
		{
			name:  "the workload scheduler's verdict replaces the proxy's PodScheduled",
			proxy: pending(),
			delegate: func() *corev1.Pod {
				d := delegate()
				d.Status = corev1.PodStatus{Phase: corev1.PodPending, Conditions: []corev1.PodCondition{{Type: corev1.PodScheduled,
					Status: corev1.ConditionFalse, Reason: corev1.PodReasonUnschedulable, Message: "0/3 nodes are available: 3 Insufficient cpu."}}}
				return d
			}(),
			want: &corev1.PodStatus{Phase: corev1.PodPending, QOSClass: corev1.PodQOSBestEffort, ObservedGeneration: 1,
				Conditions: []corev1.PodCondition{{Type: corev1.PodScheduled, Status: corev1.ConditionFalse, ObservedGeneration: 1,
					Reason: corev1.PodReasonUnschedulable, Message: "0/3 nodes are available: 3 Insufficient cpu."}}},
		},
		{
			name:  "a delegate no one in the workload cluster has reported on leaves the proxy as it is",
			proxy: pending(),
			delegate: func() *corev1.Pod {
				d := delegate()
				d.Status = corev1.PodStatus{Phase: corev1.PodPending, QOSClass: corev1.PodQOSBestEffort}
				return d
			}(),
			want: &pending().Status,
		},
		{
			name:  "the workload scheduler placing the delegate leaves the proxy as it is",
			proxy: pending(),
			delegate: func() *corev1.Pod {
				d := delegate()
				d.Status = corev1.PodStatus{Phase: corev1.PodPending, Conditions: []corev1.PodCondition{
					{Type: corev1.PodScheduled, Status: corev1.ConditionTrue, LastTransitionTime: started}}}
				return d
			}(),
			want: &pending().Status,
		},
		{
			name:  "the kubelet's first report brings the host IP",
			proxy: pending(),
			delegate: func() *corev1.Pod {
				d := delegate()
				d.Status = corev1.PodStatus{Phase: corev1.PodPending, ContainerStatuses: []corev1.ContainerStatus{{Name: "app", Image: "nginx:1",
					State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ContainerCreating"}}}}}
				return d
			}(),
			want: &corev1.PodStatus{Phase: corev1.PodPending, QOSClass: corev1.PodQOSBestEffort, ObservedGeneration: 1,
				Conditions: []corev1.PodCondition{scheduled}, HostIP: "10.0.0.7", HostIPs: host,
				ContainerStatuses: []corev1.ContainerStatus{{Name: "app", Image: "nginx:1",
					State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ContainerCreating"}}}}},
		},
		{
			name:     "the delegate's status wins over a stale problem",
			proxy:    pending(),
			delegate: delegate(),
			problem:  &problem{reason: ReasonRefused, message: "no"},
			want:     proxyStatus(pending(), delegate(), nil, env),
		},
		{
			name:    "a problem shows as Pending with the reason on pod and containers",
			proxy:   pending(),
			problem: &problem{reason: ReasonRefused, message: "workload cluster eu-west-3-1 refused the delegate pod: exceeded quota"},
			want: &corev1.PodStatus{Phase: corev1.PodPending, QOSClass: corev1.PodQOSBestEffort, ObservedGeneration: 1,
				Reason: ReasonRefused, Message: "workload cluster eu-west-3-1 refused the delegate pod: exceeded quota",
				Conditions: []corev1.PodCondition{scheduled}, HostIP: "10.0.0.7", HostIPs: host,
				ContainerStatuses: []corev1.ContainerStatus{{Name: "app", Image: "nginx:1", State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{
					Reason: ReasonRefused, Message: "workload cluster eu-west-3-1 refused the delegate pod: exceeded quota"}}}}},
		},
		{name: "a terminating proxy whose delegate is gone is removed at once, with no terminal status first", proxy: removing(running())},
		{
			name:  "a terminating proxy a finalizer keeps whose delegate is gone has its containers terminated and fails",
			proxy: deleting(running()),
			want: func() *corev1.PodStatus {
				s := running().Status
				s.Phase = corev1.PodFailed
				s.Conditions = []corev1.PodCondition{scheduled, notReady(corev1.PodReady), notReady(corev1.ContainersReady)}
				s.ContainerStatuses = []corev1.ContainerStatus{unknown(started)}
				return &s
			}(),
		},
		{
			name: "a terminating proxy a finalizer keeps whose containers had all exited 0 succeeds",
			proxy: func() *corev1.Pod {
				p := deleting(running())
				p.Status.ContainerStatuses[0].State = corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 0, Reason: "Completed"}}
				p.Status.ContainerStatuses[0].Ready = false
				return p
			}(),
			want: func() *corev1.PodStatus {
				s := running().Status
				s.Phase = corev1.PodSucceeded
				s.Conditions = []corev1.PodCondition{scheduled, notReady(corev1.PodReady), notReady(corev1.ContainersReady)}
				s.ContainerStatuses[0].State = corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 0, Reason: "Completed"}}
				s.ContainerStatuses[0].Ready = false
				return &s
			}(),
		},
		{
			name:  "a terminating proxy a finalizer keeps that never ran fails without container statuses",
			proxy: deleting(pending()),
			want: func() *corev1.PodStatus {
				s := pending().Status
				s.Phase = corev1.PodFailed
				return &s
			}(),
		},
		{
			name:  "a started proxy whose delegate vanished was disrupted",
			proxy: running(),
			want: func() *corev1.PodStatus {
				s := running().Status
				s.Phase = corev1.PodFailed
				s.Reason = ReasonDeletedInWorkloadCluster
				s.Message = "the delegate pod was deleted in workload cluster eu-west-3-1"
				s.Conditions = []corev1.PodCondition{scheduled, notReady(corev1.PodReady), notReady(corev1.ContainersReady),
					{Type: corev1.DisruptionTarget, Status: corev1.ConditionTrue, Reason: ReasonDeletedInWorkloadCluster,
						Message: "the delegate pod was deleted in workload cluster eu-west-3-1", LastTransitionTime: at}}
				s.ContainerStatuses = []corev1.ContainerStatus{unknown(started)}
				return &s
			}(),
		},
		// The cluster is lost: the virtual node is not Ready.
		{
			name:     "while the cluster is not Ready a Running proxy stays Running but is not Ready, naming the cluster",
			proxy:    running(),
			delegate: delegate(),
			down:     "ClusterUnreachable",
			want: func() *corev1.PodStatus {
				s := proxyStatus(running(), delegate(), nil, env)
				s.Conditions[0] = clusterNotReady(corev1.PodReady, "ClusterUnreachable", "Running and Ready")
				s.Conditions[1] = clusterNotReady(corev1.ContainersReady, "ClusterUnreachable", "Running and Ready")
				return s
			}(),
		},
		{
			name:  "a delegate that was not Ready is said to have been so",
			proxy: running(),
			delegate: func() *corev1.Pod {
				d := delegate()
				d.Status.Conditions[0].Status, d.Status.Conditions[1].Status = corev1.ConditionFalse, corev1.ConditionFalse
				return d
			}(),
			down: "NoReadyNodes",
			want: func() *corev1.PodStatus {
				s := proxyStatus(running(), delegate(), nil, env)
				s.Conditions[0] = clusterNotReady(corev1.PodReady, "NoReadyNodes", "Running, not Ready")
				s.Conditions[1] = clusterNotReady(corev1.ContainersReady, "NoReadyNodes", "Running, not Ready")
				return s
			}(),
		},
		{
			name:    "a delegate nobody can read leaves the proxy's own status, not Ready",
			proxy:   running(),
			down:    "ClusterUnreachable",
			unknown: true,
			want: func() *corev1.PodStatus {
				s := running().Status
				s.Conditions = []corev1.PodCondition{scheduled,
					clusterNotReady(corev1.PodReady, "ClusterUnreachable", "Running and Ready"),
					clusterNotReady(corev1.ContainersReady, "ClusterUnreachable", "Running and Ready")}
				return &s
			}(),
		},
		{
			name: "a proxy that already shows the lost cluster keeps its conditions as they are",
			proxy: func() *corev1.Pod {
				p := running()
				p.Status.Conditions[1] = clusterNotReady(corev1.PodReady, "NoReadyNodes", "Running and Ready")
				p.Status.Conditions[1].LastTransitionTime = started
				p.Status.Conditions[2] = clusterNotReady(corev1.ContainersReady, "NoReadyNodes", "Running and Ready")
				p.Status.Conditions[2].LastTransitionTime = started
				return p
			}(),
			down:    "ClusterUnreachable",
			unknown: true,
			want: func() *corev1.PodStatus {
				s := running().Status
				s.Conditions[1] = clusterNotReady(corev1.PodReady, "NoReadyNodes", "Running and Ready")
				s.Conditions[1].LastTransitionTime = started
				s.Conditions[2] = clusterNotReady(corev1.ContainersReady, "NoReadyNodes", "Running and Ready")
				s.Conditions[2].LastTransitionTime = started
				return &s
			}(),
		},
		{
			name:     "a Pending proxy whose delegate last ran shows it Running, not Ready",
			proxy:    pending(),
			delegate: delegate(),
			down:     "ClusterUnreachable",
			want: func() *corev1.PodStatus {
				s := proxyStatus(pending(), delegate(), nil, env)
				s.Conditions[0] = clusterNotReady(corev1.PodReady, "ClusterUnreachable", "Running and Ready")
				s.Conditions[1] = clusterNotReady(corev1.ContainersReady, "ClusterUnreachable", "Running and Ready")
				return s
			}(),
		},
		{
			name:  "a delegate not yet Running is shown as it was",
			proxy: pending(),
			delegate: func() *corev1.Pod {
				d := delegate()
				d.Status = corev1.PodStatus{Phase: corev1.PodPending, Conditions: []corev1.PodCondition{{Type: corev1.PodScheduled, Status: corev1.ConditionTrue}}}
				return d
			}(),
			down: "ClusterUnreachable",
			want: &pending().Status,
		},
		{
			name:     "a terminal proxy stays final while the cluster is not Ready",
			proxy:    func() *corev1.Pod { p := running(); p.Status.Phase = corev1.PodFailed; return p }(),
			delegate: delegate(),
			down:     "ClusterUnreachable",
		},
		{
			name:  "a delegate known to be gone ends its proxy even while the cluster has no Ready node",
			proxy: running(),
			down:  "NoReadyNodes",
			want:  proxyStatus(running(), nil, nil, env),
		},
		{
			name:    "an unreadable delegate is never taken for a lost one",
			proxy:   func() *corev1.Pod { p := running(); p.Status.Phase = corev1.PodPending; return p }(),
			down:    "ClusterUnreachable",
			unknown: true,
		},
		{
			name:    "an unreadable delegate is never taken for a stopped one",
			proxy:   func() *corev1.Pod { p := deleting(running()); p.Status.Phase = corev1.PodPending; return p }(),
			down:    "ClusterUnreachable",
			unknown: true,
		},
		{
			name:    "with the delegate unreadable, a recorded problem still shows",
			proxy:   pending(),
			problem: &problem{reason: ReasonDelegationFailed, message: "delegating to workload cluster eu-west-3-1 failed: timeout"},
			down:    "ClusterUnreachable",
			unknown: true,
			want:    proxyStatus(pending(), nil, &problem{reason: ReasonDelegationFailed, message: "delegating to workload cluster eu-west-3-1 failed: timeout"}, env),
		},
		{
			name: "once the cluster is Ready again the proxy shows its delegate's status",
			proxy: func() *corev1.Pod {
				p := running()
				p.Status = *proxyStatus(running(), delegate(), nil, downEnv(env))
				return p
			}(),
			delegate: delegate(),
			want:     proxyStatus(running(), delegate(), nil, env),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := tt.proxy.DeepCopy()
			env := env
			env.clusterNotReady, env.delegateUnknown = tt.down, tt.unknown
			got := proxyStatus(tt.proxy, tt.delegate, tt.problem, env)
			if !equality.Semantic.DeepEqual(got, tt.want) {
				t.Errorf("status differs (-want +got):\n%s", cmp.Diff(tt.want, got))
			}
			if !equality.Semantic.DeepEqual(tt.proxy, before) {
				t.Errorf("the proxy was modified")
			}
			// Reporting is idempotent: once the proxy shows the status, there is nothing new to report.
			if got != nil && !isTerminal(&tt.proxy.Status) {
				again := tt.proxy.DeepCopy()
				again.Status = *got
				later := env
				later.now = now.Add(time.Minute)
				if next := proxyStatus(again, tt.delegate, tt.problem, later); next != nil && !equality.Semantic.DeepEqual(next, got) {
					t.Errorf("status not stable (-first +second):\n%s", cmp.Diff(got, next))
				}
			}
		})
	}
}

// clusterNotReady is the condition of type t a Running proxy shows while its cluster is not Ready (reason
// the virtual node's), stamped at TestProxyStatus's now.
func clusterNotReady(t corev1.PodConditionType, reason, was string) corev1.PodCondition {
	return corev1.PodCondition{Type: t, Status: corev1.ConditionFalse, Reason: ReasonClusterNotReady,
		Message:            "workload cluster eu-west-3-1 is not Ready (" + reason + "), so the delegate pod's state is unknown; its last known status was " + was,
		LastTransitionTime: metav1.NewTime(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))}
}

// downEnv is env while the cluster does not answer.
func downEnv(env statusEnv) statusEnv {
	env.clusterNotReady = "ClusterUnreachable"
	return env
}

func TestNewSchedulingFailure(t *testing.T) {
	status := func(cs ...corev1.PodCondition) *corev1.PodStatus { return &corev1.PodStatus{Conditions: cs} }
	unschedulable := func(msg string) corev1.PodCondition {
		return corev1.PodCondition{Type: corev1.PodScheduled, Status: corev1.ConditionFalse, Reason: corev1.PodReasonUnschedulable, Message: msg}
	}
	scheduled := corev1.PodCondition{Type: corev1.PodScheduled, Status: corev1.ConditionTrue}
	tests := []struct {
		name          string
		before, after *corev1.PodStatus
		want          string
		wantOK        bool
	}{
		{name: "no condition", before: status(), after: status()},
		{name: "scheduled", before: status(), after: status(scheduled)},
		{name: "newly unschedulable", before: status(scheduled), after: status(unschedulable("0/3 nodes")), want: "0/3 nodes", wantOK: true},
		{name: "new verdict", before: status(unschedulable("0/3 nodes")), after: status(unschedulable("0/4 nodes")), want: "0/4 nodes", wantOK: true},
		{name: "same verdict", before: status(unschedulable("0/3 nodes")), after: status(unschedulable("0/3 nodes"))},
		{name: "scheduling gated is not a failure", before: status(), after: status(corev1.PodCondition{Type: corev1.PodScheduled,
			Status: corev1.ConditionFalse, Reason: corev1.PodReasonSchedulingGated})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := newSchedulingFailure(tt.before, tt.after)
			if got != tt.want || ok != tt.wantOK {
				t.Errorf("newSchedulingFailure = %q, %v; want %q, %v", got, ok, tt.want, tt.wantOK)
			}
		})
	}
}

func TestRefusal(t *testing.T) {
	pods := schema.GroupResource{Resource: "pods"}
	tests := []struct {
		name       string
		err        error
		wantReason string
	}{
		{"quota", apierrors.NewForbidden(pods, "web-1", errors.New("exceeded quota: q, requested: pods=1, used: pods=1, limited: pods=1")), ReasonRefused},
		{"invalid", apierrors.NewInvalid(schema.GroupKind{Kind: "Pod"}, "web-1", field.ErrorList{field.Required(field.NewPath("spec"), "")}), ReasonRefused},
		{"bad request", apierrors.NewBadRequest("no"), ReasonRefused},
		{"overloaded", apierrors.NewTooManyRequests("slow down", 1), ReasonDelegationFailed},
		{"unreachable", errors.New("dial tcp 10.0.0.1:6443: connect: connection refused"), ReasonDelegationFailed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := refusal("eu-west-3-1", tt.err)
			if got.reason != tt.wantReason {
				t.Errorf("reason = %q, want %q", got.reason, tt.wantReason)
			}
			if want := tt.err.Error(); !strings.Contains(got.message, want) || !strings.Contains(got.message, "eu-west-3-1") {
				t.Errorf("message %q should name the cluster and carry %q", got.message, want)
			}
		})
	}
}

func TestReferenceProblem(t *testing.T) {
	forbidden := apierrors.NewForbidden(schema.GroupResource{Resource: "configmaps"}, "app", errors.New("exceeded quota"))
	tests := []struct {
		name                  string
		err                   error
		wantReason, wantEvent string
		wantParts             []string
	}{
		{name: "a missing mandatory Secret is the kubelet's CreateContainerConfigError",
			err:        &follow.MissingReferenceError{Reason: follow.ReasonMandatorySecretNotFound, Kind: follow.KindSecret, Namespace: "shop", Name: "creds"},
			wantReason: ReasonCreateContainerConfigError, wantEvent: follow.ReasonMandatorySecretNotFound, wantParts: []string{`secret "creds" not found`}},
		{name: "a copy's name taken",
			err:        &follow.ConflictError{Reason: follow.ReasonNameConflict, Kind: follow.KindConfigMap, Namespace: "shop", Name: "app", NodeName: "eu-west-3-1"},
			wantReason: ReasonNameConflict, wantEvent: ReasonNameConflict, wantParts: []string{"configmap shop/app", "workload cluster eu-west-3-1"}},
		{name: "a ServiceAccount token Secret never follows",
			err:        fmt.Errorf("ensuring: %w", &follow.UnsupportedReferenceError{Reason: follow.ReasonUnsupportedReference, Kind: follow.KindSecret, Namespace: "shop", Name: "token", Message: "secret token is a ServiceAccount token"}),
			wantReason: ReasonUnsupportedReference, wantEvent: ReasonUnsupportedReference, wantParts: []string{"secret token is a ServiceAccount token", "workload cluster eu-west-3-1"}},
		{name: "a copy the workload cluster refused",
			err:        &follow.RefusedCopyError{Reason: follow.ReasonRefused, Kind: follow.KindConfigMap, Namespace: "shop", Name: "app", NodeName: "eu-west-3-1", Err: forbidden},
			wantReason: ReasonRefused, wantEvent: ReasonRefused, wantParts: []string{"configmap shop/app", "exceeded quota"}},
		{name: "a workload namespace tenancy forbids",
			err:        &tenancy.RefusedError{Reason: tenancy.ReasonWorkloadNamespaceForbidden, Message: "namespace shop belongs to another management cluster (mgmt-2)"},
			wantReason: ReasonWorkloadNamespaceForbidden, wantEvent: ReasonWorkloadNamespaceForbidden, wantParts: []string{"workload cluster eu-west-3-1: namespace shop belongs"}},
		{name: "anything else is what the apiserver's error makes",
			err:        errors.New("connection refused"),
			wantReason: ReasonDelegationFailed, wantEvent: ReasonDelegationFailed, wantParts: []string{"connection refused", "eu-west-3-1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			prob, ev := referenceProblem("eu-west-3-1", tt.err)
			if prob.reason != tt.wantReason || ev.reason != tt.wantEvent {
				t.Errorf("reasons %q (event %q), want %q (event %q)", prob.reason, ev.reason, tt.wantReason, tt.wantEvent)
			}
			for _, part := range tt.wantParts {
				if !strings.Contains(prob.message, part) || !strings.Contains(ev.message, part) {
					t.Errorf("message %q (event %q) does not say %q", prob.message, ev.message, part)
				}
			}
		})
	}
}

func TestTenancyProblem(t *testing.T) {
	tests := []struct {
		name       string
		err        error
		wantReason string
		wantParts  []string
	}{
		{"a foreign ServiceAccount", fmt.Errorf("preparing: %w", &tenancy.RefusedError{Reason: tenancy.ReasonNameConflict, Message: "ServiceAccount shop/web exists"}),
			ReasonNameConflict, []string{"workload cluster eu-west-3-1: ServiceAccount shop/web exists"}},
		{"a forbidden workload namespace", &tenancy.RefusedError{Reason: tenancy.ReasonWorkloadNamespaceForbidden, Message: "namespace kube-system holds"},
			ReasonWorkloadNamespaceForbidden, []string{"workload cluster eu-west-3-1: namespace kube-system holds"}},
		{"an apiserver's refusal", apierrors.NewForbidden(schema.GroupResource{Resource: "namespaces"}, "shop", errors.New("denied by policy")),
			ReasonRefused, []string{"denied by policy"}},
		{"a failure", errors.New("i/o timeout"), ReasonDelegationFailed, []string{"i/o timeout"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tenancyProblem("eu-west-3-1", tt.err)
			if got.reason != tt.wantReason {
				t.Errorf("reason = %q, want %q", got.reason, tt.wantReason)
			}
			for _, part := range tt.wantParts {
				if !strings.Contains(got.message, part) {
					t.Errorf("message %q does not say %q", got.message, part)
				}
			}
		})
	}
}

func TestNotEnabled(t *testing.T) {
	got := notEnabled("shop", "eu-west-3-1")
	if got.reason != ReasonNamespaceNotEnabled {
		t.Errorf("reason %q", got.reason)
	}
	for _, part := range []string{"namespace shop is not enabled", "workload cluster eu-west-3-1", "kubectl label namespace shop flotilla.io/enabled=true"} {
		if !strings.Contains(got.message, part) {
			t.Errorf("message %q does not say %q", got.message, part)
		}
	}
}

func TestAdmissible(t *testing.T) {
	withVolume := func(v corev1.VolumeSource) *corev1.Pod {
		p := proxyPod()
		p.Spec.Volumes = append(p.Spec.Volumes, corev1.Volume{Name: "data", VolumeSource: v})
		return p
	}
	claim := corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "data-web-1"}}
	tests := []struct {
		name       string
		proxy      *corev1.Pod
		enabled    bool
		wantReason string // empty: admissible
		wantParts  []string
	}{
		{name: "a plain pod of an enabled namespace is delegated", proxy: proxyPod(), enabled: true},
		{name: "optional references that follow are fine",
			proxy: withVolume(corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "app"}}}), enabled: true},
		{name: "a pod of a namespace that is not enabled is not",
			proxy: proxyPod(), wantReason: ReasonNamespaceNotEnabled,
			wantParts: []string{"namespace shop is not enabled", "kubectl label namespace shop flotilla.io/enabled=true", "eu-west-3-1"}},
		{name: "a PersistentVolumeClaim does not follow",
			proxy: withVolume(claim), enabled: true, wantReason: ReasonUnsupportedReference,
			wantParts: []string{`volume "data" refers to PersistentVolumeClaim "data-web-1"`, "workload cluster eu-west-3-1"}},
		{name: "the namespace comes first: nothing of a namespace that does not take part is looked at",
			proxy: withVolume(claim), wantReason: ReasonNamespaceNotEnabled, wantParts: []string{"namespace shop is not enabled"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := tt.proxy.DeepCopy()
			got := admissible(tt.proxy, tt.enabled, "eu-west-3-1")
			switch {
			case tt.wantReason == "" && got != nil:
				t.Fatalf("refused: %+v", *got)
			case tt.wantReason == "":
			case got == nil:
				t.Fatalf("admitted, want %s", tt.wantReason)
			case got.reason != tt.wantReason:
				t.Errorf("reason %q, want %q (%s)", got.reason, tt.wantReason, got.message)
			}
			for _, part := range tt.wantParts {
				if !strings.Contains(got.message, part) {
					t.Errorf("message %q does not say %q", got.message, part)
				}
			}
			if !equality.Semantic.DeepEqual(tt.proxy, before) {
				t.Error("the proxy was modified")
			}
		})
	}
}

// TestProblemError: the error that retries a proxy's key reads as what the proxy shows and keeps the error
// the problem was made of.
func TestProblemError(t *testing.T) {
	forbidden := apierrors.NewForbidden(schema.GroupResource{Resource: "pods"}, "web-1", errors.New("violates PodSecurity"))
	refused := &tenancy.RefusedError{Reason: tenancy.ReasonNameConflict, Message: "ServiceAccount shop/web exists"}
	for _, tt := range []struct {
		name  string
		prob  problem
		cause error
		is    func(error) bool
	}{
		{name: "an apiserver's refusal", prob: refusal("eu-west-3-1", forbidden), cause: forbidden, is: apierrors.IsForbidden},
		{name: "a tenancy refusal", prob: tenancyProblem("eu-west-3-1", refused), cause: fmt.Errorf("ensuring: %w", refused),
			is: func(err error) bool { r, ok := tenancy.IsRefused(err); return ok && r == refused }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var err error = &problemError{prob: tt.prob, cause: tt.cause}
			if err.Error() != tt.prob.message {
				t.Errorf("reads %q, want the proxy's message %q", err.Error(), tt.prob.message)
			}
			if !errors.Is(err, tt.cause) || !tt.is(err) {
				t.Errorf("the cause is not in the chain of %#v", err)
			}
		})
	}
}

func TestProxyView(t *testing.T) {
	d := buildDelegate(proxyPod(), testOwner, false, nil)
	d.UID, d.ResourceVersion = "delegate-uid", "9"
	d.Spec.NodeName = "eu-west-3-1-node-a"
	d.Status = corev1.PodStatus{Phase: corev1.PodRunning, HostIP: "172.18.0.3", HostIPs: []corev1.HostIP{{IP: "172.18.0.3"}}}
	before := d.DeepCopy()

	got := proxyView(d, "eu-west-3-1", "10.0.0.7")
	want := d.DeepCopy()
	want.UID, want.ResourceVersion = "proxy-uid", ""
	want.Labels = map[string]string{"app": "web"}
	want.Spec.NodeName = "eu-west-3-1"
	want.Status.HostIP, want.Status.HostIPs = "10.0.0.7", []corev1.HostIP{{IP: "10.0.0.7"}}
	if !equality.Semantic.DeepEqual(got, want) {
		t.Errorf("view differs (-want +got):\n%s", cmp.Diff(want, got))
	}
	if !equality.Semantic.DeepEqual(d, before) {
		t.Errorf("the delegate was modified")
	}
}

func TestOnReadinessChange(t *testing.T) {
	const unreachable, noNodes = "ClusterUnreachable", "NoReadyNodes"
	for _, tc := range []struct {
		name     string
		was, now string
		shown    bool
		want     readinessAction
	}{
		{"Ready, still Ready", "", "", false, leaveStatuses},
		{"turns NotReady: shown once the grace ends", "", unreachable, false, queueStatusesAfterGrace},
		{"Ready again before the grace ended: the node lifecycle controller may have marked proxies", unreachable, "", false, queueStatusesNow},
		{"Ready again after it showed: every proxy shows its delegate again", unreachable, "", true, queueStatusesNow},
		{"another reason within the grace: the spell's grace decides", unreachable, noNodes, false, leaveStatuses},
		{"another reason once shown: the proxies show the new one", unreachable, noNodes, true, queueStatusesNow},
		{"same reason again", unreachable, unreachable, true, leaveStatuses},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := onReadinessChange(tc.was, tc.now, tc.shown); got != tc.want {
				t.Errorf("onReadinessChange(%q, %q, %v) = %d, want %d", tc.was, tc.now, tc.shown, got, tc.want)
			}
		})
	}
}

func TestStatusChange(t *testing.T) {
	ready := func(status corev1.ConditionStatus, reason string) corev1.PodCondition {
		return corev1.PodCondition{Type: corev1.PodReady, Status: status, Reason: reason}
	}
	scheduled := corev1.PodCondition{Type: corev1.PodScheduled, Status: corev1.ConditionTrue}
	unschedulable := corev1.PodCondition{Type: corev1.PodScheduled, Status: corev1.ConditionFalse, Reason: corev1.PodReasonUnschedulable}
	waiting := []corev1.ContainerStatus{{Name: "app", State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ContainerCreating"}}}}
	running := []corev1.ContainerStatus{{Name: "app", Ready: true, State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}}}
	restarted := []corev1.ContainerStatus{{Name: "app", Ready: true, RestartCount: 1, State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}}}
	status := func(phase corev1.PodPhase, containers []corev1.ContainerStatus, conditions ...corev1.PodCondition) corev1.PodStatus {
		return corev1.PodStatus{Phase: phase, Conditions: conditions, ContainerStatuses: containers}
	}
	pendingFor := func(reason string) corev1.PodStatus {
		s := status(corev1.PodPending, nil, scheduled)
		s.Reason = reason
		return s
	}
	for _, tc := range []struct {
		name          string
		before, after corev1.PodStatus
		want          string
	}{
		{"bound proxy starts", status(corev1.PodPending, nil, scheduled),
			status(corev1.PodRunning, running, scheduled, ready(corev1.ConditionTrue, "")), metrics.StatusStarted},
		{"started before ready: still its start", status(corev1.PodPending, waiting, scheduled),
			status(corev1.PodRunning, running, scheduled, ready(corev1.ConditionFalse, "ContainersNotReady")), metrics.StatusStarted},
		{"becomes ready", status(corev1.PodRunning, running, scheduled, ready(corev1.ConditionFalse, "ContainersNotReady")),
			status(corev1.PodRunning, running, scheduled, ready(corev1.ConditionTrue, "")), metrics.StatusReadiness},
		{"workload cluster lost", status(corev1.PodRunning, running, scheduled, ready(corev1.ConditionTrue, "")),
			status(corev1.PodRunning, running, scheduled, ready(corev1.ConditionFalse, ReasonClusterNotReady)), metrics.StatusClusterNotReady},
		{"workload cluster back", status(corev1.PodRunning, running, scheduled, ready(corev1.ConditionFalse, ReasonClusterNotReady)),
			status(corev1.PodRunning, running, scheduled, ready(corev1.ConditionTrue, "")), metrics.StatusClusterReady},
		{"delegate finishes", status(corev1.PodRunning, running, scheduled, ready(corev1.ConditionTrue, "")),
			status(corev1.PodSucceeded, nil, scheduled, ready(corev1.ConditionFalse, "PodCompleted")), metrics.StatusFinished},
		{"lost while the cluster was not ready: finished", status(corev1.PodRunning, running, scheduled, ready(corev1.ConditionFalse, ReasonClusterNotReady)),
			status(corev1.PodFailed, nil, scheduled, ready(corev1.ConditionFalse, ReasonClusterNotReady)), metrics.StatusFinished},
		{"workload scheduler cannot place the delegate", status(corev1.PodPending, nil, scheduled),
			status(corev1.PodPending, nil, unschedulable), metrics.StatusWaiting},
		{"a problem keeps the delegate from being created", status(corev1.PodPending, nil, scheduled), pendingFor("Refused"), metrics.StatusWaiting},
		{"another problem", pendingFor("Refused"), pendingFor("NameConflict"), metrics.StatusWaiting},
		{"container restarted", status(corev1.PodRunning, running, scheduled, ready(corev1.ConditionTrue, "")),
			status(corev1.PodRunning, restarted, scheduled, ready(corev1.ConditionTrue, "")), metrics.StatusContainers},
		{"Pending containers being created", status(corev1.PodPending, nil, scheduled),
			status(corev1.PodPending, waiting, scheduled), metrics.StatusContainers},
		{"a condition of a management controller's", status(corev1.PodRunning, running, scheduled),
			status(corev1.PodRunning, running, scheduled, corev1.PodCondition{Type: corev1.DisruptionTarget, Status: corev1.ConditionTrue}), metrics.StatusOther},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := statusChange(&tc.before, &tc.after); got != tc.want {
				t.Errorf("statusChange = %q, want %q", got, tc.want)
			}
		})
	}
}

// TestStatusUpdate: the pod handed to the pod controller carries the proxy's current metadata and the new
// status, and no spec, which a status write would drop.
func TestStatusUpdate(t *testing.T) {
	proxy := &corev1.Pod{
		TypeMeta:   metav1.TypeMeta{Kind: "Pod", APIVersion: "v1"},
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "shop", UID: "u1", ResourceVersion: "42", Labels: map[string]string{"app": "web"}},
		Spec:       corev1.PodSpec{NodeName: "eu-west-3-1", Containers: []corev1.Container{{Name: "app", Image: "nginx"}}},
		Status:     corev1.PodStatus{Phase: corev1.PodPending},
	}
	status := &corev1.PodStatus{Phase: corev1.PodRunning}
	got := statusUpdate(proxy, status)
	want := &corev1.Pod{TypeMeta: proxy.TypeMeta, ObjectMeta: proxy.ObjectMeta, Status: *status}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("statusUpdate (-want +got):\n%s", diff)
	}
	got.Labels["app"] = "changed"
	if proxy.Labels["app"] != "web" {
		t.Error("statusUpdate shares the proxy's labels: the pod controller's copy would change the cache's")
	}
}
