// Package follow makes the Services, Ingresses, ConfigMaps and Secrets that a virtual node's proxy pods need
// follow them to the node's workload cluster, and brings the load-balancer addresses of the copies back.
//
//   - ConfigMaps and Secrets a proxy references (References) are copied before its delegate is created
//     (EnsureFor), kept current, and removed once no proxy of this node references them.
//   - A Service whose selector matches a proxy of this node is copied (ServiceCopy) and removed once none
//     matches; an Ingress that routes to such a Service is copied too (IngressCopy).
//   - The load-balancer addresses of Service and Ingress copies come back as the union over all workload
//     clusters (lb.go).
//
// Copies carry the owner's labels (Config.OwnerLabels); an object without them is never changed or deleted:
// the management object gets a NameConflict Event, and EnsureFor returns a *ConflictError. All kinds share
// one mechanism (follower.go): a rate-limited queue per kind fed by informer events, syncs that read only
// caches until they write, and server-side apply under FieldManager.
package follow

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/sirupsen/logrus"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	corev1informers "k8s.io/client-go/informers/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"

	"github.com/flotilla-io/flotilla/internal/cachetrim"
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

// Config is what New needs.
type Config struct {
	NodeName string
	// OwnerLabels are the labels every copy carries and by which this node recognises its own copies in
	// the workload cluster: {flotilla.io/management: <id>, flotilla.io/node: <node>}.
	OwnerLabels          map[string]string
	Management, Workload kubernetes.Interface
	// ManagementInformers is the cluster-wide factory the caller starts after New; New registers the
	// ConfigMap, Secret, Service and Ingress informers on it. Their objects must keep managedFields.
	ManagementInformers informers.SharedInformerFactory
	// Proxies is the informer of the management pods bound to this virtual node, not started yet: New adds
	// an index and event handlers.
	Proxies corev1informers.PodInformer
	// EventRecorder records on management objects (conflicts, missing optional references).
	EventRecorder record.EventRecorder
	// IngressClasses maps management ingress classes to workload ingress classes.
	IngressClasses map[string]string
	// Workers per kind; 0 means 4.
	Workers int
}

// Followers follows the four kinds for one virtual node.
type Followers struct {
	cfg       Config
	lbKey     string // this node's annotation on management objects
	lbManager string // the field manager that owns it

	workloadInformers informers.SharedInformerFactory
	proxies           cache.SharedIndexInformer
	services          cache.Indexer          // management Services
	ingressIndex      cache.Indexer          // management Ingresses, indexed by the Services they route to
	referencesSynced  []cache.InformerSynced // proxies, management ConfigMaps and Secrets

	configMaps *kind[*corev1.ConfigMap]
	secrets    *kind[*corev1.Secret]
	serviceK   *kind[*corev1.Service]
	ingresses  *kind[*networkingv1.Ingress]
}

