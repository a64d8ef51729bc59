{{/* Names and labels shared by every template. */}}

{{/* The release's base name: the release name when it already says "trainpipe", else <release>-trainpipe. */}}
{{- define "trainpipe.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 54 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 54 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "trainpipe.labels" -}}
app.kubernetes.io/part-of: trainpipe
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{/* Selects the operator's pods; never changes between upgrades (a Deployment's selector is immutable). */}}
{{- define "trainpipe.operatorSelector" -}}
app.kubernetes.io/name: trainpipe-operator
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "trainpipe.operatorName" -}}
{{- printf "%s-operator" (include "trainpipe.fullname" .) -}}
{{- end -}}

{{- define "trainpipe.operatorServiceAccount" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "trainpipe.operatorName" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name: name the operator's existing ServiceAccount when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "trainpipe.jobsServiceAccount" -}}
{{- default (printf "%s-jobs" (include "trainpipe.fullname" .)) .Values.jobs.serviceAccount.name -}}
{{- end -}}

{{/* The operator's image: repository@digest, else repository:tag (tag defaults to the chart's appVersion). */}}
{{- define "trainpipe.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/* A default job image ({repository, tag}); empty when repository is empty (pipelines then name their images). */}}
{{- define "trainpipe.jobImage" -}}
{{- $image := index . 0 -}}{{- $root := index . 1 -}}
{{- if $image.repository -}}
{{- printf "%s:%s" $image.repository (default $root.Chart.AppVersion $image.tag) -}}
{{- end -}}
{{- end -}}

{{/* The operator's RBAC rules: files/operator-rules.yaml, also the source of operator/deploy/rbac.yaml. */}}
{{- define "trainpipe.operatorRules" -}}
{{ .Files.Get "files/operator-rules.yaml" }}
{{- end -}}
