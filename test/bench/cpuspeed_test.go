package bench

import (
	"crypto/sha256"
	"fmt"
	"maps"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/flotilla-io/flotilla/test/lab"
)

// speedChunk is the fixed piece of work a speedProbe times: hashing this many bytes takes a fraction of a
// millisecond, little enough to be done twice a second on every CPU without weighing on a run.
const speedChunk = 1 << 20

// speedProbe times a fixed piece of work on each CPU of the machine, over and over while a run goes on, in the
// CPU time of the thread doing it. Time spent waiting for a CPU does not count, so a busy lab does not slow
// it; what does is the CPU itself running slower: a virtual machine's host lending its cores to other guests
// (which this kernel does not report as steal time) or a lower clock. Its chunk stays in a core's cache, so
// it does not see the caches and memory the CPUs share slowing down: the control planes' heaps do.
type speedProbe struct {
	stop    chan struct{}
	done    chan struct{}
	mu      sync.Mutex
	samples map[int][]time.Duration // by CPU
}

// startSpeedProbe starts timing the chunk on every CPU this process may use, each every interval.
func startSpeedProbe(interval time.Duration) *speedProbe {
	p := &speedProbe{stop: make(chan struct{}), done: make(chan struct{}), samples: map[int][]time.Duration{}}
	var allowed unix.CPUSet
	if err := unix.SchedGetaffinity(0, &allowed); err != nil {
		close(p.done)
		return p
	}
	cpus := lab.CPUsOf(&allowed)
	go func() {
		runtime.LockOSThread()
		defer func() {
			// The thread goes back to the pool as it came, every CPU allowed. It must not end with the
			// goroutine, as a goroutine's locked thread otherwise does: a lab process started from that thread
			// gets SIGKILL when it ends (Pdeathsig belongs to the thread, not the process).
			restored := unix.SchedSetaffinity(0, &allowed) == nil
			close(p.done)
			if !restored {
				select {} // keep the thread, pinned, rather than kill what it started
			}
			runtime.UnlockOSThread()
		}()
		buf := make([]byte, speedChunk)
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for {
			for _, cpu := range cpus {
				var one unix.CPUSet
				one.Set(cpu)
				if unix.SchedSetaffinity(0, &one) != nil {
					continue
				}
				took, ok := threadCPUTime(func() { sha256.Sum256(buf) })
				if ok {
					p.mu.Lock()
					p.samples[cpu] = append(p.samples[cpu], took)
					p.mu.Unlock()
				}
			}
			select {
			case <-p.stop:
				return
			case <-tick.C:
			}
		}
	}()
	return p
}

// threadCPUTime is the CPU time the calling thread spent in work.
func threadCPUTime(work func()) (time.Duration, bool) {
	var before, after unix.Timespec
	if unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &before) != nil {
		return 0, false
	}
	work()
	if unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &after) != nil {
		return 0, false
	}
	return time.Duration(after.Nano() - before.Nano()), true
}

// cpuSpeed is what a speedProbe saw: by CPU, the median CPU time of the chunk.
type cpuSpeed map[int]time.Duration

// Stop ends the probe and returns the median time of the chunk on each CPU.
func (p *speedProbe) Stop() cpuSpeed {
	close(p.stop)
	<-p.done
	p.mu.Lock()
	defer p.mu.Unlock()
	speed := cpuSpeed{}
	for cpu, samples := range p.samples {
		slices.Sort(samples)
		speed[cpu] = percentile(samples, 0.5)
	}
	return speed
}

func (s cpuSpeed) String() string {
	var parts []string
	for _, cpu := range slices.Sorted(maps.Keys(s)) {
		parts = append(parts, fmt.Sprintf("CPU %d %.0f µs", cpu, float64(s[cpu])/float64(time.Microsecond)))
	}
	return strings.Join(parts, ", ")
}
