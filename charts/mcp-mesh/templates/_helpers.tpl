{{/*
Names and labels. The test (test/unit/deploy/chart.test.ts) reads these defines to compare the chart
with deploy/: keep each define plain (labels, names), with no logic beyond what is here.
*/}}
{{- define "mcp-mesh.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Release "mcp-mesh" (or any name containing it) gives "mcp-mesh"; release "x" gives "x-mcp-mesh". */}}
{{- define "mcp-mesh.fullname" -}}
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

{{- define "mcp-mesh.selectorLabels" -}}
app.kubernetes.io/name: {{ include "mcp-mesh.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "mcp-mesh.labels" -}}
{{ include "mcp-mesh.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end }}

{{- define "mcp-mesh.injectorSelectorLabels" -}}
{{ include "mcp-mesh.selectorLabels" . }}
app.kubernetes.io/component: injector
{{- end }}

{{- define "mcp-mesh.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end }}

{{/* Namespaces whose pods run sidecars, plus the release namespace (which keeps the master copy of the token key). */}}
{{- define "mcp-mesh.secretNamespaces" -}}
{{- prepend .Values.meshNamespaces .Release.Namespace | uniq | toJson }}
{{- end }}

{{/*
The webhook's serving certificate when cert-manager is not used: the Secret's current contents if it
exists (an upgrade keeps the CA the API server already trusts), else a new CA and a certificate signed
by it. Returns YAML with base64 values; called once per template run (in webhook.yaml), so the Secret
and the caBundle always come from the same run.
*/}}
{{- define "mcp-mesh.webhookTLS" -}}
{{- $fullname := include "mcp-mesh.fullname" . }}
{{- $svc := printf "%s-injector" $fullname }}
{{- $existing := lookup "v1" "Secret" .Release.Namespace (printf "%s-webhook-tls" $fullname) }}
{{- if and $existing $existing.data (hasKey $existing.data "ca.crt") (hasKey $existing.data "tls.crt") (hasKey $existing.data "tls.key") }}
caCert: {{ index $existing.data "ca.crt" }}
cert: {{ index $existing.data "tls.crt" }}
key: {{ index $existing.data "tls.key" }}
{{- else }}
{{- $days := int .Values.selfSignedCert.validityDays }}
{{- $dns := list $svc (printf "%s.%s" $svc .Release.Namespace) (printf "%s.%s.svc" $svc .Release.Namespace) (printf "%s.%s.svc.cluster.local" $svc .Release.Namespace) }}
{{- $ca := genCA (printf "%s-webhook-ca" $fullname) $days }}
{{- $cert := genSignedCert (printf "%s.%s.svc" $svc .Release.Namespace) nil $dns $days $ca }}
caCert: {{ $ca.Cert | b64enc }}
cert: {{ $cert.Cert | b64enc }}
key: {{ $cert.Key | b64enc }}
{{- end }}
{{- end }}
