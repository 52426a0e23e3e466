package main

import (
	_ "github.com/sirupsen/logrus"
	_ "github.com/virtual-kubelet/virtual-kubelet/node/nodeutil"
	_ "go.opentelemetry.io/otel"
	_ "go.opentelemetry.io/otel/sdk/trace"
	_ "k8s.io/api/core/v1"
	_ "k8s.io/client-go/kubernetes"
	_ "k8s.io/component-helpers/resource"
	_ "github.com/virtual-kubelet/virtual-kubelet/test/e2e"
)

func main() {}
