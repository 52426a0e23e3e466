package provider

import (
	"maps"
	"slices"
	"strings"

	"github.com/flotilla-io/flotilla/node"
	"github.com/flotilla-io/flotilla/provider/follow"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// owner is the virtual node a delegate belongs to.
type owner struct {
	managementID string
	nodeName     string
	clusterName  string
}

// labels mark a workload pod as this virtual node's (with its parent's UID, a delegate). Namespaces and
// ServiceAccounts carry only the management cluster's label (package tenancy): every virtual node of the
// management cluster shares them.
func (o owner) labels() map[string]string {
	return OwnerLabels(o.managementID, o.nodeName)
}

// delegateLabels are the ownership labels of the delegate of the proxy with the given UID.
func (o owner) delegateLabels(parentUID types.UID) map[string]string {
	l := o.labels()
	l[LabelParentUID] = string(parentUID)
	return l
}

// owns reports whether a workload pod is one of this virtual node's delegates (of any proxy).
func (o owner) owns(pod *corev1.Pod) bool {
	return pod.Labels[LabelManagement] == o.managementID && pod.Labels[LabelNode] == o.nodeName &&
		pod.Labels[LabelParentUID] != ""
}

// virtualNode is the virtual node as far as scheduling terms can tell it apart from workload nodes: its name
// and the base labels only it carries. (Labels it shares with the workload nodes, such as the region, are
// left to the workload scheduler.)
func (o owner) virtualNode() *corev1.Node {
	return &corev1.Node{ObjectMeta: metav1.ObjectMeta{
		Name:   o.nodeName,
		Labels: node.Labels(o.nodeName, o.clusterName),
	}}
}

// parentUID is the UID of the proxy a delegate stands for.
func parentUID(delegate *corev1.Pod) types.UID {
	return types.UID(delegate.Labels[LabelParentUID])
}

// The delegate records which of its label and annotation keys came from the proxy (comma-separated; keys
// hold no commas), so that an update removes a key the proxy dropped while keys the workload cluster
// added (admission webhooks, service meshes, CNIs) stay.
const (
	annotationProxyLabels      = "flotilla.io/proxy-labels"
	annotationProxyAnnotations = "flotilla.io/proxy-annotations"
)

// buildDelegate is the pod that runs proxy in the workload cluster. keepPriorityClass says whether the
// proxy's PriorityClass exists there: the workload's Priority admission rejects a pod naming a class it does
// not know, so without one the delegate gets the workload cluster's default priority instead. drop lists the
// optional ConfigMaps and Secrets the delegate must not name (see dropReferences).
func buildDelegate(proxy *corev1.Pod, o owner, keepPriorityClass bool, drop []follow.Reference) *corev1.Pod {
	// Only identity, labels and annotations cross over: uid, resourceVersion, ownerReferences (they name
	// management objects), finalizers (no workload controller would remove them) and managedFields belong
	// to the proxy, and the status is the workload cluster's to write.
	labels := maps.Clone(proxy.Labels)
	if labels == nil {
		labels = map[string]string{}
	}
	maps.Copy(labels, o.delegateLabels(proxy.UID))
	annotations := maps.Clone(proxy.Annotations)
	if annotations == nil {
		annotations = map[string]string{}
	}
	ours := o.delegateLabels(proxy.UID)
	var labelKeys []string // the proxy's own: forged ownership labels were overwritten above
	for k := range proxy.Labels {
		if _, mine := ours[k]; !mine {
			labelKeys = append(labelKeys, k)
		}
	}
	slices.Sort(labelKeys)
	annotations[annotationProxyLabels] = strings.Join(labelKeys, ",")
	annotations[annotationProxyAnnotations] = strings.Join(slices.Sorted(maps.Keys(proxy.Annotations)), ",")
	d := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Namespace:   proxy.Namespace,
			Name:        proxy.Name,
			Labels:      labels,
			Annotations: annotations,
		},
		Spec: *proxy.Spec.DeepCopy(),
	}
	s := &d.Spec
	// The workload scheduler places the delegate; the virtual node's name means nothing there.
	s.NodeName = ""
	s.Tolerations = slices.DeleteFunc(s.Tolerations, func(t corev1.Toleration) bool { return t.Key == node.TaintKey })
	placeInWorkload(s, o.virtualNode())
	// The management cluster's scheduler chose the cluster; the workload's default scheduler chooses the
	// node. A scheduler name the workload cluster does not run would leave the delegate Pending without a word.
	s.SchedulerName = ""
	dropManagementToken(s)
	dropReferences(s, drop)
	// Priority, preemption policy and overhead are filled in by admission from the PriorityClass and
	// RuntimeClass; the workload's admission rejects values that differ from what it would compute itself.
	s.Priority = nil
	s.PreemptionPolicy = nil
	if !keepPriorityClass {
		s.PriorityClassName = ""
	}
	s.Overhead = nil
	// Ephemeral containers cannot be set when a pod is created.
	s.EphemeralContainers = nil
	return d
}