// Index names added to informers.
const (
	indexReferences     = "flotilla.io/follow-references" // proxies by "<Kind>/<ns>/<name>" they reference
	indexIngressService = "flotilla.io/follow-services"   // Ingresses by "<ns>/<service>" they route to
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
	}
	if cfg.Workers <= 0 {
		cfg.Workers = 4
	}
	cfg.OwnerLabels = maps.Clone(cfg.OwnerLabels)
	f := &Followers{
		cfg:       cfg,
		lbKey:     LBAnnotation(cfg.NodeName),
		lbManager: lbManager(cfg.NodeName),
		proxies:   cfg.Proxies.Informer(),
	}
	if err := f.proxies.AddIndexers(cache.Indexers{indexReferences: func(obj any) ([]string, error) {
		if pod, ok := obj.(*corev1.Pod); ok {
			return objectKeys(pod), nil
		}
		return nil, nil
	}}); err != nil {
		return nil, fmt.Errorf("follow: indexing proxies (New must run before the informer starts): %w", err)
	}

	own := labels.SelectorFromSet(cfg.OwnerLabels).String()
	f.workloadInformers = informers.NewSharedInformerFactoryWithOptions(cfg.Workload, workloadResync,
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = own }))
	m, w := cfg.ManagementInformers, f.workloadInformers

	f.configMaps = newKind[*corev1.ConfigMap](f, KindConfigMap)
	f.secrets = newKind[*corev1.Secret](f, KindSecret)
	f.serviceK = newKind[*corev1.Service](f, "Service")
	f.ingresses = newKind[*networkingv1.Ingress](f, "Ingress")

	// ConfigMaps and Secrets: wanted while a proxy of this node references them.
	cms, cmCopies := m.Core().V1().ConfigMaps(), w.Core().V1().ConfigMaps()
	f.configMaps.source = listerOf(func(ns, n string) (*corev1.ConfigMap, error) { return cms.Lister().ConfigMaps(ns).Get(n) })
	f.configMaps.copy = listerOf(func(ns, n string) (*corev1.ConfigMap, error) { return cmCopies.Lister().ConfigMaps(ns).Get(n) })
	f.configMaps.workload = func(ns string) client[*corev1.ConfigMap] { return cfg.Workload.CoreV1().ConfigMaps(ns) }
	f.configMaps.wanted = func(src *corev1.ConfigMap) bool { return f.referenced(KindConfigMap, src.Namespace, src.Name) }
	f.configMaps.build = func(src *corev1.ConfigMap) *corev1.ConfigMap { return ConfigMapCopy(src, cfg.OwnerLabels) }
	f.configMaps.recreateOnInvalid = true

	secrets, secretCopies := m.Core().V1().Secrets(), w.Core().V1().Secrets()
	f.secrets.source = listerOf(func(ns, n string) (*corev1.Secret, error) { return secrets.Lister().Secrets(ns).Get(n) })
	f.secrets.copy = listerOf(func(ns, n string) (*corev1.Secret, error) { return secretCopies.Lister().Secrets(ns).Get(n) })
	f.secrets.workload = func(ns string) client[*corev1.Secret] { return cfg.Workload.CoreV1().Secrets(ns) }
	f.secrets.wanted = func(src *corev1.Secret) bool { return f.referenced(KindSecret, src.Namespace, src.Name) }
	f.secrets.build = func(src *corev1.Secret) *corev1.Secret { return SecretCopy(src, cfg.OwnerLabels) }
	f.secrets.recreateOnInvalid = true

	// Services: wanted while their selector matches a serving proxy of this node.
	svcs, svcCopies := m.Core().V1().Services(), w.Core().V1().Services()
	f.services = svcs.Informer().GetIndexer()
	f.serviceK.source = listerOf(func(ns, n string) (*corev1.Service, error) { return svcs.Lister().Services(ns).Get(n) })
	f.serviceK.copy = listerOf(func(ns, n string) (*corev1.Service, error) { return svcCopies.Lister().Services(ns).Get(n) })
	f.serviceK.workload = func(ns string) client[*corev1.Service] { return cfg.Workload.CoreV1().Services(ns) }
	f.serviceK.management = func(ns string) client[*corev1.Service] { return cfg.Management.CoreV1().Services(ns) }
	f.serviceK.wanted = f.serviceWanted
	f.serviceK.build = func(src *corev1.Service) *corev1.Service { return ServiceCopy(src, cfg.OwnerLabels) }
	f.serviceK.lb = func(s *corev1.Service) []corev1.LoadBalancerIngress { return s.Status.LoadBalancer.Ingress }
	f.serviceK.lbStatus = func(list []corev1.LoadBalancerIngress) map[string]any {
		return map[string]any{"loadBalancer": map[string]any{"ingress": orEmpty(list)}}
	}
	f.serviceK.after = f.queueIngressesFor

	// Ingresses: wanted while they route to a Service that is wanted.
	ings, ingCopies := m.Networking().V1().Ingresses(), w.Networking().V1().Ingresses()
	if err := ings.Informer().AddIndexers(cache.Indexers{indexIngressService: func(obj any) ([]string, error) {
		ing, ok := obj.(*networkingv1.Ingress)
		if !ok {
			return nil, nil
		}
		var keys []string
		for _, s := range IngressServices(ing) {
			keys = append(keys, ing.Namespace+"/"+s)
		}
		return keys, nil
	}}); err != nil {
		return nil, fmt.Errorf("follow: indexing ingresses: %w", err)
	}
	f.ingressIndex = ings.Informer().GetIndexer()
	f.ingresses.source = listerOf(func(ns, n string) (*networkingv1.Ingress, error) { return ings.Lister().Ingresses(ns).Get(n) })
	f.ingresses.copy = listerOf(func(ns, n string) (*networkingv1.Ingress, error) { return ingCopies.Lister().Ingresses(ns).Get(n) })
	f.ingresses.workload = func(ns string) client[*networkingv1.Ingress] { return cfg.Workload.NetworkingV1().Ingresses(ns) }
	f.ingresses.management = func(ns string) client[*networkingv1.Ingress] {
		return cfg.Management.NetworkingV1().Ingresses(ns)
	}
	f.ingresses.wanted = f.ingressWanted
	f.ingresses.build = func(src *networkingv1.Ingress) *networkingv1.Ingress {
		return IngressCopy(src, cfg.OwnerLabels, cfg.IngressClasses)
	}
	f.ingresses.lb = func(i *networkingv1.Ingress) []corev1.LoadBalancerIngress {
		return ingressLB(i.Status.LoadBalancer.Ingress)
	}
	f.ingresses.lbStatus = func(list []corev1.LoadBalancerIngress) map[string]any {
		return map[string]any{"loadBalancer": map[string]any{"ingress": orEmpty(toIngressLB(list))}}
	}

	// Event handlers. Management ConfigMaps and Secrets are many and mostly unrelated: only those a proxy
	// references or that have a copy are queued. Services and Ingresses are queued on every change.
	proxySynced := f.proxies.HasSynced
	type registration struct {
		inf     cache.SharedIndexInformer
		handler cache.ResourceEventHandler
	}
	regs := []registration{
		{f.proxies, f.proxyEvents()},
		{cms.Informer(), filtered(f.configMaps)},
		{secrets.Informer(), filtered(f.secrets)},
		{svcs.Informer(), queueAll(f.serviceK.enqueue)},
		{ings.Informer(), queueAll(f.ingresses.enqueue)},
		{cmCopies.Informer(), f.configMaps.copyEvents()},
		{secretCopies.Informer(), f.secrets.copyEvents()},
		{svcCopies.Informer(), f.serviceK.copyEvents()},
		{ingCopies.Informer(), f.ingresses.copyEvents()},
	}
	for _, r := range regs {
		if _, err := r.inf.AddEventHandler(r.handler); err != nil {
			return nil, fmt.Errorf("follow: %w", err)
		}
	}
	// Copies are never informer-transformed into anything but their own view; they need no managedFields.
	for _, inf := range []cache.SharedIndexInformer{cmCopies.Informer(), secretCopies.Informer(), svcCopies.Informer(), ingCopies.Informer()} {
		if err := inf.SetTransform(cachetrim.ManagedFields); err != nil {
			return nil, fmt.Errorf("follow: %w", err)
		}
	}
	f.configMaps.stores = []cache.Store{cms.Informer().GetStore(), cmCopies.Informer().GetStore()}
	f.secrets.stores = []cache.Store{secrets.Informer().GetStore(), secretCopies.Informer().GetStore()}
	f.serviceK.stores = []cache.Store{svcs.Informer().GetStore(), svcCopies.Informer().GetStore()}
	f.ingresses.stores = []cache.Store{ings.Informer().GetStore(), ingCopies.Informer().GetStore()}
	mgmtSynced := []cache.InformerSynced{proxySynced, cms.Informer().HasSynced, secrets.Informer().HasSynced,
		svcs.Informer().HasSynced, ings.Informer().HasSynced}
	f.referencesSynced = mgmtSynced[:3]
	f.configMaps.synced = slices.Concat(mgmtSynced, []cache.InformerSynced{cmCopies.Informer().HasSynced})
	f.secrets.synced = slices.Concat(mgmtSynced, []cache.InformerSynced{secretCopies.Informer().HasSynced})
	f.serviceK.synced = slices.Concat(mgmtSynced, []cache.InformerSynced{svcCopies.Informer().HasSynced})
	f.ingresses.synced = slices.Concat(mgmtSynced, []cache.InformerSynced{ingCopies.Informer().HasSynced})
	return f, nil
}

