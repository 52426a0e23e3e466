package benchdoc

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestSaveLoadRoundTrip(t *testing.T) {
	dir := t.TempDir()
	want := fixture()
	for _, r := range want {
		if err := Save(dir, r); err != nil {
			t.Fatal(err)
		}
	}
	// The machine's facts live beside the results and are no result.
	if err := SaveMachine(dir, machine); err != nil {
		t.Fatal(err)
	}
	got, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("loaded %d results; want %d", len(got), len(want))
	}
	byName := map[string]Result{}
	for _, r := range got {
		byName[r.Benchmark] = r
	}
	for _, r := range want {
		if !reflect.DeepEqual(byName[r.Benchmark], r) {
			t.Errorf("%s: loaded %+v; saved %+v", r.Benchmark, byName[r.Benchmark], r)
		}
	}
	m, err := LoadMachine(dir)
	if err != nil || !m.Date.Equal(machine.Date) || m.CPU != machine.CPU {
		t.Errorf("LoadMachine = %+v, %v; want %+v", m, err, machine)
	}
}

func TestLoadRefusesWhatIsNoResult(t *testing.T) {
	for _, tc := range []struct {
		name, file, content, err string
	}{
		{"no files", "", "", "no result files"},
		{"not JSON", "Broken.json", "{", "Broken.json: not a benchmark result"},
		{"no benchmark name", "Nameless.json", `{"status":"done"}`, "Nameless.json: not a benchmark result: no benchmark name"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if tc.file != "" {
				if err := os.WriteFile(filepath.Join(dir, tc.file), []byte(tc.content), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := Load(dir); err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("Load: err %v; want %q", err, tc.err)
			}
		})
	}
	if _, err := LoadMachine(t.TempDir()); err == nil || !strings.Contains(err.Error(), "-machine") {
		t.Errorf("LoadMachine of a directory without facts: err %v; want one naming the -machine flag", err)
	}
}
