{{/* Chart name, truncated to the 63 characters a DNS label allows. */}}
{{- define "readiness-exporter.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Fully qualified app name: release-name unless the release already contains it. */}}
{{- define "readiness-exporter.fullname" -}}
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

{{- define "readiness-exporter.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "readiness-exporter.selectorLabels" -}}
app.kubernetes.io/name: {{ include "readiness-exporter.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "readiness-exporter.labels" -}}
helm.sh/chart: {{ include "readiness-exporter.chart" . }}
{{ include "readiness-exporter.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: exporter
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "readiness-exporter.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "readiness-exporter.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "readiness-exporter.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag }}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository $tag }}
{{- end }}
{{- end }}

{{/*
The configuration file: .Values.config with settings.state_dir pointed at the mounted
state volume (unless the values set it).
*/}}
{{- define "readiness-exporter.config" -}}
{{- $config := omit (deepCopy (.Values.config | default dict)) "existingConfigMap" "existingConfigMapKey" }}
{{- $settings := get $config "settings" | default dict }}
{{- if not (hasKey $settings "state_dir") }}
{{- $_ := set $settings "state_dir" .Values.stateDir.path }}
{{- end }}
{{- $_ := set $config "settings" $settings }}
{{- toYaml $config }}
{{- end }}

{{- define "readiness-exporter.stateDir" -}}
{{- $settings := (.Values.config | default dict).settings | default dict }}
{{- $settings.state_dir | default .Values.stateDir.path }}
{{- end }}

{{/* http or https for probes and scrapes. */}}
{{- define "readiness-exporter.scheme" -}}
{{- if .Values.webConfig.tls }}https{{ else }}http{{ end }}
{{- end }}

{{/*
Read-only rules for what the kubernetes probe kinds list; Secrets only when enabled.
Namespaced resources only when $cluster is false (a Role cannot grant the others).
*/}}
{{- define "readiness-exporter.rbacRules" -}}
{{- $root := index . 0 }}
{{- $cluster := index . 1 }}
{{- $verbs := list "get" "list" "watch" -}}
- apiGroups: [""]
  resources:
    {{- if $cluster }}
    - namespaces
    {{- end }}
    - pods
    - configmaps
    - services
    - resourcequotas
    {{- if $root.Values.rbac.secrets.enabled }}
    - secrets
    {{- end }}
  verbs: {{ toJson $verbs }}
{{- if $root.Values.rbac.podLogs }}
- apiGroups: [""]
  resources: [pods/log]
  verbs: ["get"]
{{- end }}
- apiGroups: ["apps"]
  resources: [deployments, statefulsets, daemonsets]
  verbs: {{ toJson $verbs }}
- apiGroups: ["autoscaling"]
  resources: [horizontalpodautoscalers]
  verbs: {{ toJson $verbs }}
- apiGroups: ["policy"]
  resources: [poddisruptionbudgets]
  verbs: {{ toJson $verbs }}
- apiGroups: ["networking.k8s.io"]
  resources: [networkpolicies]
  verbs: {{ toJson $verbs }}
- apiGroups: ["rbac.authorization.k8s.io"]
  resources:
    - roles
    - rolebindings
    {{- if $cluster }}
    - clusterroles
    - clusterrolebindings
    {{- end }}
  verbs: {{ toJson $verbs }}
{{- if $root.Values.rbac.istio }}
- apiGroups: ["security.istio.io", "networking.istio.io"]
  resources: [peerauthentications, destinationrules]
  verbs: {{ toJson $verbs }}
{{- end }}
{{- if $root.Values.rbac.externalSecrets }}
- apiGroups: ["external-secrets.io"]
  resources: [externalsecrets]
  verbs: {{ toJson $verbs }}
{{- end }}
{{- with $root.Values.rbac.extraRules }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
"true" when the exporter needs the Kubernetes API: rbac.kubernetesChecks "always", or
"auto" and the configuration has a `kind: kubernetes` connection or check, includes a
preset of rbac.kubernetesPresets, or is an existing ConfigMap the chart cannot read.
*/}}
{{- define "readiness-exporter.usesKubernetes" -}}
{{- $mode := .Values.rbac.kubernetesChecks | default "auto" }}
{{- $config := .Values.config | default dict }}
{{- $found := eq $mode "always" }}
{{- if and (eq $mode "auto") $config.existingConfigMap }}
{{- $found = true }}
{{- end }}
{{- if eq $mode "auto" }}
{{- range $name, $connection := ($config.connections | default dict) }}
{{- if eq (toString (get ($connection | default dict) "kind")) "kubernetes" }}{{ $found = true }}{{ end }}
{{- end }}
{{- range ($config.checks | default list) }}
{{- if eq (toString (get (. | default dict) "kind")) "kubernetes" }}{{ $found = true }}{{ end }}
{{- end }}
{{- $includes := $config.include | default list }}
{{- if kindIs "string" $includes }}{{ $includes = list $includes }}{{ end }}
{{- range $includes }}
{{- if has . ($.Values.rbac.kubernetesPresets | default list) }}{{ $found = true }}{{ end }}
{{- end }}
{{- end }}
{{- if $found }}true{{ end }}
{{- end }}

{{/* Name of the ConfigMap holding config.yaml, and its key. */}}
{{- define "readiness-exporter.configMapName" -}}
{{- (.Values.config | default dict).existingConfigMap | default (include "readiness-exporter.fullname" .) }}
{{- end }}
{{- define "readiness-exporter.configMapKey" -}}
{{- (.Values.config | default dict).existingConfigMapKey | default "config.yaml" }}
{{- end }}
