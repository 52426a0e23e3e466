package provider

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/virtual-kubelet/virtual-kubelet/log"
	vknode "github.com/virtual-kubelet/virtual-kubelet/node"
	"github.com/virtual-kubelet/virtual-kubelet/node/nodeutil"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	utilcache "k8s.io/apimachinery/pkg/util/cache"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/wait"
	corev1informers "k8s.io/client-go/informers/core/v1"
	"k8s.io/client-go/kubernetes"
	corev1listers "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"
	metricsclient "k8s.io/metrics/pkg/client/clientset/versioned"

	"github.com/flotilla-io/flotilla/internal/cachetrim"
	"github.com/flotilla-io/flotilla/metrics"
	"github.com/flotilla-io/flotilla/provider/follow"
	"github.com/flotilla-io/flotilla/tenancy"
	"github.com/flotilla-io/flotilla/tracing"
)

// ReferenceFollower is what the provider needs of package follow's Followers.
type ReferenceFollower interface {
	// EnsureFor makes the ConfigMaps and Secrets the proxy references exist, and be current, in the workload
	// cluster before its delegate is created. drop lists the optional references the delegate must not name
	// (missing in the management cluster, or ServiceAccount token Secrets); err is one of package follow's
	// typed errors (*MissingReferenceError, *ConflictError, *UnsupportedReferenceError) or the apiserver's.
	EnsureFor(ctx context.Context, proxy *corev1.Pod) (drop []follow.Reference, err error)
}

// Config says which virtual node's pods to run and where.
type Config struct {
	// NodeName is the virtual node's name; ClusterName the workload cluster's, for messages and the
	// flotilla.io/cluster label (empty means NodeName); ManagementID the management cluster's identity.
	NodeName, ClusterName, ManagementID string
	// Management and Workload are clients of the two clusters.
	Management, Workload kubernetes.Interface
	// ManagementPods is virtual-kubelet's lister of the pods bound to this node.
	ManagementPods corev1listers.PodLister
	// EventRecorder records Events on proxies.
	EventRecorder record.EventRecorder
	// HostIP is the virtual node's InternalIP, shown as the proxies' hostIP; empty leaves hostIP unset.
	HostIP string
	// Namespaces (required) applies the tenancy rules for this management cluster in this workload cluster:
	// which management namespaces take part (its Management lister must be started by the caller), and the
	// workload namespaces and ServiceAccounts delegates may use. Its ManagementID must be ManagementID. The
	// caller also calls NamespaceChanged from that namespace informer's add and update handlers.
	Namespaces *tenancy.Namespaces
	// References makes the ConfigMaps and Secrets a proxy references follow it to the workload cluster
	// before its delegate is created (package follow); nil creates delegates without them.
	References ReferenceFollower
	// WorkloadConfig, when set, lets exec, attach and port-forward reach delegates through the workload
	// apiserver (they need a streaming transport a kubernetes.Interface does not expose). Optional.
	WorkloadConfig *rest.Config
	// WorkloadMetrics reads the workload cluster's metrics API (metrics.k8s.io), whose usage the kubelet
	// API's /metrics/resource and /stats/summary report; nil reports no usage. Optional.
	WorkloadMetrics metricsclient.Interface
	// Workers is how many delegates are created, updated or deleted at once, and how many statuses are
	// reported at once; 0 means defaultWorkers.
	Workers int
	// ClusterLost says whether the workload cluster has been declared lost (the virtual node carries the
	// failover taint): then a terminating proxy is removed without its delegate confirmed gone (see
	// PodControllerClient). nil never declares it lost.
	ClusterLost func() bool
	// RescheduleAfter is how long a delegate may stay unschedulable in the workload cluster before its proxy
	// is evicted for its controller to replace it (replacement.go); 0 never evicts.
	RescheduleAfter time.Duration
	// Metrics measures the steps of delegations and counts refusals and fencing deletions. Optional.
	Metrics *metrics.Recorder
}

const (
	// defaultWorkers per queue: syncs wait on apiservers, not on the CPU.
	defaultWorkers = 4
	// resync re-reports every delegate's status now and then, so a status update the pod controller gave
	// up on (management apiserver down for a while) is not lost for good.
	resync = time.Minute
	// orphanInterval is how often delegates whose proxy is gone, and workload namespaces and ServiceAccounts
	// nothing uses, are looked for.
	orphanInterval = time.Minute
	// Retries back off exponentially from retryBase to retryMax: a refusal often ends when someone lifts a
	// quota or creates a ConfigMap, so retries stay frequent enough to notice within half a minute.
	retryBase = 500 * time.Millisecond
	retryMax  = 30 * time.Second
)

