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
