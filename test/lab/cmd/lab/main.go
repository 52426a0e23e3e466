// Command lab brings the local multi-cluster lab up and down for people (make lab / make lab-down).
//
//	lab up   [--dir .lab] [--workloads us-west-2-0=us-west-2,...] [--nodes 3] [--kubelets=false]
//	         [--management-nodes 0] [--flotilla=false] [--workload-kubernetes k8s-1.35]
//	lab down [--dir .lab]
//	lab status [--dir .lab]   (processes and their memory)
//	lab binaries   (build the binaries of every tools module, every Kubernetes version included, into .cache/ if missing)
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/flotilla-io/flotilla/test/lab"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	fs := flag.NewFlagSet(os.Args[1], flag.ExitOnError)
	dir := fs.String("dir", ".lab", "folder for the lab's certificates, kubeconfigs, logs and state")
	workloads := fs.String("workloads", defaultWorkloads(), "workload clusters as name=region, comma-separated")
	nodes := fs.Int("nodes", 3, "kwok nodes per workload cluster, one per zone <region>a, b, c, ...")
	kubelets := fs.Bool("kubelets", true, "kwok serves its nodes' kubelet API and metrics-server runs for every cluster (kubectl logs, exec, top)")
	managementNodes := fs.Int("management-nodes", 0, "kwok nodes of the management cluster's own, for what runs there rather than on virtual nodes (flotilla's Helm chart)")
	flotilla := fs.Bool("flotilla", true, "run `flotilla join`, one flotilla process per workload cluster and the webhook; false leaves that to you (the chart, say)")
	workloadKubernetes := fs.String("workload-kubernetes", "", "the workload clusters' Kubernetes, as a tools module under test/tools (k8s-1.35); empty runs the management cluster's")
	_ = fs.Parse(os.Args[2:])

	var err error
	switch os.Args[1] {
	case "up":
		err = up(*dir, *workloads, *workloadKubernetes, lab.Options{Kubelets: *kubelets, ManagementNodes: *managementNodes, Flotilla: *flotilla}, *nodes)
	case "down":
		err = down(*dir)
	case "status":
		err = status(*dir)
	case "binaries":
		err = binaries()
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "lab %s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: lab up|down|status|binaries [--dir .lab] [--workloads name=region,...] [--nodes N] [--kubelets=false] [--management-nodes N] [--flotilla=false] [--workload-kubernetes k8s-1.35]")
	os.Exit(2)
}

func defaultWorkloads() string {
	var parts []string
	for _, w := range lab.DefaultWorkloads() {
		parts = append(parts, w.Name+"="+w.Region)
	}
	return strings.Join(parts, ",")
}

// binaries builds what every lab runs, and the cluster binaries of every other Kubernetes version, so no
// test pays for a build.
func binaries() error {
	if _, err := lab.Binaries(); err != nil {
		return err
	}
	modules, err := lab.KubernetesModules()
	if err != nil {
		return err
	}
	for _, module := range modules {
		if _, err := lab.ClusterBinaries(module); err != nil {
			return err
		}
	}
	return nil
}

func parseWorkloads(s, kubernetes string, nodes int) ([]lab.WorkloadSpec, error) {
	var out []lab.WorkloadSpec
	for _, part := range strings.Split(s, ",") {
		name, region, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok || name == "" || region == "" {
			return nil, fmt.Errorf("workload %q: want name=region", part)
		}
		w := lab.Workload(name, region)
		w.Nodes, w.Kubernetes = nodes, kubernetes
		for len(w.Zones) < nodes {
			w.Zones = append(w.Zones, fmt.Sprintf("%s%c", region, 'a'+len(w.Zones)))
		}
		out = append(out, w)
	}
	return out, nil
}

// up starts a lab in dir with opts and the workload clusters, nodes kwok nodes each, on the Kubernetes of
// the tools module kubernetes (empty: the default).
func up(dir, workloads, kubernetes string, opts lab.Options, nodes int) error {
	if l, err := lab.Load(dir); err == nil && l.Running() {
		fmt.Printf("The lab in %s is already up.\n", dir)
		printNext(l)
		return nil
	} else if err == nil {
		fmt.Printf("The lab in %s is partly down; restarting it.\n", dir)
		if err := lab.Down(dir); err != nil {
			return err
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	specs, err := parseWorkloads(workloads, kubernetes, nodes)
	if err != nil {
		return err
	}
	// A fresh lab every time: old certificates and etcd data would only confuse.
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt)
	defer cancel()
	started := time.Now()
	opts.Dir, opts.Workloads = dir, specs
	l, err := lab.Start(ctx, opts)
	if err != nil {
		return err
	}
	each := "one flotilla each"
	if !opts.Flotilla {
		each = "no flotilla yet"
	}
	fmt.Printf("Lab up in %s: a management cluster (%d nodes of its own) and %d workload clusters, %s.\n",
		time.Since(started).Round(time.Second), opts.ManagementNodes, len(l.Workloads), each)
	printNext(l)
	return nil
}

func printNext(l *lab.Lab) {
	rel := func(p string) string {
		if wd, err := os.Getwd(); err == nil {
			if r, err := filepath.Rel(wd, p); err == nil {
				return r
			}
		}
		return p
	}
	fmt.Printf(`
Next:
  export PATH=$PWD/%s:$PATH              # the lab's kubectl, matching its servers
  export KUBECONFIG=%s
  kubectl get nodes                      # one virtual node per workload cluster, and the management cluster's own
  kubectl --kubeconfig %s get nodes      # a workload cluster's kwok nodes
Logs: %s/logs/<cluster>/{kube-apiserver,kube-scheduler,kube-controller-manager,kwok,flotilla}.log
Stop: make lab-down
`, rel(filepath.Join(l.Dir, "bin")), rel(l.Management.Kubeconfig), rel(l.Workloads[len(l.Workloads)-1].Kubeconfig), rel(l.Dir))
}

func down(dir string) error {
	if err := lab.Down(dir); errors.Is(err, fs.ErrNotExist) {
		fmt.Printf("No lab in %s.\n", dir)
		return nil
	} else if err != nil {
		return err
	}
	fmt.Printf("Lab in %s stopped.\n", dir)
	return nil
}

func status(dir string) error {
	l, err := lab.Load(dir)
	if errors.Is(err, fs.ErrNotExist) {
		fmt.Printf("No lab in %s.\n", dir)
		return nil
	} else if err != nil {
		return err
	}
	total, byProcess, err := l.ResidentMemory()
	if err != nil {
		return fmt.Errorf("the lab is not (fully) running: %w", err)
	}
	names := make([]string, 0, len(byProcess))
	for name := range byProcess {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		fmt.Printf("%-40s %6d MiB\n", name, byProcess[name]>>20)
	}
	fmt.Printf("%-40s %6d MiB resident in %d processes\n", "total", total>>20, len(names))
	return nil
}
