package charttest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"

	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/engine"
	sigsjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
)

const (
	chartDir  = "../duet"
	ciDir     = "../duet/ci"
	release   = "duet"
	namespace = "duet-test"
)

// kubeVersion is the oldest Kubernetes the chart supports (Chart.yaml's
// kubeVersion): what it renders for must exist there.
var kubeVersion = chartutil.KubeVersion{Version: "v1.30.0", Major: "1", Minor: "30"}

// newObject returns an empty value of the Go type of apiVersion/kind.
func newObject(apiVersion, kind string) (any, bool) {
	switch apiVersion + "/" + kind {
	case "v1/Service":
		return &corev1.Service{}, true
	case "v1/ServiceAccount":
		return &corev1.ServiceAccount{}, true
	case "apps/v1/Deployment":
		return &appsv1.Deployment{}, true
	case "apps/v1/StatefulSet":
		return &appsv1.StatefulSet{}, true
	case "policy/v1/PodDisruptionBudget":
		return &policyv1.PodDisruptionBudget{}, true
	case "autoscaling/v2/HorizontalPodAutoscaler":
		return &autoscalingv2.HorizontalPodAutoscaler{}, true
	case "networking.k8s.io/v1/Ingress":
		return &networkingv1.Ingress{}, true
	case "monitoring.coreos.com/v1/ServiceMonitor":
		return &monitoringv1.ServiceMonitor{}, true
	}
	return nil, false
}

// object is one rendered Kubernetes object.
type object struct {
	Source string         // the template that rendered it
	Kind   string         // e.g. Deployment
	Name   string         // metadata.name
	Typed  any            // *appsv1.Deployment, ...
	Raw    map[string]any // the same object as generic JSON, for diffs
}

func (o object) key() string { return o.Kind + "/" + o.Name }

// rendered is what one render of the chart produced.
type rendered struct {
	Objects []object
	Notes   string
}

func (r rendered) byKey() map[string]object {
	m := map[string]object{}
	for _, o := range r.Objects {
		m[o.key()] = o
	}
	return m
}

func (r rendered) get(kind, name string) (object, bool) {
	o, ok := r.byKey()[kind+"/"+name]
	return o, ok
}

func (r rendered) ofKind(kind string) []object {
	var out []object
	for _, o := range r.Objects {
		if o.Kind == kind {
			out = append(out, o)
		}
	}
	return out
}

func loadChart(t *testing.T) *chart.Chart {
	t.Helper()
	ch, err := loader.Load(chartDir)
	if err != nil {
		t.Fatalf("load chart: %v", err)
	}
	return ch
}

// readValues reads a values file of ../duet/ci ("" for none).
func readValues(t *testing.T, name string) map[string]any {
	t.Helper()
	if name == "" {
		return map[string]any{}
	}
	v, err := chartutil.ReadValuesFile(filepath.Join(ciDir, name))
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// ciFiles lists the values files the chart is rendered and linted with.
func ciFiles(t *testing.T) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(ciDir, "*-values.yaml"))
	if err != nil || len(m) == 0 {
		t.Fatalf("no values files in %s: %v", ciDir, err)
	}
	var out []string
	for _, p := range m {
		out = append(out, filepath.Base(p))
	}
	sort.Strings(out)
	return out
}

// set returns a copy of vals with the dotted path set to v.
func set(vals map[string]any, path string, v any) map[string]any {
	out := deepCopyMap(vals)
	m := out
	parts := strings.Split(path, ".")
	for _, p := range parts[:len(parts)-1] {
		next, ok := m[p].(map[string]any)
		if !ok {
			next = map[string]any{}
			m[p] = next
		}
		m = next
	}
	m[parts[len(parts)-1]] = v
	return out
}

func deepCopyMap(m map[string]any) map[string]any {
	if m == nil {
		return map[string]any{}
	}
	b, err := json.Marshal(m)
	if err != nil {
		panic(err)
	}
	var out map[string]any
	if err := json.Unmarshal(b, &out); err != nil {
		panic(err)
	}
	return out
}

