package lab

import (
	"testing"

	"golang.org/x/sys/unix"
)

func TestSplitCPUs(t *testing.T) {
	for _, tc := range []struct {
		name                 string
		cpus                 []int
		management, workload string
		ok                   bool
	}{
		{"one CPU", []int{0}, "", "", false},
		{"two", []int{0, 1}, "1", "0", true},
		{"three: the workload clusters get the odd one", []int{0, 1, 2}, "2", "0,1", true},
		{"the CPUs this process may use, not the machine's first", []int{2, 3, 6, 7}, "6,7", "2,3", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var set unix.CPUSet
			for _, cpu := range tc.cpus {
				set.Set(cpu)
			}
			management, workload, ok := splitCPUs(&set)
			if management != tc.management || workload != tc.workload || ok != tc.ok {
				t.Errorf("splitCPUs(%v) = %q, %q, %v; want %q, %q, %v", tc.cpus, management, workload, ok, tc.management, tc.workload, tc.ok)
			}
		})
	}
}
