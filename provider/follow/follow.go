// Package follow makes the Services, Ingresses, ConfigMaps and Secrets that a virtual node's proxy pods need
// follow them to the node's workload cluster, and brings the load-balancer addresses of the copies back.
//
// Only proxies that count bring anything along: those of a management namespace enabled for delegation
// (Config.Namespaces), and those that already have a delegate (status.startTime, see delegated), so that a pod
// of any other namespace bound to the node anyway (a preset nodeName) has nothing copied and no workload
// namespace made for it, and removing the label is never an outage (NamespaceChanged).
//
//   - ConfigMaps and Secrets a proxy references (References) are copied before its delegate is created
//     (EnsureFor), kept current, and removed once no proxy of this node references them. EnsureFor tells the
//     provider which optional references the delegate must lose, so that none resolves to a workload object
//     of the same name. ServiceAccount token Secrets never follow.
//   - A Service whose selector matches a proxy of this node is copied (ServiceCopy: without externalIPs,
//     selecting only this management cluster's delegates) and removed once none matches; an Ingress that
//     routes to such a Service is copied too (IngressCopy), and the Secrets its TLS entries name follow
//     with it.
//   - The load-balancer addresses of Service and Ingress copies are published on this node's virtual node
//     (AnnotationLoadBalancers, publish.go), and the status of the management object is written as the
//     union over all virtual nodes (lb.go), for objects some node publishes for, or published for earlier in
//     this process's life. Nothing a user can write on the management object counts (annotations,
//     managedFields).
//
// A copy goes only into a workload namespace the tenancy gate allows (Config.Namespaces). It is created with
// Create, so an object someone else made meanwhile is never written over, and afterwards kept by server-side
// apply under FieldManager with its UID as precondition (an object that took a copy's name since is a
// NameConflict, left alone). Copies carry the owner's labels
// (Config.OwnerLabels); an object without them is never changed or deleted. What keeps a copy from the
// workload cluster (a foreign object of its name, a forbidden namespace, the apiserver's refusal) is a
// Warning Event on the management object, once per distinct problem, and for ConfigMaps and Secrets the
// error EnsureFor returns, which the provider shows on every proxy it blocks. All kinds share one mechanism
// (follower.go): a rate-limited queue per kind fed by informer events, and syncs that read only caches until
// they write.
//
// Management Services and Ingresses are read with cluster-wide informers (Config.ManagementInformers).
// Management ConfigMaps and Secrets are read one object at a time, as the kubelet reads them and as the Node
// authorizer requires of a node (objectwatch.go): each one that a proxy of this node references, or that an
// Ingress this node follows names for TLS, has a watch of its own (field selector metadata.name=<name>),
// started by the first reference and stopped with the last, so a flotilla holds no other ConfigMap or Secret
// of the management cluster. Until its watch has answered, an object is not known, never missing: EnsureFor
// waits a moment for it, then says so (a failure the provider retries); a missing mandatory reference is
// reported only once the watch has answered. A read the management apiserver refuses (under the Node
// authorizer, an Ingress's TLS Secret that no pod of this node references) is a Warning Event
// (ReasonReadForbidden) on each proxy and followed Ingress that needs the object, once per watch; the watch
// backs off meanwhile.
//
// This node's copies are read in the workload cluster one namespace at a time (copywatch.go): flotilla's
// workload identity may read Services, ConfigMaps, Secrets and Ingresses only in the namespaces it uses,
// where it grants itself the read (NamespaceGate.EnsureReadable). The workload cluster's Namespaces are
// watched, and each that flotilla may use (tenancy.Decide: created for this management cluster, or opened to
// flotilla) gets informers of this node's copies of its own, started once the read is granted (retried with
// backoff) and stopped when the namespace goes, is being deleted, or may no longer be used. Until they have
// synced, which copies a namespace holds is not known: a sync of an object of that namespace is requeued
// rather than take its copy for missing, and is queued again once they have synced. Before looking for a copy
// with the apiserver (and creating it), a sync makes its namespace one flotilla may use and read
// (NamespaceGate.Ensure).
package follow

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strings"
	"time"

	"github.com/sirupsen/logrus"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/informers"
	corev1informers "k8s.io/client-go/informers/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"

	"github.com/flotilla-io/flotilla/metrics"
	"github.com/flotilla-io/flotilla/tenancy"
)

// Reasons of the errors EnsureFor returns and of the Events flotilla records; the first six are the
// kubelet's (and virtual-kubelet's) own reasons for the same situations.
const (
	ReasonMandatoryConfigMapNotFound    = "MandatoryConfigMapNotFound"
	ReasonMandatorySecretNotFound       = "MandatorySecretNotFound"
	ReasonMandatoryConfigMapKeyNotFound = "MandatoryConfigMapKeyNotFound"
	ReasonMandatorySecretKeyNotFound    = "MandatorySecretKeyNotFound"
	ReasonOptionalConfigMapNotFound     = "OptionalConfigMapNotFound"
	ReasonOptionalSecretNotFound        = "OptionalSecretNotFound"
	// ReasonNameConflict: an object of the same namespace and name that this node does not own exists in
	// the workload cluster; flotilla leaves it alone.
	ReasonNameConflict = "NameConflict"
	// ReasonRefused: the workload apiserver refused to create or update a copy (quota, admission,
	// validation); the message is the apiserver's.
	ReasonRefused = "Refused"
	// ReasonUnsupportedReference: a proxy needs an object that never follows (a ServiceAccount token
	// Secret).
	ReasonUnsupportedReference = "UnsupportedReference"
	// ReasonReadForbidden: the management apiserver refuses flotilla the read of a ConfigMap or Secret that a
	// proxy or a followed Ingress needs (Warning Event on each); under the Node authorizer, a virtual node
	// may read only the ConfigMaps and Secrets that pods bound to it reference (an Ingress's TLS Secret that
	// no pod references does not follow).
	ReasonReadForbidden = "ReadForbidden"
	// ReasonExternalIPsNotFollowed: a followed Service has spec.externalIPs, which its copies do not carry
	// (Warning Event on the management Service).
	ReasonExternalIPsNotFollowed = "ExternalIPsNotFollowed"
)

