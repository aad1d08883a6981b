{{/* Name prefix of every object: "wasmless" unless overridden. Room is left for suffixes. */}}
{{- define "wasmless.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 45 | trimSuffix "-" -}}
{{- else -}}
{{- default .Chart.Name .Values.nameOverride | trunc 45 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "wasmless.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels of every object. */}}
{{- define "wasmless.labels" -}}
helm.sh/chart: {{ include "wasmless.chart" . }}
app.kubernetes.io/part-of: wasmless
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end -}}

{{/* The controller's pods. */}}
{{- define "wasmless.controller.selectorLabels" -}}
app.kubernetes.io/name: wasmless-controller
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: controller
{{- end -}}

{{/* The builder's pods. */}}
{{- define "wasmless.builder.selectorLabels" -}}
app.kubernetes.io/name: wasmless-builder
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: builder
{{- end -}}

{{- define "wasmless.builder.labels" -}}
{{ include "wasmless.labels" . }}
{{ include "wasmless.builder.selectorLabels" . }}
{{- end -}}

{{/* The builder Service's in-cluster URL. */}}
{{- define "wasmless.builder.url" -}}
{{- printf "http://%s-builder.%s:8091" (include "wasmless.fullname" .) .Release.Namespace -}}
{{- end -}}

{{/* A Secret's token: the value given, else the one the Secret already holds (kept across
upgrades), else a new random one. Call with (list . "<secret name>" <value>). */}}
{{- define "wasmless.secretToken" -}}
{{- $root := index . 0 -}}
{{- $name := index . 1 -}}
{{- $token := index . 2 -}}
{{- if not $token -}}
{{- $existing := lookup "v1" "Secret" $root.Release.Namespace $name -}}
{{- if and $existing $existing.data (hasKey $existing.data "token") -}}
{{- $token = index $existing.data "token" | b64dec -}}
{{- else -}}
{{- $token = randAlphaNum 48 -}}
{{- end -}}
{{- end -}}
{{- $token -}}
{{- end -}}

{{/* The Secret of the token hosts send the artifact server and the controller (and the CLI)
send the hosts' admin data. */}}
{{- define "wasmless.tokenSecret" -}}
{{- printf "%s-token" (include "wasmless.fullname" .) -}}
{{- end -}}

{{/* Where the controller and the hosts read that token. */}}
{{- define "wasmless.tokenFile" -}}
/var/run/wasmless/token
{{- end -}}

{{/* The Secret of the token Metacontroller sends the hooks. */}}
{{- define "wasmless.hookTokenSecret" -}}
{{- printf "%s-hook-token" (include "wasmless.fullname" .) -}}
{{- end -}}

{{/* Where the controller reads it. */}}
{{- define "wasmless.hookTokenFile" -}}
/var/run/wasmless-hook/token
{{- end -}}

{{/* Where the controller and the builder read the builder's token. */}}
{{- define "wasmless.builder.tokenFile" -}}
/var/run/wasmless-builder/token
{{- end -}}

{{/* The host pods: exactly what the controller's --host-selector names. */}}
{{- define "wasmless.host.selectorLabels" -}}
app.kubernetes.io/name: wasmless-host
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "wasmless.host.hostSelector" -}}
app.kubernetes.io/name=wasmless-host,app.kubernetes.io/instance={{ .Release.Name }}
{{- end -}}

{{- define "wasmless.controller.labels" -}}
{{ include "wasmless.labels" . }}
{{ include "wasmless.controller.selectorLabels" . }}
{{- end -}}

{{- define "wasmless.host.labels" -}}
{{ include "wasmless.labels" . }}
{{ include "wasmless.host.selectorLabels" . }}
app.kubernetes.io/component: host
{{- end -}}

