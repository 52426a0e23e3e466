package bench

import (
	"crypto/sha256"
	"fmt"
	"maps"
	"math/rand/v2"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/flotilla-io/flotilla/test/lab"
)

// speedWork is a fixed piece of work a speedProbe times on every CPU. Each takes a millisecond or so, little
// enough to be done twice a second on every CPU without weighing on a run.
type speedWork struct {
	name string
	do   func()
}

// speedWorks are the probe's two pieces of work: one that stays in a core's own cache and so sees only the
// core (its clock, and the host lending it to other guests), and one that misses every cache and so also sees
// the last-level cache and memory that the CPUs share with each other and with the host's other guests.
var speedWorks = []speedWork{
	{fmt.Sprintf("hash %d MiB", hashBytes>>20), func() { sha256.Sum256(hashInput) }},
	{fmt.Sprintf("chase %d pointers over %d MiB", chaseSteps, chaseBytes>>20), chase},
}

const (
	hashBytes = 1 << 20
	// chaseBytes is larger than the last-level cache this machine's CPUs get (loads at random over 8 MiB
	// already take 100 ns here, over 64 MiB 190 ns), so nearly every step of the chase waits for memory.
	chaseBytes = 64 << 20
	chaseSteps = 8192
)

var (
	hashInput = make([]byte, hashBytes)
	// chaseNext holds one cycle through all its indexes in random order, so that each load's address depends
	// on the load before it and no prefetcher can guess it. Built on first use: 64 MiB only the rollout needs.
	chaseNext = sync.OnceValue(func() []uint32 {
		next := make([]uint32, chaseBytes/4)
		for i := range next {
			next[i] = uint32(i)
		}
		for i := len(next) - 1; i > 0; i-- { // Sattolo's shuffle: one cycle, never a shorter loop
			j := rand.IntN(i)
			next[i], next[j] = next[j], next[i]
		}
		return next
	})
)

// chase follows chaseSteps pointers from a random place in the cycle, a stretch unlikely to be in any cache.
func chase() {
	next := chaseNext()
	at := rand.Uint32N(uint32(len(next)))
	for range chaseSteps {
		at = next[at]
	}
}

// speedProbe times each speedWork on each CPU of the machine, over and over while a run goes on, in the CPU
// time of the thread doing it. Time spent waiting for a CPU does not count, so a busy lab does not slow it;
// what does is the CPU itself running slower: a virtual machine's host lending its cores to other guests
// (which this kernel does not report as steal time), a lower clock, or, for the chase alone, the shared cache
// and memory answering slower.
type speedProbe struct {
	stop    chan struct{}
	done    chan struct{}
	mu      sync.Mutex
	samples map[string]map[int][]time.Duration // by work, then by CPU
}

// startSpeedProbe starts timing every speedWork on every CPU this process may use, each every interval.
func startSpeedProbe(interval time.Duration) *speedProbe {
	p := &speedProbe{stop: make(chan struct{}), done: make(chan struct{}), samples: map[string]map[int][]time.Duration{}}
	for _, work := range speedWorks {
		p.samples[work.name] = map[int][]time.Duration{}
	}
	chaseNext() // built before the first reading, not inside it
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
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for {
			for _, cpu := range cpus {
				var one unix.CPUSet
				one.Set(cpu)
				if unix.SchedSetaffinity(0, &one) != nil {
					continue
				}
				for _, work := range speedWorks {
					if took, ok := threadCPUTime(work.do); ok {
						p.mu.Lock()
						p.samples[work.name][cpu] = append(p.samples[work.name][cpu], took)
						p.mu.Unlock()
					}
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

// cpuSpeed is what a speedProbe saw: by work, then by CPU, the median CPU time of the work.
type cpuSpeed map[string]map[int]time.Duration

// Stop ends the probe and returns the median time of each work on each CPU.
func (p *speedProbe) Stop() cpuSpeed {
	close(p.stop)
	<-p.done
	p.mu.Lock()
	defer p.mu.Unlock()
	speed := cpuSpeed{}
	for work, byCPU := range p.samples {
		speed[work] = map[int]time.Duration{}
		for cpu, samples := range byCPU {
			slices.Sort(samples)
			speed[work][cpu] = percentile(samples, 0.5)
		}
	}
	return speed
}

func (s cpuSpeed) String() string {
	var works []string
	for _, work := range speedWorks {
		var parts []string
		for _, cpu := range slices.Sorted(maps.Keys(s[work.name])) {
			parts = append(parts, fmt.Sprintf("CPU %d %.0f µs", cpu, float64(s[work.name][cpu])/float64(time.Microsecond)))
		}
		works = append(works, work.name+": "+strings.Join(parts, ", "))
	}
	return strings.Join(works, "; ")
}