// MissingReferenceError says a ConfigMap or Secret (or one key of it) that a proxy needs does not exist in
// the management cluster, so its delegate must not be created.
type MissingReferenceError struct {
	Reason          string // ReasonMandatory...NotFound
	Kind            string // KindConfigMap or KindSecret
	Namespace, Name string
	Key             string // set for a missing key of an existing object
}

func (e *MissingReferenceError) Error() string {
	if e.Key != "" {
		return fmt.Sprintf("couldn't find key %s in %s %s/%s", e.Key, e.Kind, e.Namespace, e.Name)
	}
	return fmt.Sprintf("%s %q not found", strings.ToLower(e.Kind), e.Name)
}

// UnsupportedReferenceError says a proxy mandatorily references an object that never follows to a workload
// cluster (a ServiceAccount token Secret), so its delegate must not be created.
type UnsupportedReferenceError struct {
	Reason          string // ReasonUnsupportedReference
	Kind            string // KindSecret
	Namespace, Name string
	Message         string // what and why, for the proxy
}

func (e *UnsupportedReferenceError) Error() string { return e.Message }

// ConflictError says an object that this node does not own holds the name of a copy in the workload
// cluster.
type ConflictError struct {
	Reason          string // ReasonNameConflict
	Kind            string // KindConfigMap, KindSecret, "Service" or "Ingress"
	Namespace, Name string
	NodeName        string
}

func (e *ConflictError) Error() string {
	return fmt.Sprintf("%s %s/%s already exists in the workload cluster of node %s and is not flotilla's (no labels of this node); leaving it untouched",
		strings.ToLower(e.Kind), e.Namespace, e.Name, e.NodeName)
}

// RefusedCopyError says the workload apiserver refused to create or update a copy (a quota, an admission
// webhook or policy, validation). Err is the apiserver's error (apierrors classify it).
type RefusedCopyError struct {
	Reason          string // ReasonRefused
	Kind            string // KindConfigMap, KindSecret, "Service" or "Ingress"
	Namespace, Name string
	NodeName        string
	Err             error
}

func (e *RefusedCopyError) Error() string {
	return fmt.Sprintf("the workload cluster of node %s refused %s %s/%s: %v", e.NodeName, strings.ToLower(e.Kind), e.Namespace, e.Name, e.Err)
}

func (e *RefusedCopyError) Unwrap() error { return e.Err }

// NamespaceGate is the tenancy gate (see docs/DESIGN.md, "Tenancy"); *tenancy.Namespaces is one.
//
// Enabled says whether a management namespace takes part in delegation (flotilla.io/enabled=true): a proxy
// counts for what follows (the objects it references, the Services selecting it and what those bring along)
// only when its namespace is enabled or it already has a delegate (see delegated), so nothing follows a pod of
// a namespace that never opted in, and an opt-out is never an outage. Ensure decides whether copies may go
// into a workload namespace: it creates it when missing (labelled for this management cluster) and returns a
// *tenancy.RefusedError for one flotilla may not use.
//
// A gate that also has Lookup(namespace string) (enabled, known bool), as *tenancy.Namespaces does, lets the
// followers hold off on a namespace its cache does not know yet (flotilla is starting) instead of taking it
// for not enabled and removing copies that are still needed.
//
// EnsureReadable grants flotilla's workload identity the read of its copies in a workload namespace it may
// use (see copyInformers): flotilla may not read them cluster-wide. Ensure grants it too.
type NamespaceGate interface {
	Ensure(ctx context.Context, namespace string) error
	EnsureReadable(ctx context.Context, namespace string) error
	Enabled(namespace string) bool
}

// namespaceLookup is the optional part of a NamespaceGate.
type namespaceLookup interface {
	Lookup(namespace string) (enabled, known bool)
}

// Config is what New needs.
type Config struct {
	// NodeName is this flotilla's virtual node: the one whose proxies it follows and on which it publishes
	// its copies' load-balancer addresses.
	NodeName string
	// OwnerLabels are the labels every copy carries and by which this node recognises its own copies in
	// the workload cluster: {flotilla.io/management: <id>, flotilla.io/node: <node>}.
	OwnerLabels map[string]string
	// Management and Workload are flotilla's clients of the two clusters. In the workload cluster flotilla
	// lists and watches Namespaces cluster-wide, and reads its copies only in the namespaces it may use, once
	// Namespaces.EnsureReadable has granted it the read there.
	Management, Workload kubernetes.Interface
	// ManagementInformers is the cluster-wide factory the caller starts after New; New registers the
	// Service and Ingress informers on it (ConfigMaps and Secrets are read one object at a time, with
	// Management). Their managedFields may be trimmed (nothing here reads them: whoever may edit an object can
	// forge them).
	ManagementInformers informers.SharedInformerFactory
	// Proxies is the informer of the management pods bound to this virtual node, not started yet: New adds
	// an index and event handlers.
	Proxies corev1informers.PodInformer
	// VirtualNodes is the informer of the management cluster's virtual nodes (label selector
	// "flotilla.io/cluster,type=virtual-kubelet", so this node and its peers), which the caller starts after
	// New: New adds event handlers. Every node's AnnotationLoadBalancers is read from it; managedFields may
	// be trimmed. Required.
	VirtualNodes corev1informers.NodeInformer
	// Namespaces is the tenancy gate: which proxies count (their namespace is enabled), and which workload
	// namespaces every new copy may go into. A *tenancy.Namespaces for this management cluster and workload
	// cluster (the one the provider uses for delegates), whose namespace informer calls NamespaceChanged.
	// Required.
	Namespaces NamespaceGate
	// EventRecorder records on management objects (conflicts, refusals, missing optional references).
	EventRecorder record.EventRecorder
	// IngressClasses maps management ingress classes to workload ingress classes.
	IngressClasses map[string]string
	// Workers per kind; 0 means 4.
	Workers int
	// Metrics measures how long a management object's change takes to reach its copy. Optional.
	Metrics *metrics.Recorder
}

