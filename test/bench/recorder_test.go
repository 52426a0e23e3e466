package bench

import (
	"reflect"
	"testing"
	"time"

	"github.com/flotilla-io/flotilla/test/bench/benchdoc"
)

// The recorder is pure bookkeeping around b.ReportMetric and a file: these tests start no lab.

func TestRecorderKeepsTheLastRunOfEachNumber(t *testing.T) {
	dir := t.TempDir()
	start := time.Now()
	var seenStarted benchdoc.Status
	testing.Benchmark(func(b *testing.B) {
		rec := recordIn(b, "BenchmarkProbe/1x1", dir)
		if results, err := benchdoc.Load(dir); err == nil {
			seenStarted = results[0].Status
		}
		for i := range b.N {
			rec.metric(float64(i), "first", "a number")
			rec.metric(2.5, "second", "another")
			rec.metric(float64(i)+1, "first", "the first again") // replaces, keeps its place
			rec.running("direct", start, map[string]time.Time{"b": start.Add(2 * time.Second), "a": start.Add(time.Second)})
			rec.timeline("the event", []benchdoc.Phase{{What: "phase", Seen: true, First: 1, Last: 2}})
		}
	})
	if seenStarted != benchdoc.Started {
		t.Errorf("while the benchmark ran its file said %q; want %q", seenStarted, benchdoc.Started)
	}
	results, err := benchdoc.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	r := results[0]
	if r.Benchmark != "BenchmarkProbe/1x1" || r.Status != benchdoc.Done || r.Seconds <= 0 {
		t.Errorf("result %s status %q seconds %v; want BenchmarkProbe/1x1, done, its time", r.Benchmark, r.Status, r.Seconds)
	}
	if len(r.Metrics) != 2 || r.Metrics[0].Unit != "first" || r.Metrics[0].Meaning != "the first again" || r.Metrics[1].Value != 2.5 {
		t.Errorf("%d metrics, beginning %+v; want 2: first (replaced in place), then second", len(r.Metrics), r.Metrics[:min(3, len(r.Metrics))])
	}
	if want := []benchdoc.Series{{Path: "direct", Seconds: []float64{1, 2}}}; !reflect.DeepEqual(r.Running, want) {
		t.Errorf("running %+v; want %+v (one series, sorted)", r.Running, want)
	}
	if r.PhasesFrom != "the event" || len(r.Phases) != 1 {
		t.Errorf("time-line from %q: %+v", r.PhasesFrom, r.Phases)
	}
}

func TestRecorderSaysABenchmarkFailed(t *testing.T) {
	dir := t.TempDir()
	testing.Benchmark(func(b *testing.B) {
		rec := recordIn(b, "BenchmarkBroken", dir)
		rec.metric(1, "partial", "a number before the failure")
		b.Fatal("the lab did not start") // as a benchmark fails
	})
	results, err := benchdoc.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if results[0].Status != benchdoc.Failed {
		t.Errorf("status %q; want %q", results[0].Status, benchdoc.Failed)
	}
}

func TestRecorderWithoutDirectoryWritesNothing(t *testing.T) {
	testing.Benchmark(func(b *testing.B) {
		recordIn(b, "BenchmarkNowhere", "").metric(1, "x", "y")
	})
	// Nothing to look at but the absence of a crash and of files in the working directory.
	if results, err := benchdoc.Load("."); err == nil {
		t.Errorf("results written to the working directory: %v", results)
	}
}