var (
	_ nodeutil.Provider  = (*Provider)(nil)
	_ vknode.PodNotifier = (*Provider)(nil)
)

// Provider runs the pods bound to one virtual node as delegates in its workload cluster. It implements
// virtual-kubelet's nodeutil.Provider and node.PodNotifier.
type Provider struct {
	cfg   Config
	owner owner

	informer  cache.SharedIndexInformer
	delegates corev1listers.PodLister
	started   time.Time

	// syncs holds proxies whose delegate may need creating, updating or deleting; statuses holds proxies
	// whose status may need reporting. Both are keyed namespace/name.
	syncs    workqueue.TypedRateLimitingInterface[string]
	statuses workqueue.TypedRateLimitingInterface[string]

	mu       sync.Mutex
	problems map[string]problem // why a proxy has no delegate, by key
	// clusterNotReady is the virtual node's Ready reason while it is not Ready, "" while it is (or before
	// anyone said otherwise); see SetClusterReady.
	clusterNotReady string
	// notReadySince is when the virtual node last turned from Ready to not Ready.
	notReadySince time.Time
	notify        func(*corev1.Pod) // the pod controller's status callback
	replacer      *replacer         // nil when re-placement is off
	notifyOn      chan struct{}     // closed once notify is set

	// counters are the cumulative CPU times the kubelet API reports, integrated from the workload
	// cluster's metrics API (see usage.go); usageMu guards them.
	usageMu  sync.Mutex
	counters map[string]cpuCounter

	// delegations are the spans that asked for the proxies' delegations, for the spans of the work that
	// follows to join their traces.
	delegations tracing.Delegations

	// removed are the UIDs of the proxies this provider removed itself (deleteProxy), for a while: the pod
	// controller's own removal of the same pod, which follows, is then not sent again (see Delete).
	removed *utilcache.Expiring
}

func workers(n int) int {
	if n <= 0 {
		return defaultWorkers
	}
	return n
}

// New prepares a provider. It does not contact either cluster; Run does.
func New(cfg Config) (*Provider, error) {
	if cfg.NodeName == "" || cfg.ManagementID == "" {
		return nil, errors.New("node name and management identity are required")
	}
	if cfg.Management == nil || cfg.Workload == nil || cfg.ManagementPods == nil || cfg.EventRecorder == nil {
		return nil, errors.New("management and workload clients, the management pod lister and an event recorder are required")
	}
	if cfg.Namespaces == nil || cfg.Namespaces.Workload == nil || cfg.Namespaces.Management == nil {
		return nil, errors.New("the tenancy rules (Namespaces, with a workload client and a management namespace lister) are required")
	}
	if cfg.Namespaces.ManagementID != cfg.ManagementID {
		return nil, fmt.Errorf("the tenancy rules are for management identity %q, the provider for %q", cfg.Namespaces.ManagementID, cfg.ManagementID)
	}
	for _, v := range []string{cfg.NodeName, cfg.ManagementID} {
		if errs := validation.IsValidLabelValue(v); len(errs) > 0 {
			return nil, fmt.Errorf("%q cannot be a label value: %v", v, errs)
		}
	}
	if cfg.HostIP != "" && net.ParseIP(cfg.HostIP) == nil {
		return nil, fmt.Errorf("host IP %q is not an IP address", cfg.HostIP)
	}
	if cfg.ClusterName == "" {
		cfg.ClusterName = cfg.NodeName
	}
	selector := OwnDelegates(cfg.ManagementID, cfg.NodeName).String()
	informer := corev1informers.NewFilteredPodInformer(cfg.Workload, metav1.NamespaceAll, resync,
		cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc},
		func(o *metav1.ListOptions) { o.LabelSelector = selector })
	if err := informer.SetTransform(cachetrim.ManagedFields); err != nil {
		return nil, err
	}
	limiter := func() workqueue.TypedRateLimiter[string] {
		return workqueue.NewTypedItemExponentialFailureRateLimiter[string](retryBase, retryMax)
	}
	p := &Provider{
		cfg:       cfg,
		owner:     owner{managementID: cfg.ManagementID, nodeName: cfg.NodeName, clusterName: cfg.ClusterName},
		informer:  informer,
		delegates: corev1listers.NewPodLister(informer.GetIndexer()),
		started:   time.Now(),
		syncs: workqueue.NewTypedRateLimitingQueueWithConfig(limiter(),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: "flotilla-delegates"}),
		statuses: workqueue.NewTypedRateLimitingQueueWithConfig(limiter(),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: "flotilla-statuses"}),
		problems: map[string]problem{},
		removed:  utilcache.NewExpiring(),
		notifyOn: make(chan struct{}),
	}
	if _, err := p.informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) {
			// A new delegate is checked against its proxy once, which also catches one created for a
			// proxy deleted meanwhile.
			p.enqueue(obj, p.syncs, p.statuses)
		},
		UpdateFunc: func(_, obj any) { p.enqueue(obj, p.statuses) },
		// A vanished delegate may end its proxy, finish its deletion or make room for a new delegate.
		DeleteFunc: func(obj any) { p.enqueue(obj, p.syncs, p.statuses) },
	}); err != nil {
		return nil, err
	}
	var err error
	if p.replacer, err = newReplacer(p, cfg.RescheduleAfter); err != nil {
		return nil, err
	}
	return p, nil
}

