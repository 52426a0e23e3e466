// Command benchdoc writes docs/benchmarks.md and its plots from the benchmarks' result files (see package
// test/bench/benchdoc). `make bench-doc` runs the benchmarks, then this with -machine.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/flotilla-io/flotilla/test/bench/benchdoc"
)

func main() {
	results := flag.String("results", "docs/benchmarks/results", "directory of the benchmarks' result files (what "+benchdoc.OutEnv+" named)")
	docs := flag.String("docs", "docs", "directory to write benchmarks.md and benchmarks/*.svg into")
	root := flag.String("root", ".", "the flotilla repository, for its commit and the lab's Kubernetes version")
	machine := flag.Bool("machine", false, "record this machine's facts beside the results first (on the machine that ran them)")
	flag.Parse()
	if err := run(*results, *docs, *root, *machine); err != nil {
		fmt.Fprintln(os.Stderr, "benchdoc:", err)
		os.Exit(1)
	}
}

func run(resultsDir, docsDir, root string, recordMachine bool) error {
	if recordMachine {
		m, err := benchdoc.ReadMachine(root, time.Now())
		if err != nil {
			return fmt.Errorf("reading this machine's facts: %w", err)
		}
		if err := benchdoc.SaveMachine(resultsDir, m); err != nil {
			return err
		}
	}
	m, err := benchdoc.LoadMachine(resultsDir)
	if err != nil {
		return err
	}
	results, err := benchdoc.Load(resultsDir)
	if err != nil {
		return err
	}
	const plotDir = "benchmarks"
	plots := filepath.Join(docsDir, plotDir)
	// Plots of an earlier run that this one has no result for must not linger beside the page.
	stale, err := filepath.Glob(filepath.Join(plots, "*.svg"))
	if err != nil {
		return err
	}
	for _, path := range stale {
		if err := os.Remove(path); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(plots, 0o755); err != nil {
		return err
	}
	for _, p := range benchdoc.Plots(results) {
		svg, err := benchdoc.SVG(p)
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(plots, p.File), svg, 0o644); err != nil {
			return err
		}
	}
	page := filepath.Join(docsDir, "benchmarks.md")
	if err := os.WriteFile(page, []byte(benchdoc.Page(results, m, plotDir)), 0o644); err != nil {
		return err
	}
	fmt.Printf("wrote %s from %d result files\n", page, len(results))
	return nil
}
