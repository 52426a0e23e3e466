package benchdoc

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// MachineFile is the file, beside the results, that keeps the facts of the machine they came from, so the
// page can be rewritten later (elsewhere) without losing them.
const MachineFile = "machine.json"

// Machine is what the page says about the machine the benchmarks ran on, and what they ran.
type Machine struct {
	CPU        string    `json:"cpu"`
	CPUs       int       `json:"cpus"`
	MemoryGiB  float64   `json:"memoryGiB"`
	Kernel     string    `json:"kernel"`
	Go         string    `json:"go"`
	Kubernetes string    `json:"kubernetes"` // of the lab's control planes
	Commit     string    `json:"commit"`     // flotilla's
	Date       time.Time `json:"date"`
}

// ReadMachine gathers the facts of this machine: /proc for the CPU, memory and kernel, the Go toolchain
// that runs it, the lab's Kubernetes from test/tools/k8s/go.mod and the commit of the repository at root.
func ReadMachine(root string, now time.Time) (Machine, error) {
	m := Machine{Go: runtime.Version(), Date: now.UTC()}
	cpuinfo, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return m, err
	}
	m.CPU, m.CPUs = parseCPUInfo(string(cpuinfo))
	meminfo, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return m, err
	}
	if m.MemoryGiB, err = parseMemTotal(string(meminfo)); err != nil {
		return m, err
	}
	kernel, err := os.ReadFile("/proc/sys/kernel/osrelease")
	if err != nil {
		return m, err
	}
	m.Kernel = strings.TrimSpace(string(kernel))
	gomod, err := os.ReadFile(filepath.Join(root, "test/tools/k8s/go.mod"))
	if err != nil {
		return m, err
	}
	if m.Kubernetes, err = requiredVersion(string(gomod), "k8s.io/kubernetes"); err != nil {
		return m, fmt.Errorf("test/tools/k8s/go.mod: %w", err)
	}
	if m.Commit, err = Commit(root); err != nil {
		return m, err
	}
	return m, nil
}

// parseCPUInfo is the CPU model and the count of logical CPUs of /proc/cpuinfo.
func parseCPUInfo(text string) (model string, count int) {
	scanner := bufio.NewScanner(strings.NewReader(text))
	for scanner.Scan() {
		key, value, ok := strings.Cut(scanner.Text(), ":")
		if !ok {
			continue
		}
		switch strings.TrimSpace(key) {
		case "processor":
			count++
		case "model name":
			if model == "" {
				model = strings.Join(strings.Fields(value), " ")
			}
		}
	}
	if model == "" {
		model = "unknown"
	}
	return model, count
}

// parseMemTotal is MemTotal of /proc/meminfo in GiB.
func parseMemTotal(text string) (float64, error) {
	for line := range strings.SplitSeq(text, "\n") {
		if rest, ok := strings.CutPrefix(line, "MemTotal:"); ok {
			kb, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 64)
			if err != nil {
				return 0, fmt.Errorf("/proc/meminfo: unreadable %q", line)
			}
			return kb / (1 << 20), nil
		}
	}
	return 0, errors.New("/proc/meminfo: no MemTotal")
}

// requiredVersion is the version a go.mod requires of module.
func requiredVersion(gomod, module string) (string, error) {
	for line := range strings.SplitSeq(gomod, "\n") {
		fields := strings.Fields(strings.TrimPrefix(strings.TrimSpace(line), "require "))
		if len(fields) >= 2 && fields[0] == module {
			return fields[1], nil
		}
	}
	return "", fmt.Errorf("no requirement of %s", module)
}

// Commit is the repository's HEAD at root, marked when files other than the page's own differ from it.
func Commit(root string) (string, error) {
	head, err := exec.Command("git", "-C", root, "rev-parse", "--short=12", "HEAD").Output()
	if err != nil {
		return "", fmt.Errorf("git rev-parse HEAD in %s: %w", root, err)
	}
	dirty, err := exec.Command("git", "-C", root, "status", "--porcelain", "--", ".", ":!docs/benchmarks.md", ":!docs/benchmarks").Output()
	if err != nil {
		return "", fmt.Errorf("git status in %s: %w", root, err)
	}
	c := strings.TrimSpace(string(head))
	if len(strings.TrimSpace(string(dirty))) > 0 {
		c += " with uncommitted changes"
	}
	return c, nil
}

// SaveMachine keeps m beside the results in dir.
func SaveMachine(dir string, m Machine) error {
	data, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, MachineFile), append(data, '\n'), 0o644)
}

// LoadMachine reads the machine facts kept in dir.
func LoadMachine(dir string) (Machine, error) {
	var m Machine
	data, err := os.ReadFile(filepath.Join(dir, MachineFile))
	if err != nil {
		return m, fmt.Errorf("%w (the facts are recorded by the generator's -machine flag, on the machine that ran the benchmarks)", err)
	}
	if err := json.Unmarshal(data, &m); err != nil {
		return m, fmt.Errorf("%s: %w", filepath.Join(dir, MachineFile), err)
	}
	return m, nil
}
