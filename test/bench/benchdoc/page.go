package benchdoc

import (
	"fmt"
	"math"
	"strings"
	"time"
)

// Regenerate is the one command that runs the benchmarks and rewrites the page; RewritePage rewrites the
// page from the kept results without running anything.
const (
	Regenerate  = "make bench-doc"
	RewritePage = "make bench-page"
)

// Section is one benchmark's place on the page, in plain words.
type Section struct {
	Benchmark string // full name, as go test prints it
	Title     string
	Explains  string
}

// Sections are the benchmarks of test/bench in the page's order; a result of a benchmark not named here is
// still shown, under its own name, after them.
var Sections = []Section{
	{"BenchmarkDeploymentRollout/1000x4", "Rollout: 1,000 pods over 4 clusters",
		"The same 1,000 pause pods are started twice in one lab. **Direct**: each of the 4 workload clusters gets a Deployment of its " +
			"share (250), all created at once, with no flotilla on the path. **Through flotilla**: one Deployment of 1,000 replicas in " +
			"the management cluster, spread evenly over the 4 virtual nodes; flotilla creates each pod's delegate in its workload cluster " +
			"and reports it back. Both runs drive the same workload kube-apiservers, schedulers and (simulated) kubelets, so the **ratio** " +
			"(time through flotilla ÷ time direct, to the last pod Running) is what flotilla and the management control plane add: 1.0 " +
			"is as fast as direct, 2.0 twice as long. *Flotilla's share* times a pod from its binding to a virtual node, which removes " +
			"the management controller-manager and scheduler; requests and writes are flotilla's own, counted by its client metrics; " +
			"memory is the growth of one flotilla process, scaled to 2,500 pods. Times are when the benchmark's own watches of " +
			"each apiserver saw a change: under load the management apiserver's watch lags the workload's, so a delegate can be " +
			"seen Running before its proxy is seen bound, and the share from binding to delegate Running can come out below zero."},
	{"BenchmarkDeploymentRollout/1000x4-apart", "Rollout: 1,000 pods over 4 clusters, the management cluster on CPUs of its own",
		"The same comparison, with the machine's CPUs divided as a fleet divides its machines: the workload clusters' control planes " +
			"and kubelets run on half of them in both runs, and the management control plane and the flotillas on the other half (etcd, " +
			"which the lab's clusters share, runs on any). Above, everything competes for every CPU, so the ratio there is also the " +
			"CPU the management cluster spends for every pod a second time; here it is the time flotilla and the management cluster add " +
			"to a rollout whose workload clusters have the same CPUs either way."},
	{"BenchmarkDeploymentRollout/10000x10-apart", "Rollout: 10,000 pods over 10 clusters, the management cluster on CPUs of its own",
		"The same comparison at 10,000 pods over 10 workload clusters (1,000 each): eleven control planes and ten flotillas on one " +
			"machine, its CPUs divided as above. Through flotilla the pods come from ten management Deployments of 1,000, each kept to " +
			"one virtual node by a nodeSelector, as the direct run has one Deployment per cluster: a ReplicaSet's controller reads all " +
			"its pods at every sync, and one ReplicaSet of 10,000 replicas is a load of its own, in any cluster."},
	{"BenchmarkServicesFollow/4", "Follow: 100 Services copied to 4 clusters",
		"100 Services are created in the management cluster, one after another, each selecting 10 pods spread over the 4 virtual " +
			"nodes; flotilla copies each Service into every workload cluster that runs its pods. Timed from the first create to all 400 " +
			"copies present, beside creating the same Services directly in one workload cluster, and in all four at once, each in the " +
			"namespace of the pods it selects there (the same work for the workload clusters, endpoints included). Through flotilla " +
			"the time includes the management apiserver accepting the 100 sources, on the CPUs that also make the copies."},
	{"BenchmarkServicesFollow/4-apart", "Follow: 100 Services copied to 4 clusters, the management cluster on CPUs of its own",
		"The same comparison, with the machine's CPUs divided as for the rollout above: the workload clusters on half of them on " +
			"both paths, the management control plane and the flotillas on the other half. The ratio is then the time following adds " +
			"to creating the Services in every cluster by hand."},
	{"BenchmarkFailoverTimeline", "Failover time-line",
		"A Deployment of 10 replicas runs in us-west-2-0; its pods tolerate not-ready and unreachable nodes for 5 s. The workload " +
			"apiserver of us-west-2-0 is frozen (SIGSTOP), and each phase of the failover is timed from the freeze: flotilla's probe marks " +
			"the virtual node NotReady, the management node lifecycle controller taints it, the taint manager evicts the pods after the " +
			"toleration, the ReplicaSet controller and scheduler bind replacements to us-west-2-1, flotilla starts their delegates there " +
			"and reports the proxies Running. The promise: Running elsewhere within 10 s of the freeze."},
	{"BenchmarkStreams", "Kubelet API streams",
		"`kubectl logs -f`, `exec` and `port-forward` on a pod through flotilla (management apiserver → flotilla → workload " +
			"apiserver → kubelet) beside the same call on its delegate directly in the workload cluster (workload apiserver → kubelet)."},
	{"BenchmarkChaosRollout", "Chaos rollout",
		"1,000 replicas over 4 clusters while, during the rollout, three flotilla processes are killed (SIGKILL, restarted 3 s later), " +
			"one workload apiserver is frozen for 30 s and the management apiserver is restarted. It fails unless, within 60 s of the last " +
			"fault, there are exactly 1,000 Running proxies and delegates, one delegate per proxy, no orphan and no duplicate."},
	{"BenchmarkCapacityPropagation", "Capacity propagation and requests at rest",
		"How fast a change of free capacity in a workload cluster (a pod requesting 1 CPU) shows on its virtual node, and what flotilla " +
			"asks of each cluster per minute when nothing changes."},
	{"BenchmarkUnrelatedSecretsMemory", "Memory: Secrets no pod uses",
		"1,000 Secrets of 100 KiB that no pod references are created in a namespace enabled for delegation; flotilla should not hold them."},
	{"BenchmarkBogusTokenFlood", "Kubelet API under a flood of bogus tokens",
		"5,000 requests at once to one flotilla's kubelet API, each with a bogus token (each costs a TokenReview). Heartbeats and pod work " +
			"must not wait on authentication: the benchmark fails if a Lease renewal comes late or a pod is held up."},
}

