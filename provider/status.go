package provider

import (
	"errors"
	"fmt"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/flotilla-io/flotilla/metrics"
	"github.com/flotilla-io/flotilla/provider/follow"
	"github.com/flotilla-io/flotilla/tenancy"
)

// problem is why a proxy has no delegate yet; the proxy shows it until a sync succeeds.
type problem struct {
	reason  string
	message string
}

// problemError is a problem as the error that retries its proxy's key: it reads as the problem's message,
// what the proxy shows, and keeps the error the problem was made of (the apiserver's, a tenancy refusal, one
// of package follow's) in its chain, for errors.Is and errors.As.
type problemError struct {
	prob  problem
	cause error
}

func (e *problemError) Error() string { return e.prob.message }
func (e *problemError) Unwrap() error { return e.cause }

// admissible says what keeps a proxy from being delegated at all, before anything is written to the workload
// cluster: its management namespace does not take part (enabled is false), or its spec names an object that
// does not follow pods (unsupportedReference); nil when neither. The namespace comes first: nothing of a
// namespace that does not take part is looked at. Neither is retried: labelling the namespace brings its
// proxies back (NamespaceChanged), and a pod's volumes and resource claims cannot change.
func admissible(proxy *corev1.Pod, enabled bool, cluster string) *problem {
	if !enabled {
		prob := notEnabled(proxy.Namespace, cluster)
		return &prob
	}
	if why, unsupported := unsupportedReference(&proxy.Spec, cluster); unsupported {
		return &problem{reason: ReasonUnsupportedReference, message: why}
	}
	return nil
}

// notEnabled is what a proxy of a management namespace that does not take part shows.
func notEnabled(namespace, cluster string) problem {
	return problem{reason: ReasonNamespaceNotEnabled, message: fmt.Sprintf(
		"namespace %s is not enabled for delegation, so this pod is not run in workload cluster %s; enable it with: kubectl label namespace %s %s=true",
		namespace, cluster, namespace, tenancy.LabelEnabled)}
}

// referenceProblem is what a proxy shows when the ConfigMaps and Secrets it references could not be
// made to follow it, and the Event that says so: the kubelet's CreateContainerConfigError for a missing
// mandatory reference (with virtual-kubelet's event reason, which its e2e suite waits for), a name
// conflict for a same-named object flotilla does not own, an unsupported reference (a ServiceAccount token
// Secret, which never follows), a copy the workload apiserver refused, a tenancy refusal of the workload
// namespace, or else what the workload apiserver's error makes.
func referenceProblem(cluster string, err error) (problem, event) {
	var missing *follow.MissingReferenceError
	var conflict *follow.ConflictError
	var unsupported *follow.UnsupportedReferenceError
	var refusedCopy *follow.RefusedCopyError
	switch {
	case errors.As(err, &missing):
		return problem{reason: ReasonCreateContainerConfigError, message: missing.Error()}, event{reason: missing.Reason, message: missing.Error()}
	case errors.As(err, &conflict):
		msg := fmt.Sprintf("%s in workload cluster %s", conflict.Error(), cluster)
		return problem{reason: ReasonNameConflict, message: msg}, event{reason: ReasonNameConflict, message: msg}
	case errors.As(err, &unsupported):
		msg := fmt.Sprintf("%s (workload cluster %s)", unsupported.Error(), cluster)
		return problem{reason: ReasonUnsupportedReference, message: msg}, event{reason: ReasonUnsupportedReference, message: msg}
	case errors.As(err, &refusedCopy):
		msg := fmt.Sprintf("%s (workload cluster %s)", refusedCopy.Error(), cluster)
		return problem{reason: ReasonRefused, message: msg}, event{reason: ReasonRefused, message: msg}
	default:
		prob := tenancyProblem(cluster, err)
		return prob, event{reason: prob.reason, message: prob.message}
	}
}

// tenancyProblem is what a proxy shows when tenancy keeps flotilla from the workload namespace or
// ServiceAccount its delegate needs (the RefusedError's reason, WorkloadNamespaceForbidden or NameConflict),
// or else what the workload apiserver's error makes (refusal).
func tenancyProblem(cluster string, err error) problem {
	if refused, ok := tenancy.IsRefused(err); ok {
		return problem{reason: refused.Reason, message: fmt.Sprintf("workload cluster %s: %s", cluster, refused.Message)}
	}
	return refusal(cluster, err)
}

