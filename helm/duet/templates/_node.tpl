{{/*
One node pool (prefill or decode): its Deployment, headless Service,
PodDisruptionBudget and HorizontalPodAutoscaler. Called as
(dict "root" $ "component" "prefill" "values" .Values.prefill).

Scaling a pool changes only its own Deployment. A pod that gets SIGTERM
drains: it marks itself draining in etcd and gossip (routers stop sending
to it at once), finishes what it has within drainTimeoutSeconds, then
revokes its lease; terminationGracePeriodSeconds is sized above that.
*/}}
{{- define "duet.node" -}}
{{- $root := .root }}
{{- $c := .component }}
{{- $v := .values }}
{{- $rdma := $root.Values.rdma }}
{{- $fullname := include "duet.fullname" $root }}
{{- $sel := dict "root" $root "component" $c }}
{{- $decode := eq $c "decode" }}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ $fullname }}-{{ $c }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "duet.componentLabels" $sel | nindent 4 }}
spec:
  {{- if not $v.autoscaling.enabled }}
  replicas: {{ $v.replicas }}
  {{- end }}
  revisionHistoryLimit: 5
  strategy:
    {{- toYaml $v.updateStrategy | nindent 4 }}
  selector:
    matchLabels:
      {{- include "duet.componentSelectorLabels" $sel | nindent 6 }}
  template:
    metadata:
      labels:
        {{- include "duet.componentLabels" $sel | nindent 8 }}
        {{- with $v.podLabels }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      {{- $ann := deepCopy $v.podAnnotations }}
      {{- if and $rdma.enabled $rdma.networks }}
      {{- $_ := set $ann "k8s.v1.cni.cncf.io/networks" $rdma.networks }}
      {{- end }}
      {{- with $ann }}
      annotations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
    spec:
      serviceAccountName: {{ include "duet.serviceAccountName" $root }}
      automountServiceAccountToken: false
      # Service links would inject variables such as <RELEASE>_DECODE_PORT,
      # which read like DUET_* flags when the release is named duet.
      enableServiceLinks: false
      terminationGracePeriodSeconds: {{ include "duet.grace" $v }}
      {{- with $root.Values.imagePullSecrets }}
      imagePullSecrets:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $v.priorityClassName }}
      priorityClassName: {{ . }}
      {{- end }}
      {{- if and $v.gpu.enabled $v.gpu.runtimeClassName }}
      runtimeClassName: {{ $v.gpu.runtimeClassName }}
      {{- end }}
      {{- if and $rdma.enabled $rdma.hostNetwork }}
      hostNetwork: true
      dnsPolicy: ClusterFirstWithHostNet
      {{- end }}
      securityContext:
        {{- toYaml $root.Values.podSecurityContext | nindent 8 }}
      {{- with (include "duet.modelInit" $root) }}
      initContainers:
        {{- . | nindent 8 }}
      {{- end }}
      containers:
        - name: {{ $c }}
          image: {{ include "duet.image" (dict "root" $root "rdma" $rdma.enabled) }}
          imagePullPolicy: {{ $root.Values.image.pullPolicy }}
          {{- if and $decode $rdma.enabled $rdma.kvInterface }}
          # rdma.kvInterface: advertise that interface's address for KV, so
          # that senders reach this pool over the RDMA network.
          command:
            - /bin/sh
            - -ec
            - |
              ip=$(ip -4 -o addr show dev "$KV_INTERFACE" | awk '{split($4, a, "/"); print a[1]; exit}')
              if [ -z "$ip" ]; then echo "rdma.kvInterface: no IPv4 address on $KV_INTERFACE" >&2; exit 1; fi
              export DUET_KV_ADVERTISE="$ip:$KV_PORT"
              exec "$0" "$@"
            - duet-decode
          {{- else }}
          command: [{{ ternary "duet-decode" "duet-prefill" $decode | quote }}]
          {{- end }}
          {{- with $v.extraArgs }}
          args:
            {{- toYaml . | nindent 12 }}
          {{- end }}
          env:
            {{- include "duet.commonEnv" (dict "root" $root "gossipPort" $v.ports.gossip "drain" $v.drainTimeoutSeconds) | nindent 12 }}
            - name: DUET_ROLE
              value: {{ ternary (get $v "role") "prefill" $decode | quote }}
            - name: DUET_HOST
              value: $(NODE_NAME)
            - name: DUET_GRPC_LISTEN
              value: {{ printf "0.0.0.0:%d" (int $v.ports.grpc) | quote }}
            - name: DUET_GRPC_ADVERTISE
              value: {{ printf "$(POD_IP):%d" (int $v.ports.grpc) | quote }}
            {{- if $decode }}
            - name: DUET_KV_LISTEN
              value: {{ printf "0.0.0.0:%d" (int $v.ports.kv) | quote }}
            - name: DUET_KV_ADVERTISE
              value: {{ printf "$(POD_IP):%d" (int $v.ports.kv) | quote }}
            {{- if and $rdma.enabled $rdma.kvInterface }}
            - name: KV_INTERFACE
              value: {{ $rdma.kvInterface | quote }}
            - name: KV_PORT
              value: {{ $v.ports.kv | quote }}
            {{- end }}
            {{- end }}
            - name: DUET_METRICS_LISTEN
              value: {{ ternary (printf "0.0.0.0:%d" (int $v.ports.metrics)) "" $root.Values.metrics.enabled | quote }}
            - name: DUET_KV_MEMORY
              value: {{ $v.kvMemory | quote }}
            - name: DUET_KV_BLOCKS
              value: {{ $v.kvBlocks | quote }}
            - name: DUET_KV_DTYPE
              value: {{ $v.kvDtype | quote }}
            - name: DUET_BLOCK_TOKENS
              value: {{ $v.blockTokens | quote }}
            - name: DUET_MAX_BATCH_TOKENS
              value: {{ $v.maxBatchTokens | quote }}
            - name: DUET_MAX_SEQS
              value: {{ $v.maxSeqs | quote }}
            - name: DUET_THREADS
              value: {{ $v.threads | quote }}
            - name: DUET_KV_TRANSPORT
              value: {{ $v.kvTransport | quote }}
            {{- with $v.extraEnv }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
          ports:
            - name: grpc
              containerPort: {{ $v.ports.grpc }}
              protocol: TCP
            {{- if $decode }}
            - name: kv
              containerPort: {{ $v.ports.kv }}
              protocol: TCP
            {{- end }}
            {{- if $root.Values.gossip.enabled }}
            - name: gossip-tcp
              containerPort: {{ $v.ports.gossip }}
              protocol: TCP
            - name: gossip-udp
              containerPort: {{ $v.ports.gossip }}
              protocol: UDP
            {{- end }}
            {{- if $root.Values.metrics.enabled }}
            - name: metrics
              containerPort: {{ $v.ports.metrics }}
              protocol: TCP
            {{- end }}
          startupProbe:
            {{- include "duet.probe" (dict "handler" (dict "grpc" (dict "port" (int $v.ports.grpc))) "timing" $v.startupProbe) | nindent 12 }}
          readinessProbe:
            {{- include "duet.probe" (dict "handler" (dict "grpc" (dict "port" (int $v.ports.grpc))) "timing" $v.readinessProbe) | nindent 12 }}
          livenessProbe:
            {{- include "duet.probe" (dict "handler" (dict "grpc" (dict "port" (int $v.ports.grpc))) "timing" $v.livenessProbe) | nindent 12 }}
          {{- if gt (int $v.preStopSleepSeconds) 0 }}
          lifecycle:
            preStop:
              sleep:
                seconds: {{ $v.preStopSleepSeconds }}
          {{- end }}
          {{- $res := deepCopy $v.resources }}
          {{- $extra := dict }}
          {{- if $rdma.enabled }}{{ $extra = merge $extra $rdma.resources }}{{ end }}
          {{- if $v.gpu.enabled }}{{ $_ := set $extra $v.gpu.resourceName $v.gpu.count }}{{ end }}
          {{- if $extra }}
          {{- $_ := set $res "limits" (merge (default (dict) $res.limits) $extra) }}
          {{- $_ := set $res "requests" (merge (default (dict) $res.requests) $extra) }}
          {{- end }}
          resources:
            {{- toYaml $res | nindent 12 }}
          {{- $sc := deepCopy $root.Values.securityContext }}
          {{- if and $rdma.enabled $rdma.ipcLock }}
          {{- /* Kubernetes sets no ambient capabilities, so an added
                 capability takes effect only for uid 0: run as root with
                 every capability dropped but IPC_LOCK. */}}
          {{- $caps := default (dict) $sc.capabilities }}
          {{- $_ := set $caps "add" (append (default (list) (get $caps "add")) "IPC_LOCK" | uniq) }}
          {{- $_ := set $sc "capabilities" $caps }}
          {{- $_ := set $sc "runAsUser" 0 }}
          {{- $_ := set $sc "runAsNonRoot" false }}
          {{- end }}
          securityContext:
            {{- toYaml $sc | nindent 12 }}
          volumeMounts:
            {{- include "duet.volumeMounts" $root | nindent 12 }}
      volumes:
        {{- include "duet.volumes" $root | nindent 8 }}
      {{- $tolerations := $v.tolerations }}
      {{- if $v.gpu.enabled }}
      {{- $tolerations = append $tolerations (dict "key" $v.gpu.resourceName "operator" "Exists" "effect" "NoSchedule") }}
      {{- end }}
      {{- with $tolerations }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $v.nodeSelector }}
      nodeSelector:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $v.affinity }}
      affinity:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $v.topologySpreadConstraints }}
      topologySpreadConstraints:
        {{- toYaml . | nindent 8 }}
      {{- end }}
