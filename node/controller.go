package node

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"regexp"
	"sync"
	"sync/atomic"
	"time"

	"github.com/virtual-kubelet/virtual-kubelet/log"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	coreinformers "k8s.io/client-go/informers/core/v1"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/flotilla-io/flotilla/internal/cachetrim"
	"github.com/flotilla-io/flotilla/internal/reachability"
)

// Config says which virtual node to keep and how.
type Config struct {
	// NodeName is the virtual node's name; ClusterName the workload cluster's, for the flotilla.io/cluster
	// label (empty means NodeName).
	NodeName, ClusterName string
	// ExcludeLabels matches workload node label keys never copied to the virtual node; nil means
	// DefaultExcludeLabels. It is matched as written, so anchor it to match whole keys.
	ExcludeLabels *regexp.Regexp
	// Taint registers the node with Taint(), so only pods that tolerate it are sent to the workload cluster.
	Taint bool
	// InternalIP and KubeletPort are where the management apiserver reaches flotilla's kubelet API.
	InternalIP  string
	KubeletPort int32
	// ProbeInterval is how often the workload apiserver's /readyz is probed, ProbeTimeout how long a probe
	// may take before the cluster counts as unreachable; zero means DefaultProbeInterval, DefaultProbeTimeout.
	ProbeInterval, ProbeTimeout time.Duration
	// ProbeTimeoutMax bounds the silence allowed an apiserver that recently stuttered (see Silences).
	ProbeTimeoutMax time.Duration
	// Probe is the workload client the probes use: one with a rate limit of its own, so that a probe never
	// waits behind a burst of pod traffic and a healthy cluster is never taken for lost. nil uses the
	// controller's workload client.
	Probe kubernetes.Interface
	// LastHeard, if set, says when the workload apiserver last sent anything to any of flotilla's workload
	// clients (a response, a watch event): a /readyz that goes unanswered while the apiserver still streams
	// to them means an overloaded apiserver, not a lost one (see probe). nil counts only the probes' answers.
	LastHeard func() time.Time
	// Silences, if set, returns the recent silences of the workload apiserver that ended (see
	// reachability.Heard): one that came back from a silence longer than ProbeTimeout is allowed up to twice
	// that, at most ProbeTimeoutMax, before it counts as unreachable again (allowedSilence). Zero
	// ProbeTimeoutMax means DefaultProbeTimeoutMax; it is never less than ProbeTimeout.
	Silences func() []reachability.Silence
	// FailoverAfter is published on the node (AnnotationFailoverAfter) for peers to honour; see Failover.
	FailoverAfter time.Duration
	// Reachability, if set, is told whether the workload apiserver answers: after the first probe, and
	// whenever that changes. Work that failed while it did not can then be retried at once rather than
	// after its backoff.
	Reachability func(reachable bool)
	// ReadyChanged, if set, is told the virtual node's Ready condition whenever its status or reason changes,
	// once it rests on an observation (see Controller.Ready), as the node carrying it is handed to
	// virtual-kubelet. It must not block.
	ReadyChanged func(ready corev1.NodeCondition)
	// OwnPods selects the workload pods that are this node's own delegates: their proxies already hold their
	// share of the virtual node, so they are not subtracted from allocatable. nil selects none.
	OwnPods labels.Selector
}

