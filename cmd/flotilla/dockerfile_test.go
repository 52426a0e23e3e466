package main

import (
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
)

// TestDockerfileCopiesEveryPackage: the image is built from the folders the Dockerfile copies, and no
// Docker engine here builds it, so a package of this module that flotilla imports from a folder the
// Dockerfile does not copy would break the image unnoticed.
func TestDockerfileCopiesEveryPackage(t *testing.T) {
	const module = "github.com/flotilla-io/flotilla/"
	dockerfile, err := os.ReadFile("../../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	copied := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^COPY (\S+) \./`).FindAllStringSubmatch(string(dockerfile), -1) {
		copied[m[1]] = true
	}
	out, err := exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}}", ".").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, pkg := range strings.Fields(string(out)) {
		rel, ours := strings.CutPrefix(pkg, module)
		if !ours {
			continue
		}
		if top, _, _ := strings.Cut(rel, "/"); !copied[top] {
			t.Errorf("flotilla imports %s, but the Dockerfile does not copy %s/", pkg, top)
		}
	}
}
