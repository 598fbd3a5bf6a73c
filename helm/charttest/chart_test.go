package charttest

import (
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"helm.sh/helm/v3/pkg/lint"
	"helm.sh/helm/v3/pkg/lint/support"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
)

// TestLint is `helm lint --strict`: with the default values and with each
// values file, no message may be a warning or worse.
func TestLint(t *testing.T) {
	kv := kubeVersion
	for _, name := range append([]string{""}, ciFiles(t)...) {
		t.Run(nameOf(name), func(t *testing.T) {
			l := lint.AllWithKubeVersion(chartDir, readValues(t, name), namespace, &kv)
			for _, m := range l.Messages {
				if m.Severity >= support.WarningSev {
					t.Errorf("%s", m)
				} else {
					t.Logf("%s", m)
				}
			}
		})
	}
}

func nameOf(file string) string {
	if file == "" {
		return "default"
	}
	return strings.TrimSuffix(file, "-values.yaml")
}

// TestRender renders the chart with the default values and with each
// values file in ../duet/ci, decodes every object strictly into its API
// type (render does), checks what holds for every rendering, then what
// the option switched on must have changed.
func TestRender(t *testing.T) {
	ch := loadChart(t)
	files := append([]string{""}, ciFiles(t)...)
	for _, f := range files {
		if _, ok := scenarios[nameOf(f)]; !ok {
			t.Errorf("values file %s has no scenario check in chart_test.go", f)
		}
	}
	for _, f := range files {
		t.Run(nameOf(f), func(t *testing.T) {
			r, err := render(ch, readValues(t, f))
			if err != nil {
				t.Fatal(err)
			}
			checkInvariants(t, r)
			if check := scenarios[nameOf(f)]; check != nil {
				check(t, r)
			}
		})
	}
}

// TestReplicasChangeOnlyTheirPool: setting one pool's replicas changes
// that pool's Deployment's spec.replicas and nothing else, in any object.
func TestReplicasChangeOnlyTheirPool(t *testing.T) {
	ch := loadChart(t)
	base, err := render(ch, map[string]any{})
	if err != nil {
		t.Fatal(err)
	}
	for _, pool := range []string{"prefill", "decode", "router"} {
		t.Run(pool, func(t *testing.T) {
			r, err := render(ch, set(map[string]any{}, pool+".replicas", 7))
			if err != nil {
				t.Fatal(err)
			}
			if len(r.Objects) != len(base.Objects) {
				t.Fatalf("%d objects, %d with the defaults", len(r.Objects), len(base.Objects))
			}
			b := base.byKey()
			var changed []string
			for _, o := range r.Objects {
				bo, ok := b[o.key()]
				if !ok {
					t.Fatalf("%s appeared", o.key())
				}
				for _, p := range diff("", bo.Raw, o.Raw) {
					changed = append(changed, o.key()+p)
				}
			}
			want := "Deployment/duet-" + pool + ".spec.replicas"
			if len(changed) != 1 || changed[0] != want {
				t.Fatalf("changed %v, want only %s", changed, want)
			}
			d := r.mustGet(t, "Deployment", "duet-"+pool).Typed.(*appsv1.Deployment)
			if d.Spec.Replicas == nil || *d.Spec.Replicas != 7 {
				t.Fatalf("replicas %v", d.Spec.Replicas)
			}
		})
	}
}

// TestBadValuesRejected: values the chart cannot serve are refused with a
// message that names the problem, by the schema or by the templates.
func TestBadValuesRejected(t *testing.T) {
	ch := loadChart(t)
	cases := []struct {
		name string
		vals map[string]any
		want string // a substring of the error
	}{
		{"misspelled top-level key", map[string]any{"prefil": map[string]any{"replicas": 2}}, "prefil"},
		{"misspelled pool key", set(nil, "decode.replica", 2), "replica"},
		{"negative replicas", set(nil, "prefill.replicas", -1), "replicas"},
		{"replicas as a string", set(nil, "decode.replicas", "3"), "replicas"},
		{"two etcd members", set(nil, "etcd.replicas", 2), "replicas"},
		{"three etcd members without persistence", set(nil, "etcd.replicas", 3), "persistence"},
		{"unknown kv dtype", set(nil, "decode.kvDtype", "bf16"), "kvDtype"},
		{"pools with different dtypes", set(nil, "decode.kvDtype", "int8"), "kvDtype"},
		{"block size not a multiple of 16", set(nil, "decode.blockTokens", 24), "blockTokens"},
		{"misspelled service type", set(nil, "router.service.type", "Loadbalancer"), "type"},
		{"ingress beside a load balancer", set(nil, "router.ingress.enabled", true), "LoadBalancer"},
		{"url source without checksum", set(set(nil, "model.source", "url"), "model.url.url", "https://x.example/m.gguf"), "sha256"},
		{"short checksum", set(set(set(nil, "model.source", "url"), "model.url.url", "https://x.example/m.gguf"), "model.url.sha256", "abc"), "sha256"},
		{"hostPath source without a path", set(set(nil, "model.source", "hostPath"), "model.hostPath.path", ""), "path"},
		{"pvc source without a claim", set(nil, "model.pvc.claimName", ""), "claimName"},
		{"model file with a directory", set(nil, "model.file", "a/b.gguf"), "file"},
		{"no prefill pool and no colocated nodes", set(nil, "prefill.replicas", 0), "decode.role=both"},
		{"unknown decode role", set(nil, "decode.role", "prefill"), "role"},
		{"port out of range", set(nil, "decode.ports.kv", 70000), "kv"},
		{"drain of zero", set(nil, "router.drainTimeoutSeconds", 0), "drainTimeoutSeconds"},
		{"bad kv memory", set(nil, "decode.kvMemory", "lots"), "kvMemory"},
		{"etcd endpoint without scheme", set(nil, "etcd.external.endpoints", []any{"etcd:2379"}), "endpoints"},
		{"external etcd TLS without a secret", set(set(nil, "etcd.external.endpoints", []any{"https://e:2379"}), "etcd.external.tls.enabled", true), "secretName"},
		{"bad log level", set(nil, "logLevel", "verbose"), "logLevel"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := render(ch, tc.vals)
			if err == nil {
				t.Fatal("accepted")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error does not mention %q: %v", tc.want, err)
			}
			t.Log(err)
		})
	}
}

