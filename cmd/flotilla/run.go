package main

import (
	"context"
	"fmt"
	"regexp"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/virtual-kubelet/virtual-kubelet/log"
	vknode "github.com/virtual-kubelet/virtual-kubelet/node"
	"github.com/virtual-kubelet/virtual-kubelet/node/nodeutil"
	"golang.org/x/time/rate"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"
	metricsclient "k8s.io/metrics/pkg/client/clientset/versioned"

	"github.com/flotilla-io/flotilla/credentials"
	"github.com/flotilla-io/flotilla/health"
	"github.com/flotilla-io/flotilla/internal/cachetrim"
	"github.com/flotilla-io/flotilla/internal/reachability"
	"github.com/flotilla-io/flotilla/metrics"
	"github.com/flotilla-io/flotilla/node"
	"github.com/flotilla-io/flotilla/provider"
	"github.com/flotilla-io/flotilla/provider/follow"
	"github.com/flotilla-io/flotilla/tenancy"
	"github.com/flotilla-io/flotilla/tracing"
)

// informerResync is how often informers replay their caches to handlers: a safety net only, since
// every change arrives by watch.
const informerResync = 10 * time.Minute

// run connects to both clusters and serves (see serve), or with --leader-elect serves only while this
// process holds the virtual node's leader lease.
func run(ctx context.Context, o *options) error {
	setupTelemetry()
	metricsRecorder, err := metrics.New(o.ClusterName)
	if err != nil {
		return err
	}
	stopTracing, err := tracing.Setup(ctx, o.ClusterName, o.NodeName)
	if err != nil {
		return err
	}
	defer stopTracing()
	// Every line virtual-kubelet, the provider and the node controller log names the workload cluster.
	ctx = log.WithLogger(ctx, log.G(ctx).WithField("cluster", o.ClusterName))
	managementCfg, err := loadKubeconfig("management", o.ManagementKubeconfig, float32(o.ManagementQPS), o.ManagementBurst, o.APICompression)
	if err != nil {
		return err
	}
	// The node identity's certificate is renewed before it expires, as a kubelet's is.
	managementCfg, nodeCertificate, err := credentials.NodeClientConfig(managementCfg, o.CertDir)
	if err != nil {
		return fmt.Errorf("management cluster: %w", err)
	}
	workloadCfg, err := loadKubeconfig("workload", o.WorkloadKubeconfig, float32(o.WorkloadQPS), o.WorkloadBurst, o.APICompression)
	if err != nil {
		return err
	}
	workloadCfg, workloadToken, err := credentials.RenewingTokenConfig(workloadCfg, credentials.TokenOptions{})
	if err != nil {
		return fmt.Errorf("workload cluster: %w", err)
	}
	failoverCfg := managementCfg
	if o.FailoverKubeconfig != "" {
		if failoverCfg, err = loadKubeconfig("failover", o.FailoverKubeconfig, 5, 10, o.APICompression); err != nil {
			return err
		}
	}
	failoverCfg, failoverToken, err := credentials.RenewingTokenConfig(failoverCfg, credentials.TokenOptions{})
	if err != nil {
		return fmt.Errorf("failover identity: %w", err)
	}
	if nodeCertificate != nil {
		go nodeCertificate.Run(ctx)
	}
	if workloadToken != nil {
		go workloadToken.Run(ctx)
	}
	if failoverToken != nil {
		go failoverToken.Run(ctx)
	}
	metricsRecorder.CountRequests(managementCfg, "management")
	metricsRecorder.CountRequests(workloadCfg, "workload")
	managementCfg.Wrap(tracing.Transport("management"))
	workloadCfg.Wrap(tracing.Transport("workload"))
	// Informers of the workload cluster wait while it is down rather than back off (see reachability).
	workloadGate := &reachability.Gate{}
	workloadCfg.Wrap(workloadGate.Wrap)
	// What the workload apiserver sends on any client tells an overloaded apiserver from a lost one, and the
	// silences it came back from a stuttering one from a steady one.
	workloadHeard := &reachability.Heard{RememberFrom: node.SilenceWorthLearning(o.ProbeInterval, o.ProbeTimeout)}
	workloadCfg.Wrap(workloadHeard.Wrap)
	management, err := kubernetes.NewForConfig(managementCfg)
	if err != nil {
		return fmt.Errorf("management cluster: %w", err)
	}
	workload, err := kubernetes.NewForConfig(workloadCfg)
	if err != nil {
		return fmt.Errorf("workload cluster: %w", err)
	}
	failover, err := kubernetes.NewForConfig(failoverCfg)
	if err != nil {
		return fmt.Errorf("failover identity: %w", err)
	}
	// The workload health probe and the node's heartbeats (its Lease and status) get clients of their own, as
	// kubelets do: a client-side rate limit of their own, so they never wait behind a burst of pod work, and a
	// healthy cluster is never declared lost, nor a live node left without a heartbeat, because of one.
	probe, err := kubernetes.NewForConfig(withOwnRateLimit(workloadCfg, vitalQPS, vitalBurst))
	if err != nil {
		return fmt.Errorf("workload cluster: %w", err)
	}
	heartbeat, err := kubernetes.NewForConfig(withOwnRateLimit(managementCfg, vitalQPS, vitalBurst))
	if err != nil {
		return fmt.Errorf("management cluster: %w", err)
	}
	// So do the kubelet API's TokenReviews and SubjectAccessReviews: a caller choosing its tokens decides how
	// many of them there are, and a flood of bogus ones must wait on a rate limit of its own, not pod work's.
	reviews, err := kubernetes.NewForConfig(withOwnRateLimit(managementCfg, reviewQPS, reviewBurst))
	if err != nil {
		return fmt.Errorf("management cluster: %w", err)
	}
	// Ready while the management apiserver answers and, once this replica serves, its informers have synced.
	informers := &health.Informers{}
	if o.HealthAddr != "" {
		if err := health.Serve(ctx, o.HealthAddr, health.APIServer("management", heartbeat.Discovery().RESTClient(), 2*time.Second), informers); err != nil {
			return fmt.Errorf("--health-address: %w", err)
		}
	}
	if o.ManagementID == "" {
		if o.ManagementID, err = managementIdentity(ctx, management, managementCfg.Host); err != nil {
			return err
		}
	}
	logrus.WithFields(logrus.Fields{
		"cluster": o.ClusterName, "node": o.NodeName, "management": managementCfg.Host,
		"managementID": o.ManagementID, "workload": workloadCfg.Host,
	}).Info("flotilla starting")
	if o.MetricsAddr != "" {
		access := metrics.Access{Management: management, CertFile: o.TLSCertFile, KeyFile: o.TLSKeyFile, ClientCAFile: o.ClientCAFile}
		if err := metricsRecorder.Serve(ctx, o.MetricsAddr, access, o.Profiling); err != nil {
			return fmt.Errorf("--metrics-address: %w", err)
		}
	}
	c := &clusters{management: management, workload: workload, failover: failover, probe: probe, heartbeat: heartbeat,
		reviews: reviews, workloadCfg: workloadCfg, workloadGate: workloadGate, workloadHeard: workloadHeard, metrics: metricsRecorder, informers: informers}
	if workloadToken != nil {
		namespace, name := workloadToken.ServiceAccount()
		c.workloadReader = &rbacv1.Subject{Kind: rbacv1.ServiceAccountKind, Namespace: namespace, Name: name}
	}
	if o.LeaderElect {
		// The failover identity holds the Lease: NodeRestriction keeps the node identity out of Leases outside
		// kube-node-lease.
		return serveWhileLeading(ctx, o, failoverCfg, func(ctx context.Context) error { return serve(ctx, o, c) })
	}
	return serve(ctx, o, c)
}

