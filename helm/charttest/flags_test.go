package charttest

import (
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
)

var flagLine = regexp.MustCompile(`(?m)^  -([a-z0-9][a-z0-9-]*)`)

// binaryFlags returns the flags duet-router, duet-prefill and duet-decode
// accept, by binary name, from the binaries built as the image builds them.
func binaryFlags(t *testing.T) map[string]map[string]bool {
	t.Helper()
	dir := buildAsImage(t)
	flags := map[string]map[string]bool{}
	for _, bin := range []string{"duet-router", "duet-prefill", "duet-decode"} {
		// -h prints the flags and exits non-zero (flag.ErrHelp).
		out, _ := exec.Command(filepath.Join(dir, bin), "-h").CombinedOutput()
		set := map[string]bool{}
		for _, m := range flagLine.FindAllStringSubmatch(string(out), -1) {
			set[m[1]] = true
		}
		if len(set) < 10 {
			t.Fatalf("%s -h listed %d flags:\n%s", bin, len(set), out)
		}
		flags[bin] = set
	}
	return flags
}

// binaryOf is the duet binary a container command runs: the command
// itself, or the one a "/bin/sh -ec SCRIPT NAME" wrapper execs.
func binaryOf(cmd []string) string {
	if len(cmd) == 4 && cmd[0] == "/bin/sh" && cmd[1] == "-ec" {
		return cmd[3]
	}
	if len(cmd) == 0 {
		return ""
	}
	return cmd[0]
}

// envName is the variable a flag reads (cluster/envflag.Name with DUET_).
func envName(flag string) string {
	return "DUET_" + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// TestEnvVarsAreFlags: every DUET_* variable the chart sets is a flag of
// the binary it is set for. The binaries ignore variables that name no
// flag, so a misspelled one would silently leave a default in place.
func TestEnvVarsAreFlags(t *testing.T) {
	flags := binaryFlags(t)
	vars := map[string]map[string]bool{}
	for bin, set := range flags {
		vars[bin] = map[string]bool{}
		for f := range set {
			vars[bin][envName(f)] = true
		}
	}
	ch := loadChart(t)
	checked := 0
	for _, f := range append([]string{""}, ciFiles(t)...) {
		r, err := render(ch, readValues(t, f))
		if err != nil {
			t.Fatalf("%s: %v", nameOf(f), err)
		}
		for _, o := range r.ofKind("Deployment") {
			for _, c := range o.Typed.(*appsv1.Deployment).Spec.Template.Spec.Containers {
				bin := binaryOf(c.Command)
				known, ok := vars[bin]
				if !ok {
					t.Errorf("%s: %s runs %q, not a duet binary", nameOf(f), o.key(), bin)
					continue
				}
				for _, e := range c.Env {
					if !strings.HasPrefix(e.Name, "DUET_") {
						continue
					}
					checked++
					if !known[e.Name] {
						t.Errorf("%s: %s sets %s, but %s has no flag --%s", nameOf(f), o.key(), e.Name, bin,
							strings.ToLower(strings.ReplaceAll(strings.TrimPrefix(e.Name, "DUET_"), "_", "-")))
					}
				}
				for _, a := range c.Args {
					name, _, _ := strings.Cut(strings.TrimLeft(a, "-"), "=")
					if strings.HasPrefix(a, "-") && !flags[bin][name] {
						t.Errorf("%s: %s passes %s, not a flag of %s", nameOf(f), o.key(), a, bin)
					}
				}
			}
		}
	}
	t.Logf("%d DUET_* variables checked against the binaries' flags", checked)
}