// dropManagementToken removes the volume through which the management cluster's ServiceAccount admission
// mounted a token for the management cluster, and its mounts: the workload cluster's admission mounts its
// own token for the ServiceAccount of the same name.
func dropManagementToken(s *corev1.PodSpec) {
	dropped := map[string]bool{}
	s.Volumes = slices.DeleteFunc(s.Volumes, func(v corev1.Volume) bool {
		dropped[v.Name] = isServiceAccountTokenVolume(v)
		return dropped[v.Name]
	})
	for _, cs := range [][]corev1.Container{s.InitContainers, s.Containers} {
		for i := range cs {
			cs[i].VolumeMounts = slices.DeleteFunc(cs[i].VolumeMounts, func(m corev1.VolumeMount) bool { return dropped[m.Name] })
		}
	}
}

// isServiceAccountTokenVolume recognises the projected volume the ServiceAccount admission plugin adds
// (kube-api-access-<suffix>, with a serviceAccountToken source). A volume a user named so by hand without
// a token source is kept.
func isServiceAccountTokenVolume(v corev1.Volume) bool {
	return strings.HasPrefix(v.Name, "kube-api-access-") && v.Projected != nil &&
		slices.ContainsFunc(v.Projected.Sources, func(p corev1.VolumeProjection) bool { return p.ServiceAccountToken != nil })
}

// withProxyChanges returns live with the changes of desired that Kubernetes accepts on an existing pod:
// labels, annotations, container and init container images, activeDeadlineSeconds and added tolerations.
// changed says whether there is anything to write.
func withProxyChanges(live, desired *corev1.Pod) (updated *corev1.Pod, changed bool) {
	u := live.DeepCopy()
	u.Labels = mergeKeys(live.Labels, desired.Labels, live.Annotations[annotationProxyLabels])
	u.Annotations = mergeKeys(live.Annotations, desired.Annotations, live.Annotations[annotationProxyAnnotations])
	setImages(u.Spec.InitContainers, desired.Spec.InitContainers)
	setImages(u.Spec.Containers, desired.Spec.Containers)
	u.Spec.ActiveDeadlineSeconds = desired.Spec.ActiveDeadlineSeconds
	// Tolerations can only be added; the workload's admission may have added its own, which stay.
	for _, t := range desired.Spec.Tolerations {
		if !slices.ContainsFunc(u.Spec.Tolerations, func(have corev1.Toleration) bool { return equality.Semantic.DeepEqual(have, t) }) {
			u.Spec.Tolerations = append(u.Spec.Tolerations, t)
		}
	}
	return u, !equality.Semantic.DeepEqual(u, live)
}

// mergeKeys is live with every entry of desired set, and the keys the proxy gave before (recorded, a
// comma-separated list) but no longer gives removed; keys someone else added stay.
func mergeKeys(live, desired map[string]string, recorded string) map[string]string {
	out := maps.Clone(live)
	if out == nil {
		out = map[string]string{}
	}
	for _, k := range strings.Split(recorded, ",") {
		if _, ok := desired[k]; !ok {
			delete(out, k)
		}
	}
	maps.Copy(out, desired)
	return out
}

// setImages gives each container of cs the image of the container of the same name in from.
func setImages(cs, from []corev1.Container) {
	for i := range cs {
		if j := slices.IndexFunc(from, func(c corev1.Container) bool { return c.Name == cs[i].Name }); j >= 0 {
			cs[i].Image = from[j].Image
		}
	}
}