// TestNotes: NOTES.txt prints the endpoint and the scale line of each pool.
func TestNotes(t *testing.T) {
	ch := loadChart(t)
	cases := []struct {
		name string
		vals map[string]any
		want []string
		not  []string
	}{
		{"default", nil, []string{
			"kubectl -n duet-test get service duet-router -w",
			"kubectl -n duet-test scale deployment/duet-prefill --replicas=N",
			"kubectl -n duet-test scale deployment/duet-decode --replicas=N",
			"kubectl -n duet-test scale deployment/duet-router --replicas=N",
			`"model": "model"`,
		}, []string{"HorizontalPodAutoscaler"}},
		{"ingress", readValues(t, "ingress-values.yaml"), []string{"https://llm.example.com/v1"}, []string{"get service duet-router -w"}},
		{"cluster ip", set(nil, "router.service.type", "ClusterIP"), []string{"port-forward service/duet-router 8080:80"}, nil},
		{"autoscaled decode", readValues(t, "autoscaling-values.yaml"), []string{
			"decode: autoscaled by HorizontalPodAutoscaler duet-decode",
			"prefill: autoscaled by HorizontalPodAutoscaler duet-prefill",
		}, []string{"scale deployment/duet-decode"}},
		{"api keys", readValues(t, "security-values.yaml"), []string{"Authorization: Bearer $DUET_API_KEY"}, nil},
		{"url model", readValues(t, "model-url-values.yaml"), []string{`"model": "stories260K"`}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			vals := tc.vals
			if vals == nil {
				vals = map[string]any{}
			}
			r, err := render(ch, vals)
			if err != nil {
				t.Fatal(err)
			}
			for _, w := range tc.want {
				if !strings.Contains(r.Notes, w) {
					t.Errorf("NOTES lacks %q:\n%s", w, r.Notes)
				}
			}
			for _, w := range tc.not {
				if strings.Contains(r.Notes, w) {
					t.Errorf("NOTES has %q:\n%s", w, r.Notes)
				}
			}
		})
	}
}

func (r rendered) mustGet(t *testing.T, kind, name string) object {
	t.Helper()
	o, ok := r.get(kind, name)
	if !ok {
		t.Fatalf("no %s %s rendered", kind, name)
	}
	return o
}

// workloads are the rendered Deployments and StatefulSets.
func (r rendered) workloads() []object {
	var out []object
	for _, o := range r.Objects {
		if _, ok := podSpecOf(o); ok {
			out = append(out, o)
		}
	}
	return out
}

// selecting returns the workloads whose pods sel selects.
func (r rendered) selecting(sel labels.Selector) []object {
	var out []object
	for _, w := range r.workloads() {
		pt, _ := podSpecOf(w)
		if sel.Matches(labels.Set(pt.Labels)) {
			out = append(out, w)
		}
	}
	return out
}

func metaOf(o object) metav1.Object {
	return o.Typed.(metav1.Object)
}

// checkInvariants checks what must hold for every rendering.
func checkInvariants(t *testing.T, r rendered) {
	t.Helper()
	if len(r.workloads()) == 0 {
		t.Fatal("no workloads rendered")
	}
	for _, o := range r.Objects {
		m := metaOf(o)
		if m.GetNamespace() != namespace {
			t.Errorf("%s: namespace %q", o.key(), m.GetNamespace())
		}
		for _, e := range validation.IsDNS1123Subdomain(m.GetName()) {
			t.Errorf("%s: name: %s", o.key(), e)
		}
		checkLabels(t, o.key(), m.GetLabels())
		for _, l := range []string{"app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/managed-by", "helm.sh/chart"} {
			if m.GetLabels()[l] == "" {
				t.Errorf("%s: no label %s", o.key(), l)
			}
		}
	}
	// Workloads: each selector selects its own pod template and no other
	// workload's pods.
	for _, w := range r.workloads() {
		var sel *metav1.LabelSelector
		switch d := w.Typed.(type) {
		case *appsv1.Deployment:
			sel = d.Spec.Selector
		case *appsv1.StatefulSet:
			sel = d.Spec.Selector
		}
		s, err := metav1.LabelSelectorAsSelector(sel)
		if err != nil || s.Empty() {
			t.Errorf("%s: selector %v: %v", w.key(), sel, err)
			continue
		}
		if got := r.selecting(s); len(got) != 1 || got[0].key() != w.key() {
			t.Errorf("%s: selector selects the pods of %v", w.key(), keys(got))
		}
		if sel.MatchLabels["app.kubernetes.io/component"] == "" {
			t.Errorf("%s: selector has no component label", w.key())
		}
		pt, _ := podSpecOf(w)
		checkLabels(t, w.key()+" pods", pt.Labels)
		var claims []string
		if ss, ok := w.Typed.(*appsv1.StatefulSet); ok {
			for _, c := range ss.Spec.VolumeClaimTemplates {
				claims = append(claims, c.Name)
			}
		}
		checkPod(t, r, w.key(), pt, claims)
	}
	for _, o := range r.Objects {
		switch v := o.Typed.(type) {
		case *corev1.Service:
			checkService(t, r, o.key(), v)
		case *policyv1.PodDisruptionBudget:
			s, err := metav1.LabelSelectorAsSelector(v.Spec.Selector)
			if err != nil || s.Empty() || len(r.selecting(s)) != 1 {
				t.Errorf("%s: selector %v selects %v (%v)", o.key(), v.Spec.Selector, keys(r.selecting(s)), err)
			}
			if (v.Spec.MinAvailable == nil) == (v.Spec.MaxUnavailable == nil) {
				t.Errorf("%s: want exactly one of minAvailable and maxUnavailable", o.key())
			}
		case *autoscalingv2.HorizontalPodAutoscaler:
			ref := v.Spec.ScaleTargetRef
			d, ok := r.get(ref.Kind, ref.Name)
			if !ok || ref.APIVersion != "apps/v1" {
				t.Errorf("%s: scales %s %s %s, not rendered", o.key(), ref.APIVersion, ref.Kind, ref.Name)
				continue
			}
			if dep, ok := d.Typed.(*appsv1.Deployment); ok && dep.Spec.Replicas != nil {
				t.Errorf("%s: %s sets replicas, which would fight the autoscaler on every upgrade", o.key(), d.key())
			}
			if v.Spec.MinReplicas == nil || *v.Spec.MinReplicas > v.Spec.MaxReplicas || len(v.Spec.Metrics) == 0 {
				t.Errorf("%s: min %v max %d metrics %d", o.key(), v.Spec.MinReplicas, v.Spec.MaxReplicas, len(v.Spec.Metrics))
			}
		case *networkingv1.Ingress:
			for _, rule := range v.Spec.Rules {
				for _, p := range rule.HTTP.Paths {
					b := p.Backend.Service
					svc, ok := r.get("Service", b.Name)
					if !ok || !servicePortNamed(svc.Typed.(*corev1.Service), b.Port.Name) {
						t.Errorf("%s: backend %s port %q not rendered", o.key(), b.Name, b.Port.Name)
					}
				}
			}
		case *monitoringv1.ServiceMonitor:
			checkServiceMonitor(t, r, o.key(), v)
		case *appsv1.StatefulSet:
			svc, ok := r.get("Service", v.Spec.ServiceName)
			if !ok || svc.Typed.(*corev1.Service).Spec.ClusterIP != corev1.ClusterIPNone {
				t.Errorf("%s: serviceName %q is not a rendered headless Service", o.key(), v.Spec.ServiceName)
			}
		}
	}
}