// headline is one line of the page's summary: a metric of one benchmark, with its target, or with the
// same benchmark's direct metric (unit direct) beside it when it has no target.
type headline struct {
	benchmark, unit, what, target, direct string
}

var headlines = []headline{
	{"BenchmarkDeploymentRollout/1000x4", UnitRatio, "Rollout of 1,000 pods over 4 clusters, through flotilla ÷ direct", "≤ 1.1", ""},
	{"BenchmarkDeploymentRollout/1000x4-apart", UnitRatio, "The same, the management cluster on CPUs of its own", "≤ 1.1", ""},
	{"BenchmarkDeploymentRollout/10000x10-apart", UnitRatio, "Rollout of 10,000 pods over 10 clusters, the management cluster on CPUs of its own, through flotilla ÷ direct", "≤ 1.2", ""},
	{"BenchmarkDeploymentRollout/1000x4", UnitMiBPer2500Pods, "Memory of one flotilla per 2,500 pods, MiB (1,000-pod rollout)", "≤ 150", ""},
	{"BenchmarkDeploymentRollout/10000x10-apart", UnitMiBPer2500Pods, "Memory of one flotilla per 2,500 pods, MiB (10,000-pod rollout)", "≤ 150", ""},
	{"BenchmarkDeploymentRollout/1000x4", UnitManagementWrites, "Management API writes per pod lifecycle (create → Running → delete)", "≤ 3", ""},
	{"BenchmarkServicesFollow/4", UnitFollowSeconds, "Follow: 100 Services to all 400 copies, seconds", "", UnitFollowDirectSeconds},
	{"BenchmarkServicesFollow/4-apart", UnitFollowSeconds, "The same, the management cluster on CPUs of its own, seconds", "", UnitFollowDirectSeconds},
	{"BenchmarkFailoverTimeline", UnitAllRunningSeconds, "Failover: cluster frozen to all replacements Running, seconds", "≤ 10", ""},
	{"BenchmarkStreams", UnitExecMillis, "exec round trip through flotilla, ms", "", UnitDirectExecMillis},
	{"BenchmarkStreams", UnitPortForwardMiBs, "port-forward through flotilla, MiB/s each way", "", UnitDirectPortForward},
	{"BenchmarkChaosRollout", UnitSettledAfterFaults, "Chaos rollout: last fault to a whole fleet, seconds", "≤ 60", ""},
}