// render renders the chart as `helm template` would (schema validation
// included, undefined template values an error) and decodes every object
// strictly.
func render(ch *chart.Chart, vals map[string]any) (rendered, error) {
	var r rendered
	if !chartutil.IsCompatibleRange(ch.Metadata.KubeVersion, kubeVersion.Version) {
		return r, fmt.Errorf("chart kubeVersion %q does not admit %s", ch.Metadata.KubeVersion, kubeVersion.Version)
	}
	caps := chartutil.DefaultCapabilities.Copy()
	caps.KubeVersion = kubeVersion
	opts := chartutil.ReleaseOptions{Name: release, Namespace: namespace, Revision: 1, IsInstall: true}
	rv, err := chartutil.ToRenderValuesWithSchemaValidation(ch, vals, opts, caps, false)
	if err != nil {
		return r, err
	}
	files, err := engine.Engine{Strict: true}.Render(ch, rv)
	if err != nil {
		return r, err
	}
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		if strings.HasSuffix(name, "NOTES.txt") {
			r.Notes = files[name]
			continue
		}
		if !strings.HasSuffix(name, ".yaml") {
			continue
		}
		objs, err := decodeManifest(name, files[name])
		if err != nil {
			return r, err
		}
		r.Objects = append(r.Objects, objs...)
	}
	seen := map[string]string{}
	for _, o := range r.Objects {
		if prev, dup := seen[o.key()]; dup {
			return r, fmt.Errorf("%s rendered twice (%s and %s)", o.key(), prev, o.Source)
		}
		seen[o.key()] = o.Source
	}
	return r, nil
}

// decodeManifest splits one template's output into documents and decodes
// each strictly into its API type.
func decodeManifest(source, text string) ([]object, error) {
	var out []object
	for i, doc := range splitDocs(text) {
		j, err := yaml.YAMLToJSONStrict([]byte(doc))
		if err != nil {
			return nil, fmt.Errorf("%s document %d: %w\n%s", source, i, err, doc)
		}
		if string(j) == "null" {
			continue // only comments
		}
		var tm struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
			Metadata   struct {
				Name string `json:"name"`
			} `json:"metadata"`
		}
		if err := json.Unmarshal(j, &tm); err != nil {
			return nil, fmt.Errorf("%s document %d: %w", source, i, err)
		}
		typed, ok := newObject(tm.APIVersion, tm.Kind)
		if !ok {
			return nil, fmt.Errorf("%s document %d: no API type known for %s %s", source, i, tm.APIVersion, tm.Kind)
		}
		strict, err := sigsjson.UnmarshalStrict(j, typed)
		if err != nil {
			return nil, fmt.Errorf("%s: %s %s: %w", source, tm.Kind, tm.Metadata.Name, err)
		}
		if len(strict) > 0 {
			return nil, fmt.Errorf("%s: %s %s does not decode strictly: %v", source, tm.Kind, tm.Metadata.Name, strict)
		}
		var raw map[string]any
		if err := json.Unmarshal(j, &raw); err != nil {
			return nil, err
		}
		out = append(out, object{Source: source, Kind: tm.Kind, Name: tm.Metadata.Name, Typed: typed, Raw: raw})
	}
	return out, nil
}

func splitDocs(text string) []string {
	var docs []string
	var cur bytes.Buffer
	for _, line := range strings.SplitAfter(text, "\n") {
		if strings.TrimRight(line, "\r\n") == "---" {
			docs = append(docs, cur.String())
			cur.Reset()
			continue
		}
		cur.WriteString(line)
	}
	docs = append(docs, cur.String())
	var out []string
	for _, d := range docs {
		if strings.TrimSpace(d) != "" {
			out = append(out, d)
		}
	}
	return out
}

// diff lists the JSON paths where a and b differ.
func diff(path string, a, b any) []string {
	if reflect.DeepEqual(a, b) {
		return nil
	}
	am, aok := a.(map[string]any)
	bm, bok := b.(map[string]any)
	if aok && bok {
		keys := map[string]bool{}
		for k := range am {
			keys[k] = true
		}
		for k := range bm {
			keys[k] = true
		}
		var out []string
		for k := range keys {
			out = append(out, diff(path+"."+k, am[k], bm[k])...)
		}
		sort.Strings(out)
		return out
	}
	as, aok := a.([]any)
	bs, bok := b.([]any)
	if aok && bok && len(as) == len(bs) {
		var out []string
		for i := range as {
			out = append(out, diff(fmt.Sprintf("%s[%d]", path, i), as[i], bs[i])...)
		}
		return out
	}
	return []string{path}
}

// podSpecOf returns a workload's pod template.
func podSpecOf(o object) (*corev1.PodTemplateSpec, bool) {
	switch w := o.Typed.(type) {
	case *appsv1.Deployment:
		return &w.Spec.Template, true
	case *appsv1.StatefulSet:
		return &w.Spec.Template, true
	}
	return nil, false
}

func writeFile(t *testing.T, path, text string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}