// refusal is the problem an error of the workload apiserver makes: a refusal when the workload cluster
// decided against the pod (quota, admission, validation), which only a change there or to the pod ends; a
// failure otherwise (unreachable, overloaded), which time may end.
func refusal(cluster string, err error) problem {
	if apierrors.IsForbidden(err) || apierrors.IsInvalid(err) || apierrors.IsBadRequest(err) {
		return problem{reason: ReasonRefused, message: fmt.Sprintf("workload cluster %s refused the delegate pod: %v", cluster, err)}
	}
	return problem{reason: ReasonDelegationFailed, message: fmt.Sprintf("delegating to workload cluster %s failed: %v", cluster, err)}
}

// statusEnv is what a proxy's status depends on besides the two pods.
type statusEnv struct {
	cluster string    // the workload cluster's name, for messages
	hostIP  string    // the virtual node's InternalIP
	now     time.Time // when containers flotilla can no longer see are declared terminated
	// clusterNotReady is the reason of the virtual node's Ready condition while it is not True (its workload
	// apiserver does not answer, or none of its nodes is Ready), empty while it is: what flotilla knows of a
	// delegate is then its last known status, not its current one.
	clusterNotReady string
	// delegateUnknown says the delegate could not be read at all (the workload cluster does not answer and
	// the delegate cache has not synced): a nil delegate then means "not known", never "gone".
	delegateUnknown bool
}

// proxyStatus is the status a proxy should show. delegate is the proxy's own delegate (nil when there is
// none), prob what keeps flotilla from creating one (nil when nothing does). nil means there is nothing to
// report yet, such as while the delegate is being created.
func proxyStatus(proxy, delegate *corev1.Pod, prob *problem, env statusEnv) *corev1.PodStatus {
	switch {
	case isTerminal(&proxy.Status):
		return nil // a terminal status is final, and the apiserver refuses to revive terminated containers
	case delegate != nil:
		s := delegatedStatus(&proxy.Status, &delegate.Status, env.hostIP)
		if env.clusterNotReady != "" && s.Phase == corev1.PodRunning {
			return clusterNotReadyStatus(&proxy.Status, s, env)
		}
		return s
	case env.delegateUnknown:
		// Nothing is known of the delegate: it may well run, so the proxy is neither ended nor terminated.
		switch {
		case env.clusterNotReady != "" && proxy.Status.Phase == corev1.PodRunning:
			return clusterNotReadyStatus(&proxy.Status, &proxy.Status, env)
		case prob != nil:
			return waitingStatus(proxy, *prob, env.hostIP)
		}
		return nil
	case proxy.DeletionTimestamp != nil && len(proxy.Finalizers) == 0:
		// The delegate is gone, and the proxy with it at once (reconcile): nobody could read a terminal
		// status, and writing one would race the removal (a conflict, or a write to a pod already gone).
		return nil
	case proxy.DeletionTimestamp != nil:
		// The delegate is gone and so are its containers, but a finalizer keeps the proxy (a Job's, which
		// counts it only once it is terminal): say so, as the kubelet does before the pod goes.
		return terminatedStatus(&proxy.Status, env.now)
	case lost(proxy, delegate):
		return lostStatus(&proxy.Status, fmt.Sprintf("the delegate pod was deleted in workload cluster %s", env.cluster), env.now)
	case prob != nil:
		return waitingStatus(proxy, *prob, env.hostIP)
	}
	return nil
}

// clusterNotReadyStatus is a Running proxy's status while its virtual node is not Ready: the delegate's last
// known status (last), still Running, since nothing says its containers stopped, but with PodReady and
// ContainersReady False (reason ClusterNotReady), as the node lifecycle controller marks the pods of a node
// it lost, so that EndpointSlices, rollouts and disruption budgets stop counting the pod. Each condition is
// set once per outage: one the proxy already shows with this reason is kept as it is (its message and
// transition time), so that re-reporting an unchanged proxy writes nothing.
func clusterNotReadyStatus(proxy, last *corev1.PodStatus, env statusEnv) *corev1.PodStatus {
	s := last.DeepCopy()
	s.Phase = corev1.PodRunning
	was := "Running, not Ready"
	if c := findCondition(last.Conditions, corev1.PodReady); c != nil && c.Status == corev1.ConditionTrue {
		was = "Running and Ready"
	}
	message := fmt.Sprintf("workload cluster %s is not Ready (%s), so the delegate pod's state is unknown; its last known status was %s",
		env.cluster, env.clusterNotReady, was)
	for _, t := range []corev1.PodConditionType{corev1.PodReady, corev1.ContainersReady} {
		if c := findCondition(proxy.Conditions, t); c != nil && c.Status == corev1.ConditionFalse && c.Reason == ReasonClusterNotReady {
			setCondition(s, *c)
			continue
		}
		c := corev1.PodCondition{Type: t, Status: corev1.ConditionFalse, Reason: ReasonClusterNotReady, Message: message,
			LastTransitionTime: metav1.NewTime(env.now).Rfc3339Copy()}
		if have := findCondition(s.Conditions, t); have != nil {
			c.ObservedGeneration = have.ObservedGeneration
		}
		setCondition(s, c)
	}
	return s
}

