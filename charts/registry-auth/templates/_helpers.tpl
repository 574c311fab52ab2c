{{/*
Names and labels.
*/}}
{{- define "registry-auth.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "registry-auth.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "registry-auth.selectorLabels" -}}
app.kubernetes.io/name: {{ include "registry-auth.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "registry-auth.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "registry-auth.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "registry-auth.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "registry-auth.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "registry-auth.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/*
The port of a `host:port` (the part after the last colon).
*/}}
{{- define "registry-auth.portOf" -}}
{{- regexReplaceAll "^.*:" (toString .) "" }}
{{- end }}

{{/*
The container port: config.server.addr's port (5001 when addr is not set).
*/}}
{{- define "registry-auth.port" -}}
{{- include "registry-auth.portOf" (dig "server" "addr" "127.0.0.1:5001" .Values.config) }}
{{- end }}

{{/*
config.server.path_prefix without a trailing slash ("" for none).
*/}}
{{- define "registry-auth.pathPrefix" -}}
{{- dig "server" "path_prefix" "" .Values.config | toString | trimSuffix "/" }}
{{- end }}

{{/*
HTTPS when registry-auth itself terminates TLS (config.server.certificate), else HTTP.
*/}}
{{- define "registry-auth.scheme" -}}
{{- if dig "server" "certificate" "" .Values.config }}HTTPS{{ else }}HTTP{{ end }}
{{- end }}

{{/*
The Secret of a `secrets` entry: its existingSecret, or the one the chart creates.
*/}}
{{- define "registry-auth.secretName" -}}
{{- $ctx := index . 0 }}{{- $name := index . 1 }}{{- $spec := index . 2 }}
{{- if $spec.existingSecret }}
{{- $spec.existingSecret }}
{{- else }}
{{- printf "%s-%s" (include "registry-auth.fullname" $ctx) $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{/*
Checks that fail the install with a message instead of pods that crash.
*/}}
{{- define "registry-auth.validate" -}}
{{- $generate := dig "token" "generate" false .Values.config }}
{{- if and $generate (gt (int .Values.replicaCount) 1) }}
{{- fail "config.token.generate: true makes every pod create its own signing key, so the registry would trust only one of them: set replicaCount: 1 (with persistence.enabled: true so the key survives restarts), or give every replica the same key with secrets.token and generate: false" }}
{{- end }}
{{- $token := (get (.Values.secrets | default dict) "token") | default dict }}
{{- if and (not $generate) (not $token.existingSecret) (not $token.data) }}
{{- fail "the token signing key is missing: create it with `registry-auth gen-keys --key tls.key --certificate tls.crt && kubectl create secret tls registry-auth-token --key tls.key --cert tls.crt` and set secrets.token.existingSecret=registry-auth-token (or, for one replica only, config.token.generate=true with key and certificate under /data)" }}
{{- end }}
{{- $addr := dig "server" "addr" "127.0.0.1:5001" .Values.config | toString }}
{{- if or (hasPrefix "127." $addr) (hasPrefix "localhost" $addr) (hasPrefix "[::1]" $addr) }}
{{- fail (printf "config.server.addr is %s, a loopback address: the kubelet's probes and the Service cannot reach it; use 0.0.0.0:PORT" $addr) }}
{{- end }}
{{- if eq (dig "server" "net" "tcp" .Values.config) "unix" }}
{{- fail "config.server.net: unix is not supported by this chart (the probes and the Service need TCP)" }}
{{- end }}
{{- range $name, $spec := .Values.secrets }}
{{- if and $spec (not $spec.existingSecret) (not $spec.data) (ne $name "token") }}
{{- fail (printf "secrets.%s: set existingSecret or data" $name) }}
{{- end }}
{{- end }}
{{- end }}