{{/* "registry/repository:tag"; call with (list . .Values.host.image). */}}
{{- define "wasmless.image" -}}
{{- $root := index . 0 -}}
{{- $image := index . 1 -}}
{{- $tag := $image.tag | default $root.Values.image.tag | default $root.Chart.AppVersion -}}
{{- if $root.Values.image.registry -}}
{{- printf "%s/%s:%s" (trimSuffix "/" $root.Values.image.registry) $image.repository $tag -}}
{{- else -}}
{{- printf "%s:%s" $image.repository $tag -}}
{{- end -}}
{{- end -}}

{{/* The controller Service's in-cluster URL of the artifacts. */}}
{{- define "wasmless.controller.url" -}}
{{- printf "http://%s-controller.%s:8090" (include "wasmless.fullname" .) .Release.Namespace -}}
{{- end -}}

{{/* The controller Service's in-cluster URL of the Metacontroller hooks (a port of their own). */}}
{{- define "wasmless.controller.hookUrl" -}}
{{- printf "http://%s-controller.%s:8092" (include "wasmless.fullname" .) .Release.Namespace -}}
{{- end -}}

{{/* native, or metacontroller when the chart wires Metacontroller up. */}}
{{- define "wasmless.controller.mode" -}}
{{- if .Values.metacontroller.enabled -}}metacontroller{{- else -}}native{{- end -}}
{{- end -}}

{{/* The claim of the artifact store, empty without persistence. */}}
{{- define "wasmless.store.claim" -}}
{{- if .Values.store.persistence -}}
{{- .Values.store.existingClaim | default (printf "%s-store" (include "wasmless.fullname" .)) -}}
{{- end -}}
{{- end -}}

{{/* The host.config value of each host flag. */}}
{{- define "wasmless.host.flags" -}}
maxBody: max-body
logLines: log-lines
funcPort: func-port
maxMemory: max-memory
totalCoreInstances: total-core-instances
totalComponentInstances: total-component-instances
totalMemories: total-memories
totalTables: total-tables
totalStacks: total-stacks
keepResident: keep-resident
epochTickMs: epoch-tick-ms
maxConcurrency: max-concurrency
maxConcurrencyPerFunction: max-concurrency-per-function
maxQueued: max-queued
maxQueuedPerFunction: max-queued-per-function
queueTimeoutMs: queue-timeout-ms
memoryBudget: memory-budget
maxTimeout: max-timeout
maxStdout: max-stdout
maxLogBytes: max-log-bytes
bodyTimeoutMs: body-timeout-ms
headerTimeoutMs: header-timeout-ms
maxHeaderBytes: max-header-bytes
maxHeaders: max-headers
maxConnections: max-connections
maxWarmInstances: max-warm-instances
warmMemory: warm-memory
fetchConcurrency: fetch-concurrency
fetchTimeoutMs: fetch-timeout-ms
cacheMaxBytes: artifact-cache-max-bytes
drainQuietMs: drain-quiet-ms
drainMaxMs: drain-max-ms
{{- end -}}

{{/* `--flag=value` args for each set host.config value, in a stable order. */}}
{{- define "wasmless.host.configArgs" -}}
{{- $flags := include "wasmless.host.flags" . | fromYaml -}}
{{- $config := .Values.host.config | default dict -}}
{{- range $key, $value := $config -}}
{{- if not (hasKey $flags $key) -}}
{{- fail (printf "host.config.%s is not a host setting; known: %s" $key (keys $flags | sortAlpha | join ", ")) -}}
{{- end -}}
{{- end -}}
{{- range $key := keys $flags | sortAlpha -}}
{{- $value := index $config $key -}}
{{- if or (kindIs "float64" $value) (kindIs "int64" $value) (kindIs "int" $value) }}
{{ printf "--%s=%d" (index $flags $key) (int64 $value) | quote | printf "- %s" }}
{{- else if and (not (kindIs "invalid" $value)) (ne (toString $value) "") }}
{{ printf "--%s=%s" (index $flags $key) (toString $value) | quote | printf "- %s" }}
{{- end -}}
{{- end -}}
{{- end -}}