// Followers follows the four kinds for one virtual node.
type Followers struct {
	cfg Config

	copyInformers    *copyInformers // this node's copies, per workload namespace
	proxies          cache.SharedIndexInformer
	services         cache.Indexer          // management Services
	ingressIndex     cache.Indexer          // management Ingresses, indexed by the Services they route to and the Secrets they name
	synced           []cache.InformerSynced // what must be synced before the queues are worked
	referencesSynced []cache.InformerSynced // proxies
	cmWatches        *objectWatches[*corev1.ConfigMap]
	secretWatches    *objectWatches[*corev1.Secret]
	lbs              *publisher

	configMaps *kind[*corev1.ConfigMap]
	secrets    *kind[*corev1.Secret]
	serviceK   *kind[*corev1.Service]
	ingresses  *kind[*networkingv1.Ingress]
}

// Index names added to informers.
const (
	indexReferences     = "flotilla.io/follow-references"  // proxies by "<Kind>/<ns>/<name>" they reference
	indexIngressService = "flotilla.io/follow-services"    // Ingresses by "<ns>/<service>" they route to
	indexIngressTLS     = "flotilla.io/follow-tls-secrets" // Ingresses by "<ns>/<secret>" their TLS entries name
)

const workloadResync = 10 * time.Minute

// New registers informers, indexes and event handlers; nothing runs until Run.
func New(cfg Config) (*Followers, error) {
	switch {
	case cfg.NodeName == "":
		return nil, errors.New("follow: NodeName is required")
	case len(cfg.OwnerLabels) == 0:
		return nil, errors.New("follow: OwnerLabels are required")
	case cfg.Management == nil || cfg.Workload == nil || cfg.ManagementInformers == nil || cfg.Proxies == nil:
		return nil, errors.New("follow: Management, Workload, ManagementInformers and Proxies are required")
	case cfg.VirtualNodes == nil:
		return nil, errors.New("follow: VirtualNodes is required (load-balancer addresses are published on the virtual nodes)")
	case cfg.Namespaces == nil:
		return nil, errors.New("follow: Namespaces is required (the tenancy gate of workload namespaces)")
	}
	if cfg.Workers <= 0 {
		cfg.Workers = 4
	}
	cfg.OwnerLabels = maps.Clone(cfg.OwnerLabels)
	f := &Followers{
		cfg:     cfg,
		proxies: cfg.Proxies.Informer(),
		lbs:     newPublisher(cfg.NodeName, cfg.VirtualNodes.Lister(), cfg.Management.CoreV1().Nodes()),
	}
	if err := f.proxies.AddIndexers(cache.Indexers{indexReferences: func(obj any) ([]string, error) {
		if pod, ok := obj.(*corev1.Pod); ok {
			return objectKeys(pod), nil
		}
		return nil, nil
	}}); err != nil {
		return nil, fmt.Errorf("follow: indexing proxies (New must run before the informer starts): %w", err)
	}

	// This node's copies are read one workload namespace at a time, in each namespace flotilla may use
	// (copyInformers): its workload identity may read them only there.
	managementID := cfg.OwnerLabels[tenancy.LabelManagement]
	copies, err := newCopyInformers(cfg.Workload, labels.SelectorFromSet(cfg.OwnerLabels).String(), workloadResync,
		func(ns *corev1.Namespace) bool {
			access, _ := tenancy.Decide(ns.Name, ns, managementID)
			return access != tenancy.Forbidden && ns.DeletionTimestamp == nil
		},
		cfg.Namespaces.EnsureReadable, f.NamespaceChanged)
	if err != nil {
		return nil, fmt.Errorf("follow: %w", err)
	}
	f.copyInformers = copies
	m := cfg.ManagementInformers

	f.configMaps = newKind[*corev1.ConfigMap](f, KindConfigMap)
	f.secrets = newKind[*corev1.Secret](f, KindSecret)
	f.serviceK = newKind[*corev1.Service](f, "Service")
	f.ingresses = newKind[*networkingv1.Ingress](f, "Ingress")

	// ConfigMaps and Secrets are read one object at a time (objectWatches): each one a proxy of this node
	// references, or a followed Ingress names for TLS, has a watch of its own.
	coreClient := cfg.Management.CoreV1().RESTClient()
	listWatch := func(resource string) func(ns, name string, selector fields.Selector) cache.ListerWatcher {
		return func(ns, _ string, selector fields.Selector) cache.ListerWatcher {
			return cache.NewListWatchFromClient(coreClient, resource, ns, selector)
		}
	}
	f.cmWatches = newObjectWatches(KindConfigMap, &corev1.ConfigMap{}, listWatch("configmaps"), f.configMaps.enqueueKey)
	f.secretWatches = newObjectWatches(KindSecret, &corev1.Secret{}, listWatch("secrets"), f.secrets.enqueueKey)
	f.cmWatches.forbidden = func(ns, name string, err error) { f.readForbidden(KindConfigMap, ns, name, err) }
	f.secretWatches.forbidden = func(ns, name string, err error) { f.readForbidden(KindSecret, ns, name, err) }
	f.cmWatches.changes, f.secretWatches.changes = cfg.Metrics.FollowChanges(KindConfigMap), cfg.Metrics.FollowChanges(KindSecret)

	// ConfigMaps: wanted while a proxy of this node that counts (see counts) references them.
	f.configMaps.source = watchedOf(f.cmWatches)
	f.configMaps.known = func(ns, name string) error { return f.hold(KindConfigMap, ns, name) }
	f.configMaps.sources = f.cmWatches.keys
	f.configMaps.register(copies, func(w informers.SharedInformerFactory) cache.SharedIndexInformer {
		return w.Core().V1().ConfigMaps().Informer()
	})
	f.configMaps.workload = func(ns string) client[*corev1.ConfigMap] { return cfg.Workload.CoreV1().ConfigMaps(ns) }
	f.configMaps.wanted = func(src *corev1.ConfigMap) bool { return f.referenced(KindConfigMap, src.Namespace, src.Name) }
	f.configMaps.build = func(src *corev1.ConfigMap) *corev1.ConfigMap { return ConfigMapCopy(src, cfg.OwnerLabels) }
	f.configMaps.recreateOnInvalid = true

	// Secrets: wanted while a proxy of this node references them or an Ingress this node follows names
	// them for TLS; never a ServiceAccount token.
	f.secrets.source = watchedOf(f.secretWatches)
	f.secrets.known = func(ns, name string) error { return f.hold(KindSecret, ns, name) }
	f.secrets.sources = f.secretWatches.keys
	f.secrets.register(copies, func(w informers.SharedInformerFactory) cache.SharedIndexInformer {
		return w.Core().V1().Secrets().Informer()
	}, cache.ResourceEventHandlerFuncs{AddFunc: f.queueIngressesNaming, DeleteFunc: f.queueIngressesNaming}) // a TLS Secret's copy that comes or goes changes the Ingress copies naming it
	f.secrets.workload = func(ns string) client[*corev1.Secret] { return cfg.Workload.CoreV1().Secrets(ns) }
	f.secrets.follows = SecretFollows
	f.secrets.wanted = func(src *corev1.Secret) bool {
		return f.referenced(KindSecret, src.Namespace, src.Name) || f.tlsWanted(src.Namespace, src.Name)
	}
	f.secrets.build = func(src *corev1.Secret) *corev1.Secret { return SecretCopy(src, cfg.OwnerLabels) }
	f.secrets.recreateOnInvalid = true

	// Services: wanted while their selector matches a serving proxy of this node.
	svcs := m.Core().V1().Services()
	f.services = svcs.Informer().GetIndexer()
	f.serviceK.source = listerOf(func(ns, n string) (*corev1.Service, error) { return svcs.Lister().Services(ns).Get(n) })
	f.serviceK.register(copies, func(w informers.SharedInformerFactory) cache.SharedIndexInformer {
		return w.Core().V1().Services().Informer()
	})
	f.serviceK.workload = func(ns string) client[*corev1.Service] { return cfg.Workload.CoreV1().Services(ns) }
	f.serviceK.management = func(ns string) client[*corev1.Service] { return cfg.Management.CoreV1().Services(ns) }
	f.serviceK.wanted = f.serviceWanted
	f.serviceK.build = func(src *corev1.Service) *corev1.Service { return ServiceCopy(src, cfg.OwnerLabels) }
	f.serviceK.notice = func(src *corev1.Service) (string, string) {
		return ReasonExternalIPsNotFollowed, ExternalIPsNotice(src, cfg.NodeName)
	}
	f.serviceK.lb = func(s *corev1.Service) []corev1.LoadBalancerIngress { return s.Status.LoadBalancer.Ingress }
	f.serviceK.lbStatus = func(list []corev1.LoadBalancerIngress) map[string]any {
		return map[string]any{"loadBalancer": map[string]any{"ingress": orEmpty(list)}}
	}
	f.serviceK.after = f.queueIngressesFor

	// Ingresses: wanted while they route to a Service that is wanted.
	ings := m.Networking().V1().Ingresses()
	if err := ings.Informer().AddIndexers(cache.Indexers{
		indexIngressService: ingressIndexFunc(IngressServices),
		indexIngressTLS:     ingressIndexFunc(IngressTLSSecrets),
	}); err != nil {
		return nil, fmt.Errorf("follow: indexing ingresses: %w", err)
	}
	f.ingressIndex = ings.Informer().GetIndexer()
	f.ingresses.source = listerOf(func(ns, n string) (*networkingv1.Ingress, error) { return ings.Lister().Ingresses(ns).Get(n) })
	f.ingresses.register(copies, func(w informers.SharedInformerFactory) cache.SharedIndexInformer {
		return w.Networking().V1().Ingresses().Informer()
	})
	f.ingresses.workload = func(ns string) client[*networkingv1.Ingress] { return cfg.Workload.NetworkingV1().Ingresses(ns) }
	f.ingresses.management = func(ns string) client[*networkingv1.Ingress] {
		return cfg.Management.NetworkingV1().Ingresses(ns)
	}
	f.ingresses.wanted = f.ingressWanted
	f.ingresses.build = func(src *networkingv1.Ingress) *networkingv1.Ingress {
		return IngressCopy(src, cfg.OwnerLabels, cfg.IngressClasses, f.tlsCopies(src))
	}
	f.ingresses.lb = func(i *networkingv1.Ingress) []corev1.LoadBalancerIngress {
		return ingressLB(i.Status.LoadBalancer.Ingress)
	}
	f.ingresses.lbStatus = func(list []corev1.LoadBalancerIngress) map[string]any {
		return map[string]any{"loadBalancer": map[string]any{"ingress": orEmpty(toIngressLB(list))}}
	}
	// Whether an Ingress is followed can change with its Services: the watches of its TLS Secrets start or
	// stop, and they are looked at again.
	f.ingresses.after = func(ns, name string) {
		f.holdTLSSecrets(ns, name)
		f.queueTLSSecretsOf(ns, name)
	}

	// Event handlers. The watches of ConfigMaps and Secrets queue their own keys (objectWatches); Services
	// and Ingresses are queued on every change; the copies' informers have theirs (register).
	proxySynced := f.proxies.HasSynced
	nodes := cfg.VirtualNodes.Informer()
	type registration struct {
		inf     cache.SharedIndexInformer
		handler cache.ResourceEventHandler
	}
	regs := []registration{
		{f.proxies, f.proxyEvents()},
		{svcs.Informer(), queueAll(f.serviceK.enqueue)},
		{ings.Informer(), f.ingressEvents()},
		{nodes, f.lbs.nodeEvents(f.enqueueLB)},
		{svcs.Informer(), cfg.Metrics.FollowChanges(f.serviceK.name)},
		{ings.Informer(), cfg.Metrics.FollowChanges(f.ingresses.name)},
	}
	for _, r := range regs {
		if _, err := r.inf.AddEventHandler(r.handler); err != nil {
			return nil, fmt.Errorf("follow: %w", err)
		}
	}
	f.serviceK.sources = indexerKeys(svcs.Informer().GetIndexer())
	f.ingresses.sources = indexerKeys(ings.Informer().GetIndexer())
	// The copies' caches are per workload namespace, each synced on its own (copyInformers.known, which every
	// sync asks); before the workers start, the workload namespaces must have been listed.
	f.synced = []cache.InformerSynced{proxySynced, svcs.Informer().HasSynced, ings.Informer().HasSynced, nodes.HasSynced, copies.hasSynced}
	f.referencesSynced = f.synced[:1]
	return f, nil
}