// Run watches the delegates and works the queues until ctx ends. Start it together with the
// virtual-kubelet node. The workers do not wait for the delegate cache: until it has synced they ask the
// workload apiserver directly, so that while the workload cluster is unreachable (at start-up, say) each
// proxy shows why it has no delegate instead of waiting without a word.
func (p *Provider) Run(ctx context.Context) error {
	go p.informer.Run(ctx.Done())
	go func() {
		if cache.WaitForCacheSync(ctx.Done(), p.informer.HasSynced) {
			log.G(ctx).Info("delegate cache in sync")
		}
	}()

	var wg sync.WaitGroup
	defer wg.Wait()
	defer p.statuses.ShutDown()
	defer p.syncs.ShutDown()
	for range workers(p.cfg.Workers) {
		wg.Go(func() { p.work(ctx, p.syncs, tracing.SpanSyncDelegate, p.syncDelegate) })
	}
	wg.Go(func() { wait.UntilWithContext(ctx, p.collect, orphanInterval) })
	if p.replacer != nil {
		wg.Go(func() { p.replacer.run(ctx) })
	}
	// Statuses go to the pod controller's callback, which it registers when it starts.
	select {
	case <-p.notifyOn:
		for range workers(p.cfg.Workers) {
			wg.Go(func() { p.work(ctx, p.statuses, tracing.SpanSyncStatus, p.syncStatus) })
		}
	case <-ctx.Done():
	}
	<-ctx.Done()
	return nil
}

// Resync checks every proxy of this node against its delegate at once. Call it when the workload cluster
// answers again after it did not: the deletions, creations and updates that failed meanwhile wait in their
// queues for a backoff of up to half a minute, which would leave the delegates of pods evicted meanwhile
// running beside their replacements for that long.
func (p *Provider) Resync() {
	proxies, err := p.cfg.ManagementPods.List(labels.Everything())
	if err != nil {
		return // a lister reads memory and does not fail; the queues' own retries remain
	}
	for _, proxy := range proxies {
		p.enqueue(proxy, p.syncs)
	}
}

// notReadyGrace is how long the virtual node stays not Ready before its Running proxies show it. A workload
// apiserver on a busy machine can answer one probe late and the next in time: marking every Running proxy not
// ready for that moment and back cost two management writes per pod, and woke every controller watching
// them, in the middle of a rollout. The node itself turns NotReady at once, for failover's sake; the proxies
// follow well within the 5 s the contract gives (docs/DESIGN.md).
const notReadyGrace = 2 * time.Second

