package pd

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/duet-llm/duet/cluster"
	"github.com/duet-llm/duet/engine/gguf"
	"github.com/duet-llm/duet/engine/synth"
	"github.com/duet-llm/duet/tests/localcluster"
)

// Deployment is one way to run the model on the machine's cores.
type Deployment struct {
	Name string
	// Nodes by role, each with its compute threads and the CPUs it is
	// pinned to (a taskset list; "" is unpinned).
	Nodes []NodeSpec
}

// NodeSpec is one node of a deployment.
type NodeSpec struct {
	Role    cluster.Role
	Threads int
	CPUs    string
}

// Describe says what the deployment runs, e.g. "1 both (2 threads, CPUs 0-1)".
func (d Deployment) Describe() string {
	var parts []string
	for _, n := range d.Nodes {
		s := fmt.Sprintf("1 %s (%d thread", n.Role, n.Threads)
		if n.Threads != 1 {
			s += "s"
		}
		if n.CPUs != "" {
			s += ", CPUs " + n.CPUs
		}
		parts = append(parts, s+")")
	}
	return strings.Join(parts, " + ")
}

// Threads is the deployment's total compute threads.
func (d Deployment) Threads() int {
	n := 0
	for _, s := range d.Nodes {
		n += s.Threads
	}
	return n
}

// StandardDeployments returns the deployments of the comparison on a
// machine with cores cores (at least 2): colocated, one "both" node with
// every core; pd, the cores split between a prefill and a decode node;
// and pd-prefill-all, a PD pair whose prefill node has every core (the
// decode node shares them), which matches the colocated node's prefill
// compute for the low-load TTFT comparison. Pinning needs taskset.
func StandardDeployments(cores int, pin bool) (colocated, pdSplit, pdFull Deployment) {
	all, pre, dec := "", "", ""
	if pin {
		all = fmt.Sprintf("0-%d", cores-1)
		p := cores / 2
		pre, dec = cpuRange(0, p-1), cpuRange(p, cores-1)
	}
	colocated = Deployment{Name: "colocated", Nodes: []NodeSpec{{cluster.RoleBoth, cores, all}}}
	pdSplit = Deployment{Name: "pd", Nodes: []NodeSpec{{cluster.RolePrefill, cores / 2, pre}, {cluster.RoleDecode, cores - cores/2, dec}}}
	pdFull = Deployment{Name: "pd-prefill-all", Nodes: []NodeSpec{{cluster.RolePrefill, cores, all}, {cluster.RoleDecode, max(1, cores/2), all}}}
	return
}

func cpuRange(a, b int) string {
	if a == b {
		return strconv.Itoa(a)
	}
	return fmt.Sprintf("%d-%d", a, b)
}

// options turns the deployment into localcluster options. A pinned node
// is started through a wrapper script (in wrapDir) that runs it under
// taskset with GOMAXPROCS of at least 2: pinned to one CPU, Go would
// otherwise run one P, and a long compute kernel (assembly, not
// preemptible) would starve the node's gossip and lease keep-alive.
func (d Deployment) options(binDir, model, wrapDir string, nodeArgs, routerArgs []string, logs io.Writer) (localcluster.Options, error) {
	// A 10 s lease: localcluster's 2 s default (quick failure detection in
	// tests) is lost by a node starved of CPU on a busy machine, and the
	// benchmark would measure re-registration instead of serving.
	o := localcluster.Options{BinDir: binDir, Model: model, NodeArgs: nodeArgs, RouterArgs: routerArgs, Logs: logs,
		RoleArgs: map[cluster.Role][]string{}, LeaseTTL: 10 * time.Second}
	pinned := map[string]string{} // binary → CPUs
	for _, n := range d.Nodes {
		switch n.Role {
		case cluster.RoleBoth:
			o.Both++
		case cluster.RolePrefill:
			o.Prefill++
		case cluster.RoleDecode:
			o.Decode++
		}
		if len(o.RoleArgs[n.Role]) > 0 {
			return o, fmt.Errorf("deployment %s: one node per role", d.Name)
		}
		o.RoleArgs[n.Role] = []string{"--threads", strconv.Itoa(n.Threads)}
		if n.CPUs != "" {
			bin := "duet-decode"
			if n.Role == cluster.RolePrefill {
				bin = "duet-prefill"
			}
			pinned[bin] = n.CPUs
		}
	}
	if len(pinned) == 0 {
		return o, nil
	}
	if o.Both > 0 && o.Decode > 0 && pinned["duet-decode"] != "" {
		return o, fmt.Errorf("deployment %s: both and decode nodes share a binary and cannot be pinned apart", d.Name)
	}
	taskset, err := exec.LookPath("taskset")
	if err != nil {
		return o, fmt.Errorf("pinning needs taskset: %w", err)
	}
	if err := os.MkdirAll(wrapDir, 0o755); err != nil {
		return o, err
	}
	for _, bin := range []string{"duet-router", "duet-prefill", "duet-decode"} {
		real, err := filepath.Abs(filepath.Join(binDir, bin))
		if err != nil {
			return o, err
		}
		script := fmt.Sprintf("#!/bin/sh\nexec %s \"$@\"\n", shellQuote(real))
		if cpus := pinned[bin]; cpus != "" {
			script = fmt.Sprintf("#!/bin/sh\nGOMAXPROCS=%d exec %s -c %s %s \"$@\"\n",
				max(2, cpuCount(cpus)), shellQuote(taskset), shellQuote(cpus), shellQuote(real))
		}
		if err := os.WriteFile(filepath.Join(wrapDir, bin), []byte(script), 0o755); err != nil {
			return o, err
		}
	}
	o.BinDir = wrapDir
	return o, nil
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// cpuCount counts the CPUs of a taskset list such as "0-3,6".
func cpuCount(list string) int {
	n := 0
	for part := range strings.SplitSeq(list, ",") {
		a, b, ok := strings.Cut(part, "-")
		lo, err1 := strconv.Atoi(a)
		hi := lo
		var err2 error
		if ok {
			hi, err2 = strconv.Atoi(b)
		}
		if err1 == nil && err2 == nil && hi >= lo {
			n += hi - lo + 1
		}
	}
	return n
}

// SynthModel returns the synthetic ~110M-parameter Llama model (the
// llama2.c stories110M shape, f32 weights, Llama-2 tokenizer) in
// cacheDir, writing it on first use from the tokenizer of
// llama-2-tiny-random.gguf in modelsDir. It is the file duet-bench-engine
// writes (same spec, same seed, same bytes).
func SynthModel(ctx context.Context, modelsDir, cacheDir string, progress io.Writer) (string, error) {
	path := filepath.Join(cacheDir, "synth-110m-f32.gguf")
	if _, err := os.Stat(path); err == nil {
		return path, nil
	}
	src, err := gguf.Open(filepath.Join(modelsDir, "llama-2-tiny-random.gguf"))
	if err != nil {
		return "", fmt.Errorf("tokenizer source for the synthetic model: %w", err)
	}
	defer src.Close()
	spec := synth.Presets["110m"]
	spec.Type, spec.Seed = gguf.TypeF32, 1
	if progress != nil {
		fmt.Fprintf(progress, "writing %s …\n", path)
	}
	if err := synth.WriteFile(path, spec, &src.Metadata); err != nil {
		return "", err
	}
	return path, ctx.Err()
}
