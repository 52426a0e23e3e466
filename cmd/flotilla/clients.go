package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/sirupsen/logrus"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// loadKubeconfig reads a kubeconfig and says which one is wrong and how, instead of failing later with
// a client-go stack of errors. An empty path means flotilla runs inside the management cluster.
func loadKubeconfig(role, path string, qps float32, burst int, compression bool) (*rest.Config, error) {
	var cfg *rest.Config
	var err error
	if path == "" {
		cfg, err = rest.InClusterConfig()
		if err != nil {
			return nil, fmt.Errorf("%s cluster: no --%s-kubeconfig given and not running in a cluster: %w", role, role, err)
		}
	} else {
		if _, statErr := os.Stat(path); statErr != nil {
			return nil, fmt.Errorf("%s cluster: kubeconfig %s: %w", role, path, statErr)
		}
		cfg, err = clientcmd.BuildConfigFromFlags("", path)
		if err != nil {
			return nil, fmt.Errorf("%s cluster: kubeconfig %s is not usable: %w", role, path, err)
		}
	}
	cfg.QPS, cfg.Burst = qps, burst
	cfg.UserAgent = "flotilla"
	// Protobuf, as Kubernetes' own controllers speak it: encoding every pod event for flotilla's watches
	// as JSON cost the apiservers more CPU than anything else flotilla asks of them. Clients of types
	// without protobuf (dynamic, metrics) set JSON themselves.
	cfg.ContentType = runtime.ContentTypeProtobuf
	cfg.AcceptContentTypes = runtime.ContentTypeProtobuf + "," + runtime.ContentTypeJSON
	// Uncompressed, as kube-controller-manager and kube-scheduler ask for it too: an apiserver gzips a
	// streamed list's watch event by event for as long as the watch lasts, which was 6% of a workload
	// apiserver's CPU profile during a rollout through flotilla. Between a controller and its apiservers
	// bandwidth is cheaper than CPU; --api-compression is for links where it is not.
	cfg.DisableCompression = !compression
	return cfg, nil
}

// managementIdentity is the UID of the management cluster's kube-system namespace: stable for the
// cluster's life, unique across clusters, and readable with a single GET. It also proves, before anything
// else starts, that the management kubeconfig works. Unreachable servers are retried for a while;
// rejected credentials fail at once, since waiting will not fix them.
func managementIdentity(ctx context.Context, client kubernetes.Interface, host string) (string, error) {
	var uid string
	var last error
	err := wait.PollUntilContextTimeout(ctx, 2*time.Second, time.Minute, true, func(ctx context.Context) (bool, error) {
		ns, err := client.CoreV1().Namespaces().Get(ctx, metav1.NamespaceSystem, metav1.GetOptions{})
		switch {
		case err == nil:
			uid = string(ns.UID)
			return true, nil
		case apierrors.IsUnauthorized(err):
			return false, fmt.Errorf("management cluster %s rejected flotilla's credentials: %w", host, err)
		case apierrors.IsForbidden(err):
			return false, fmt.Errorf("management cluster %s: flotilla may not read namespace kube-system (apply deploy/charts/flotilla/files/rbac/management.yaml): %w", host, err)
		default:
			last = err
			logrus.Warnf("management cluster %s not reachable yet: %v", host, err)
			return false, nil
		}
	})
	switch {
	case err == nil:
		return uid, nil
	case ctx.Err() != nil: // stopped (SIGTERM) while waiting
		return "", ctx.Err()
	case wait.Interrupted(err) && last != nil:
		return "", fmt.Errorf("management cluster %s unreachable: %w", host, last)
	default:
		return "", err
	}
}
