{{/* Names, labels and the environment every Jobline container shares. */}}

{{- define "jobline.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "jobline.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains (include "jobline.name" .) .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name (include "jobline.name" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "jobline.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "jobline.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: jobline
{{- end -}}

{{/* Selector labels of one component: (dict "root" $ "component" "gateway") */}}
{{- define "jobline.selector" -}}
app.kubernetes.io/name: {{ include "jobline.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "jobline.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "jobline.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* image: (dict "root" $ "image" <override or empty dict>) */}}
{{- define "jobline.image" -}}
{{- $image := default dict .image -}}
{{- $repository := default .root.Values.image.repository $image.repository -}}
{{- $tag := default (default .root.Chart.AppVersion .root.Values.image.tag) $image.tag -}}
{{- printf "%s:%s" $repository $tag -}}
{{- end -}}

{{- define "jobline.databaseSecretName" -}}
{{- default (printf "%s-database" (include "jobline.fullname" .)) .Values.database.existingSecret -}}
{{- end -}}

{{/* Every queue any worker pool consumes, comma-separated, for `jobline topics ensure`. */}}
{{- define "jobline.allQueues" -}}
{{- $queues := list -}}
{{- range .Values.workers -}}
{{- $queues = concat $queues .queues -}}
{{- end -}}
{{- $queues | uniq | join "," -}}
{{- end -}}

{{/* The environment of every Jobline container (settings.py of each service). */}}
{{- define "jobline.env" -}}
- name: JOBLINE_DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "jobline.databaseSecretName" . }}
      key: {{ .Values.database.existingSecretKey }}
- name: JOBLINE_KAFKA_BOOTSTRAP
  value: {{ required "kafka.bootstrap is required (host:9092[,host:9092])" .Values.kafka.bootstrap | quote }}
- name: JOBLINE_TOPIC_PREFIX
  value: {{ .Values.kafka.topicPrefix | quote }}
- name: JOBLINE_TOPIC_PARTITIONS
  value: {{ .Values.kafka.topicPartitions | quote }}
- name: JOBLINE_ENV
  value: {{ .Values.env | quote }}
- name: JOBLINE_LOG_LEVEL
  value: {{ .Values.logLevel | quote }}
- name: JOBLINE_LOG_FORMAT
  value: {{ .Values.logFormat | quote }}
- name: JOBLINE_HTTP_HOST
  value: "0.0.0.0"
- name: JOBLINE_DB_POOL_SIZE
  value: {{ .Values.database.poolSize | quote }}
- name: JOBLINE_DB_MAX_OVERFLOW
  value: {{ .Values.database.maxOverflow | quote }}
{{- with .Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Per-component variables from a map: (dict "env" .env) */}}
{{- define "jobline.componentEnv" -}}
{{- range $name, $value := .env }}
- name: {{ $name }}
  value: {{ $value | quote }}
{{- end }}
{{- end -}}

{{/* Probes on the service's port: /readyz for readiness, /healthz for liveness and start-up. */}}
{{- define "jobline.probes" -}}
{{- $p := .root.Values.probes -}}
startupProbe:
  httpGet: {path: /healthz, port: http}
  periodSeconds: {{ $p.startup.periodSeconds }}
  timeoutSeconds: {{ $p.startup.timeoutSeconds }}
  failureThreshold: {{ $p.startup.failureThreshold }}
readinessProbe:
  httpGet: {path: /readyz, port: http}
  periodSeconds: {{ $p.readiness.periodSeconds }}
  timeoutSeconds: {{ $p.readiness.timeoutSeconds }}
  failureThreshold: {{ $p.readiness.failureThreshold }}
livenessProbe:
  httpGet: {path: /healthz, port: http}
  periodSeconds: {{ $p.liveness.periodSeconds }}
  timeoutSeconds: {{ $p.liveness.timeoutSeconds }}
  failureThreshold: {{ $p.liveness.failureThreshold }}
{{- end -}}

{{/* Pod-level settings of every Deployment: (dict "root" $ "c" <values> "component" <name>) */}}
{{- define "jobline.podCommon" -}}
serviceAccountName: {{ include "jobline.serviceAccountName" .root }}
automountServiceAccountToken: false
{{- with .root.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- toYaml .root.Values.podSecurityContext | nindent 2 }}
{{- with .c.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .c.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .c.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
topologySpreadConstraints:
  - maxSkew: 1
    topologyKey: kubernetes.io/hostname
    whenUnsatisfiable: ScheduleAnyway
    labelSelector:
      matchLabels:
        {{- include "jobline.selector" (dict "root" .root "component" .component) | nindent 8 }}
volumes:
  - name: tmp
    emptyDir: {}
{{- end -}}
