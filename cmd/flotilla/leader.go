package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/sirupsen/logrus"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/uuid"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
)

// The leader lease's timing. A standby takes over at most leaseDuration after the leader's last renewal,
// well inside the node lifecycle controller's grace period, so the virtual node stays Ready through a
// takeover. A leader that cannot renew stops serving within retryPeriod + renewDeadline, plus at most
// renewDeadline to try to release the lease (the lease client's timeout): 12 s, before any standby may take
// over, so two replicas never serve the node at once.
const (
	leaseDuration = 15 * time.Second
	renewDeadline = 5 * time.Second
	retryPeriod   = 2 * time.Second
)

// errLostLease ends a flotilla that stopped being the leader: it exits, so it cannot act on the node while
// another one serves it, and its restart makes it a standby.
var errLostLease = errors.New("lost the leader lease of the virtual node")

// serveWhileLeading runs serve while this process holds the Lease flotilla-<node> in
// --leader-elect-namespace of the management cluster, so several replicas of one flotilla can stand by
// and one serves the node. On shutdown serve stops first and then the lease is released, for a standby to
// take at once.
func serveWhileLeading(ctx context.Context, o *options, leaseCfg *rest.Config, serve func(context.Context) error) error {
	// A client of its own: renewals do not queue behind a burst of pod updates in the shared client's rate
	// limiter, and a request to an unreachable apiserver gives up within the renew deadline.
	cfg := rest.CopyConfig(leaseCfg)
	cfg.QPS, cfg.Burst, cfg.Timeout = 5, 10, renewDeadline
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return fmt.Errorf("leader election: %w", err)
	}
	host, _ := os.Hostname()
	identity := host + "_" + string(uuid.NewUUID())
	lock := &resourcelock.LeaseLock{
		LeaseMeta:  metav1.ObjectMeta{Namespace: o.LeaderElectNamespace, Name: "flotilla-" + o.NodeName},
		Client:     client.CoordinationV1(),
		LockConfig: resourcelock.ResourceLockConfig{Identity: identity},
	}

	// The election outlives ctx: on shutdown it is ended (and the lease released) only after serve returns.
	electCtx, stopElecting := context.WithCancel(context.WithoutCancel(ctx))
	defer stopElecting()
	// The elector calls back with a context that ends when the lease is lost; serve runs here, not in the
	// callback, so that this function returns only after serve has.
	leading := make(chan context.Context, 1)
	elector, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
		Lock:            lock,
		Name:            lock.Describe(),
		LeaseDuration:   leaseDuration,
		RenewDeadline:   renewDeadline,
		RetryPeriod:     retryPeriod,
		ReleaseOnCancel: true,
		Callbacks: leaderelection.LeaderCallbacks{
			OnStartedLeading: func(ctx context.Context) { leading <- ctx },
			OnStoppedLeading: func() {}, // required by client-go; leaving is handled where serve returns
			OnNewLeader: func(leader string) {
				if leader != identity {
					logrus.WithField("leader", leader).Info("Standing by: another flotilla serves the virtual node")
				}
			},
		},
	})
	if err != nil {
		return fmt.Errorf("leader election: %w", err)
	}
	electing := make(chan struct{})
	go func() {
		defer close(electing)
		elector.Run(electCtx)
	}()

	select {
	case <-ctx.Done(): // shut down while standing by
		stopElecting()
		<-electing
		return ctx.Err()
	case leadingCtx := <-leading:
		logrus.WithField("identity", identity).Info("Leading: serving the virtual node")
		serveCtx, stopServing := context.WithCancel(leadingCtx)
		defer context.AfterFunc(ctx, stopServing)()
		err := serve(serveCtx)
		stopServing()
		stopElecting() // releases the lease, now that nothing acts on the node any more
		<-electing
		switch {
		case ctx.Err() != nil:
			return ctx.Err()
		case err != nil && !errors.Is(err, context.Canceled):
			return err
		default:
			return errLostLease
		}
	}
}
