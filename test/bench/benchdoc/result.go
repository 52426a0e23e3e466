// Package benchdoc turns the benchmarks' result files into docs/benchmarks.md and its plots. The benchmarks
// of test/bench write one Result each (as JSON) when FLOTILLA_BENCH_OUT names a directory; the generator
// (test/bench/cmd/benchdoc) reads them with the machine's facts and renders the page. Every number on the
// page comes from a Result: nothing is typed by hand.
package benchdoc

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// OutEnv names the directory the benchmarks write their result files to; unset, they write none.
const OutEnv = "FLOTILLA_BENCH_OUT"

// The units of the metrics the page's summary picks out; the benchmarks report them under these names.
const (
	UnitRatio            = "ratio"
	UnitMiBPer2500Pods   = "MiB/2500pods"
	UnitManagementWrites = "management-writes/pod"
	UnitFollowSeconds    = "follow-s"
	// UnitFollowDirectSeconds is the follow's direct path: the same Services created in all clusters at once.
	UnitFollowDirectSeconds = "direct-all-clusters-s"
	UnitAllRunningSeconds   = "all-running-s"
	UnitExecMillis          = "exec-ms"
	UnitDirectExecMillis    = "direct-exec-ms"
	UnitPortForwardMiBs     = "port-forward-MiB/s"
	UnitDirectPortForward   = "direct-port-forward-MiB/s"
	UnitSettledAfterFaults  = "settled-after-last-fault-s"
)

// Status is how far a benchmark got.
type Status string

const (
	// Started is written when a benchmark begins: a file still saying so was left by a run that was killed
	// or timed out before the benchmark ended.
	Started Status = "started"
	Failed  Status = "failed"
	Skipped Status = "skipped"
	Done    Status = "done"
)

// Result is what one benchmark (or sub-benchmark) measured.
type Result struct {
	// Benchmark is the benchmark's full name, as `go test` prints it: BenchmarkDeploymentRollout/1000x4.
	Benchmark string    `json:"benchmark"`
	Status    Status    `json:"status"`
	Started   time.Time `json:"started"`
	// Commit is flotilla's commit the benchmark ran at (see Commit), when known.
	Commit string `json:"commit,omitempty"`
	// Seconds is the benchmark's wall time, its lab's start and stop included.
	Seconds float64 `json:"seconds,omitempty"`
	// Metrics are the headline numbers, in the order the benchmark reported them.
	Metrics []Metric `json:"metrics,omitempty"`
	// Running are time-to-Running curves: each pod's time from the start to Running, one series per path.
	Running []Series `json:"running,omitempty"`
	// Phases are a time-line: when each phase was first and last seen, from the benchmark's event.
	Phases []Phase `json:"phases,omitempty"`
	// PhasesFrom names the event the phases are timed from.
	PhasesFrom string `json:"phasesFrom,omitempty"`
}

// Metric is one number, under the unit the benchmark reports it with (as b.ReportMetric).
type Metric struct {
	Unit    string  `json:"unit"`
	Value   float64 `json:"value"`
	Meaning string  `json:"meaning"`
}

// Series is one path's pods' times to Running, in seconds from the start, sorted.
type Series struct {
	Path    string    `json:"path"`
	Seconds []float64 `json:"seconds"`
}

// Phase is one step of a time-line: when it was first and last seen, in seconds from the time-line's event.
type Phase struct {
	What  string  `json:"what"`
	Whose string  `json:"whose"`
	Seen  bool    `json:"seen"`
	First float64 `json:"first"`
	Last  float64 `json:"last"`
}

// Metric returns the metric reported under unit.
func (r Result) Metric(unit string) (Metric, bool) {
	for _, m := range r.Metrics {
		if m.Unit == unit {
			return m, true
		}
	}
	return Metric{}, false
}

// FileName is the result file's name for a benchmark: its name without the Benchmark prefix, slashes
// turned into underscores, .json.
func FileName(benchmark string) string {
	return slug(benchmark) + ".json"
}

// slug is a benchmark's name fit for a file name.
func slug(benchmark string) string {
	return strings.ReplaceAll(strings.TrimPrefix(benchmark, "Benchmark"), "/", "_")
}

// Save writes r to dir, replacing an earlier file of the same benchmark.
func Save(dir string, r Result) error {
	data, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	path := filepath.Join(dir, FileName(r.Benchmark))
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(data, '\n'), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path) // a reader never sees half a file
}

// Load reads every result file of dir, sorted by benchmark name. A file that is not a result is an error
// naming it.
func Load(dir string) ([]Result, error) {
	paths, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		return nil, err
	}
	var results []Result
	for _, path := range paths {
		if filepath.Base(path) == MachineFile {
			continue
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, err
		}
		var r Result
		if err := json.Unmarshal(data, &r); err != nil {
			return nil, fmt.Errorf("%s: not a benchmark result: %w", path, err)
		}
		if r.Benchmark == "" {
			return nil, fmt.Errorf("%s: not a benchmark result: no benchmark name", path)
		}
		results = append(results, r)
	}
	sort.Slice(results, func(i, j int) bool { return results[i].Benchmark < results[j].Benchmark })
	if len(results) == 0 {
		return nil, errors.New("no result files (*.json) in " + dir + "; run the benchmarks with " + OutEnv + "=" + dir)
	}
	return results, nil
}