// clusters are flotilla's ways into its two clusters.
type clusters struct {
	management, workload kubernetes.Interface
	// failover is the identity that does for the virtual node what NodeRestriction forbids the node's own
	// (the cluster-lost taint, the role label).
	failover kubernetes.Interface
	// probe and heartbeat are the workload health probe's and the node heartbeats' own clients.
	probe, heartbeat kubernetes.Interface
	// reviews is the kubelet API's own client, for the TokenReviews and SubjectAccessReviews of its callers.
	reviews     kubernetes.Interface
	workloadCfg *rest.Config
	// workloadGate holds the workload informers' requests while the cluster is down.
	workloadGate *reachability.Gate
	// workloadHeard is when the workload apiserver last sent anything on any workload client.
	workloadHeard *reachability.Heard
	// workloadReader is flotilla's ServiceAccount in the workload cluster, which it grants read access to
	// each namespace it uses; nil when its workload identity is not a ServiceAccount.
	workloadReader *rbacv1.Subject
	// metrics measures what flotilla does; informers is the readiness check of the management informers.
	metrics   *metrics.Recorder
	informers *health.Informers
}

// serve wires flotilla together and runs it until ctx ends or a part of it fails: the virtual node's
// controller (package node) feeds virtual-kubelet's node controller; the provider (package provider) serves
// virtual-kubelet's pod controller.
func serve(ctx context.Context, o *options, c *clusters) error {
	management, workload, workloadCfg, workloadGate := c.management, c.workload, c.workloadCfg, c.workloadGate
	events := record.NewBroadcaster(record.WithContext(ctx))
	events.StartRecordingToSink(&corev1client.EventSinkImpl{Interface: management.CoreV1().Events(metav1.NamespaceAll)})
	defer events.Shutdown()
	recorder := events.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "flotilla", Host: o.NodeName})

	// Proxy pods are the pods bound to the virtual node; Services and Ingresses are what the followers read
	// cluster-wide (ConfigMaps and Secrets they read one object at a time).
	podInformers := informers.NewSharedInformerFactoryWithOptions(management, informerResync, nodeutil.PodInformerFilter(o.NodeName),
		informers.WithTransform(cachetrim.ManagedFields))
	objectInformers := informers.NewSharedInformerFactoryWithOptions(management, informerResync,
		informers.WithTransform(cachetrim.ManagedFields))
	// virtual-kubelet's pod controller requires ConfigMap and Secret informers, but with
	// SkipDownwardAPIResolution it reads neither (it only resolves env with them) and waits for the pods'
	// sync only (v1.14 node/podcontroller.go). They come from a factory that is never started, so that no
	// cluster-wide list or watch of ConfigMaps or Secrets is ever made: a node may not make one.
	neverStarted := informers.NewSharedInformerFactory(management, informerResync)
	pods := podInformers.Core().V1().Pods()
	// A delegation's clock starts when a proxy is seen bound, and stops when it is seen Running.
	if _, err := pods.Informer().AddEventHandler(c.metrics.ProxyEvents()); err != nil {
		return err
	}
	// The virtual nodes, this one and its peers: a deletion of this one by hand is undone at once, a peer
	// whose flotilla is lost is failed over (see node.Failover), and each publishes its copies'
	// load-balancer addresses (see package follow).
	virtualNodes := informers.NewSharedInformerFactoryWithOptions(management, informerResync,
		informers.WithTransform(cachetrim.ManagedFields),
		informers.WithTweakListOptions(func(lo *metav1.ListOptions) { lo.LabelSelector = node.LabelCluster + ",type=virtual-kubelet" }))
	// The management namespaces: which take part in delegation, and the Pod Security level they ask for.
	namespaceInformers := informers.NewSharedInformerFactoryWithOptions(management, informerResync,
		informers.WithTransform(cachetrim.ManagedFields))
	workloadTenancy := tenancy.NewWorkloadCache(workload, o.ManagementID)
	namespaces := &tenancy.Namespaces{
		Cache:        workloadTenancy,
		Workload:     workload,
		Management:   namespaceInformers.Core().V1().Namespaces().Lister(),
		ManagementID: o.ManagementID,
		Level:        o.PodSecurityLevel,
		Node:         o.NodeName,
		Reader:       c.workloadReader,
	}

	// The Services, Ingresses, ConfigMaps and Secrets that follow proxies to the workload cluster.
	followers, err := follow.New(follow.Config{
		NodeName:            o.NodeName,
		OwnerLabels:         provider.OwnerLabels(o.ManagementID, o.NodeName),
		Management:          management,
		Workload:            workload,
		ManagementInformers: objectInformers,
		Proxies:             pods,
		VirtualNodes:        virtualNodes.Core().V1().Nodes(),
		Namespaces:          namespaces,
		EventRecorder:       recorder,
		IngressClasses:      o.IngressClasses,
		Metrics:             c.metrics,
	})
	if err != nil {
		return err
	}
	workloadMetrics, err := metricsclient.NewForConfig(asJSON(workloadCfg))
	if err != nil {
		return err
	}
	p, err := provider.New(provider.Config{
		NodeName:       o.NodeName,
		ClusterName:    o.ClusterName,
		ManagementID:   o.ManagementID,
		Management:     management,
		Workload:       workload,
		ManagementPods: pods.Lister(),
		EventRecorder:  recorder,
		HostIP:         o.InternalIP,
		WorkloadConfig: workloadCfg,
		// kubectl top and HorizontalPodAutoscalers: the kubelet API reports the workload cluster's usage.
		WorkloadMetrics: workloadMetrics,
		References:      followers,
		Namespaces:      namespaces,
		Workers:         o.PodWorkers,
		RescheduleAfter: o.RescheduleAfter,
		Metrics:         c.metrics,
		ClusterLost: func() bool {
			n, err := virtualNodes.Core().V1().Nodes().Lister().Get(o.NodeName)
			return err == nil && node.Lost(n)
		},
	})
	if err != nil {
		return err
	}
	// Labelling a namespace flotilla.io/enabled=true delegates its waiting proxies, and what they need follows
	// them; removing the label takes away what only proxies without a delegate needed.
	if _, err := namespaceInformers.Core().V1().Namespaces().Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) {
			if ns, ok := obj.(*corev1.Namespace); ok && tenancy.Enabled(ns) {
				p.NamespaceChanged(ns.Name)
				followers.NamespaceChanged(ns.Name)
			}
		},
		UpdateFunc: func(old, obj any) {
			before, _ := old.(*corev1.Namespace)
			ns, ok := obj.(*corev1.Namespace)
			if !ok || tenancy.Enabled(ns) == tenancy.Enabled(before) {
				return
			}
			if tenancy.Enabled(ns) {
				p.NamespaceChanged(ns.Name)
			}
			followers.NamespaceChanged(ns.Name)
		},
	}); err != nil {
		return err
	}

	virtualNode, err := node.NewController(node.Config{
		NodeName:        o.NodeName,
		ClusterName:     o.ClusterName,
		ExcludeLabels:   regexp.MustCompile(o.ExcludeLabels), // validated in options.Validate
		Taint:           o.Taint,
		InternalIP:      o.InternalIP,
		KubeletPort:     int32(o.KubeletPort),
		ProbeInterval:   o.ProbeInterval,
		ProbeTimeout:    o.ProbeTimeout,
		ProbeTimeoutMax: o.ProbeTimeoutMax,
		Probe:           c.probe,
		LastHeard:       c.workloadHeard.Last,
		Silences:        c.workloadHeard.Silences,
		FailoverAfter:   o.FailoverAfter,
		OwnPods:         provider.OwnDelegates(o.ManagementID, o.NodeName),
		Reachability: func(reachable bool) {
			c.metrics.Reachable(reachable)
			workloadGate.Set(reachable)
			if reachable { // what failed while the cluster was away is retried now, not after its backoff
				p.Resync()
				followers.Resync()
			}
		},
		// While the node is not Ready, its Running proxies are not Ready either.
		ReadyChanged: p.SetClusterReady,
	}, workload, workloadCfg.Host)
	if err != nil {
		return err
	}
	if err := c.metrics.ObserveAllowedSilence(virtualNode.AllowedSilence); err != nil {
		return err
	}

	podController, err := vknode.NewPodController(vknode.PodControllerConfig{
		// A terminated proxy is removed only once its delegate is confirmed gone (at most one incarnation);
		// a proxy's status writes are spans of its delegation's trace.
		PodClient:         p.PodControllerClient(management.CoreV1()),
		PodInformer:       pods,
		EventRecorder:     provider.PodControllerRecorder(recorder),
		Provider:          p,
		ConfigMapInformer: neverStarted.Core().V1().ConfigMaps(),
		SecretInformer:    neverStarted.Core().V1().Secrets(),
		ServiceInformer:   objectInformers.Core().V1().Services(),
		// Delegates reference ConfigMaps and Secrets by name; resolving them would copy secret values
		// into pod specs.
		SkipDownwardAPIResolution:               true,
		SyncPodsFromKubernetesRateLimiter:       o.queueRateLimiter(),
		DeletePodsFromKubernetesRateLimiter:     o.queueRateLimiter(),
		DeletePodsFromKubernetesShouldRetryFunc: provider.RetryHeldRemovals(vknode.DefaultRetryFunc),
		SyncPodStatusFromProviderRateLimiter:    o.queueRateLimiter(),
	})
	if err != nil {
		return err
	}
	// Registration rides out a management apiserver that restarts meanwhile, as a kubelet's does.
	registered := make(chan struct{})
	nodeController, err := vknode.NewNodeController(virtualNode, virtualNode.Node(), node.RegistrationClient(c.heartbeat.CoreV1().Nodes(), registered),
		vknode.WithNodeEnableLeaseV1(nodeutil.NodeLeaseV1Client(c.heartbeat), vknode.DefaultLeaseDuration),
		vknode.WithNodeStatusUpdateErrorHandler(reRegister(c.heartbeat.CoreV1().Nodes(), virtualNode.Node)),
	)
	if err != nil {
		return err
	}
	if _, err := virtualNodes.Core().V1().Nodes().Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		DeleteFunc: func(obj any) {
			if key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil && key == o.NodeName {
				virtualNode.Resend()
			}
		},
	}); err != nil {
		return err
	}
	// Once a workload cluster is lost for long enough, its pods are evicted and replaced elsewhere.
	failover := node.NewFailover(o.NodeName, o.FailoverAfter, virtualNode, c.failover.CoreV1().Nodes(),
		virtualNodes.Core().V1().Nodes().Lister(), recorder, c.metrics.FailedOver)
	stopKubeletAPI, err := serveKubeletAPI(o, c.reviews, p, pods.Lister())
	if err != nil {
		return err
	}
	defer stopKubeletAPI()

	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	go func() { cancel(fmt.Errorf("virtual node controller: %w", virtualNode.Run(ctx))) }()
	go func() { cancel(fmt.Errorf("provider: %w", p.Run(ctx))) }()
	go func() { cancel(fmt.Errorf("followers: %w", followers.Run(ctx))) }()
	podInformers.Start(ctx.Done())
	objectInformers.Start(ctx.Done())
	virtualNodes.Start(ctx.Done())
	namespaceInformers.Start(ctx.Done())
	workloadTenancy.Start(ctx.Done())
	c.informers.Add(podInformers, objectInformers, virtualNodes, namespaceInformers)
	go func() { cancel(fmt.Errorf("pod controller: %w", podController.Run(ctx, o.PodWorkers))) }()
	go func() { cancel(fmt.Errorf("node controller: %w", nodeController.Run(ctx))) }()
	go func() {
		select {
		case <-nodeController.Ready():
			close(registered)
		case <-ctx.Done():
		}
	}()
	go failover.Run(ctx)

	<-ctx.Done()
	err = context.Cause(ctx)
	podInformers.Shutdown()
	objectInformers.Shutdown()
	virtualNodes.Shutdown()
	namespaceInformers.Shutdown()
	workloadTenancy.Shutdown()
	logrus.Infof("flotilla stopping: %v", err)
	return err
}

