{{/* The name of the objects: the release name, or release-chart when it lacks the chart's name. */}}
{{- define "validator-webhook.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "validator-webhook.service" -}}
{{- printf "%s-service" (include "validator-webhook.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "validator-webhook.tlsSecret" -}}
{{- if eq .Values.certificate.source "secret" -}}
{{- required "certificate.secret.name is required when certificate.source is secret" .Values.certificate.secret.name -}}
{{- else -}}
{{- printf "%s-tls" (include "validator-webhook.fullname" .) -}}
{{- end -}}
{{- end -}}

{{/* The pods' labels, which the selectors match. */}}
{{- define "validator-webhook.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
{{- end -}}

{{/* Every object's labels: those deploy/ sets, and Helm's. */}}
{{- define "validator-webhook.labels" -}}
{{ include "validator-webhook.selectorLabels" . }}
app.kubernetes.io/part-of: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "validator-webhook.image" -}}
{{- $tag := .Values.image.tag | default .Chart.AppVersion -}}
{{- if .Values.image.digest -}}
{{- printf "%s:%s@%s" .Values.image.repository $tag .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository $tag -}}
{{- end -}}
{{- end -}}

{{/* The webhook's name in the ValidatingWebhookConfiguration: its Service's DNS name. */}}
{{- define "validator-webhook.webhookName" -}}
{{- printf "%s.%s.svc" (include "validator-webhook.fullname" .) .Release.Namespace -}}
{{- end -}}

{{/*
The generated CA and serving certificate, base64-encoded, as YAML: caBundle, caCrt, tlsCrt, tlsKey
and notAfter. Made once per render (both the Secret and the webhook configuration use it), and
kept from the Secret already in the cluster until renewDaysBefore its end, so that upgrades do
not change it. A renewed CA is bundled with the one it replaces: pods keep serving the old
certificate until the kubelet refreshes their volume, and the API server must trust both.
*/}}
{{- define "validator-webhook.generatedCertificate" -}}
{{- if not (hasKey . "validatorWebhookCertificate") -}}
{{- $gen := .Values.certificate.generate -}}
{{- $layout := "2006-01-02T15:04:05Z07:00" -}}
{{- $existing := lookup "v1" "Secret" .Release.Namespace (include "validator-webhook.tlsSecret" .) -}}
{{- $data := dig "data" dict $existing -}}
{{- $complete := and (hasKey $data "ca.crt") (hasKey $data "tls.crt") (hasKey $data "tls.key") -}}
{{- $notAfter := dig "metadata" "annotations" "validator-webhook/not-after" "" $existing -}}
{{- $keep := false -}}
{{- if and $complete $notAfter -}}
{{- $renewAt := toDate $layout $notAfter | dateModify (printf "-%dh" (mul $gen.renewDaysBefore 24)) -}}
{{- $keep = (now).Before $renewAt -}}
{{- end -}}
{{- $certificate := dict -}}
{{- if $keep -}}
{{- $certificate = dict "caBundle" (index $data "ca.crt") "caCrt" (index $data "ca.crt") "tlsCrt" (index $data "tls.crt") "tlsKey" (index $data "tls.key") "notAfter" $notAfter -}}
{{- else -}}
{{- $service := include "validator-webhook.service" . -}}
{{- $dnsNames := list (printf "%s.%s.svc" $service .Release.Namespace) (printf "%s.%s.svc.cluster.local" $service .Release.Namespace) -}}
{{- $ca := genCA (printf "%s CA" (include "validator-webhook.fullname" .)) (int $gen.validityDays) -}}
{{- $cert := genSignedCert (first $dnsNames) nil $dnsNames (int $gen.validityDays) $ca -}}
{{- $bundle := $ca.Cert -}}
{{- if hasKey $data "ca.crt" -}}
{{- $bundle = printf "%s%s" $ca.Cert (index $data "ca.crt" | b64dec) -}}
{{- end -}}
{{- $end := dateInZone $layout (now | dateModify (printf "%dh" (mul $gen.validityDays 24))) "UTC" -}}
{{- $certificate = dict "caBundle" ($bundle | b64enc) "caCrt" ($ca.Cert | b64enc) "tlsCrt" ($cert.Cert | b64enc) "tlsKey" ($cert.Key | b64enc) "notAfter" $end -}}
{{- end -}}
{{- $_ := set . "validatorWebhookCertificate" $certificate -}}
{{- end -}}
{{- index . "validatorWebhookCertificate" | toYaml -}}
{{- end -}}