const (
	// DefaultProbeInterval and DefaultProbeTimeout notice a workload apiserver that stopped answering within
	// three seconds at most, at one cheap request a second, and keep one that takes up to two seconds to
	// answer (an apiserver under a burst of work) reachable: its cluster taking no new pods for that would
	// stall rollouts, and evict the pods that tolerate not-ready nodes only briefly.
	DefaultProbeInterval = time.Second
	DefaultProbeTimeout  = 2 * time.Second
	// DefaultProbeTimeoutMax lets a cluster whose apiserver recently came back from a silence of 3 s or more
	// be silent for up to 6 s: its pods that tolerate a not-ready node for 5 s then leave about 4 s later
	// than a steady cluster's, and leave for nothing far less often. See allowedSilence.
	DefaultProbeTimeoutMax = 6 * time.Second

	// lateAnswerTimeout is how long a /readyz request may wait for a late answer (see probe). An apiserver
	// that needs longer for its cheapest request is as good as gone; and a request stuck on a connection
	// that died (a network partition) is given up in time to notice the cluster back within seconds.
	lateAnswerTimeout = 10 * time.Second

	// settleDelay coalesces a burst of informer events (a rollout, a node flapping) into one derivation and
	// at most one status update, while keeping a change's way to the node well under two seconds.
	settleDelay = 400 * time.Millisecond

	// podsByNode indexes the pod cache by node, so a derivation reads the pods of each workload node
	// instead of scanning every pod.
	podsByNode = "spec.nodeName"
	// activePods keeps terminal pods, which hold no resources, out of the cache altogether.
	activePods = "status.phase!=" + string(corev1.PodSucceeded) + ",status.phase!=" + string(corev1.PodFailed)
)

// Controller keeps the virtual node current. It is virtual-kubelet's node.NodeProvider: it hands the node
// controller the full desired labels, annotations and status whenever they change, and virtual-kubelet
// patches them onto the node with a three-way merge that keeps labels others added by hand.
type Controller struct {
	cfg  Config
	host string

	factory     informers.SharedInformerFactory
	nodes       corelisters.NodeLister
	pods        cache.Indexer
	cachesReady []cache.InformerSynced
	synced      atomic.Bool
	started     atomic.Bool

	// readyz and serverVersion ask the workload apiserver; they are fields so tests can stand in for it.
	// readyz says whether the apiserver answered at all (with any status), and the error that makes it not
	// ready.
	readyz        func(context.Context) (answered bool, err error)
	serverVersion func(context.Context) (string, error)

	// changed holds one pending "something changed" signal; more signals before a derivation coalesce.
	changed chan struct{}
	// urgent holds one pending change that is not to wait out settleDelay: the cluster turned reachable or
	// unreachable, which failover and the pods tolerating a not-ready node only briefly wait for.
	urgent chan struct{}
	// outbox holds the one node waiting to be handed to virtual-kubelet; a newer node replaces it.
	outbox chan *corev1.Node

	mu         sync.Mutex
	probed     bool
	probeErr   error
	asking     *readyzRequest // the /readyz request awaiting its answer, if any
	answeredAt time.Time      // when the apiserver last answered /readyz
	late       bool           // its last answer came after ProbeTimeout (logged once per slow spell)
	overloaded bool           // the last probe went unanswered while the apiserver still sent (logged once)
	version    string
	current    *corev1.Node       // the last derived node
	observed   bool               // current's Ready condition rests on an observation (see Ready)
	told       string             // the Ready status and reason last given to cfg.ReadyChanged
	notify     func(*corev1.Node) // virtual-kubelet's callback, once it asked for one
	sent       *corev1.Node       // the last node handed to notify; nil makes the next derivation send
	// requests are the pods' requests as of the last observation; only the sync loop uses them.
	requests requestsMemo
}