// asJSON is cfg for a client of an API that may not speak protobuf, such as an aggregated one (metrics).
func asJSON(cfg *rest.Config) *rest.Config {
	json := rest.CopyConfig(cfg)
	json.ContentType, json.AcceptContentTypes = runtime.ContentTypeJSON, runtime.ContentTypeJSON
	return json
}

// withOwnRateLimit is cfg for a client with a token bucket of its own (qps, burst): every client built from
// a config without a RateLimiter gets a new one.
func withOwnRateLimit(cfg *rest.Config, qps float32, burst int) *rest.Config {
	own := rest.CopyConfig(cfg)
	own.QPS, own.Burst, own.RateLimiter = qps, burst, nil
	return own
}

// The rate limits of the clients that must never wait behind pod work.
const (
	// vitalQPS and vitalBurst are the workload health probe's and the node heartbeats': a few requests every
	// few seconds.
	vitalQPS, vitalBurst = 5, 10
	// reviewQPS and reviewBurst are the kubelet API's reviews: a kubelet's own client rate (kubelet's
	// --kube-api-qps 50, --kube-api-burst 100), which its reviews share. Answers are cached (see
	// kubeletauth.TokenReviewTTL), so only new callers and new tokens spend it; a flood of distinct bogus tokens is
	// reviewed at this rate at most, and only its own requests and new callers wait behind it.
	reviewQPS, reviewBurst = 50, 100
)

// queueRateLimiter lets virtual-kubelet's pod queues admit hundreds of pods a second, where client-go's
// default (10 per second) would make a 500-replica rollout wait almost a minute on flotilla alone. Failed
// items still back off exponentially, per item.
func (o *options) queueRateLimiter() workqueue.TypedRateLimiter[any] {
	return workqueue.NewTypedMaxOfRateLimiter(
		workqueue.NewTypedItemExponentialFailureRateLimiter[any](5*time.Millisecond, 30*time.Second),
		&workqueue.TypedBucketRateLimiter[any]{Limiter: rate.NewLimiter(rate.Limit(o.PodQueueQPS), o.PodQueueBurst)},
	)
}

// reRegister creates the virtual node again when someone deleted it: virtual-kubelet calls it when a
// status update finds the node gone.
func reRegister(nodes corev1client.NodeInterface, desired func() *corev1.Node) vknode.ErrorHandler {
	return func(ctx context.Context, err error) error {
		if !apierrors.IsNotFound(err) {
			return err
		}
		logrus.Warn("virtual node was deleted; registering it again")
		_, err = nodes.Create(ctx, desired(), metav1.CreateOptions{})
		if apierrors.IsAlreadyExists(err) {
			return nil
		}
		return err
	}
}