func ingressIndexFunc(names func(*networkingv1.Ingress) []string) cache.IndexFunc {
	return func(obj any) ([]string, error) {
		ing, ok := obj.(*networkingv1.Ingress)
		if !ok {
			return nil, nil
		}
		var keys []string
		for _, n := range names(ing) {
			keys = append(keys, ing.Namespace+"/"+n)
		}
		return keys, nil
	}
}

// Resync checks every object of every kind at once. Call it when the workload cluster answers again after
// it did not: what failed meanwhile would otherwise wait out a backoff of up to two minutes.
func (f *Followers) Resync() {
	f.configMaps.resync()
	f.secrets.resync()
	f.serviceK.resync()
	f.ingresses.resync()
}

// NamespaceChanged looks again at every object of every kind in the management namespace of that name, and
// at this node's copies in the workload namespace of that name: call it when the namespace becomes enabled
// (its proxies now count, so what they need follows them) and when it stops being enabled (what only proxies
// without a delegate needed goes), from the same namespace informer the gate reads.
func (f *Followers) NamespaceChanged(name string) {
	f.configMaps.resyncNamespace(name)
	f.secrets.resyncNamespace(name)
	f.serviceK.resyncNamespace(name)
	f.ingresses.resyncNamespace(name)
}

// Run starts the workload informers (the workload namespaces, and this node's copies in each one flotilla
// may use) and, once the management caches and the workload namespaces have synced, the workers; it blocks
// until ctx ends. The management informers (ManagementInformers, Proxies, VirtualNodes) are the caller's to
// start.
func (f *Followers) Run(ctx context.Context) error {
	copiesDone := make(chan struct{})
	go func() { f.copyInformers.run(ctx); close(copiesDone) }()
	defer func() { <-copiesDone }()
	defer f.stopWatches()
	if !cache.WaitForCacheSync(ctx.Done(), f.synced...) {
		return nil // ctx ended first
	}
	logrus.WithField("node", f.cfg.NodeName).Info("following Services, Ingresses, ConfigMaps and Secrets")
	f.lbs.start(f.hasCopy)
	done := make(chan struct{}, 5)
	go func() { f.lbs.run(ctx); done <- struct{}{} }()
	go func() { f.configMaps.run(ctx, f.cfg.Workers); done <- struct{}{} }()
	go func() { f.secrets.run(ctx, f.cfg.Workers); done <- struct{}{} }()
	go func() { f.serviceK.run(ctx, f.cfg.Workers); done <- struct{}{} }()
	go func() { f.ingresses.run(ctx, f.cfg.Workers); done <- struct{}{} }()
	for range 5 {
		<-done
	}
	return nil
}

