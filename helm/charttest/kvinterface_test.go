package charttest

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestKVInterfaceWrapper runs the shell wrapper the chart puts around
// duet-decode for rdma.kvInterface, with a stand-in duet-decode that
// prints what it was started with: it must advertise the interface's IPv4
// address (here loopback's) with the KV port, pass the arguments on, and
// refuse to start when the interface has no address.
func TestKVInterfaceWrapper(t *testing.T) {
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("no ip command (iproute2) on this machine")
	}
	r, err := render(loadChart(t), set(readValues(t, "rdma-network-values.yaml"), "decode.extraArgs", []any{"--max-seqs=8"}))
	if err != nil {
		t.Fatal(err)
	}
	c := container(t, deployment(t, r, "decode"))
	if len(c.Command) != 4 {
		t.Fatalf("command %q", c.Command)
	}
	bin := t.TempDir()
	fake := "#!/bin/sh\necho \"advertise=$DUET_KV_ADVERTISE args=$*\"\n"
	if err := os.WriteFile(filepath.Join(bin, "duet-decode"), []byte(fake), 0o755); err != nil {
		t.Fatal(err)
	}
	run := func(iface string) (string, error) {
		cmd := exec.Command(c.Command[0], append(c.Command[1:], c.Args...)...)
		cmd.Env = append(os.Environ(), "PATH="+bin+string(os.PathListSeparator)+os.Getenv("PATH"),
			"KV_INTERFACE="+iface, "KV_PORT=9401", "DUET_KV_ADVERTISE=10.0.0.1:9401")
		out, err := cmd.CombinedOutput()
		return strings.TrimSpace(string(out)), err
	}
	out, err := run("lo")
	if err != nil || out != "advertise=127.0.0.1:9401 args=--max-seqs=8" {
		t.Fatalf("with lo: %q, %v", out, err)
	}
	out, err = run("duet-nosuch0")
	if err == nil || !strings.Contains(out, "rdma.kvInterface: no IPv4 address on duet-nosuch0") || strings.Contains(out, "advertise=") {
		t.Fatalf("with a missing interface: %q, %v (want a refusal before the node starts)", out, err)
	}
}