// lost reports whether the delegate of a live proxy disappeared after it had started: someone else deleted
// or evicted it in the workload cluster. (A delegate that never started is simply created again.) The proxy's
// startTime comes from its delegate, so this survives a restart of flotilla.
func lost(proxy, delegate *corev1.Pod) bool {
	return delegate == nil && proxy.DeletionTimestamp == nil && !isTerminal(&proxy.Status) && proxy.Status.StartTime != nil
}

func isTerminal(s *corev1.PodStatus) bool {
	return s.Phase == corev1.PodSucceeded || s.Phase == corev1.PodFailed
}

// delegatedStatus is the proxy's status while it has a delegate: what the workload kubelet and scheduler
// say, on the virtual node. The rest of the proxy's status stays: its QoS class (immutable, and the
// workload's LimitRanges may have made the delegate's differ), observed generations (the two pods' generations
// are unrelated), and conditions only management controllers set (such as DisruptionTarget or readiness
// gates).
func delegatedStatus(proxy, delegate *corev1.PodStatus, hostIP string) *corev1.PodStatus {
	s := proxy.DeepCopy()
	d := delegate.DeepCopy()
	s.Phase, s.Reason, s.Message = d.Phase, d.Reason, d.Message
	s.Conditions = mergeConditions(proxy.Conditions, d.Conditions)
	s.PodIP, s.PodIPs = d.PodIP, d.PodIPs
	s.StartTime = d.StartTime
	s.InitContainerStatuses = d.InitContainerStatuses
	s.ContainerStatuses = d.ContainerStatuses
	if reported(delegate) {
		setHostIP(s, hostIP)
	}
	return s
}

// reported says whether the delegate's kubelet has reported on it: it shows containers or has left Pending.
// Until then the proxy's status shows only what the workload scheduler says (a delegate it cannot place), and
// gains the host IP with the kubelet's first report, as a kubelet's own first status carries it: a delegate
// being created and placed costs the management cluster no write.
func reported(delegate *corev1.PodStatus) bool {
	return delegate.Phase != corev1.PodPending || len(delegate.ContainerStatuses) > 0 || len(delegate.InitContainerStatuses) > 0
}

// mergeConditions takes each condition type from the delegate when it reports one and from the proxy
// otherwise (the proxy's PodScheduled=True stands until the workload scheduler has spoken, for instance). A
// condition whose status the proxy already shows keeps the proxy's transition and probe times: it has not
// changed for the proxy (the workload scheduler placing the delegate does not re-schedule the proxy), and
// taking the delegate's times would cost a write that says nothing.
func mergeConditions(proxy, delegate []corev1.PodCondition) []corev1.PodCondition {
	out := slices.Clone(delegate)
	for i := range out {
		out[i].ObservedGeneration = 0
		if c := findCondition(proxy, out[i].Type); c != nil {
			out[i].ObservedGeneration = c.ObservedGeneration
			if c.Status == out[i].Status {
				out[i].LastTransitionTime, out[i].LastProbeTime = c.LastTransitionTime, c.LastProbeTime
			}
		}
	}
	for _, c := range proxy {
		if findCondition(out, c.Type) == nil {
			out = append(out, c)
		}
	}
	return out
}

func findCondition(cs []corev1.PodCondition, t corev1.PodConditionType) *corev1.PodCondition {
	if i := slices.IndexFunc(cs, func(c corev1.PodCondition) bool { return c.Type == t }); i >= 0 {
		return &cs[i]
	}
	return nil
}

// setCondition replaces the condition of c's type, or adds c.
func setCondition(s *corev1.PodStatus, c corev1.PodCondition) {
	if have := findCondition(s.Conditions, c.Type); have != nil {
		*have = c
		return
	}
	s.Conditions = append(s.Conditions, c)
}