// EnsureFor makes every ConfigMap and Secret the proxy references exist, and be current, in the workload
// cluster; the provider calls it before it creates the proxy's delegate, and removes every reference to
// the objects in drop from the delegate: the optional references to objects the management cluster does not
// hold (each also gets the kubelet's Event on the proxy), and the optional references to ServiceAccount
// token Secrets, which never follow. Each entry of drop names an object (Kind, Name; Optional is true, Key
// empty), so that no reference of the delegate resolves to a workload object of that name.
//
// It returns, and nothing is copied for a proxy that cannot start:
//   - a *MissingReferenceError when a mandatory reference (an object, or a key of an env valueFrom
//     reference) does not exist in the management cluster;
//   - an *UnsupportedReferenceError for a mandatory reference to a ServiceAccount token Secret;
//   - a *tenancy.RefusedError when the proxy's namespace is not enabled (and it has no delegate yet), or
//     (from Config.Namespaces) when the workload namespace may not be used;
//   - a *ConflictError when an object this node does not own holds a copy's name in the workload cluster;
//   - a *RefusedCopyError when the workload apiserver refuses a copy;
//   - otherwise the error of a request that failed, or says that a referenced object is not known yet (its
//     watch has not answered within a few seconds, or the management apiserver refuses it), which time may
//     cure.
func (f *Followers) EnsureFor(ctx context.Context, proxy *corev1.Pod) (drop []Reference, err error) {
	refs := References(&proxy.Spec)
	if len(refs) == 0 {
		return nil, nil
	}
	if !f.counts(proxy) {
		// The provider never asks for one; checked here as well, so that no caller can have copies made
		// for a namespace that did not opt in.
		return nil, &tenancy.RefusedError{Reason: tenancy.ReasonNamespaceNotEnabled,
			Message: fmt.Sprintf("namespace %s is not enabled for delegation (label %s=true)", proxy.Namespace, tenancy.LabelEnabled)}
	}
	// Not waiting here: a cache that cannot sync (a missing list permission, say) would hold the caller's
	// worker for good, and the proxy would wait without a word. The caller retries with backoff and shows
	// this on the proxy meanwhile.
	for _, synced := range f.referencesSynced {
		if !synced() {
			return nil, errors.New("the management cluster's ConfigMaps and Secrets are not in flotilla's cache yet")
		}
	}
	// The proxy holds what it references (as its informer event does, or is about to): every object has a
	// watch. As the kubelet does, wait briefly for them to answer: until then an object is neither there nor
	// missing. A refused read is waited for too: the Node authorizer may not know of the binding yet.
	f.holdReferences(proxy)
	ns := proxy.Namespace
	cms, secrets := map[string]*corev1.ConfigMap{}, map[string]*corev1.Secret{}
	var pending error // why the last look found an object not known yet
	err = wait.PollUntilContextTimeout(ctx, 10*time.Millisecond, referencesWait, true, func(context.Context) (bool, error) {
		pending = nil
		for _, r := range refs {
			var found bool
			var err error
			if r.Kind == KindConfigMap {
				var cm *corev1.ConfigMap
				if cm, found, err = f.cmWatches.get(ns, r.Name); found {
					cms[r.Name] = cm
				}
			} else {
				var s *corev1.Secret
				if s, found, err = f.secretWatches.get(ns, r.Name); found {
					secrets[r.Name] = s
				}
			}
			switch {
			case errors.Is(err, errNotWatched): // the proxy went meanwhile
				pending = fmt.Errorf("%s %s/%s is not watched: no proxy references it any more", strings.ToLower(r.Kind), ns, r.Name)
				return false, nil
			case err != nil:
				pending = err
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		if pending != nil {
			return nil, pending
		}
		return nil, err
	}
	plan, err := planReferences(ns, refs, cms, secrets)
	if err != nil {
		return nil, err
	}
	for _, r := range plan.copy {
		if r.Kind == KindConfigMap {
			cp, have := f.configMaps.copy(ns, r.Name)
			_, _, err = f.configMaps.ensure(ctx, cms[r.Name], cp, have)
		} else {
			cp, have := f.secrets.copy(ns, r.Name)
			_, _, err = f.secrets.ensure(ctx, secrets[r.Name], cp, have)
		}
		if err != nil {
			return nil, err
		}
	}
	if f.cfg.EventRecorder != nil {
		for _, r := range plan.missing {
			f.cfg.EventRecorder.Eventf(proxy, corev1.EventTypeWarning, notFoundReason(r.Kind, false, false), "%s %q not found", strings.ToLower(r.Kind), r.Name)
		}
	}
	return plan.drop, nil
}

// referencesWait is how long EnsureFor waits for the watches of a proxy's references to answer.
const referencesWait = 3 * time.Second

// hasCopy says whether this node holds a copy of the object with the given LBKey, or may hold one: its
// namespace's copies are not known yet (the key's sync, which the virtual node's event queued, waits for
// them and then decides).
func (f *Followers) hasCopy(key string) bool {
	kind, rest, _ := strings.Cut(key, "/")
	ns, name, _ := strings.Cut(rest, "/")
	if f.copyInformers.known(ns) != nil {
		return true
	}
	switch kind {
	case f.serviceK.name:
		_, ok := f.serviceK.copy(ns, name)
		return ok
	case f.ingresses.name:
		_, ok := f.ingresses.copy(ns, name)
		return ok
	default:
		return false
	}
}

// enqueueLB queues the management object with the given LBKey.
func (f *Followers) enqueueLB(key string) {
	kind, rest, _ := strings.Cut(key, "/")
	ns, name, ok := strings.Cut(rest, "/")
	switch {
	case !ok:
	case kind == f.serviceK.name:
		f.serviceK.enqueueKey(ns, name)
	case kind == f.ingresses.name:
		f.ingresses.enqueueKey(ns, name)
	}
}

// referenced says whether a proxy of this node that counts references the object.
func (f *Followers) referenced(kind, ns, name string) bool {
	pods, _ := f.proxies.GetIndexer().ByIndex(indexReferences, refKey(kind, ns, name))
	for _, obj := range pods {
		if pod, ok := obj.(*corev1.Pod); ok && f.counts(pod) {
			return true
		}
	}
	return false
}

// counts says whether a proxy counts for what follows to the workload cluster: its namespace is enabled, or
// it already has a delegate (delegated), which keeps following it whatever the namespace says now (an
// opt-out stops new delegations only). A pod of any other namespace that ends up bound to this node (a
// preset nodeName, a DaemonSet tolerating everything) brings nothing along.
func (f *Followers) counts(pod *corev1.Pod) bool {
	return delegated(pod) || f.cfg.Namespaces.Enabled(pod.Namespace)
}

// delegated says whether a proxy has (or had) a delegate, from its status.startTime. That is a robust sign:
// a pod is created without one (the apiserver resets the status of a new pod), only the node's kubelet may
// write it afterwards (pods/status, which neither edit nor admin grants), and flotilla sets it from its
// delegate's once the workload kubelet has taken the delegate up, and keeps it for the pod's life (the
// provider tells a lost delegate by it too). The phase is not: flotilla writes Failed or Succeeded on a
// deleted proxy that never had a delegate. What this misses is a delegate no workload kubelet has taken up
// yet (unscheduled): after an opt-out, it waits for the copies it lost as for any missing object; it never
// ran, so nothing stops.
func delegated(pod *corev1.Pod) bool {
	return pod.Status.StartTime != nil
}

// namespaceKnown says whether the tenancy gate knows the management namespace (with a gate that cannot tell,
// always). A namespace that holds an object exists, so not knowing it means the gate's cache has not caught up
// yet, and whether its proxies count cannot be told.
func (f *Followers) namespaceKnown(ns string) bool {
	l, ok := f.cfg.Namespaces.(namespaceLookup)
	if !ok {
		return true
	}
	_, known := l.Lookup(ns)
	return known
}

// serviceWanted says whether the Service's selector matches a serving proxy of this node that counts. It
// looks at the proxies of the Service's namespace only, and stops at the first match.
func (f *Followers) serviceWanted(svc *corev1.Service) bool {
	if len(svc.Spec.Selector) == 0 {
		return false
	}
	selector := labels.SelectorFromValidatedSet(svc.Spec.Selector)
	pods, _ := f.proxies.GetIndexer().ByIndex(cache.NamespaceIndex, svc.Namespace)
	for _, obj := range pods {
		if pod, ok := obj.(*corev1.Pod); ok && serving(pod) && selector.Matches(labels.Set(pod.Labels)) && f.counts(pod) {
			return true
		}
	}
	return false
}

// serving: a pod that has ended, or is being deleted, serves no Service (a rolling update's new pods keep
// the Service here while its old ones terminate).
func serving(pod *corev1.Pod) bool {
	return pod.DeletionTimestamp == nil && pod.Status.Phase != corev1.PodSucceeded && pod.Status.Phase != corev1.PodFailed
}

// ingressWanted says whether the Ingress routes to a Service this node follows.
func (f *Followers) ingressWanted(ing *networkingv1.Ingress) bool {
	for _, name := range IngressServices(ing) {
		if svc, ok := f.serviceK.source(ing.Namespace, name); ok && f.serviceWanted(svc) {
			return true
		}
	}
	return false
}

// queueIngressesFor queues the Ingresses that route to a Service, whose following may just have changed.
func (f *Followers) queueIngressesFor(ns, service string) {
	ings, _ := f.ingressIndex.ByIndex(indexIngressService, ns+"/"+service)
	for _, obj := range ings {
		f.ingresses.enqueue(obj)
	}
}

// tlsWanted says whether an Ingress this node follows names the Secret in a TLS entry.
func (f *Followers) tlsWanted(ns, secret string) bool {
	ings, _ := f.ingressIndex.ByIndex(indexIngressTLS, ns+"/"+secret)
	for _, obj := range ings {
		if ing, ok := obj.(*networkingv1.Ingress); ok && ing.DeletionTimestamp == nil && f.ingressWanted(ing) {
			return true
		}
	}
	return false
}

// tlsCopies are the Secrets the Ingress names for TLS of which this node holds a copy.
func (f *Followers) tlsCopies(ing *networkingv1.Ingress) map[string]bool {
	held := map[string]bool{}
	for _, name := range IngressTLSSecrets(ing) {
		if _, ok := f.secrets.copy(ing.Namespace, name); ok {
			held[name] = true
		}
	}
	return held
}

// queueTLSSecretsOf queues the Secrets an Ingress names for TLS, whose following may just have changed.
func (f *Followers) queueTLSSecretsOf(ns, name string) {
	if ing, ok := f.ingresses.source(ns, name); ok {
		for _, s := range IngressTLSSecrets(ing) {
			f.secrets.enqueueKey(ns, s)
		}
	}
}

// queueIngressesNaming queues the Ingresses that name a Secret (a copy of which came or went) for TLS.
func (f *Followers) queueIngressesNaming(obj any) {
	key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj)
	if err != nil {
		return
	}
	ings, _ := f.ingressIndex.ByIndex(indexIngressTLS, key)
	for _, o := range ings {
		f.ingresses.enqueue(o)
	}
}

// ingressEvents queue an Ingress on every change, and the TLS Secrets it names and named before.
func (f *Followers) ingressEvents() cache.ResourceEventHandler {
	secretsOf := func(obj any) {
		if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
			obj = t.Obj
		}
		if ing, ok := obj.(*networkingv1.Ingress); ok {
			for _, s := range IngressTLSSecrets(ing) {
				f.secrets.enqueueKey(ing.Namespace, s)
			}
		}
	}
	return cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) { f.ingresses.enqueue(obj); secretsOf(obj) },
		UpdateFunc: func(oldObj, obj any) {
			f.ingresses.enqueue(obj)
			secretsOf(oldObj)
			secretsOf(obj)
		},
		DeleteFunc: func(obj any) { f.ingresses.enqueue(obj); secretsOf(obj) },
	}
}

