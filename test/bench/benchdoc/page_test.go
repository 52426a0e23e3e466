package benchdoc

import (
	"strings"
	"testing"
	"time"
)

var started = time.Date(2026, 12, 1, 16, 0, 0, 0, time.UTC)

// fixture is a run with every kind of result: finished with series, finished with a time-line, failed,
// killed, and one of a benchmark the page has no section for.
func fixture() []Result {
	return []Result{
		{Benchmark: "BenchmarkDeploymentRollout/1000x4", Status: Done, Started: started, Seconds: 301.4,
			Metrics: []Metric{
				{Unit: "direct-s", Value: 41.234, Meaning: "seconds direct"},
				{Unit: "flotilla-s", Value: 52.1, Meaning: "seconds through flotilla"},
				{Unit: UnitRatio, Value: 1.2635, Meaning: "through flotilla ÷ direct"},
				{Unit: UnitMiBPer2500Pods, Value: 123.456, Meaning: "MiB per 2,500 pods"},
				{Unit: UnitManagementWrites, Value: 2.04, Meaning: "writes per pod"},
			},
			Running: []Series{{Path: "direct", Seconds: []float64{1, 2, 3}}, {Path: "through flotilla", Seconds: []float64{2, 3, 5}}}},
		{Benchmark: "BenchmarkDeploymentRollout/10000x10-apart", Status: Started, Started: started},
		{Benchmark: "BenchmarkFailoverTimeline", Status: Done, Started: started, Seconds: 75,
			Metrics:    []Metric{{Unit: UnitAllRunningSeconds, Value: 8.76, Meaning: "seconds to all Running"}},
			PhasesFrom: "us-west-2-0's apiserver frozen",
			Phases: []Phase{
				{What: "virtual node NotReady", Whose: "flotilla", Seen: true, First: 1.5, Last: 1.5},
				{What: "evicted", Whose: "taint manager", Seen: true, First: 6.25, Last: 6.75},
				{What: "cluster-lost taint", Whose: "flotilla", Seen: false},
			}},
		{Benchmark: "BenchmarkStreams", Status: Failed, Started: started, Seconds: 12,
			Metrics: []Metric{{Unit: UnitExecMillis, Value: 999, Meaning: "from a failed run"}}},
		{Benchmark: "BenchmarkServicesFollow/4", Status: Done, Started: started, Seconds: 40, Commit: "fedcba987654",
			Metrics: []Metric{{Unit: UnitFollowSeconds, Value: 3.25, Meaning: "follow"}, {Unit: UnitFollowDirectSeconds, Value: 2.5, Meaning: "direct"}}},
		{Benchmark: "BenchmarkSomethingNew", Status: Done, Started: started, Seconds: 3,
			Metrics: []Metric{{Unit: "widgets", Value: 0.5, Meaning: "widgets per pod"}}},
	}
}

var machine = Machine{CPU: "Example CPU @ 2.10GHz", CPUs: 2, MemoryGiB: 23.4, Kernel: "6.8.0", Go: "go1.26.8",
	Kubernetes: "v1.35.4", Commit: "0123456789ab", Date: started}

func TestPageNamesEveryNumberAndLinksEveryPlot(t *testing.T) {
	results := fixture()
	page := Page(results, machine, "benchmarks")
	for _, r := range results {
		if r.Status != Done {
			continue
		}
		for _, m := range r.Metrics {
			if row := "| " + Format(m.Value) + " | `" + m.Unit + "` | " + m.Meaning + " |"; !strings.Contains(page, row) {
				t.Errorf("%s: no row %q", r.Benchmark, row)
			}
		}
		for _, ph := range r.Phases {
			row := "| " + ph.What + " | +" + Format(ph.First) + " | +" + Format(ph.Last) + " | " + ph.Whose + " |"
			if !ph.Seen {
				row = "| " + ph.What + " | not seen | not seen | " + ph.Whose + " |"
			}
			if !strings.Contains(page, row) {
				t.Errorf("%s: no row %q", r.Benchmark, row)
			}
		}
	}
	plots := Plots(results)
	if len(plots) != 2 {
		t.Fatalf("plots %v; want the rollout's time to Running and the failover's time-line", plots)
	}
	for _, p := range plots {
		if link := "](benchmarks/" + p.File + ")"; !strings.Contains(page, link) {
			t.Errorf("no link to plot %s", p.File)
		}
	}
	for _, want := range []string{
		"| Rollout of 1,000 pods over 4 clusters, through flotilla ÷ direct | 1.26 | ≤ 1.1 |",
		"| Rollout of 10,000 pods over 10 clusters, the management cluster on CPUs of its own, through flotilla ÷ direct | not run | ≤ 1.2 |",
		"| Failover: cluster frozen to all replacements Running, seconds | 8.76 | ≤ 10 |",
		"| exec round trip through flotilla, ms | not run |",
		"| Follow: 100 Services to all 400 copies, seconds | 3.25 | direct: 2.50 |",
		"**This page is partial:** it has results for 3 of the 11 benchmarks",
		"    make bench-doc", "make bench-page",
		"The runs kept here, those without results included, took 7 min 11 s on the", // 301.4 + 75 + 12 + 40 + 3 s: every benchmark of the run
		"| CPU | Example CPU @ 2.10GHz × 2 |", "| Memory | 23.4 GiB |", "| Kernel | 6.8.0 |", "| Go | go1.26.8 |",
		"| Kubernetes (lab control planes) | v1.35.4 |", "| flotilla commit | 0123456789ab |",
		"## Rollout: 10,000 pods over 10 clusters", "*Not run on this machine, because it started at 2026-12-01 16:00 UTC and never finished",
		"## Kubelet API streams", "*Not run on this machine, because it failed",
		"## Chaos rollout", "*Not run on this machine, because no result file was recorded",
		"## BenchmarkSomethingNew",
	} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	for _, never := range []string{"999", "NaN", "%!"} { // a failed run's numbers; bad formatting
		if strings.Contains(page, never) {
			t.Errorf("page has %q", never)
		}
	}
}