func setHostIP(s *corev1.PodStatus, hostIP string) {
	s.HostIP, s.HostIPs = "", nil
	if hostIP != "" {
		s.HostIP, s.HostIPs = hostIP, []corev1.HostIP{{IP: hostIP}}
	}
}

// terminatedStatus is the proxy's last status once its delegate is gone: containers not known to have
// exited are reported as the kubelet reports containers it can no longer find, and the phase is terminal
// (Succeeded only if every container had already exited 0), so that the pod controller and Jobs see the end.
func terminatedStatus(proxy *corev1.PodStatus, now time.Time) *corev1.PodStatus {
	s := proxy.DeepCopy()
	at := metav1.NewTime(now).Rfc3339Copy()
	succeeded := len(s.ContainerStatuses) > 0
	for _, cs := range [][]corev1.ContainerStatus{s.InitContainerStatuses, s.ContainerStatuses} {
		for i := range cs {
			c := &cs[i]
			if c.State.Terminated != nil {
				continue
			}
			t := &corev1.ContainerStateTerminated{
				ExitCode:   137,
				Reason:     "ContainerStatusUnknown",
				Message:    "The container could not be located when the pod was terminated",
				FinishedAt: at,
			}
			if r := c.State.Running; r != nil {
				t.StartedAt = r.StartedAt
			}
			c.State = corev1.ContainerState{Terminated: t}
			c.Ready = false
			c.Started = new(false)
		}
	}
	for _, c := range s.ContainerStatuses {
		succeeded = succeeded && c.State.Terminated.ExitCode == 0
	}
	s.Phase = corev1.PodFailed
	if succeeded {
		s.Phase = corev1.PodSucceeded
	}
	for _, t := range []corev1.PodConditionType{corev1.PodReady, corev1.ContainersReady} {
		if c := findCondition(s.Conditions, t); c != nil && c.Status != corev1.ConditionFalse {
			*c = corev1.PodCondition{Type: t, Status: corev1.ConditionFalse, Reason: "PodCompleted",
				LastTransitionTime: at, ObservedGeneration: c.ObservedGeneration}
		}
	}
	return s
}

// lostStatus ends a proxy whose delegate was deleted in the workload cluster by someone else: Failed, with a
// DisruptionTarget condition as Kubernetes sets on pods it disrupts, so that Jobs' pod failure policies and
// users can tell a disruption from a crash.
func lostStatus(proxy *corev1.PodStatus, message string, now time.Time) *corev1.PodStatus {
	s := terminatedStatus(proxy, now)
	s.Phase = corev1.PodFailed
	s.Reason = ReasonDeletedInWorkloadCluster
	s.Message = message
	setCondition(s, corev1.PodCondition{
		Type:               corev1.DisruptionTarget,
		Status:             corev1.ConditionTrue,
		Reason:             ReasonDeletedInWorkloadCluster,
		Message:            message,
		LastTransitionTime: metav1.NewTime(now).Rfc3339Copy(),
	})
	return s
}

// waitingStatus shows why a proxy has no delegate: Pending, with the reason both on the pod and on each
// container's waiting state (where kubectl looks first, and where the kubelet puts
// CreateContainerConfigError).
func waitingStatus(proxy *corev1.Pod, prob problem, hostIP string) *corev1.PodStatus {
	s := proxy.Status.DeepCopy()
	s.Phase = corev1.PodPending
	s.Reason, s.Message = prob.reason, prob.message
	s.ContainerStatuses = nil
	for _, c := range proxy.Spec.Containers {
		s.ContainerStatuses = append(s.ContainerStatuses, corev1.ContainerStatus{
			Name:  c.Name,
			Image: c.Image,
			State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: prob.reason, Message: prob.message}},
		})
	}
	setHostIP(s, hostIP)
	return s
}

// newSchedulingFailure returns the workload scheduler's message when after says the pod cannot be scheduled
// and before did not already say so with the same words, so that each new verdict gets one Event.
func newSchedulingFailure(before, after *corev1.PodStatus) (string, bool) {
	unschedulable := func(s *corev1.PodStatus) *corev1.PodCondition {
		c := findCondition(s.Conditions, corev1.PodScheduled)
		if c == nil || c.Status != corev1.ConditionFalse || c.Reason != corev1.PodReasonUnschedulable {
			return nil
		}
		return c
	}
	a := unschedulable(after)
	if a == nil {
		return "", false
	}
	if b := unschedulable(before); b != nil && b.Message == a.Message {
		return "", false
	}
	return a.Message, true
}