// queueServicesSelecting queues the Services of the namespace whose selector matches any of the label sets.
func (f *Followers) queueServicesSelecting(ns string, sets ...labels.Set) {
	svcs, _ := f.services.ByIndex(cache.NamespaceIndex, ns)
	for _, obj := range svcs {
		svc, ok := obj.(*corev1.Service)
		if !ok || len(svc.Spec.Selector) == 0 {
			continue
		}
		selector := labels.SelectorFromValidatedSet(svc.Spec.Selector)
		for _, set := range sets {
			if selector.Matches(set) {
				f.serviceK.enqueueKey(svc.Namespace, svc.Name)
				break
			}
		}
	}
}

// proxyEvents re-evaluates what a proxy change can affect: the objects it references (when it comes and
// goes, and when it gets a delegate, which makes it count whatever its namespace says) and the Services of
// its namespace that select it (when it comes, goes, is relabelled, ends, starts terminating, or gets a
// delegate).
func (f *Followers) proxyEvents() cache.ResourceEventHandler {
	references := func(pod *corev1.Pod) {
		for _, r := range References(&pod.Spec) {
			if r.Kind == KindConfigMap {
				f.configMaps.enqueueKey(pod.Namespace, r.Name)
			} else {
				f.secrets.enqueueKey(pod.Namespace, r.Name)
			}
		}
	}
	comeOrGo := func(obj any) {
		if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
			obj = t.Obj
		}
		pod, ok := obj.(*corev1.Pod)
		if !ok {
			return
		}
		references(pod)
		f.queueServicesSelecting(pod.Namespace, labels.Set(pod.Labels))
	}
	return cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) {
			if pod, ok := obj.(*corev1.Pod); ok {
				f.holdReferences(pod)
			}
			comeOrGo(obj)
		},
		UpdateFunc: func(oldObj, newObj any) {
			old, ok1 := oldObj.(*corev1.Pod)
			pod, ok2 := newObj.(*corev1.Pod)
			if !ok1 || !ok2 {
				return
			}
			if delegated(old) != delegated(pod) {
				references(pod)
			}
			if !maps.Equal(old.Labels, pod.Labels) || serving(old) != serving(pod) || delegated(old) != delegated(pod) {
				f.queueServicesSelecting(pod.Namespace, labels.Set(old.Labels), labels.Set(pod.Labels))
			}
		},
		DeleteFunc: func(obj any) {
			if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = t.Obj
			}
			if pod, ok := obj.(*corev1.Pod); ok {
				f.releaseReferences(pod)
			}
			comeOrGo(obj)
		},
	}
}