// Resync checks every object of every kind at once. Call it when the workload cluster answers again after
// it did not: what failed meanwhile would otherwise wait out a backoff of up to two minutes.
func (f *Followers) Resync() {
	f.configMaps.resync()
	f.secrets.resync()
	f.serviceK.resync()
	f.ingresses.resync()
}

// Run starts the workload informers and, once every cache has synced, the workers; it blocks until ctx
// ends. The management informers are the caller's to start.
func (f *Followers) Run(ctx context.Context) error {
	f.workloadInformers.Start(ctx.Done())
	defer f.workloadInformers.Shutdown()
	var synced []cache.InformerSynced
	for _, s := range [][]cache.InformerSynced{f.configMaps.synced, f.secrets.synced, f.serviceK.synced, f.ingresses.synced} {
		synced = append(synced, s...)
	}
	if !cache.WaitForCacheSync(ctx.Done(), synced...) {
		return nil // ctx ended first
	}
	logrus.WithField("node", f.cfg.NodeName).Info("following Services, Ingresses, ConfigMaps and Secrets")
	done := make(chan struct{}, 4)
	go func() { f.configMaps.run(ctx, f.cfg.Workers); done <- struct{}{} }()
	go func() { f.secrets.run(ctx, f.cfg.Workers); done <- struct{}{} }()
	go func() { f.serviceK.run(ctx, f.cfg.Workers); done <- struct{}{} }()
	go func() { f.ingresses.run(ctx, f.cfg.Workers); done <- struct{}{} }()
	for range 4 {
		<-done
	}
	return nil
}