// SetClusterReady tells the provider the virtual node's Ready condition whenever its status or reason
// changes (package node's Config.ReadyChanged). Once it has not been True for notReadyGrace, the delegates'
// cached statuses are only their last known ones: every Running proxy shows PodReady and ContainersReady
// False (ReasonClusterNotReady) until it is True again, when they show their delegates' status again (after
// a shorter spell too, see onReadinessChange). It only queues the proxies' statuses, at once or after the
// grace, so it never blocks its caller.
func (p *Provider) SetClusterReady(ready corev1.NodeCondition) {
	notReady := ""
	if ready.Status != corev1.ConditionTrue {
		notReady = ready.Reason
		if notReady == "" {
			notReady = string(ready.Status)
		}
	}
	p.mu.Lock()
	was := p.clusterNotReady
	shown := was != "" && time.Since(p.notReadySince) >= notReadyGrace
	p.clusterNotReady = notReady
	if was == "" && notReady != "" {
		p.notReadySince = time.Now()
	}
	graceLeft := notReadyGrace - time.Since(p.notReadySince)
	p.mu.Unlock()
	switch onReadinessChange(was, notReady, shown) {
	case queueStatusesNow:
		p.queueStatuses()
	case queueStatusesAfterGrace:
		time.AfterFunc(graceLeft, func() {
			if p.clusterReadiness() != "" { // not Ready for the whole grace: the proxies show it now
				p.queueStatuses()
			}
		})
	}
}

// queueStatuses queues every proxy's status.
func (p *Provider) queueStatuses() {
	proxies, err := p.cfg.ManagementPods.List(labels.Everything())
	if err != nil {
		return // a lister reads memory and does not fail
	}
	for _, proxy := range proxies {
		p.enqueue(proxy, p.statuses)
	}
}

// clusterReadiness is the virtual node's Ready reason while it has not been Ready for notReadyGrace, ""
// otherwise (SetClusterReady).
func (p *Provider) clusterReadiness() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.clusterNotReady != "" && time.Since(p.notReadySince) < notReadyGrace {
		return ""
	}
	return p.clusterNotReady
}

// NamespaceChanged looks again at every proxy of this node in the management namespace of that name. Call
// it from the management namespace informer's add and update handlers: a proxy of a namespace that is not
// enabled is not retried, and labelling the namespace flotilla.io/enabled=true is what delegates it. Removing
// the label stops new delegations only: a proxy that has its delegate keeps it, and keeps being synced
// (updates, deletion), so an opt-out is never an outage (DESIGN.md, "Tenancy").
func (p *Provider) NamespaceChanged(name string) {
	proxies, err := p.cfg.ManagementPods.Pods(name).List(labels.Everything())
	if err != nil {
		return // a lister reads memory and does not fail
	}
	for _, proxy := range proxies {
		p.enqueue(proxy, p.syncs)
	}
}

// NotifyPods registers the pod controller's status callback.
func (p *Provider) NotifyPods(_ context.Context, notify func(*corev1.Pod)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.notify == nil {
		close(p.notifyOn)
	}
	p.notify = notify
}

// work runs sync on the keys of q (proxies' keys) until q shuts down, retrying failures with backoff. Each
// sync is a span named span (see syncTraced).
func (p *Provider) work(ctx context.Context, q workqueue.TypedRateLimitingInterface[string], span string, sync func(context.Context, string) error) {
	for {
		key, shutdown := q.Get()
		if shutdown {
			return
		}
		if err := p.syncTraced(ctx, key, span, sync); err != nil {
			q.AddRateLimited(key)
		} else {
			q.Forget(key)
		}
		q.Done(key)
	}
}

// syncTraced runs sync on a proxy's key within a span of that name, a child of the proxy's delegation while
// it is delegated (see tracing.Delegations), and with a logger whose every line names the proxy (pod: its
// key), the workload cluster, and the span.
func (p *Provider) syncTraced(ctx context.Context, key, name string, sync func(context.Context, string) error) error {
	namespace, podName, _ := cache.SplitMetaNamespaceKey(key)
	ctx, span := p.delegations.Start(ctx, key, name, tracing.PodAttributes(&metav1.ObjectMeta{Namespace: namespace, Name: podName}, p.cfg.ClusterName)...)
	logger := log.G(ctx).WithFields(log.Fields{"pod": key, "cluster": p.cfg.ClusterName}).WithFields(tracing.LogFields(ctx))
	err := sync(log.WithLogger(ctx, logger), key)
	if err != nil {
		logger.WithError(err).Warn("will retry")
	}
	tracing.End(span, err)
	return err
}

// enqueue adds the key of a pod (or of a deleted pod's tombstone) to the queues.
func (p *Provider) enqueue(obj any, queues ...workqueue.TypedRateLimitingInterface[string]) {
	key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj)
	if err != nil {
		return
	}
	for _, q := range queues {
		q.Add(key)
	}
}