// holdReferences makes the proxy a holder of every ConfigMap and Secret it references, so that each has a
// watch (objectWatches); a pod's references never change (its volumes, env and image pull secrets are
// immutable).
func (f *Followers) holdReferences(pod *corev1.Pod) {
	var cms, secrets []string
	for _, r := range References(&pod.Spec) {
		if r.Kind == KindConfigMap {
			cms = append(cms, pod.Namespace+"/"+r.Name)
		} else {
			secrets = append(secrets, pod.Namespace+"/"+r.Name)
		}
	}
	f.cmWatches.set(proxyHolder(pod), cms)
	f.secretWatches.set(proxyHolder(pod), secrets)
}

// releaseReferences lets go of what the proxy referenced.
func (f *Followers) releaseReferences(pod *corev1.Pod) {
	f.cmWatches.set(proxyHolder(pod), nil)
	f.secretWatches.set(proxyHolder(pod), nil)
}

func proxyHolder(pod *corev1.Pod) string {
	return "Pod/" + pod.Namespace + "/" + pod.Name + "/" + string(pod.UID)
}

// holdTLSSecrets makes the Ingress a holder of the Secrets its TLS entries name while this node follows it,
// and lets go of them otherwise.
func (f *Followers) holdTLSSecrets(ns, name string) {
	var keys []string
	if ing, ok := f.ingresses.source(ns, name); ok && ing.DeletionTimestamp == nil && f.ingressWanted(ing) {
		for _, s := range IngressTLSSecrets(ing) {
			keys = append(keys, ns+"/"+s)
		}
	}
	f.secretWatches.set("Ingress/"+ns+"/"+name, keys)
}