// EnsureFor makes every ConfigMap and Secret the proxy references exist, and be current, in the workload
// cluster; the provider calls it before it creates the proxy's delegate. It returns a *MissingReferenceError
// when a mandatory reference (an object, or a key of an env valueFrom reference) does not exist in the
// management cluster, and a *ConflictError when an object this node does not own holds a copy's name in the
// workload cluster. A missing optional reference does not block; it gets the kubelet's Event on the proxy.
func (f *Followers) EnsureFor(ctx context.Context, proxy *corev1.Pod) error {
	refs := References(&proxy.Spec)
	if len(refs) == 0 {
		return nil
	}
	// Not waiting here: a cache that cannot sync (a missing list permission, say) would hold the caller's
	// worker for good, and the proxy would wait without a word. The caller retries with backoff and shows
	// this on the proxy meanwhile.
	for _, synced := range f.referencesSynced {
		if !synced() {
			return errors.New("the management cluster's ConfigMaps and Secrets are not in flotilla's cache yet")
		}
	}
	ns := proxy.Namespace
	type object struct{ kind, name string }
	var order []object
	mandatory := map[object]bool{}
	for _, r := range refs {
		o := object{r.Kind, r.Name}
		if _, seen := mandatory[o]; !seen {
			order = append(order, o)
		}
		mandatory[o] = mandatory[o] || !r.Optional
	}
	// First what is missing: nothing is copied for a proxy that cannot start.
	var cms []*corev1.ConfigMap
	var secrets []*corev1.Secret
	present := map[object]bool{}
	for _, o := range order {
		var found bool
		if o.kind == KindConfigMap {
			var cm *corev1.ConfigMap
			if cm, found = f.configMaps.source(ns, o.name); found {
				cms = append(cms, cm)
			}
		} else {
			var s *corev1.Secret
			if s, found = f.secrets.source(ns, o.name); found {
				secrets = append(secrets, s)
			}
		}
		present[o] = found
		switch {
		case found:
		case mandatory[o]:
			return &MissingReferenceError{Reason: notFoundReason(o.kind, true, false), Kind: o.kind, Namespace: ns, Name: o.name}
		case f.cfg.EventRecorder != nil:
			f.cfg.EventRecorder.Eventf(proxy, corev1.EventTypeWarning, notFoundReason(o.kind, false, false), "%s %q not found", strings.ToLower(o.kind), o.name)
		}
	}
	for _, r := range refs {
		if r.Key == "" || r.Optional || !present[object{r.Kind, r.Name}] {
			continue
		}
		if !f.hasKey(r.Kind, ns, r.Name, r.Key) {
			return &MissingReferenceError{Reason: notFoundReason(r.Kind, true, true), Kind: r.Kind, Namespace: ns, Name: r.Name, Key: r.Key}
		}
	}
	for _, cm := range cms {
		cp, have := f.configMaps.copy(ns, cm.Name)
		if _, _, err := f.configMaps.ensure(ctx, cm, cp, have); err != nil {
			return err
		}
	}
	for _, s := range secrets {
		cp, have := f.secrets.copy(ns, s.Name)
		if _, _, err := f.secrets.ensure(ctx, s, cp, have); err != nil {
			return err
		}
	}
	return nil
}

func notFoundReason(kind string, mandatory, key bool) string {
	switch {
	case kind == KindConfigMap && !mandatory:
		return ReasonOptionalConfigMapNotFound
	case kind == KindSecret && !mandatory:
		return ReasonOptionalSecretNotFound
	case kind == KindConfigMap && key:
		return ReasonMandatoryConfigMapKeyNotFound
	case kind == KindConfigMap:
		return ReasonMandatoryConfigMapNotFound
	case key:
		return ReasonMandatorySecretKeyNotFound
	default:
		return ReasonMandatorySecretNotFound
	}
}