// NewController prepares a controller for the workload cluster reached through workload, whose apiserver
// URL is workloadHost (shown on the node, so any credentials in it are removed). It does not contact the
// cluster; Run does.
func NewController(cfg Config, workload kubernetes.Interface, workloadHost string) (*Controller, error) {
	if cfg.NodeName == "" {
		return nil, errors.New("node name is empty")
	}
	if workload == nil {
		return nil, errors.New("no workload cluster client")
	}
	if cfg.InternalIP != "" && net.ParseIP(cfg.InternalIP) == nil {
		return nil, fmt.Errorf("internal IP %q is not an IP address", cfg.InternalIP)
	}
	if cfg.ClusterName == "" {
		cfg.ClusterName = cfg.NodeName
	}
	if cfg.ExcludeLabels == nil {
		cfg.ExcludeLabels = DefaultExcludeLabels
	}
	if cfg.ProbeInterval <= 0 {
		cfg.ProbeInterval = DefaultProbeInterval
	}
	if cfg.ProbeTimeout <= 0 {
		cfg.ProbeTimeout = DefaultProbeTimeout
	}
	if cfg.ProbeTimeoutMax <= 0 {
		cfg.ProbeTimeoutMax = DefaultProbeTimeoutMax
	}
	cfg.ProbeTimeoutMax = max(cfg.ProbeTimeoutMax, cfg.ProbeTimeout)
	if cfg.OwnPods == nil {
		cfg.OwnPods = labels.Nothing()
	}

	factory := informers.NewSharedInformerFactoryWithOptions(workload, 0, informers.WithTransform(cachetrim.ManagedFields))
	nodes := factory.Core().V1().Nodes()
	pods := factory.InformerFor(&corev1.Pod{}, newActivePodInformer)
	// Every pod of the workload cluster: cached with only what the capacity rules read.
	if err := pods.SetTransform(requestsOnly); err != nil {
		return nil, err
	}
	c := &Controller{
		cfg:         cfg,
		host:        withoutCredentials(workloadHost),
		factory:     factory,
		nodes:       nodes.Lister(),
		pods:        pods.GetIndexer(),
		cachesReady: []cache.InformerSynced{nodes.Informer().HasSynced, pods.HasSynced},
		changed:     make(chan struct{}, 1),
		urgent:      make(chan struct{}, 1),
		outbox:      make(chan *corev1.Node, 1),
	}
	onChange := cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { c.kick() },
		UpdateFunc: func(_, _ any) { c.kick() },
		DeleteFunc: func(any) { c.kick() },
	}
	for _, informer := range []cache.SharedIndexInformer{nodes.Informer(), pods} {
		if _, err := informer.AddEventHandler(onChange); err != nil {
			return nil, fmt.Errorf("watching workload cluster: %w", err)
		}
	}

	prober := cfg.Probe
	if prober == nil {
		prober = workload
	}
	apiserver := prober.Discovery().RESTClient()
	c.readyz = func(ctx context.Context) (bool, error) {
		var code int
		err := apiserver.Get().AbsPath("/readyz").Do(ctx).StatusCode(&code).Error()
		return code != 0, err
	}
	// Bounded by ctx, so a frozen apiserver cannot stall the prober beyond its timeout.
	c.serverVersion = func(ctx context.Context) (string, error) {
		info, err := prober.Discovery().ServerVersionWithContext(ctx)
		if err != nil {
			return "", err
		}
		return info.GitVersion, nil
	}

	c.current = desiredNode(cfg, c.host, observation{}, nil, time.Now())
	return c, nil
}

// Node returns the virtual node as flotilla currently wants it. Before Run has heard from the workload
// cluster that is the object to register: base labels, the taint, and NotReady waiting for the first probe.
func (c *Controller) Node() *corev1.Node {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.current.DeepCopy()
}

// Ready returns the virtual node's Ready condition as last derived, with the time it last changed, and
// whether it rests on an observation of the workload cluster: false until the first probe, and while the
// cluster answers but its nodes have not been listed yet (so "not Ready" would only mean "not known yet").
func (c *Controller) Ready() (corev1.NodeCondition, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	ready, _ := nodeReady(c.current) // derived nodes always carry one
	return ready, c.observed
}

// Ping always succeeds: it is about flotilla itself, which is alive if it answers. The workload cluster's
// health goes into the Ready condition instead, because virtual-kubelet stops renewing the lease and sending
// status while Ping fails, and fails to start when the first ping fails.
func (c *Controller) Ping(context.Context) error {
	return nil
}

// NotifyNodeStatus registers virtual-kubelet's callback; the current node is sent to it right away and every
// changed node after that. It does not block.
func (c *Controller) NotifyNodeStatus(_ context.Context, cb func(*corev1.Node)) {
	c.mu.Lock()
	c.notify, c.sent = cb, nil
	c.mu.Unlock()
	c.kick()
}

// Resend hands the current node to virtual-kubelet again even though it did not change: after someone
// deleted the virtual node, that status update is what makes virtual-kubelet register it again at once,
// rather than at its next periodic update a minute later.
func (c *Controller) Resend() {
	c.mu.Lock()
	c.sent = nil
	c.mu.Unlock()
	c.kick()
}

