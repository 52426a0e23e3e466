package lab

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// Usage is what a process has consumed so far, read from /proc.
type Usage struct {
	CPU      time.Duration // user + system time
	PeakRSS  int64         // bytes, the high-water mark of resident memory (VmHWM)
	Resident int64         // bytes, resident memory now (VmRSS)
	// Anonymous is the part of Resident that is the process's own (RssAnon): its heap, stacks and runtime.
	// The rest is its program file's pages, read in once as code paths first run and shared with every
	// process of the same binary, so it says nothing of what the pods a process serves cost.
	Anonymous int64
}

// clockTicks is USER_HZ, the unit of /proc/<pid>/stat times; 100 on every Linux architecture Go runs on.
const clockTicks = 100

// usage reads a running process's CPU time and memory.
func (p *process) usage() (Usage, error) {
	var u Usage
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.PID))
	if err != nil {
		return u, err
	}
	// Fields after the command name, which is parenthesised and may hold spaces.
	fields := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+2:]))
	if len(fields) < 13 {
		return u, fmt.Errorf("short /proc/%d/stat", p.PID)
	}
	utime, _ := strconv.ParseInt(fields[11], 10, 64)
	stime, _ := strconv.ParseInt(fields[12], 10, 64)
	u.CPU = time.Duration(utime+stime) * time.Second / clockTicks

	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.PID))
	if err != nil {
		return u, err
	}
	for _, line := range strings.Split(string(status), "\n") {
		key, value, _ := strings.Cut(line, ":")
		kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(value), " kB"), 10, 64)
		switch key {
		case "VmHWM":
			u.PeakRSS = kb << 10
		case "VmRSS":
			u.Resident = kb << 10
		case "RssAnon":
			u.Anonymous = kb << 10
		}
	}
	return u, nil
}

// FlotillaUsage reports the CPU time and memory of a workload cluster's flotilla process.
func (l *Lab) FlotillaUsage(name string) (Usage, error) {
	p, err := l.flotilla(name)
	if err != nil {
		return Usage{}, err
	}
	return p.usage()
}

// ResidentMemory sums the resident memory of every process of the lab, by process name.
func (l *Lab) ResidentMemory() (total int64, byProcess map[string]int64, err error) {
	byProcess = map[string]int64{}
	for _, p := range l.processes() {
		u, err := p.usage()
		if err != nil {
			return 0, nil, fmt.Errorf("%s: %w", p.Name, err)
		}
		byProcess[p.Name] = u.Resident
		total += u.Resident
	}
	return total, byProcess, nil
}

// CPUByComponent reads the CPU time every process of the lab has used so far, summed by component: the
// part of its name after the cluster's ("kube-apiserver", "kwok", "flotilla", ...), prefixed with
// "management " for the management cluster's processes, and "etcd" for the one etcd.
func (l *Lab) CPUByComponent() (map[string]time.Duration, error) {
	out := map[string]time.Duration{}
	for _, p := range l.processes() {
		u, err := p.usage()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", p.Name, err)
		}
		out[componentOf(p.Name, l.Management.Name)] += u.CPU
	}
	return out, nil
}

// componentOf names the component of a process, by its name ("management/kube-apiserver",
// "us-west-2-0/flotilla-b", "etcd") and the management cluster's.
func componentOf(process, management string) string {
	cluster, component, found := strings.Cut(process, "/")
	if !found {
		return process
	}
	if i := strings.IndexByte(component, '-'); strings.HasPrefix(component, "flotilla") && i > 0 {
		component = component[:i] // a replica's "flotilla-b"
	}
	if cluster == management {
		return "management " + component
	}
	return component
}

// MachineCPU is the CPU time the machine's cores have spent busy (not idle, not waiting on I/O) since boot,
// from /proc/stat: in all, and core by core (by their number).
func MachineCPU() (busy time.Duration, byCore []time.Duration, err error) {
	stat, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, nil, err
	}
	busy, byCore = busyTimes(string(stat))
	return busy, byCore, nil
}

// busyTimes reads the busy times of MachineCPU from the text of /proc/stat.
func busyTimes(stat string) (busy time.Duration, byCore []time.Duration) {
	for _, line := range strings.Split(stat, "\n") {
		fields := strings.Fields(line)
		if len(fields) < 9 || !strings.HasPrefix(fields[0], "cpu") {
			continue
		}
		var spent time.Duration
		// user nice system idle iowait irq softirq steal ...
		for i, f := range fields[1:9] {
			if i == 3 || i == 4 {
				continue
			}
			ticks, _ := strconv.ParseInt(f, 10, 64)
			spent += time.Duration(ticks) * time.Second / clockTicks
		}
		if fields[0] == "cpu" {
			busy = spent
		} else if n, err := strconv.Atoi(strings.TrimPrefix(fields[0], "cpu")); err == nil && n >= 0 {
			byCore = append(byCore, make([]time.Duration, max(0, n+1-len(byCore)))...)
			byCore[n] = spent
		}
	}
	return busy, byCore
}
