package charttest

import (
	"bytes"
	"debug/elf"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"

	"golang.org/x/mod/modfile"
)

const (
	repoRoot     = "../.."
	dockerfile   = "../../docker/Dockerfile"
	dockerignore = "../../docker/Dockerfile.dockerignore"
	versionVar   = "github.com/duet-llm/duet/engine/version.Version"
)

// The binaries in the image, by module folder.
var imageBinaries = map[string]string{
	"router":       "cmd/duet-router",
	"prefill-node": "cmd/duet-prefill",
	"decode-node":  "cmd/duet-decode",
}

// dockerLines reads a Dockerfile with continuation lines joined and
// comments dropped.
func dockerLines(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile(dockerfile)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	var cur strings.Builder
	for _, line := range strings.Split(string(b), "\n") {
		trimmed := strings.TrimSpace(line)
		if strings.HasPrefix(trimmed, "#") && cur.Len() == 0 {
			continue
		}
		if strings.HasSuffix(trimmed, "\\") {
			cur.WriteString(strings.TrimSuffix(trimmed, "\\") + " ")
			continue
		}
		cur.WriteString(trimmed)
		if s := strings.TrimSpace(cur.String()); s != "" {
			out = append(out, s)
		}
		cur.Reset()
	}
	return out
}

// neededModules is every module folder the image's binaries are built
// from: theirs and, through replace lines, their siblings'.
func neededModules(t *testing.T) []string {
	t.Helper()
	need := map[string]bool{}
	var visit func(dir string)
	visit = func(dir string) {
		if need[dir] {
			return
		}
		need[dir] = true
		path := filepath.Join(repoRoot, dir, "go.mod")
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		mf, err := modfile.Parse(path, b, nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range mf.Replace {
			if strings.HasPrefix(r.New.Path, "../") {
				visit(filepath.Clean(strings.TrimPrefix(r.New.Path, "../")))
			}
		}
	}
	for m := range imageBinaries {
		visit(m)
	}
	var out []string
	for m := range need {
		out = append(out, m)
	}
	sort.Strings(out)
	return out
}

// TestDockerfile checks docker/Dockerfile's shape against the repository:
// the module files of every module the binaries need are copied before
// the dependency download (so that layer is cached until a go.mod
// changes), their sources after it, the build context lets them through,
// and every final stage runs as 65532 with OCI labels.
func TestDockerfile(t *testing.T) {
	lines := dockerLines(t)
	mods := neededModules(t)
	t.Logf("modules in the image build: %v", mods)
	download := -1
	for i, l := range lines {
		if strings.HasPrefix(l, "RUN") && strings.Contains(l, "go mod download") {
			download = i
			break
		}
	}
	if download < 0 {
		t.Fatal("no RUN go mod download")
	}
	index := func(want string) int {
		for i, l := range lines {
			if strings.Join(strings.Fields(l), " ") == want {
				return i
			}
		}
		return -1
	}
	for _, m := range mods {
		if i := index("COPY " + m + "/go.mod " + m + "/go.sum " + m + "/"); i < 0 || i > download {
			t.Errorf("%s/go.mod and go.sum are not copied before the download (line %d, download at %d)", m, i, download)
		}
		if i := index("COPY " + m + "/ " + m + "/"); i < download {
			t.Errorf("%s/ is not copied after the download (at %d)", m, i)
		}
	}
	for _, l := range lines {
		if f := strings.Fields(l); len(f) >= 3 && f[0] == "COPY" && (f[1] == "." || f[1] == "./") {
			t.Errorf("%q copies the whole context: any change would invalidate the build cache", l)
		}
	}
	for m, cmd := range imageBinaries {
		if !strings.Contains(strings.Join(lines, "\n"), m+"/"+cmd) {
			t.Errorf("the build does not name %s/%s", m, cmd)
		}
	}
	all := strings.Join(lines, "\n")
	for _, want := range []string{"CGO_ENABLED=0", "GOWORK=off", "-trimpath", `-s -w -X ` + versionVar + `=${VERSION}`} {
		if !strings.Contains(all, want) {
			t.Errorf("the Dockerfile lacks %q", want)
		}
	}

	// Stages: every stage that is an image (not the build) is nonroot and labelled.
	type stage struct {
		name, base string
		lines      []string
	}
	var stages []stage
	for _, l := range lines {
		if f := strings.Fields(l); len(f) >= 2 && strings.EqualFold(f[0], "FROM") {
			s := stage{base: f[1]}
			if len(f) >= 4 && strings.EqualFold(f[2], "AS") {
				s.name = f[3]
			}
			stages = append(stages, s)
			continue
		}
		if len(stages) > 0 {
			stages[len(stages)-1].lines = append(stages[len(stages)-1].lines, l)
		}
	}
	finals := 0
	for _, s := range stages {
		if s.name == "build" || s.name == "" {
			continue
		}
		finals++
		body := strings.Join(s.lines, "\n")
		if !regexp.MustCompile(`(?m)^USER 65532(:65532)?$`).MatchString(body) {
			t.Errorf("stage %s does not run as USER 65532", s.name)
		}
		for _, l := range []string{"title", "source", "version", "revision", "created", "licenses"} {
			if !strings.Contains(body, "org.opencontainers.image."+l+"=") {
				t.Errorf("stage %s has no org.opencontainers.image.%s label", s.name, l)
			}
		}
		if !strings.Contains(body, "COPY --from=build /out/ /usr/local/bin/") {
			t.Errorf("stage %s does not take the binaries from the build stage", s.name)
		}
	}
	if finals != 2 {
		t.Errorf("%d image stages, want runtime and rdma", finals)
	}
	last := stages[len(stages)-1]
	if last.name != "" || last.base != "runtime" {
		t.Errorf("the last stage is FROM %s, want FROM runtime (the default target)", last.base)
	}

	// The build context: everything excluded, the needed modules let back in.
	ig, err := os.ReadFile(dockerignore)
	if err != nil {
		t.Fatal(err)
	}
	included := map[string]bool{}
	for _, l := range strings.Split(string(ig), "\n") {
		if d, ok := strings.CutPrefix(strings.TrimSpace(l), "!"); ok {
			included[strings.TrimSuffix(d, "/")] = true
		}
	}
	for _, m := range mods {
		if !included[m] {
			t.Errorf("%s is not in the build context (%s)", m, dockerignore)
		}
	}
}

// contextFiles copies what docker/Dockerfile.dockerignore lets into the
// build context to dst. It knows the file's patterns: "*", "!dir/" and
// "**/name" (a file or folder name anywhere, with * globs).
func contextFiles(dst string) error {
	ig, err := os.ReadFile(dockerignore)
	if err != nil {
		return err
	}
	var include, exclude []string
	for _, l := range strings.Split(string(ig), "\n") {
		l = strings.TrimSpace(l)
		switch {
		case l == "" || strings.HasPrefix(l, "#") || l == "*":
		case strings.HasPrefix(l, "!"):
			include = append(include, strings.TrimSuffix(l[1:], "/"))
		case strings.HasPrefix(l, "**/"):
			exclude = append(exclude, strings.TrimSuffix(l[3:], "/"))
		default:
			return fmt.Errorf("%s: pattern %q is not one this test understands; teach contextFiles", dockerignore, l)
		}
	}
	for _, top := range include {
		src := filepath.Join(repoRoot, top)
		err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			for _, x := range exclude {
				if ok, _ := filepath.Match(x, d.Name()); ok {
					if d.IsDir() {
						return filepath.SkipDir
					}
					return nil
				}
			}
			rel, _ := filepath.Rel(repoRoot, p)
			out := filepath.Join(dst, rel)
			if d.IsDir() {
				return os.MkdirAll(out, 0o755)
			}
			if !d.Type().IsRegular() {
				return nil
			}
			return copyFile(p, out)
		})
		if err != nil {
			return err
		}
	}
	return nil
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// imageBuild is the result of building the binaries as the image does,
// done once for the tests that need them.
var imageBuild struct {
	once      sync.Once
	root      string // the temporary folder, removed by TestMain
	dir       string // root/bin: the binaries
	err       error
	needsLibc map[string]bool
}

