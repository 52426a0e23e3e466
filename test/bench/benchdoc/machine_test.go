package benchdoc

import (
	"strings"
	"testing"
)

func TestParseCPUInfo(t *testing.T) {
	for _, tc := range []struct {
		name, text string
		model      string
		count      int
	}{
		{"two of one model", "processor\t: 0\nmodel name\t: Intel(R) Xeon(R)   CPU @ 2.10GHz\n\nprocessor\t: 1\nmodel name\t: Intel(R) Xeon(R)   CPU @ 2.10GHz\n",
			"Intel(R) Xeon(R) CPU @ 2.10GHz", 2},
		{"no model (arm)", "processor\t: 0\nBogoMIPS\t: 50.00\n", "unknown", 1},
		{"empty", "", "unknown", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			model, count := parseCPUInfo(tc.text)
			if model != tc.model || count != tc.count {
				t.Errorf("parseCPUInfo = %q, %d; want %q, %d", model, count, tc.model, tc.count)
			}
		})
	}
}

func TestParseMemTotal(t *testing.T) {
	for _, tc := range []struct {
		name, text string
		gib        float64
		err        string
	}{
		{"8 GiB", "MemTotal:        8388608 kB\nMemFree:  1 kB\n", 8, ""},
		{"missing", "MemFree:  1 kB\n", 0, "no MemTotal"},
		{"garbled", "MemTotal: lots kB\n", 0, "unreadable"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			gib, err := parseMemTotal(tc.text)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err %v; want %q", err, tc.err)
				}
				return
			}
			if err != nil || gib != tc.gib {
				t.Errorf("parseMemTotal = %v, %v; want %v", gib, err, tc.gib)
			}
		})
	}
}

func TestRequiredVersion(t *testing.T) {
	gomod := "module x\n\ngo 1.26.0\n\nrequire (\n\tgo.etcd.io/etcd/server/v3 v3.6.5\n\tk8s.io/kubernetes v1.35.4\n)\n\nrequire k8s.io/api v0.35.4 // indirect\n"
	for _, tc := range []struct{ module, want, err string }{
		{"k8s.io/kubernetes", "v1.35.4", ""},
		{"k8s.io/api", "v0.35.4", ""},
		{"k8s.io/kube", "", "no requirement of k8s.io/kube"},
	} {
		got, err := requiredVersion(gomod, tc.module)
		if got != tc.want || (tc.err == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("requiredVersion(%s) = %q, %v; want %q, %q", tc.module, got, err, tc.want, tc.err)
		}
	}
}