// proxyView is a delegate as the pod controller expects the provider to describe the pod it runs: under the
// proxy's UID, on the virtual node, without flotilla's labels, on the virtual node's address.
func proxyView(delegate *corev1.Pod, nodeName, hostIP string) *corev1.Pod {
	v := delegate.DeepCopy()
	for _, k := range []string{LabelParentUID, LabelManagement, LabelNode} {
		delete(v.Labels, k)
	}
	v.UID = parentUID(delegate)
	v.ResourceVersion = ""
	v.Spec.NodeName = nodeName
	setHostIP(&v.Status, hostIP)
	return v
}

// readinessAction is what a change of the virtual node's Ready condition asks of the proxies' statuses.
type readinessAction int

const (
	leaveStatuses           readinessAction = iota // no proxy shows anything different
	queueStatusesNow                               // every proxy's status is looked at now
	queueStatusesAfterGrace                        // only when notReadyGrace ends, if still not Ready
)

// onReadinessChange says what the node's not-Ready reason changing from was to now ("" for Ready) asks of the
// proxies, where shown says whether was lasted notReadyGrace and so shows on them. A NotReady shows only once
// its grace ends; a reason that changes before then has shown on no proxy, and the grace decides. A node Ready
// again has every proxy looked at, whether the spell showed or not: the management cluster's node lifecycle
// controller marks every pod of a node that turns NotReady not ready on its own, within its
// --node-monitor-period, and only the node's kubelet (flotilla) shows them Ready again, as a kubelet's status
// manager does. Looking costs a status computation per proxy; only those marked are written.
func onReadinessChange(was, now string, shown bool) readinessAction {
	switch {
	case now == was:
		return leaveStatuses
	case was == "":
		return queueStatusesAfterGrace
	case now == "" || shown:
		return queueStatusesNow
	default:
		return leaveStatuses // the grace started with the spell still runs, and decides
	}
}

// statusUpdate is the pod the pod controller is handed to write a proxy's status with (a PUT of the status
// subresource). It carries the proxy's metadata, which must be current: the write takes labels and annotations
// from it too, and an older copy would undo changes made meanwhile. It carries no spec: on a status write the
// apiserver keeps the spec it has, and the pod controller keeps the last pod it was handed for every proxy,
// so a spec would cost memory per pod and bytes per write, and be decoded and dropped by the apiserver.
func statusUpdate(proxy *corev1.Pod, status *corev1.PodStatus) *corev1.Pod {
	return &corev1.Pod{TypeMeta: proxy.TypeMeta, ObjectMeta: *proxy.ObjectMeta.DeepCopy(), Status: *status}
}

// statusChange names the kind of write (metrics.Status...) that turns a proxy's status before into after.
func statusChange(before, after *corev1.PodStatus) string {
	notReadyForCluster := func(s *corev1.PodStatus) bool {
		c := findCondition(s.Conditions, corev1.PodReady)
		return c != nil && c.Status == corev1.ConditionFalse && c.Reason == ReasonClusterNotReady
	}
	readiness := func(s *corev1.PodStatus) corev1.ConditionStatus {
		if c := findCondition(s.Conditions, corev1.PodReady); c != nil {
			return c.Status
		}
		return corev1.ConditionUnknown
	}
	switch {
	case isTerminal(after) && !isTerminal(before):
		return metrics.StatusFinished
	case notReadyForCluster(after) && !notReadyForCluster(before):
		return metrics.StatusClusterNotReady
	case notReadyForCluster(before) && !notReadyForCluster(after):
		return metrics.StatusClusterReady
	case before.Phase == corev1.PodPending && after.Phase != corev1.PodPending:
		return metrics.StatusStarted
	case after.Phase == corev1.PodRunning && readiness(before) != readiness(after):
		return metrics.StatusReadiness
	case after.Phase == corev1.PodPending && (before.Reason != after.Reason || before.Message != after.Message ||
		!equality.Semantic.DeepEqual(findCondition(before.Conditions, corev1.PodScheduled), findCondition(after.Conditions, corev1.PodScheduled))):
		return metrics.StatusWaiting
	case !equality.Semantic.DeepEqual(before.ContainerStatuses, after.ContainerStatuses) ||
		!equality.Semantic.DeepEqual(before.InitContainerStatuses, after.InitContainerStatuses):
		return metrics.StatusContainers
	}
	return metrics.StatusOther
}