// Plot is one picture of the page, drawn from one result.
type Plot struct {
	File   string // name in the plot directory
	Title  string
	Kind   PlotKind
	Result Result
}

// PlotKind says what a plot draws.
type PlotKind int

const (
	// RunningPlot draws each path's pods' times to Running against the number of pods Running.
	RunningPlot PlotKind = iota
	// TimelinePlot draws each phase of a time-line from its first to its last sighting.
	TimelinePlot
)

// Plots are the pictures of the results: a time-to-Running plot for each finished result with Running
// series, a time-line for each with phases.
func Plots(results []Result) []Plot {
	var plots []Plot
	for _, r := range results {
		if r.Status != Done {
			continue
		}
		if len(r.Running) > 0 {
			plots = append(plots, Plot{File: slug(r.Benchmark) + "-running.svg", Title: title(r.Benchmark) + ": time to Running", Kind: RunningPlot, Result: r})
		}
		if len(r.Phases) > 0 {
			plots = append(plots, Plot{File: slug(r.Benchmark) + "-timeline.svg", Title: title(r.Benchmark), Kind: TimelinePlot, Result: r})
		}
	}
	return plots
}

// title is a benchmark's section title, or its name when it has no section.
func title(benchmark string) string {
	for _, s := range Sections {
		if s.Benchmark == benchmark {
			return s.Title
		}
	}
	return benchmark
}