// TestPageNamesAnOtherCommit: a result from another commit than the page's says so; one from the page's
// commit does not repeat it.
func TestPageNamesAnOtherCommit(t *testing.T) {
	results := fixture()
	results[0].Commit = machine.Commit
	page := Page(results, machine, "benchmarks")
	if !strings.Contains(page, "(started 2026-12-01 16:00 UTC, at commit fedcba987654)") {
		t.Errorf("the follow result's own commit is not on the page:\n%s", page)
	}
	if strings.Contains(page, "at commit "+machine.Commit) {
		t.Errorf("a result of the page's commit names it again")
	}
}

func TestPageWithEveryBenchmarkIsNotPartial(t *testing.T) {
	var results []Result
	for _, s := range Sections {
		results = append(results, Result{Benchmark: s.Benchmark, Status: Done, Started: started, Seconds: 60})
	}
	page := Page(results, machine, "benchmarks")
	if strings.Contains(page, "partial") || strings.Contains(page, "Not run") {
		t.Errorf("a page of every benchmark says it is partial:\n%s", page)
	}
	if !strings.Contains(page, "The benchmarks of this page took 11 min 00 s") {
		t.Errorf("page does not sum the benchmarks' times to 11 min")
	}
}

func TestNotRun(t *testing.T) {
	for _, tc := range []struct {
		name  string
		r     Result
		found bool
		want  string
	}{
		{"no file", Result{}, false, "no result file was recorded"},
		{"killed", Result{Status: Started, Started: started}, true, "started at 2026-12-01 16:00 UTC and never finished"},
		{"failed", Result{Status: Failed}, true, "it failed"},
		{"skipped", Result{Status: Skipped}, true, "it skipped itself"},
		{"unknown status", Result{Status: "weird"}, true, `unknown status "weird"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := notRun(tc.r, tc.found); !strings.Contains(got, tc.want) {
				t.Errorf("notRun = %q; want it to contain %q", got, tc.want)
			}
		})
	}
}

func TestFormat(t *testing.T) {
	for _, tc := range []struct {
		v    float64
		want string
	}{
		{0, "0"}, {1.2635, "1.26"}, {9.999, "10.00"}, {12.34, "12.3"}, {123.456, "123"}, {10250.7, "10251"}, {-0.5, "-0.50"}, {0.004, "0.00"},
	} {
		if got := Format(tc.v); got != tc.want {
			t.Errorf("Format(%v) = %q; want %q", tc.v, got, tc.want)
		}
	}
}

func TestMinutes(t *testing.T) {
	for _, tc := range []struct {
		seconds float64
		want    string
	}{
		{0, "0 s"}, {42.4, "42 s"}, {60, "1 min 00 s"}, {3725.6, "62 min 06 s"},
	} {
		if got := minutes(tc.seconds); got != tc.want {
			t.Errorf("minutes(%v) = %q; want %q", tc.seconds, got, tc.want)
		}
	}
}

func TestFileName(t *testing.T) {
	for name, want := range map[string]string{
		"BenchmarkDeploymentRollout/1000x4": "DeploymentRollout_1000x4.json",
		"BenchmarkFailoverTimeline":         "FailoverTimeline.json",
	} {
		if got := FileName(name); got != want {
			t.Errorf("FileName(%q) = %q; want %q", name, got, want)
		}
	}
}