func keys(objs []object) []string {
	var out []string
	for _, o := range objs {
		out = append(out, o.key())
	}
	return out
}

func checkLabels(t *testing.T, what string, l map[string]string) {
	t.Helper()
	for k, v := range l {
		for _, e := range validation.IsQualifiedName(k) {
			t.Errorf("%s: label key %q: %s", what, k, e)
		}
		for _, e := range validation.IsValidLabelValue(v) {
			t.Errorf("%s: label %s=%q: %s", what, k, v, e)
		}
	}
}

var envRef = regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`)

// checkPod checks one pod template: names, ports, probes, mounts,
// variables, security and the grace period.
func checkPod(t *testing.T, r rendered, what string, pt *corev1.PodTemplateSpec, claims []string) {
	t.Helper()
	spec := pt.Spec
	if sa := spec.ServiceAccountName; sa != "" && sa != "default" {
		if _, ok := r.get("ServiceAccount", sa); !ok {
			t.Errorf("%s: service account %q not rendered", what, sa)
		}
	}
	if spec.SecurityContext == nil || spec.SecurityContext.RunAsNonRoot == nil || !*spec.SecurityContext.RunAsNonRoot {
		t.Errorf("%s: pods may run as root", what)
	}
	if spec.EnableServiceLinks == nil || *spec.EnableServiceLinks {
		t.Errorf("%s: service links on: Kubernetes would inject <SERVICE>_PORT variables beside DUET_* flags", what)
	}
	vols := map[string]bool{}
	for _, v := range spec.Volumes {
		if vols[v.Name] {
			t.Errorf("%s: volume %q twice", what, v.Name)
		}
		vols[v.Name] = true
	}
	for _, c := range claims {
		if vols[c] {
			t.Errorf("%s: volume %q is also a claim template", what, c)
		}
		vols[c] = true
	}
	all := append(append([]corev1.Container(nil), spec.InitContainers...), spec.Containers...)
	names := map[string]bool{}
	for _, c := range all {
		cw := what + " container " + c.Name
		if names[c.Name] {
			t.Errorf("%s: twice", cw)
		}
		names[c.Name] = true
		if c.Image == "" || !strings.Contains(c.Image, ":") {
			t.Errorf("%s: image %q has no tag", cw, c.Image)
		}
		ports := map[string]corev1.ContainerPort{}
		numbers := map[int32]bool{}
		for _, p := range c.Ports {
			if p.Name != "" {
				for _, e := range validation.IsValidPortName(p.Name) {
					t.Errorf("%s: port name %q: %s", cw, p.Name, e)
				}
				if _, dup := ports[p.Name]; dup {
					t.Errorf("%s: port name %q twice", cw, p.Name)
				}
				ports[p.Name] = p
			}
			numbers[p.ContainerPort] = true
			if spec.HostNetwork && p.HostPort != 0 && p.HostPort != p.ContainerPort {
				t.Errorf("%s: hostNetwork with hostPort %d != containerPort %d", cw, p.HostPort, p.ContainerPort)
			}
		}
		for _, pr := range []struct {
			kind string
			p    *corev1.Probe
		}{{"startup", c.StartupProbe}, {"readiness", c.ReadinessProbe}, {"liveness", c.LivenessProbe}} {
			if pr.p == nil {
				continue
			}
			switch h := pr.p.ProbeHandler; {
			case h.HTTPGet != nil:
				checkPortRef(t, cw+" "+pr.kind+" probe", h.HTTPGet.Port, ports, numbers)
			case h.TCPSocket != nil:
				checkPortRef(t, cw+" "+pr.kind+" probe", h.TCPSocket.Port, ports, numbers)
			case h.GRPC != nil:
				if !numbers[h.GRPC.Port] {
					t.Errorf("%s: %s probe on gRPC port %d, which the container does not expose", cw, pr.kind, h.GRPC.Port)
				}
			default:
				t.Errorf("%s: %s probe without a handler", cw, pr.kind)
			}
		}
		for _, m := range c.VolumeMounts {
			if !vols[m.Name] {
				t.Errorf("%s: mounts volume %q, which the pod does not have", cw, m.Name)
			}
		}
		defined := map[string]bool{}
		for _, e := range c.Env {
			if defined[e.Name] {
				t.Errorf("%s: variable %s twice", cw, e.Name)
			}
			for _, ref := range envRef.FindAllStringSubmatch(e.Value, -1) {
				if !defined[ref[1]] {
					t.Errorf("%s: %s refers to $(%s), not defined before it", cw, e.Name, ref[1])
				}
			}
			defined[e.Name] = true
		}
		sc := c.SecurityContext
		if sc == nil || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
			sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
			t.Errorf("%s: security context %+v allows escalation or a writable root", cw, sc)
			continue
		}
		// Root only to hold IPC_LOCK (rdma.ipcLock), with nothing else.
		if sc.RunAsUser != nil && *sc.RunAsUser == 0 {
			caps := sc.Capabilities
			if caps == nil || len(caps.Drop) != 1 || caps.Drop[0] != "ALL" || len(caps.Add) != 1 || caps.Add[0] != "IPC_LOCK" {
				t.Errorf("%s: runs as root with capabilities %+v, want only IPC_LOCK", cw, caps)
			}
		}
	}
	// duet containers: the grace period covers preStop and the drain.
	for _, c := range spec.Containers {
		drain, ok := env(c, "DUET_DRAIN_TIMEOUT")
		if !ok {
			continue
		}
		d, err := time.ParseDuration(drain)
		if err != nil {
			t.Errorf("%s: DUET_DRAIN_TIMEOUT %q: %v", what, drain, err)
			continue
		}
		need := d
		if c.Lifecycle != nil && c.Lifecycle.PreStop != nil {
			if c.Lifecycle.PreStop.Sleep == nil {
				t.Errorf("%s: preStop is not a sleep (the image has no shell)", what)
			} else {
				need += time.Duration(c.Lifecycle.PreStop.Sleep.Seconds) * time.Second
			}
		}
		grace := time.Duration(*spec.TerminationGracePeriodSeconds) * time.Second
		if grace < need+5*time.Second {
			t.Errorf("%s: terminationGracePeriodSeconds %v does not cover preStop + drain %v with room to leave", what, grace, need)
		}
		for _, v := range []string{"DUET_ID", "DUET_ETCD_ENDPOINTS", "DUET_MODEL", "DUET_CLUSTER_NAME", "DUET_GOSSIP_ADVERTISE"} {
			if _, ok := env(c, v); !ok {
				t.Errorf("%s: %s not set", what, v)
			}
		}
	}
}

func checkPortRef(t *testing.T, what string, p intstr.IntOrString, named map[string]corev1.ContainerPort, numbers map[int32]bool) {
	t.Helper()
	if p.Type == intstr.String {
		if _, ok := named[p.StrVal]; !ok {
			t.Errorf("%s: port %q not declared", what, p.StrVal)
		}
	} else if !numbers[p.IntVal] {
		t.Errorf("%s: port %d not declared", what, p.IntVal)
	}
}

func env(c corev1.Container, name string) (string, bool) {
	for _, e := range c.Env {
		if e.Name == name {
			return e.Value, true
		}
	}
	return "", false
}

func servicePortNamed(s *corev1.Service, name string) bool {
	for _, p := range s.Spec.Ports {
		if p.Name == name {
			return true
		}
	}
	return false
}

// checkService: a Service selects exactly one workload's pods, and each
// target port is a port those pods declare, with the same protocol.
func checkService(t *testing.T, r rendered, what string, s *corev1.Service) {
	t.Helper()
	if len(what) > len("Service/")+validation.DNS1035LabelMaxLength {
		t.Errorf("%s: name longer than a DNS label", what)
	}
	if len(s.Spec.Selector) == 0 {
		t.Errorf("%s: no selector", what)
		return
	}
	ws := r.selecting(labels.SelectorFromSet(s.Spec.Selector))
	if len(ws) != 1 {
		t.Errorf("%s: selects the pods of %v, want exactly one workload", what, keys(ws))
		return
	}
	pt, _ := podSpecOf(ws[0])
	for _, sp := range s.Spec.Ports {
		found := false
		for _, c := range pt.Spec.Containers {
			for _, cp := range c.Ports {
				match := sp.TargetPort.Type == intstr.String && cp.Name == sp.TargetPort.StrVal ||
					sp.TargetPort.Type == intstr.Int && cp.ContainerPort == sp.TargetPort.IntVal
				if match && protocolOf(cp.Protocol) == protocolOf(sp.Protocol) {
					found = true
				}
			}
		}
		if !found {
			t.Errorf("%s: port %s targets %s, which %s's pods do not declare", what, sp.Name, sp.TargetPort.String(), ws[0].key())
		}
	}
}

func protocolOf(p corev1.Protocol) corev1.Protocol {
	if p == "" {
		return corev1.ProtocolTCP
	}
	return p
}

// checkServiceMonitor: it selects the Services labelled for metrics, each
// with the port it scrapes.
func checkServiceMonitor(t *testing.T, r rendered, what string, sm *monitoringv1.ServiceMonitor) {
	t.Helper()
	sel, err := metav1.LabelSelectorAsSelector(&sm.Spec.Selector)
	if err != nil || sel.Empty() {
		t.Errorf("%s: selector: %v", what, err)
		return
	}
	if len(sm.Spec.NamespaceSelector.MatchNames) != 1 || sm.Spec.NamespaceSelector.MatchNames[0] != namespace {
		t.Errorf("%s: namespaces %v", what, sm.Spec.NamespaceSelector.MatchNames)
	}
	var selected []string
	for _, o := range r.ofKind("Service") {
		s := o.Typed.(*corev1.Service)
		metrics := s.Labels["duet.io/metrics"] == "true"
		if sel.Matches(labels.Set(s.Labels)) != metrics {
			t.Errorf("%s: selects %s: %v, labelled for metrics: %v", what, o.key(), !metrics, metrics)
		}
		if !metrics {
			continue
		}
		selected = append(selected, o.Name)
		for _, ep := range sm.Spec.Endpoints {
			if !servicePortNamed(s, ep.Port) {
				t.Errorf("%s: %s has no port %q to scrape", what, o.key(), ep.Port)
			}
		}
	}
	if len(selected) == 0 {
		t.Errorf("%s: selects no Service", what)
	}
}

// The per-option checks, by values file (nameOf).
var scenarios = map[string]func(*testing.T, rendered){
	"default":        checkDefault,
	"etcd3":          checkEtcd3,
	"external-etcd":  checkExternalEtcd,
	"rdma":           checkRDMA,
	"rdma-network":   checkRDMANetwork,
	"gpu":            checkGPU,
	"ingress":        checkIngress,
	"autoscaling":    checkAutoscaling,
	"servicemonitor": checkServiceMonitorOn,
	"model-url":      checkModelURL,
	"model-hostpath": checkModelHostPath,
	"colocated":      checkColocated,
	"security":       checkSecurity,
}

func deployment(t *testing.T, r rendered, pool string) *appsv1.Deployment {
	t.Helper()
	return r.mustGet(t, "Deployment", "duet-"+pool).Typed.(*appsv1.Deployment)
}

func container(t *testing.T, d *appsv1.Deployment) corev1.Container {
	t.Helper()
	if len(d.Spec.Template.Spec.Containers) != 1 {
		t.Fatalf("%s: %d containers", d.Name, len(d.Spec.Template.Spec.Containers))
	}
	return d.Spec.Template.Spec.Containers[0]
}

func wantEnv(t *testing.T, c corev1.Container, name, want string) {
	t.Helper()
	if got, ok := env(c, name); !ok || got != want {
		t.Errorf("%s: %s=%q (set %v), want %q", c.Name, name, got, ok, want)
	}
}

func checkDefault(t *testing.T, r rendered) {
	svc := r.mustGet(t, "Service", "duet-router").Typed.(*corev1.Service)
	if svc.Spec.Type != corev1.ServiceTypeLoadBalancer || svc.Spec.Ports[0].Port != 80 {
		t.Errorf("router Service %s port %d, want a LoadBalancer on 80", svc.Spec.Type, svc.Spec.Ports[0].Port)
	}
	ss := r.mustGet(t, "StatefulSet", "duet-etcd").Typed.(*appsv1.StatefulSet)
	if *ss.Spec.Replicas != 1 || len(ss.Spec.VolumeClaimTemplates) != 0 || ss.Spec.Template.Spec.Containers[0].Image != "gcr.io/etcd-development/etcd:v3.7.3" {
		t.Errorf("etcd: %d members, %d claims, image %s", *ss.Spec.Replicas, len(ss.Spec.VolumeClaimTemplates), ss.Spec.Template.Spec.Containers[0].Image)
	}
	for _, k := range []string{"HorizontalPodAutoscaler", "Ingress", "ServiceMonitor"} {
		if n := len(r.ofKind(k)); n != 0 {
			t.Errorf("%d %s rendered by default", n, k)
		}
	}
	if n := len(r.ofKind("PodDisruptionBudget")); n != 3 {
		t.Errorf("%d PodDisruptionBudgets, want one per pool", n)
	}
	for pool, want := range map[string]struct {
		replicas     int32
		cmd, role    string
		drain, grace int64
		preStop      int64
	}{
		"router":  {2, "duet-router", "", 120, 140, 5},
		"prefill": {1, "duet-prefill", "prefill", 60, 75, 0},
		"decode":  {1, "duet-decode", "decode", 120, 135, 0},
	} {
		d := deployment(t, r, pool)
		c := container(t, d)
		if *d.Spec.Replicas != want.replicas || c.Command[0] != want.cmd {
			t.Errorf("%s: %d replicas, command %v", pool, *d.Spec.Replicas, c.Command)
		}
		if c.Image != "ghcr.io/duet-llm/duet:v0.1.0" {
			t.Errorf("%s: image %s", pool, c.Image)
		}
		if want.role != "" {
			wantEnv(t, c, "DUET_ROLE", want.role)
		}
		wantEnv(t, c, "DUET_DRAIN_TIMEOUT", fmt.Sprintf("%ds", want.drain))
		if g := *d.Spec.Template.Spec.TerminationGracePeriodSeconds; g != want.grace {
			t.Errorf("%s: grace %d, want %d", pool, g, want.grace)
		}
		var sleep int64
		if c.Lifecycle != nil && c.Lifecycle.PreStop != nil && c.Lifecycle.PreStop.Sleep != nil {
			sleep = c.Lifecycle.PreStop.Sleep.Seconds
		}
		if sleep != want.preStop {
			t.Errorf("%s: preStop sleep %d, want %d", pool, sleep, want.preStop)
		}
		wantEnv(t, c, "DUET_ID", "$(POD_NAME)")
		wantEnv(t, c, "DUET_ETCD_ENDPOINTS", "http://duet-etcd-0.duet-etcd-headless.duet-test.svc.cluster.local:2379")
		wantEnv(t, c, "DUET_CLUSTER_NAME", "duet")
		wantEnv(t, c, "DUET_MODEL", "/models/model.gguf")
		if c.SecurityContext.Capabilities == nil || len(c.SecurityContext.Capabilities.Add) != 0 {
			t.Errorf("%s: capabilities %+v", pool, c.SecurityContext.Capabilities)
		}
		v := d.Spec.Template.Spec.Volumes[0]
		if v.Name != "model" || v.PersistentVolumeClaim == nil || v.PersistentVolumeClaim.ClaimName != "duet-models" || !v.PersistentVolumeClaim.ReadOnly {
			t.Errorf("%s: model volume %+v", pool, v)
		}
		if pool != "router" {
			wantEnv(t, c, "DUET_GRPC_ADVERTISE", fmt.Sprintf("$(POD_IP):%d", c.Ports[0].ContainerPort))
			if c.ReadinessProbe.GRPC == nil || c.LivenessProbe.GRPC == nil || c.StartupProbe.GRPC == nil {
				t.Errorf("%s: probes are not gRPC health checks", pool)
			}
		}
	}
	dec := container(t, deployment(t, r, "decode"))
	wantEnv(t, dec, "DUET_KV_ADVERTISE", "$(POD_IP):9401")
	wantEnv(t, dec, "DUET_KV_MEMORY", "2GiB")
}

func checkEtcd3(t *testing.T, r rendered) {
	ss := r.mustGet(t, "StatefulSet", "duet-etcd").Typed.(*appsv1.StatefulSet)
	if *ss.Spec.Replicas != 3 || ss.Spec.PodManagementPolicy != appsv1.ParallelPodManagement {
		t.Errorf("etcd: %d members, %s", *ss.Spec.Replicas, ss.Spec.PodManagementPolicy)
	}
	if len(ss.Spec.VolumeClaimTemplates) != 1 || *ss.Spec.VolumeClaimTemplates[0].Spec.StorageClassName != "fast-ssd" ||
		ss.Spec.VolumeClaimTemplates[0].Spec.Resources.Requests.Storage().String() != "4Gi" {
		t.Errorf("etcd claims %+v", ss.Spec.VolumeClaimTemplates)
	}
	for _, v := range ss.Spec.Template.Spec.Volumes {
		if v.Name == "data" {
			t.Errorf("etcd: an emptyDir %q beside the claim template", v.Name)
		}
	}
	c := ss.Spec.Template.Spec.Containers[0]
	ic, _ := env(c, "ETCD_INITIAL_CLUSTER")
	if n := len(strings.Split(ic, ",")); n != 3 {
		t.Errorf("ETCD_INITIAL_CLUSTER has %d members: %s", n, ic)
	}
	r.mustGet(t, "PodDisruptionBudget", "duet-etcd")
	ep, _ := env(container(t, deployment(t, r, "decode")), "DUET_ETCD_ENDPOINTS")
	if n := len(strings.Split(ep, ",")); n != 3 {
		t.Errorf("nodes know %d etcd endpoints: %s", n, ep)
	}
}

func checkExternalEtcd(t *testing.T, r rendered) {
	if n := len(r.ofKind("StatefulSet")); n != 0 {
		t.Errorf("%d StatefulSets with an external etcd", n)
	}
	if _, ok := r.get("Service", "duet-etcd-headless"); ok {
		t.Error("etcd Service rendered with an external etcd")
	}
	for _, pool := range []string{"router", "prefill", "decode"} {
		d := deployment(t, r, pool)
		c := container(t, d)
		wantEnv(t, c, "DUET_ETCD_ENDPOINTS", "https://etcd-0.etcd.example:2379,https://etcd-1.etcd.example:2379,https://etcd-2.etcd.example:2379")
		wantEnv(t, c, "DUET_ETCD_CACERT", "/etc/duet/etcd-tls/ca.crt")
		wantEnv(t, c, "DUET_ETCD_CERT", "/etc/duet/etcd-tls/tls.crt")
		wantEnv(t, c, "DUET_ETCD_KEY", "/etc/duet/etcd-tls/tls.key")
		wantEnv(t, c, "DUET_ETCD_USERNAME", "duet")
		wantEnv(t, c, "DUET_ETCD_PASSWORD_FILE", "/etc/duet/etcd-auth/password")
		secrets := map[string]string{}
		for _, v := range d.Spec.Template.Spec.Volumes {
			if v.Secret != nil {
				secrets[v.Name] = v.Secret.SecretName
			}
		}
		if secrets["etcd-tls"] != "duet-etcd-tls" || secrets["etcd-auth"] != "duet-etcd-auth" {
			t.Errorf("%s: secret volumes %v", pool, secrets)
		}
	}
}

func hasCap(c corev1.Container, cp corev1.Capability) bool {
	if c.SecurityContext == nil || c.SecurityContext.Capabilities == nil {
		return false
	}
	for _, a := range c.SecurityContext.Capabilities.Add {
		if a == cp {
			return true
		}
	}
	return false
}

func checkRDMA(t *testing.T, r rendered) {
	for _, pool := range []string{"prefill", "decode"} {
		d := deployment(t, r, pool)
		ps := d.Spec.Template.Spec
		c := container(t, d)
		if !ps.HostNetwork || ps.DNSPolicy != corev1.DNSClusterFirstWithHostNet {
			t.Errorf("%s: hostNetwork %v dnsPolicy %q", pool, ps.HostNetwork, ps.DNSPolicy)
		}
		if !hasCap(c, "IPC_LOCK") || c.SecurityContext.RunAsUser == nil || *c.SecurityContext.RunAsUser != 0 {
			t.Errorf("%s: IPC_LOCK %v as user %v: the capability needs uid 0 (no ambient capabilities)", pool, hasCap(c, "IPC_LOCK"), c.SecurityContext.RunAsUser)
		}
		if !strings.HasSuffix(c.Image, ":v0.1.0-rdma") {
			t.Errorf("%s: image %s, want the rdma variant", pool, c.Image)
		}
		for _, rl := range []corev1.ResourceList{c.Resources.Limits, c.Resources.Requests} {
			if q, ok := rl["rdma/hca_shared_devices_a"]; !ok || q.Value() != 1 {
				t.Errorf("%s: no RDMA device in %v", pool, rl)
			}
		}
		if d.Spec.Template.Annotations["k8s.v1.cni.cncf.io/networks"] != "rdma-net" {
			t.Errorf("%s: annotations %v", pool, d.Spec.Template.Annotations)
		}
		wantEnv(t, c, "DUET_KV_TRANSPORT", "rdma")
	}
	// Gossip and metrics ports differ between the pools, so that a prefill
	// and a decode pod fit on one host's network.
	p := container(t, deployment(t, r, "prefill"))
	dc := container(t, deployment(t, r, "decode"))
	used := map[string]string{}
	for _, c := range []corev1.Container{p, dc} {
		for _, cp := range c.Ports {
			k := fmt.Sprintf("%d/%s", cp.ContainerPort, protocolOf(cp.Protocol))
			if prev, dup := used[k]; dup {
				t.Errorf("port %s used by %s and %s on the host network", k, prev, c.Name)
			}
			used[k] = c.Name
		}
	}
	rt := deployment(t, r, "router")
	rc := container(t, rt)
	if rt.Spec.Template.Spec.HostNetwork || hasCap(rc, "IPC_LOCK") || strings.Contains(rc.Image, "rdma") || rc.SecurityContext.RunAsUser != nil {
		t.Error("the router took RDMA settings")
	}
}

func checkGPU(t *testing.T, r rendered) {
	for pool, count := range map[string]int64{"prefill": 2, "decode": 1} {
		d := deployment(t, r, pool)
		c := container(t, d)
		if q := c.Resources.Limits["nvidia.com/gpu"]; q.Value() != count {
			t.Errorf("%s: %v GPUs, want %d", pool, q.Value(), count)
		}
		if q := c.Resources.Requests["nvidia.com/gpu"]; q.Value() != count {
			t.Errorf("%s: %v GPUs requested, want %d", pool, q.Value(), count)
		}
		if c.Resources.Limits.Cpu().String() != "4" {
			t.Errorf("%s: the cpu limit was lost: %v", pool, c.Resources.Limits)
		}
		tol := false
		for _, tl := range d.Spec.Template.Spec.Tolerations {
			tol = tol || tl.Key == "nvidia.com/gpu" && tl.Effect == corev1.TaintEffectNoSchedule
		}
		if !tol {
			t.Errorf("%s: no toleration of the GPU taint: %v", pool, d.Spec.Template.Spec.Tolerations)
		}
	}
	p := deployment(t, r, "prefill").Spec.Template.Spec
	if p.RuntimeClassName == nil || *p.RuntimeClassName != "nvidia" || p.NodeSelector["node.kubernetes.io/instance-type"] != "gpu-compute" ||
		len(p.Tolerations) != 2 || p.Affinity == nil || p.Affinity.PodAntiAffinity == nil {
		t.Errorf("prefill placement: runtime %v selector %v tolerations %v affinity %v", p.RuntimeClassName, p.NodeSelector, p.Tolerations, p.Affinity)
	}
	dspec := deployment(t, r, "decode").Spec.Template.Spec
	if dspec.RuntimeClassName != nil || len(dspec.TopologySpreadConstraints) != 1 {
		t.Errorf("decode placement: runtime %v spread %v", dspec.RuntimeClassName, dspec.TopologySpreadConstraints)
	}
	if _, ok := container(t, deployment(t, r, "router")).Resources.Limits["nvidia.com/gpu"]; ok {
		t.Error("the router asks for a GPU")
	}
}

func checkIngress(t *testing.T, r rendered) {
	ing := r.mustGet(t, "Ingress", "duet-router").Typed.(*networkingv1.Ingress)
	if ing.Spec.IngressClassName == nil || *ing.Spec.IngressClassName != "nginx" || len(ing.Spec.TLS) != 1 ||
		ing.Spec.Rules[0].Host != "llm.example.com" || ing.Spec.Rules[0].HTTP.Paths[0].Path != "/v1" {
		t.Errorf("ingress %+v", ing.Spec)
	}
	if ing.Annotations["nginx.ingress.kubernetes.io/proxy-buffering"] != "off" {
		t.Errorf("annotations %v", ing.Annotations)
	}
	svc := r.mustGet(t, "Service", "duet-router").Typed.(*corev1.Service)
	if svc.Spec.Type != corev1.ServiceTypeClusterIP {
		t.Errorf("router Service %s behind an Ingress", svc.Spec.Type)
	}
}

func checkAutoscaling(t *testing.T, r rendered) {
	for pool, want := range map[string][2]int32{"router": {2, 6}, "prefill": {2, 10}, "decode": {2, 12}} {
		h := r.mustGet(t, "HorizontalPodAutoscaler", "duet-"+pool).Typed.(*autoscalingv2.HorizontalPodAutoscaler)
		if *h.Spec.MinReplicas != want[0] || h.Spec.MaxReplicas != want[1] {
			t.Errorf("%s: %d..%d, want %v", pool, *h.Spec.MinReplicas, h.Spec.MaxReplicas, want)
		}
	}
	dh := r.mustGet(t, "HorizontalPodAutoscaler", "duet-decode").Typed.(*autoscalingv2.HorizontalPodAutoscaler)
	if dh.Spec.Metrics[0].Resource.Name != corev1.ResourceMemory {
		t.Errorf("decode metrics %+v", dh.Spec.Metrics)
	}
	ph := r.mustGet(t, "HorizontalPodAutoscaler", "duet-prefill").Typed.(*autoscalingv2.HorizontalPodAutoscaler)
	if ph.Spec.Behavior == nil || *ph.Spec.Behavior.ScaleDown.StabilizationWindowSeconds != 600 ||
		ph.Spec.Metrics[0].Resource.Target.AverageUtilization == nil || *ph.Spec.Metrics[0].Resource.Target.AverageUtilization != 80 {
		t.Errorf("prefill autoscaler %+v", ph.Spec)
	}
	pdb := r.mustGet(t, "PodDisruptionBudget", "duet-decode").Typed.(*policyv1.PodDisruptionBudget)
	if pdb.Spec.MinAvailable == nil || pdb.Spec.MinAvailable.String() != "50%" {
		t.Errorf("decode PDB %+v", pdb.Spec)
	}
}

func checkServiceMonitorOn(t *testing.T, r rendered) {
	sm := r.mustGet(t, "ServiceMonitor", "duet").Typed.(*monitoringv1.ServiceMonitor)
	if sm.Labels["release"] != "prometheus" || len(sm.Spec.Endpoints) != 1 || sm.Spec.Endpoints[0].Port != "metrics" ||
		string(sm.Spec.Endpoints[0].Interval) != "15s" || string(sm.Spec.Endpoints[0].ScrapeTimeout) != "10s" {
		t.Errorf("servicemonitor %+v", sm)
	}
	n := 0
	for _, o := range r.ofKind("Service") {
		if o.Typed.(*corev1.Service).Labels["duet.io/metrics"] == "true" {
			n++
		}
	}
	if n != 3 {
		t.Errorf("%d Services labelled for metrics, want router, prefill and decode", n)
	}
	for _, pool := range []string{"prefill", "decode"} {
		c := container(t, deployment(t, r, pool))
		listen, _ := env(c, "DUET_METRICS_LISTEN")
		port := ""
		for _, p := range c.Ports {
			if p.Name == "metrics" {
				port = fmt.Sprint(p.ContainerPort)
			}
		}
		if port == "" || listen != "0.0.0.0:"+port {
			t.Errorf("%s: DUET_METRICS_LISTEN %q, metrics port %q", pool, listen, port)
		}
	}
}

func checkModelURL(t *testing.T, r rendered) {
	for _, pool := range []string{"router", "prefill", "decode"} {
		d := deployment(t, r, pool)
		ps := d.Spec.Template.Spec
		if len(ps.InitContainers) != 1 || ps.InitContainers[0].Name != "fetch-model" {
			t.Fatalf("%s: init containers %v", pool, ps.InitContainers)
		}
		ic := ps.InitContainers[0]
		wantEnv(t, ic, "SHA256", "270cba1bd5109f42d03350f60406024560464db173c0e387d91f0426d3bd256d")
		wantEnv(t, ic, "FILE", "stories260K.gguf")
		if !strings.Contains(strings.Join(ic.Args, " "), "sha256sum -c") {
			t.Errorf("%s: the download is not checked: %v", pool, ic.Args)
		}
		v := ps.Volumes[0]
		if v.Name != "model" || v.EmptyDir == nil || v.EmptyDir.SizeLimit.String() != "1Gi" {
			t.Errorf("%s: model volume %+v", pool, v)
		}
		wantEnv(t, container(t, d), "DUET_MODEL", "/models/stories260K.gguf")
	}
}

func checkModelHostPath(t *testing.T, r rendered) {
	for _, pool := range []string{"router", "prefill", "decode"} {
		d := deployment(t, r, pool)
		v := d.Spec.Template.Spec.Volumes[0]
		if v.HostPath == nil || v.HostPath.Path != "/mnt/models" || *v.HostPath.Type != corev1.HostPathDirectory {
			t.Errorf("%s: model volume %+v", pool, v)
		}
		if len(d.Spec.Template.Spec.InitContainers) != 0 {
			t.Errorf("%s: init containers with a hostPath model", pool)
		}
	}
	svc := r.mustGet(t, "Service", "duet-router").Typed.(*corev1.Service)
	if svc.Spec.Type != corev1.ServiceTypeNodePort || svc.Spec.Ports[0].NodePort != 30080 || svc.Spec.ExternalTrafficPolicy != corev1.ServiceExternalTrafficPolicyLocal {
		t.Errorf("router Service %+v", svc.Spec)
	}
}

func checkColocated(t *testing.T, r rendered) {
	d := deployment(t, r, "decode")
	wantEnv(t, container(t, d), "DUET_ROLE", "both")
	if *d.Spec.Replicas != 3 || *deployment(t, r, "prefill").Spec.Replicas != 0 {
		t.Errorf("replicas decode %d prefill %d", *d.Spec.Replicas, *deployment(t, r, "prefill").Spec.Replicas)
	}
}

func checkSecurity(t *testing.T, r rendered) {
	rt := deployment(t, r, "router")
	rc := container(t, rt)
	wantEnv(t, rc, "DUET_API_KEYS_FILE", "/etc/duet/api-keys/api-keys")
	wantEnv(t, rc, "DUET_HTTP_MAX_CONCURRENT", "512")
	if len(rc.Args) != 1 || rc.Args[0] != "--attempts=5" {
		t.Errorf("router args %v", rc.Args)
	}
	mounted := false
	for _, m := range rc.VolumeMounts {
		mounted = mounted || m.Name == "api-keys" && m.MountPath == "/etc/duet/api-keys" && m.ReadOnly
	}
	if !mounted {
		t.Errorf("api keys not mounted: %v", rc.VolumeMounts)
	}
	for _, pool := range []string{"router", "prefill", "decode"} {
		d := deployment(t, r, pool)
		c := container(t, d)
		wantEnv(t, c, "DUET_CLUSTER_NAME", "duet-prod")
		ok := false
		for _, e := range c.Env {
			ok = ok || e.Name == "DUET_GOSSIP_KEY" && e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil &&
				e.ValueFrom.SecretKeyRef.Name == "duet-gossip" && e.ValueFrom.SecretKeyRef.Key == "gossip-key"
		}
		if !ok {
			t.Errorf("%s: gossip key not from the secret", pool)
		}
		if ps := d.Spec.Template.Spec.ImagePullSecrets; len(ps) != 1 || ps[0].Name != "regcred" {
			t.Errorf("%s: pull secrets %v", pool, ps)
		}
	}
	dc := container(t, deployment(t, r, "decode"))
	if dc.Lifecycle == nil || dc.Lifecycle.PreStop.Sleep.Seconds != 3 {
		t.Errorf("decode preStop %+v", dc.Lifecycle)
	}
	wantEnv(t, dc, "DUET_ZONE", "zone-a")
	if g := *deployment(t, r, "decode").Spec.Template.Spec.TerminationGracePeriodSeconds; g != 3+300+15 {
		t.Errorf("decode grace %d", g)
	}
	if g := *deployment(t, r, "prefill").Spec.Template.Spec.TerminationGracePeriodSeconds; g != 200 {
		t.Errorf("prefill grace %d, want the value given", g)
	}
}

func checkRDMANetwork(t *testing.T, r rendered) {
	d := deployment(t, r, "decode")
	c := container(t, d)
	if binaryOf(c.Command) != "duet-decode" || c.Command[0] != "/bin/sh" {
		t.Errorf("decode command %q, want the kvInterface wrapper around duet-decode", c.Command)
	}
	wantEnv(t, c, "KV_INTERFACE", "net1")
	wantEnv(t, c, "KV_PORT", "9401")
	if !strings.HasSuffix(c.Image, "-rdma") {
		t.Errorf("decode image %s: the wrapper needs the rdma image's shell and ip", c.Image)
	}
	for _, pool := range []string{"prefill", "decode"} {
		d := deployment(t, r, pool)
		if d.Spec.Template.Spec.HostNetwork {
			t.Errorf("%s on the host network", pool)
		}
		if d.Spec.Template.Annotations["k8s.v1.cni.cncf.io/networks"] != "sriov-rdma" {
			t.Errorf("%s: annotations %v", pool, d.Spec.Template.Annotations)
		}
		if q := container(t, d).Resources.Limits["nvidia.com/rdma_vf"]; q.Value() != 1 {
			t.Errorf("%s: limits %v", pool, container(t, d).Resources.Limits)
		}
	}
	for _, pool := range []string{"prefill", "decode"} {
		c := container(t, deployment(t, r, pool))
		if hasCap(c, "IPC_LOCK") || c.SecurityContext.RunAsUser != nil {
			t.Errorf("%s: IPC_LOCK or root with rdma.ipcLock off", pool)
		}
	}
	if p := container(t, deployment(t, r, "prefill")); len(p.Command) != 1 || p.Command[0] != "duet-prefill" {
		t.Errorf("prefill command %q: senders need no advertised KV address", p.Command)
	}
}