// Page is docs/benchmarks.md for results from machine m; plotDir is where the plots are, relative to the
// page.
func Page(results []Result, m Machine, plotDir string) string {
	byName := map[string]Result{}
	for _, r := range results {
		byName[r.Benchmark] = r
	}
	plotsOf := map[string][]Plot{}
	for _, p := range Plots(results) {
		plotsOf[p.Result.Benchmark] = append(plotsOf[p.Result.Benchmark], p)
	}
	var w strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&w, format+"\n", args...) }

	p("# flotilla benchmarks")
	p("")
	p("Generated by `%s` from the results of flotilla's benchmarks (`test/bench`): every number and plot below comes from", Regenerate)
	p("their result files, none is typed by hand. The benchmarks run on the lab: real kube-apiservers, etcd, controller-managers")
	p("and schedulers, and simulated kubelets (kwok), all on the one machine described below, so the numbers compare paths on the")
	p("same machine rather than promise absolute speeds on yours.")
	p("")
	p("**Direct** is the same work done without flotilla: the pods (or Services, or streams) created straight in the workload")
	p("clusters, on the same control planes. **Ratio** is the time through flotilla divided by the time direct: 1.0 means flotilla")
	p("adds nothing, 2.0 means it takes twice as long.")
	p("")
	p("**Time-to-Running plots** draw one curve per path: along the bottom the pods Running so far, up the side the seconds from")
	p("the start at which that many were Running. The lower curve is the faster path; each curve's last point is that path's")
	p("time in the table. **Time-lines** draw one row per phase, from the event (a frozen apiserver): a thin line while nothing")
	p("happened yet, a bar from the phase's first to its last sighting among the pods, and its last time.")
	p("")
	ran, total := 0, 0.0
	for _, s := range Sections {
		if r, ok := byName[s.Benchmark]; ok && r.Status == Done {
			ran++
		}
	}
	for _, r := range results {
		total += r.Seconds
	}
	if ran < len(Sections) {
		p("**This page is partial:** it has results for %d of the %d benchmarks; the others say why below.", ran, len(Sections))
		p("")
	}
	p("## Regenerate")
	p("")
	p("    %s", Regenerate)
	p("")
	p("runs every benchmark (one lab at a time), then writes this page and its plots (`docs/benchmarks/*.svg`) from the result")
	took := "The benchmarks of this page took"
	if ran < len(Sections) {
		took = "The runs kept here, those without results included, took"
	}
	p("files it keeps in `docs/benchmarks/results/`, with the run's log (`bench.log`). %s %s on the", took, minutes(total))
	p("machine below, labs included, plus a few minutes to build the test binaries. The 10,000-pod fleet runs last and on its own:")
	p("on a small machine it may not finish, and its section then says so. `%s` rewrites the page from the kept result", RewritePage)
	p("files without running anything.")
	p("")
	p("## Machine")
	p("")
	p("| | |")
	p("|---|---|")
	p("| CPU | %s × %d |", m.CPU, m.CPUs)
	p("| Memory | %.1f GiB |", m.MemoryGiB)
	p("| Kernel | %s |", m.Kernel)
	p("| Go | %s |", m.Go)
	p("| Kubernetes (lab control planes) | %s |", m.Kubernetes)
	p("| flotilla commit | %s |", m.Commit)
	p("| Results recorded | %s |", m.Date.UTC().Format("2006-01-02 15:04 MST"))
	p("")
	p("## Summary")
	p("")
	p("| | Result | Target, or direct |")
	p("|---|---:|---|")
	for _, h := range headlines {
		value, target := "not run", h.target
		if r, ok := byName[h.benchmark]; ok && r.Status == Done {
			if metric, ok := r.Metric(h.unit); ok {
				value = Format(metric.Value)
			}
			if direct, ok := r.Metric(h.direct); ok {
				target = "direct: " + Format(direct.Value)
			}
		}
		p("| %s | %s | %s |", h.what, value, target)
	}
	p("")

	sections := Sections
	for _, r := range results {
		if title(r.Benchmark) == r.Benchmark {
			sections = append(sections, Section{Benchmark: r.Benchmark, Title: r.Benchmark})
		}
	}
	for _, s := range sections {
		p("## %s", s.Title)
		p("")
		if s.Explains != "" {
			p("%s", s.Explains)
			p("")
		}
		r, ok := byName[s.Benchmark]
		if !ok || r.Status != Done {
			p("*Not run on this machine, because %s.*", notRun(r, ok))
			p("")
			continue
		}
		at := ""
		if r.Commit != "" && r.Commit != m.Commit {
			at = ", at commit " + r.Commit
		}
		p("`%s` took %s, its lab included (started %s%s).", r.Benchmark, minutes(r.Seconds), r.Started.UTC().Format("2006-01-02 15:04 MST"), at)
		p("")
		if len(r.Metrics) > 0 {
			p("| Value | Unit | What |")
			p("|---:|---|---|")
			for _, metric := range r.Metrics {
				p("| %s | `%s` | %s |", Format(metric.Value), metric.Unit, metric.Meaning)
			}
			p("")
		}
		if len(r.Phases) > 0 {
			p("From %s, in seconds:", r.PhasesFrom)
			p("")
			p("| Phase | First | Last | Whose |")
			p("|---|---:|---:|---|")
			for _, ph := range r.Phases {
				if ph.Seen {
					p("| %s | +%s | +%s | %s |", ph.What, Format(ph.First), Format(ph.Last), ph.Whose)
				} else {
					p("| %s | not seen | not seen | %s |", ph.What, ph.Whose)
				}
			}
			p("")
		}
		for _, plot := range plotsOf[s.Benchmark] {
			p("![%s](%s/%s)", plot.Title, plotDir, plot.File)
			p("")
		}
	}
	return w.String()
}

// notRun says why a benchmark has no finished result.
func notRun(r Result, found bool) string {
	switch {
	case !found:
		return "no result file was recorded for it (the benchmark was not selected, or its run did not start)"
	case r.Status == Started:
		return fmt.Sprintf("it started at %s and never finished: the run was killed or timed out (see the log beside the results)",
			r.Started.UTC().Format("2006-01-02 15:04 MST"))
	case r.Status == Failed:
		return "it failed (see the log beside the results)"
	case r.Status == Skipped:
		return "it skipped itself (see the log beside the results)"
	default:
		return fmt.Sprintf("its result file has the unknown status %q", r.Status)
	}
}

// Format is how the page writes a number: three significant digits at most, never an exponent.
func Format(v float64) string {
	switch a := math.Abs(v); {
	case a >= 100 || a == 0:
		return fmt.Sprintf("%.0f", v)
	case a >= 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.2f", v)
	}
}

// minutes is a duration in seconds as the page writes it.
func minutes(seconds float64) string {
	d := time.Duration(seconds * float64(time.Second)).Round(time.Second)
	if d < time.Minute {
		return fmt.Sprintf("%d s", int(d.Seconds()))
	}
	return fmt.Sprintf("%d min %02d s", int(d.Minutes()), int(d.Seconds())%60)
}