// Run watches the workload cluster's nodes and pods, probes its apiserver, and keeps the node current until
// ctx is done. It does not wait for the workload cluster: while it is unreachable the node says so, and the
// informers keep retrying on their own.
func (c *Controller) Run(ctx context.Context) error {
	if c.started.Swap(true) {
		return errors.New("node controller already running")
	}
	c.factory.Start(ctx.Done())
	defer c.factory.Shutdown()

	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() {
		if cache.WaitForCacheSync(ctx.Done(), c.cachesReady...) {
			c.synced.Store(true)
			c.kick()
		}
	})
	wg.Go(func() { c.probeLoop(ctx) })
	// Not waited for: virtual-kubelet's callback may block forever once its node controller has stopped.
	go c.deliver(ctx)

	for {
		select {
		case <-ctx.Done():
			return nil
		case <-c.changed:
			select {
			case <-ctx.Done():
				return nil
			case <-c.urgent: // settling ends here
			case <-time.After(settleDelay):
			}
		case <-c.urgent:
		}
		// Signals that came while settling are covered by this derivation: caches are updated before their
		// event handlers run, and the probe's result before it signals.
		for _, pending := range []chan struct{}{c.changed, c.urgent} {
			select {
			case <-pending:
			default:
			}
		}
		c.sync(ctx)
	}
}

// kick signals a change without blocking; a signal already pending covers this one.
func (c *Controller) kick() { signal(c.changed) }

// kickNow signals a change that is derived at once, without settling.
func (c *Controller) kickNow() { signal(c.urgent) }

func signal(pending chan struct{}) {
	select {
	case pending <- struct{}{}:
	default:
	}
}

// probe asks the workload apiserver whether it is ready, and for its version the first time it is.
//
// An apiserver that has not answered within ProbeTimeout makes the cluster unreachable at once: the node
// goes NotReady, so no new pod is sent there and pods that tolerate not-ready only briefly leave. But the
// request is left to finish, for up to lateAnswerTimeout, and is not sent again meanwhile: an answer that
// comes late proves the apiserver alive, only slow (see LastAnswer), and an overloaded apiserver gets one
// probe at a time rather than a pile of them.
//
// An unanswered probe is excused while the apiserver has sent flotilla something else (cfg.LastHeard)
// within the silence it is allowed, ProbeTimeout unless it recently came back from a longer one
// (allowedSilence): a workload apiserver starved of CPU answers /readyz in seconds while its watch
// streams go on, and taking it for unreachable would taint it not-ready in the middle of the
// rollout and mark every Running proxy not ready. So the cluster is unreachable once nothing at all has come
// from its apiserver for as long as it is allowed. A frozen or cut-off apiserver is found out when that
// silence is over (probeLoop looks again at that moment), ProbeTimeout after the last thing it sent unless it
// recently stuttered; a probe sent after it fell silent waits the probe timeout at least. An answer that is
// an error (refused, not ready) is never excused.
//
// probe returns when the excuse of an excused probe runs out (zero when it was not excused), for probeLoop
// to look again then.
func (c *Controller) probe(ctx context.Context) (excusedUntil time.Time) {
	asked := c.ask(ctx)
	var err error
	var unanswered bool
	select {
	case <-ctx.Done():
		return time.Time{} // shutting down; the failure is ours, not the cluster's
	case <-asked.done:
		err, unanswered = asked.err, asked.unanswered
	case <-time.After(c.cfg.ProbeTimeout - time.Since(asked.sent)):
		err, unanswered = fmt.Errorf("no answer to /readyz within %s", c.cfg.ProbeTimeout), true
	}
	excusedUntil, err = c.excuseIfStillSending(ctx, err, unanswered)
	var version string
	if err == nil && c.needVersion() {
		verr := withTimeout(ctx, c.cfg.ProbeTimeout, func(ctx context.Context) (verr error) {
			version, verr = c.serverVersion(ctx)
			return verr
		})
		if verr != nil {
			log.G(ctx).WithError(verr).Warn("Cannot read the workload apiserver's version; will retry")
		}
	}

	c.mu.Lock()
	wasProbed, wasReachable := c.probed, c.probed && c.probeErr == nil
	changed := !wasProbed || errorText(err) != errorText(c.probeErr) || version != ""
	c.probed, c.probeErr = true, err
	if version != "" {
		c.version = version
	}
	c.mu.Unlock()

	if reachable := err == nil; !wasProbed || reachable != wasReachable {
		if reachable {
			log.G(ctx).WithField("version", version).Info("Workload cluster is reachable")
		} else {
			log.G(ctx).WithError(err).Warn("Workload cluster is unreachable")
		}
		if c.cfg.Reachability != nil {
			c.cfg.Reachability(reachable)
		}
		c.kickNow()
	} else if changed {
		c.kick()
	}
	return excusedUntil
}