const imageVersion = "v9.9.9-charttest"

// buildAsImage runs the Dockerfile's build stage without Docker: in a copy
// of just the build context, each binary is built inside its own module
// with GOWORK=off and CGO_ENABLED=0, as the image is. It returns the
// folder holding duet-router, duet-prefill and duet-decode.
func buildAsImage(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds the three binaries")
	}
	b := &imageBuild
	b.once.Do(func() {
		b.root, b.err = os.MkdirTemp("", "duet-charttest-")
		if b.err != nil {
			return
		}
		ctx := filepath.Join(b.root, "context")
		out := filepath.Join(b.root, "bin")
		if b.err = contextFiles(ctx); b.err != nil {
			return
		}
		env := append(os.Environ(), "GOWORK=off", "CGO_ENABLED=0", "GOFLAGS=-mod=readonly")
		b.needsLibc = map[string]bool{}
		for m, cmd := range imageBinaries {
			c := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w -X "+versionVar+"="+imageVersion, "-o", out+string(filepath.Separator), "./"+cmd)
			c.Dir = filepath.Join(ctx, m)
			c.Env = env
			if o, err := c.CombinedOutput(); err != nil {
				b.err = fmt.Errorf("go build ./%s in %s, as the image builds it: %v\n%s", cmd, m, err, o)
				return
			}
			f, err := elf.Open(filepath.Join(out, filepath.Base(cmd)))
			if err != nil {
				b.err = err
				return
			}
			for _, p := range f.Progs {
				if p.Type == elf.PT_INTERP {
					b.needsLibc[filepath.Base(cmd)] = true
				}
			}
			f.Close()
		}
		b.dir = out
	})
	if b.err != nil {
		t.Fatal(b.err)
	}
	return b.dir
}

// TestImageBuild builds the binaries as the image does (buildAsImage). It
// proves the replace lines and go.sum files suffice without the
// workspace, the version reaches the binaries, and it finds which binaries
// need a C library at run time: those may not go on a base image without
// one (distroless/static, scratch).
func TestImageBuild(t *testing.T) {
	dir := buildAsImage(t)
	for _, cmd := range imageBinaries {
		data, err := os.ReadFile(filepath.Join(dir, filepath.Base(cmd)))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Contains(data, []byte(imageVersion)) {
			t.Errorf("%s does not carry its version %s", filepath.Base(cmd), imageVersion)
		}
	}
	needsLibc := imageBuild.needsLibc
	t.Logf("dynamically linked with CGO_ENABLED=0 (purego's dlopen): %v", needsLibc)
	if len(needsLibc) == 0 {
		return
	}
	for _, l := range dockerLines(t) {
		if f := strings.Fields(l); len(f) == 2 && f[0] == "ARG" && strings.HasPrefix(f[1], "RUNTIME_BASE=") {
			if base := strings.TrimPrefix(f[1], "RUNTIME_BASE="); strings.Contains(base, "/static") || strings.Contains(base, "scratch") {
				t.Errorf("runtime base %s has no C library, but %v need one", base, needsLibc)
			}
			return
		}
	}
	t.Error("no ARG RUNTIME_BASE in the Dockerfile")
}