// hold makes sure that whatever of this node names the object (the proxies referencing it; for a Secret, the
// Ingresses naming it for TLS) holds it, as their events did or are about to do, and says whether the object
// is known yet (see objectWatches.known). A sync asks this first, so that an object is never taken for
// missing because the handler that starts its watch has not run yet (flotilla is starting).
func (f *Followers) hold(kind, ns, name string) error {
	pods, _ := f.proxies.GetIndexer().ByIndex(indexReferences, refKey(kind, ns, name))
	for _, obj := range pods {
		if pod, ok := obj.(*corev1.Pod); ok {
			f.holdReferences(pod)
		}
	}
	if kind == KindConfigMap {
		return f.cmWatches.known(ns, name)
	}
	ings, _ := f.ingressIndex.ByIndex(indexIngressTLS, ns+"/"+name)
	for _, obj := range ings {
		if ing, ok := obj.(*networkingv1.Ingress); ok {
			f.holdTLSSecrets(ing.Namespace, ing.Name)
		}
	}
	return f.secretWatches.known(ns, name)
}

// readForbidden reports that the management apiserver refuses flotilla the watch of a ConfigMap or Secret
// (the Node authorizer lets a node read only what pods bound to it reference: an Ingress's TLS Secret that no
// pod references, say): a Warning Event on each proxy and followed Ingress that needs it, once per problem and
// watch.
func (f *Followers) readForbidden(kind, ns, name string, err error) {
	if f.cfg.EventRecorder == nil {
		return
	}
	watches := f.cmWatches.tell
	if kind == KindSecret {
		watches = f.secretWatches.tell
	}
	message := fmt.Sprintf("flotilla may not read %s %s/%s in the management cluster, so it does not follow to the workload cluster: %s (%v)",
		strings.ToLower(kind), ns, name, nodeReadRule(kind), err)
	var needers []runtime.Object
	pods, _ := f.proxies.GetIndexer().ByIndex(indexReferences, refKey(kind, ns, name))
	for _, obj := range pods {
		if pod, ok := obj.(*corev1.Pod); ok {
			needers = append(needers, pod)
		}
	}
	if kind == KindSecret {
		ings, _ := f.ingressIndex.ByIndex(indexIngressTLS, ns+"/"+name)
		for _, obj := range ings {
			if ing, ok := obj.(*networkingv1.Ingress); ok && ing.DeletionTimestamp == nil && f.ingressWanted(ing) {
				needers = append(needers, ing)
			}
		}
	}
	for _, obj := range needers {
		m, _ := meta.Accessor(obj)
		if watches(ns, name, string(m.GetUID())+"|"+err.Error()) {
			f.cfg.EventRecorder.Event(obj, corev1.EventTypeWarning, ReasonReadForbidden, message)
		}
	}
}

// watchedOf is the lister of the objects an objectWatches holds (see objectWatches.get).
func watchedOf[T object](w *objectWatches[T]) lister[T] {
	return func(ns, name string) (T, bool) {
		obj, found, _ := w.get(ns, name)
		return obj, found
	}
}

// stopWatches stops the watches of ConfigMaps and Secrets.
func (f *Followers) stopWatches() {
	f.cmWatches.shutdown()
	f.secretWatches.shutdown()
}

func queueAll(enqueue func(any)) cache.ResourceEventHandler {
	return cache.ResourceEventHandlerFuncs{
		AddFunc:    enqueue,
		UpdateFunc: func(_, obj any) { enqueue(obj) },
		DeleteFunc: enqueue,
	}
}

// owns says whether a workload object is one of this node's copies.
func (f *Followers) owns(obj metav1.Object) bool {
	l := obj.GetLabels()
	for k, v := range f.cfg.OwnerLabels {
		if l[k] != v {
			return false
		}
	}
	return true
}

func listerOf[T object](get func(ns, name string) (T, error)) lister[T] {
	return func(ns, name string) (T, bool) {
		obj, err := get(ns, name)
		return obj, err == nil
	}
}

func orEmpty[E any](list []E) []E {
	if list == nil {
		return []E{}
	}
	return list
}