// probeLoop probes every ProbeInterval, counted from each probe's start, and also when an excused probe's
// excuse runs out: an apiserver that falls silent while a probe waits is then found out the allowed silence
// after the last thing it sent, not up to a probe interval later.
func (c *Controller) probeLoop(ctx context.Context) {
	for {
		start := time.Now()
		next := c.probe(ctx)
		if next.IsZero() || start.Add(c.cfg.ProbeInterval).Before(next) {
			next = start.Add(c.cfg.ProbeInterval)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Until(next)):
		}
	}
}

// excuseIfStillSending returns when the excuse of err, an unanswered probe's, runs out unless the apiserver
// sends more (zero when there is none), and err cleared while the apiserver still sends on other requests
// (see probe); it logs the start of such a spell.
func (c *Controller) excuseIfStillSending(ctx context.Context, err error, unanswered bool) (until time.Time, _ error) {
	var allowed time.Duration
	if err != nil && unanswered && c.cfg.LastHeard != nil {
		allowed = c.AllowedSilence()
		if heard := c.cfg.LastHeard(); !heard.IsZero() && time.Since(heard) < allowed {
			until = heard.Add(allowed)
		}
	}
	excused := !until.IsZero()
	c.mu.Lock()
	logIt := excused && !c.overloaded
	c.overloaded = excused
	c.mu.Unlock()
	if logIt {
		log.G(ctx).WithError(err).WithField("allowedSilence", allowed).Info("The workload apiserver is slow to answer /readyz but still sends (responses, watch events), or has been silent for less than it is allowed: overloaded, not lost")
	}
	if excused {
		return until, nil
	}
	return until, err
}

// AllowedSilence is how long the workload apiserver may now send nothing before its cluster is unreachable:
// the probe timeout, or longer for a while after it came back from a silence (see allowedSilence).
func (c *Controller) AllowedSilence() time.Duration {
	var recent []reachability.Silence
	if c.cfg.Silences != nil {
		recent = c.cfg.Silences()
	}
	return allowedSilence(c.cfg.ProbeInterval, c.cfg.ProbeTimeout, c.cfg.ProbeTimeoutMax, recent, time.Now())
}

// readyzRequest is one /readyz request; err and unanswered are set before done is closed.
type readyzRequest struct {
	sent time.Time
	done chan struct{}
	err  error
	// unanswered: the apiserver sent no answer at all before lateAnswerTimeout.
	unanswered bool
}

// ask returns the outstanding /readyz request, sending one if there is none.
func (c *Controller) ask(ctx context.Context) *readyzRequest {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.asking != nil {
		return c.asking
	}
	r := &readyzRequest{sent: time.Now(), done: make(chan struct{})}
	c.asking = r
	go func() {
		ctx, cancel := context.WithTimeout(ctx, lateAnswerTimeout)
		defer cancel()
		answered, err := c.readyz(ctx)
		c.mu.Lock()
		if answered {
			c.answeredAt = time.Now()
			late := time.Since(r.sent) > c.cfg.ProbeTimeout
			if late && !c.late {
				log.G(ctx).WithField("after", time.Since(r.sent).Round(time.Millisecond)).Info("The workload apiserver answered late: slow, not lost")
			}
			c.late = late
		}
		c.asking = nil
		c.mu.Unlock()
		r.err, r.unanswered = err, !answered && ctx.Err() != nil
		close(r.done)
	}()
	return r
}

