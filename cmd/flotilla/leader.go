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
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
)

// The leader lease's timing, as Kubernetes' own controllers have it: a standby takes over at most
// leaseDuration after the leader stopped renewing, which is well inside the node lifecycle controller's grace
// period, so the virtual node stays Ready through a takeover.
const (
	leaseDuration = 15 * time.Second
	renewDeadline = 10 * time.Second
	retryPeriod   = 2 * time.Second
)

// errLostLease ends a flotilla that stopped being the leader: it exits, so it cannot act on the node while
// another one serves it, and its restart makes it a standby.
var errLostLease = errors.New("lost the leader lease of the virtual node")

// serveWhileLeading runs serve while this process holds the Lease flotilla-<node> in
// --leader-elect-namespace of the management cluster, so several replicas of one flotilla can stand by
// and one serves the node. On shutdown the lease is released for a standby to take at once.
func serveWhileLeading(ctx context.Context, o *options, management kubernetes.Interface, serve func(context.Context) error) error {
	host, _ := os.Hostname()
	identity := host + "_" + string(uuid.NewUUID())
	lock := &resourcelock.LeaseLock{
		LeaseMeta:  metav1.ObjectMeta{Namespace: o.LeaderElectNamespace, Name: "flotilla-" + o.NodeName},
		Client:     management.CoordinationV1(),
		LockConfig: resourcelock.ResourceLockConfig{Identity: identity},
	}

	electCtx, stopElecting := context.WithCancel(ctx)
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
	case <-electing: // the election ends without this process leading only when ctx does
		return ctx.Err()
	case <-ctx.Done():
		<-electing
		return ctx.Err()
	case leadingCtx := <-leading:
		logrus.WithField("identity", identity).Info("Leading: serving the virtual node")
		err := serve(leadingCtx)
		stopElecting() // serve's own failure ends the election too, releasing the lease for a standby
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