func (f *Followers) hasKey(kind, ns, name, key string) bool {
	if kind == KindConfigMap {
		cm, ok := f.configMaps.source(ns, name)
		if !ok {
			return false
		}
		_, inData := cm.Data[key]
		_, inBinary := cm.BinaryData[key]
		return inData || inBinary
	}
	s, ok := f.secrets.source(ns, name)
	if !ok {
		return false
	}
	_, in := s.Data[key]
	return in
}

// referenced says whether a proxy of this node references the object.
func (f *Followers) referenced(kind, ns, name string) bool {
	keys, err := f.proxies.GetIndexer().IndexKeys(indexReferences, refKey(kind, ns, name))
	return err == nil && len(keys) > 0
}

// serviceWanted says whether the Service's selector matches a serving proxy of this node. It looks at the
// proxies of the Service's namespace only, and stops at the first match.
func (f *Followers) serviceWanted(svc *corev1.Service) bool {
	if len(svc.Spec.Selector) == 0 {
		return false
	}
	selector := labels.SelectorFromValidatedSet(svc.Spec.Selector)
	pods, _ := f.proxies.GetIndexer().ByIndex(cache.NamespaceIndex, svc.Namespace)
	for _, obj := range pods {
		if pod, ok := obj.(*corev1.Pod); ok && serving(pod) && selector.Matches(labels.Set(pod.Labels)) {
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
// goes) and the Services of its namespace that select it (when it comes, goes, is relabelled, ends, or
// starts terminating).
func (f *Followers) proxyEvents() cache.ResourceEventHandler {
	comeOrGo := func(obj any) {
		if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
			obj = t.Obj
		}
		pod, ok := obj.(*corev1.Pod)
		if !ok {
			return
		}
		for _, r := range References(&pod.Spec) {
			if r.Kind == KindConfigMap {
				f.configMaps.enqueueKey(pod.Namespace, r.Name)
			} else {
				f.secrets.enqueueKey(pod.Namespace, r.Name)
			}
		}
		f.queueServicesSelecting(pod.Namespace, labels.Set(pod.Labels))
	}
	return cache.ResourceEventHandlerFuncs{
		AddFunc: comeOrGo,
		UpdateFunc: func(oldObj, newObj any) {
			old, ok1 := oldObj.(*corev1.Pod)
			pod, ok2 := newObj.(*corev1.Pod)
			if ok1 && ok2 && (!maps.Equal(old.Labels, pod.Labels) || serving(old) != serving(pod)) {
				f.queueServicesSelecting(pod.Namespace, labels.Set(old.Labels), labels.Set(pod.Labels))
			}
		},
		DeleteFunc: comeOrGo,
	}
}

// filtered queues management ConfigMaps or Secrets that a proxy references or that have a copy.
func filtered[T object](k *kind[T]) cache.ResourceEventHandler {
	relevant := func(obj any) {
		if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
			obj = t.Obj
		}
		m, err := meta.Accessor(obj)
		if err != nil {
			return
		}
		if _, haveCopy := k.copy(m.GetNamespace(), m.GetName()); haveCopy || k.f.referenced(k.name, m.GetNamespace(), m.GetName()) {
			k.enqueueKey(m.GetNamespace(), m.GetName())
		}
	}
	return cache.ResourceEventHandlerFuncs{
		AddFunc:    relevant,
		UpdateFunc: func(_, obj any) { relevant(obj) },
		DeleteFunc: relevant,
	}
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

// ensureNamespace creates a namespace in the workload cluster, labelled with the owner's labels, unless it
// exists.
func (f *Followers) ensureNamespace(ctx context.Context, name string) error {
	_, err := f.cfg.Workload.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: maps.Clone(f.cfg.OwnerLabels)},
	}, metav1.CreateOptions{FieldManager: FieldManager})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating namespace %s in the workload cluster: %w", name, err)
	}
	return nil
}

// lbManager is the field manager of this node's load-balancer annotation (well under the 128 characters
// allowed: an annotation name part has at most 63).
func lbManager(nodeName string) string {
	return "flotilla-lb-" + strings.TrimPrefix(LBAnnotation(nodeName), LBAnnotationPrefix)
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