// LastAnswer is when the workload apiserver last answered a probe, in time or late, with any status; zero
// before its first answer.
func (c *Controller) LastAnswer() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.answeredAt
}

func (c *Controller) needVersion() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.version == ""
}

// sync derives the node from the current observation and hands it to virtual-kubelet if it changed.
func (c *Controller) sync(ctx context.Context) {
	obs, err := c.observe()
	if err != nil {
		log.G(ctx).WithError(err).Error("Cannot read the workload cluster cache")
		return
	}

	var tell *corev1.NodeCondition // told outside the lock (only this loop calls sync, so in order)
	c.mu.Lock()
	defer func() {
		c.mu.Unlock()
		if tell != nil {
			c.cfg.ReadyChanged(*tell)
		}
	}()
	c.current = desiredNode(c.cfg, c.host, obs, c.current.Status.Conditions, time.Now())
	c.observed = obs.probed && (obs.probeErr != nil || obs.synced)
	if ready, _ := nodeReady(c.current); c.observed && c.cfg.ReadyChanged != nil {
		if told := string(ready.Status) + "/" + ready.Reason; told != c.told {
			c.told, tell = told, &ready
		}
	}
	if c.notify == nil || equality.Semantic.DeepEqual(c.current, c.sent) {
		return
	}
	c.sent = c.current
	// The only sender is here, under c.mu, so after taking out a stale node there is room for this one.
	select {
	case <-c.outbox:
	default:
	}
	// virtual-kubelet keeps the node it is given and stamps heartbeats into it: give it its own copy.
	c.outbox <- c.current.DeepCopy()
}

// observe reads the probe results and, once synced, the caches. Only the sync loop calls it.
func (c *Controller) observe() (observation, error) {
	c.mu.Lock()
	obs := observation{probed: c.probed, probeErr: c.probeErr, version: c.version}
	c.mu.Unlock()
	if !c.synced.Load() {
		return obs, nil
	}

	nodes, err := c.nodes.List(labels.Everything())
	if err != nil {
		return obs, err
	}
	for _, n := range nodes {
		bound, err := c.pods.ByIndex(podsByNode, n.Name)
		if err != nil {
			return obs, err
		}
		for _, p := range bound {
			obs.pods = append(obs.pods, p.(*corev1.Pod))
		}
	}
	c.requests = c.requests.refresh(obs.pods)
	obs.synced, obs.nodes, obs.requests = true, nodes, c.requests
	return obs, nil
}

// deliver hands nodes from the outbox to virtual-kubelet's callback, which blocks while the node controller
// is busy sending the previous one; the outbox meanwhile keeps only the newest node.
func (c *Controller) deliver(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case n := <-c.outbox:
			c.mu.Lock()
			notify := c.notify
			c.mu.Unlock()
			notify(n)
		}
	}
}

// newActivePodInformer watches the workload cluster's pods that are not terminal, indexed by node.
func newActivePodInformer(client kubernetes.Interface, resync time.Duration) cache.SharedIndexInformer {
	return coreinformers.NewFilteredPodInformer(client, metav1.NamespaceAll, resync,
		cache.Indexers{podsByNode: podNodeName},
		func(o *metav1.ListOptions) { o.FieldSelector = activePods })
}

func podNodeName(obj any) ([]string, error) {
	if p, ok := obj.(*corev1.Pod); ok && p.Spec.NodeName != "" {
		return []string{p.Spec.NodeName}, nil
	}
	return nil, nil
}

// withTimeout calls f with ctx bounded by d.
func withTimeout(ctx context.Context, d time.Duration, f func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	return f(ctx)
}

// withoutCredentials removes user information from a URL; anything that doesn't parse as one is kept as is.
func withoutCredentials(host string) string {
	u, err := url.Parse(host)
	if err != nil || u.User == nil {
		return host
	}
	u.User = nil
	return u.String()
}

func errorText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
