package bench

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/flotilla-io/flotilla/test/bench/benchdoc"
)

// recorder reports a benchmark's numbers to `go test` (b.ReportMetric) and, when benchdoc.OutEnv names a
// directory, keeps them with the series its plots need in a result file there, for docs/benchmarks.md. The
// file is written when the benchmark starts (so a run killed or timed out leaves a trace saying so) and again
// when it ends, passed, failed or skipped.
type recorder struct {
	b      *testing.B
	dir    string
	result benchdoc.Result
}

// record starts the result file of b; call it first in a benchmark, so its time includes the lab's.
func record(b *testing.B) *recorder {
	b.Helper()
	return recordIn(b, b.Name(), os.Getenv(benchdoc.OutEnv))
}

// recordIn starts the result file of benchmark b, named name, in dir (none when dir is empty).
func recordIn(b *testing.B, name, dir string) *recorder {
	b.Helper()
	r := &recorder{b: b, dir: dir, result: benchdoc.Result{
		Benchmark: name, Status: benchdoc.Started, Started: time.Now(),
	}}
	if dir != "" {
		var err error
		if r.result.Commit, err = benchdoc.Commit(filepath.Join("..", "..")); err != nil {
			b.Fatal(err)
		}
	}
	r.save()
	b.Cleanup(func() {
		switch {
		case b.Failed():
			r.result.Status = benchdoc.Failed
		case b.Skipped():
			r.result.Status = benchdoc.Skipped
		default:
			r.result.Status = benchdoc.Done
		}
		r.result.Seconds = time.Since(r.result.Started).Seconds()
		r.save()
	})
	return r
}

// metric reports value under unit, meaning in plain words what it is; a later run of the loop replaces it.
func (r *recorder) metric(value float64, unit, meaning string) {
	r.b.ReportMetric(value, unit)
	m := benchdoc.Metric{Unit: unit, Value: value, Meaning: meaning}
	if i := slices.IndexFunc(r.result.Metrics, func(old benchdoc.Metric) bool { return old.Unit == unit }); i >= 0 {
		r.result.Metrics[i] = m
		return
	}
	r.result.Metrics = append(r.result.Metrics, m)
}

// running keeps one path's times to Running, each pod's from start, for the time-to-Running plot.
func (r *recorder) running(path string, start time.Time, at map[string]time.Time) {
	seconds := make([]float64, 0, len(at))
	for _, t := range at {
		seconds = append(seconds, t.Sub(start).Seconds())
	}
	slices.Sort(seconds)
	s := benchdoc.Series{Path: path, Seconds: seconds}
	if i := slices.IndexFunc(r.result.Running, func(old benchdoc.Series) bool { return old.Path == path }); i >= 0 {
		r.result.Running[i] = s
		return
	}
	r.result.Running = append(r.result.Running, s)
}

// timeline keeps the phases of a time-line, timed from the event named from.
func (r *recorder) timeline(from string, phases []benchdoc.Phase) {
	r.result.PhasesFrom, r.result.Phases = from, phases
}

func (r *recorder) save() {
	if r.dir == "" {
		return
	}
	if err := benchdoc.Save(r.dir, r.result); err != nil {
		r.b.Errorf("writing the result file: %v", err)
	}
}