---
# Headless: DNS names of the pool's pods and the `metrics` port for scraping.
# Routers do not use it: they find nodes in etcd.
apiVersion: v1
kind: Service
metadata:
  name: {{ $fullname }}-{{ $c }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "duet.componentLabels" $sel | nindent 4 }}
    {{- if $root.Values.metrics.enabled }}
    duet.io/metrics: "true"
    {{- end }}
spec:
  clusterIP: None
  selector:
    {{- include "duet.componentSelectorLabels" $sel | nindent 4 }}
  ports:
    - name: grpc
      port: {{ $v.ports.grpc }}
      targetPort: grpc
      protocol: TCP
    {{- if $decode }}
    - name: kv
      port: {{ $v.ports.kv }}
      targetPort: kv
      protocol: TCP
    {{- end }}
    {{- if $root.Values.metrics.enabled }}
    - name: metrics
      port: {{ $v.ports.metrics }}
      targetPort: metrics
      protocol: TCP
    {{- end }}
{{- if $v.pdb.enabled }}
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ $fullname }}-{{ $c }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "duet.componentLabels" $sel | nindent 4 }}
spec:
  {{- if not (kindIs "invalid" $v.pdb.minAvailable) }}
  minAvailable: {{ $v.pdb.minAvailable }}
  {{- else }}
  maxUnavailable: {{ $v.pdb.maxUnavailable }}
  {{- end }}
  selector:
    matchLabels:
      {{- include "duet.componentSelectorLabels" $sel | nindent 6 }}
{{- end }}
{{- if $v.autoscaling.enabled }}
---
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: {{ $fullname }}-{{ $c }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "duet.componentLabels" $sel | nindent 4 }}
spec:
  scaleTargetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: {{ $fullname }}-{{ $c }}
  minReplicas: {{ $v.autoscaling.minReplicas }}
  maxReplicas: {{ $v.autoscaling.maxReplicas }}
  metrics:
    {{- if $v.autoscaling.metrics }}
    {{- toYaml $v.autoscaling.metrics | nindent 4 }}
    {{- else }}
    - type: Resource
      resource:
        name: cpu
        target:
          type: Utilization
          averageUtilization: {{ $v.autoscaling.targetCPUUtilizationPercentage }}
    {{- end }}
  {{- with $v.autoscaling.behavior }}
  behavior:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}
{{- end }}
