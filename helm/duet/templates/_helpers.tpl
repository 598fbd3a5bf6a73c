{{/*
Names and labels. Every template name is prefixed "duet.".
*/}}

{{- define "duet.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The full name prefixes every object; it leaves room for "-router-headless". */}}
{{- define "duet.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "duet.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels every object carries. */}}
{{- define "duet.labels" -}}
helm.sh/chart: {{ include "duet.chart" . }}
{{ include "duet.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: duet
{{- end }}

{{- define "duet.selectorLabels" -}}
app.kubernetes.io/name: {{ include "duet.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Labels of one component's objects: (dict "root" $ "component" "router"). */}}
{{- define "duet.componentLabels" -}}
{{ include "duet.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* What a component's workload, Services, PDB select: (dict "root" $ "component" "router"). */}}
{{- define "duet.componentSelectorLabels" -}}
{{ include "duet.selectorLabels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "duet.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "duet.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The cluster name members register under. */}}
{{- define "duet.clusterName" -}}
{{- default (include "duet.fullname" .) .Values.clusterName }}
{{- end }}

{{/* The duet image: (dict "root" $ "rdma" true|false). */}}
{{- define "duet.image" -}}
{{- $img := .root.Values.image }}
{{- $tag := default .root.Chart.AppVersion $img.tag }}
{{- if .rdma }}{{ $tag = printf "%s%s" $tag .root.Values.rdma.imageTagSuffix }}{{ end }}
{{- printf "%s:%s" $img.repository $tag }}
{{- end }}

{{/* etcd's client URLs, comma-separated. */}}
{{- define "duet.etcdEndpoints" -}}
{{- if .Values.etcd.external.endpoints }}
{{- join "," .Values.etcd.external.endpoints }}
{{- else }}
{{- $fn := include "duet.fullname" . }}
{{- $urls := list }}
{{- range $i := until (int .Values.etcd.replicas) }}
{{- $urls = append $urls (printf "http://%s-etcd-%d.%s-etcd-headless.%s.svc.%s:2379" $fn $i $fn $.Release.Namespace $.Values.clusterDomain) }}
{{- end }}
{{- join "," $urls }}
{{- end }}
{{- end }}

{{/* The model's path inside the containers. */}}
{{- define "duet.modelPath" -}}
{{- printf "%s/%s" (trimSuffix "/" .Values.model.mountPath) .Values.model.file }}
{{- end }}

{{/* The id clients send as "model": the file name without its extension. */}}
{{- define "duet.modelID" -}}
{{- $f := .Values.model.file }}
{{- $ext := ext $f }}
{{- if $ext }}{{ trimSuffix $ext $f }}{{ else }}{{ $f }}{{ end }}
{{- end }}

{{- define "duet.etcdTLSMount" -}}/etc/duet/etcd-tls{{- end }}
{{- define "duet.etcdPasswordMount" -}}/etc/duet/etcd-auth{{- end }}

{{/*
Settings every duet process shares, as DUET_* variables:
(dict "root" $ "gossipPort" 7946 "drain" 30).
*/}}
{{- define "duet.commonEnv" -}}
{{- $v := .root.Values -}}
- name: POD_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
- name: POD_IP
  valueFrom:
    fieldRef:
      fieldPath: status.podIP
- name: NODE_NAME
  valueFrom:
    fieldRef:
      fieldPath: spec.nodeName
- name: DUET_ID
  value: $(POD_NAME)
- name: DUET_MODEL
  value: {{ include "duet.modelPath" .root | quote }}
- name: DUET_MAX_CONTEXT
  value: {{ $v.model.maxContext | quote }}
- name: DUET_CLUSTER_NAME
  value: {{ include "duet.clusterName" .root | quote }}
- name: DUET_ETCD_ENDPOINTS
  value: {{ include "duet.etcdEndpoints" .root | quote }}
{{- with $v.etcd.external }}
{{- if and .endpoints .tls.enabled }}
- name: DUET_ETCD_CACERT
  value: {{ printf "%s/%s" (include "duet.etcdTLSMount" $.root) .tls.caKey | quote }}
{{- if and .tls.certKey .tls.keyKey }}
- name: DUET_ETCD_CERT
  value: {{ printf "%s/%s" (include "duet.etcdTLSMount" $.root) .tls.certKey | quote }}
- name: DUET_ETCD_KEY
  value: {{ printf "%s/%s" (include "duet.etcdTLSMount" $.root) .tls.keyKey | quote }}
{{- end }}
{{- end }}
{{- if and .endpoints .auth.username }}
- name: DUET_ETCD_USERNAME
  value: {{ .auth.username | quote }}
- name: DUET_ETCD_PASSWORD_FILE
  value: {{ printf "%s/%s" (include "duet.etcdPasswordMount" $.root) .auth.passwordSecret.key | quote }}
{{- end }}
{{- end }}
- name: DUET_LEASE_TTL
  value: {{ printf "%ds" (int $v.leaseTTLSeconds) | quote }}
- name: DUET_GOSSIP
  value: {{ $v.gossip.enabled | quote }}
- name: DUET_GOSSIP_BIND
  value: {{ printf "0.0.0.0:%d" (int .gossipPort) | quote }}
- name: DUET_GOSSIP_ADVERTISE
  value: {{ printf "$(POD_IP):%d" (int .gossipPort) | quote }}
{{- if $v.gossip.keySecret.name }}
- name: DUET_GOSSIP_KEY
  valueFrom:
    secretKeyRef:
      name: {{ $v.gossip.keySecret.name }}
      key: {{ $v.gossip.keySecret.key }}
{{- end }}
- name: DUET_DRAIN_TIMEOUT
  value: {{ printf "%ds" (int .drain) | quote }}
- name: DUET_LOG_LEVEL
  value: {{ $v.logLevel | quote }}
- name: DUET_LOG_FORMAT
  value: {{ $v.logFormat | quote }}
{{- end }}

{{/* Volumes every duet pod has: the model, /tmp, etcd TLS and auth. */}}
{{- define "duet.volumes" -}}
{{- $v := .Values -}}
- name: model
{{- if eq $v.model.source "pvc" }}
  persistentVolumeClaim:
    claimName: {{ required "model.pvc.claimName is required with model.source=pvc" $v.model.pvc.claimName }}
    readOnly: true
{{- else if eq $v.model.source "hostPath" }}
  hostPath:
    path: {{ required "model.hostPath.path is required with model.source=hostPath" $v.model.hostPath.path }}
    {{- with $v.model.hostPath.type }}
    type: {{ . }}
    {{- end }}
{{- else if $v.model.url.cacheClaimName }}
  persistentVolumeClaim:
    claimName: {{ $v.model.url.cacheClaimName }}
{{- else }}
  emptyDir:
    sizeLimit: {{ $v.model.url.sizeLimit }}
{{- end }}
- name: tmp
  emptyDir:
    sizeLimit: 64Mi
{{- with $v.etcd.external }}
{{- if and .endpoints .tls.enabled }}
- name: etcd-tls
  secret:
    secretName: {{ required "etcd.external.tls.secretName is required with etcd.external.tls.enabled" .tls.secretName }}
    defaultMode: 0440
{{- end }}
{{- if and .endpoints .auth.username }}
- name: etcd-auth
  secret:
    secretName: {{ required "etcd.external.auth.passwordSecret.name is required with etcd.external.auth.username" .auth.passwordSecret.name }}
    defaultMode: 0440
{{- end }}
{{- end }}
{{- end }}

{{- define "duet.volumeMounts" -}}
{{- $v := .Values -}}
- name: model
  mountPath: {{ $v.model.mountPath }}
  readOnly: true
- name: tmp
  mountPath: /tmp
{{- with $v.etcd.external }}
{{- if and .endpoints .tls.enabled }}
- name: etcd-tls
  mountPath: {{ include "duet.etcdTLSMount" $ }}
  readOnly: true
{{- end }}
{{- if and .endpoints .auth.username }}
- name: etcd-auth
  mountPath: {{ include "duet.etcdPasswordMount" $ }}
  readOnly: true
{{- end }}
{{- end }}
{{- end }}

{{/* The init container that downloads the model (model.source=url). */}}
{{- define "duet.modelInit" -}}
{{- $v := .Values -}}
{{- if eq $v.model.source "url" }}
- name: fetch-model
  image: {{ $v.model.url.image }}
  imagePullPolicy: IfNotPresent
  command: ["/bin/sh", "-ec"]
  args:
    - |
      f="$DEST/$FILE"
      if [ -f "$f" ] && echo "$SHA256  $f" | sha256sum -c - >/dev/null 2>&1; then
        echo "model $f already present with the right checksum"; exit 0
      fi
      rm -f "$f.part"
      curl -fL --retry 5 --retry-delay 5 --connect-timeout 30 -o "$f.part" "$URL"
      if ! echo "$SHA256  $f.part" | sha256sum -c -; then
        echo "checksum mismatch for $URL: want $SHA256" >&2; rm -f "$f.part"; exit 1
      fi
      mv "$f.part" "$f"
  env:
    - name: URL
      value: {{ required "model.url.url is required with model.source=url" $v.model.url.url | quote }}
    - name: SHA256
      value: {{ required "model.url.sha256 is required with model.source=url" $v.model.url.sha256 | lower | quote }}
    - name: FILE
      value: {{ $v.model.file | quote }}
    - name: DEST
      value: /download
  resources:
    {{- toYaml $v.model.url.resources | nindent 4 }}
  securityContext:
    {{- toYaml $v.securityContext | nindent 4 }}
  volumeMounts:
    - name: model
      mountPath: /download
    - name: tmp
      mountPath: /tmp
{{- end }}
{{- end }}

{{/* terminationGracePeriodSeconds of a component's values: covers preStop and the drain. */}}
{{- define "duet.grace" -}}
{{- if .terminationGracePeriodSeconds }}
{{- .terminationGracePeriodSeconds }}
{{- else }}
{{- add .preStopSleepSeconds .drainTimeoutSeconds 15 }}
{{- end }}
{{- end }}

{{/* Probe timing of a component's values merged into a handler. */}}
{{- define "duet.probe" -}}
{{- $p := merge (deepCopy .handler) (deepCopy .timing) }}
{{- toYaml $p }}
{{- end }}

{{/* Checks that fail the render with a clear message. */}}
{{- define "duet.validate" -}}
{{- $v := .Values -}}
{{- if and (not $v.etcd.external.endpoints) (eq (int $v.etcd.replicas) 3) (not $v.etcd.persistence.enabled) }}
{{- fail "etcd.replicas=3 needs etcd.persistence.enabled=true: a member restarted with an empty data directory cannot rejoin its peers" }}
{{- end }}
{{- if and (ne $v.decode.role "both") (eq (int $v.prefill.replicas) 0) (not $v.prefill.autoscaling.enabled) }}
{{- fail "prefill.replicas=0 leaves no prefill node: set decode.role=both for colocated nodes" }}
{{- end }}
{{- if and $v.router.ingress.enabled (eq $v.router.service.type "LoadBalancer") }}
{{- fail "router.ingress.enabled with router.service.type=LoadBalancer opens two public endpoints: set router.service.type=ClusterIP" }}
{{- end }}
{{- if ne $v.prefill.blockTokens $v.decode.blockTokens }}
{{- fail "prefill.blockTokens and decode.blockTokens differ: KV moves block for block between the pools" }}
{{- end }}
{{- if ne $v.prefill.kvDtype $v.decode.kvDtype }}
{{- fail "prefill.kvDtype and decode.kvDtype differ: KV moves byte for byte between the pools" }}
{{- end }}
{{- end }}
