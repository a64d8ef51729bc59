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

{{/* An image reference from {registry, repository, tag, digest}: <registry>/<repository>@<digest> when a
digest is set, else :<tag> (default: the chart's appVersion). global.imageRegistry, when set, replaces the
registry; an empty registry leaves the repository as written. Empty when the repository is empty. */}}
{{- define "trainpipe.imageRef" -}}
{{- $image := index . 0 -}}{{- $root := index . 1 -}}
{{- if $image.repository -}}
{{- $registry := default $image.registry (($root.Values.global | default dict).imageRegistry) -}}
{{- $name := ternary (printf "%s/%s" $registry $image.repository) $image.repository (ne $registry "") -}}
{{- if $image.digest -}}
{{- printf "%s@%s" $name $image.digest -}}
{{- else -}}
{{- printf "%s:%s" $name (default $root.Chart.AppVersion $image.tag) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* The operator's image. */}}
{{- define "trainpipe.image" -}}
{{- include "trainpipe.imageRef" (list .Values.image .) -}}
{{- end -}}

{{/* A default job image; empty when its repository is empty (pipelines then name their images). */}}
{{- define "trainpipe.jobImage" -}}
{{- include "trainpipe.imageRef" . -}}
{{- end -}}

{{/* Where the example dataset's claim and Job go: exampleData.namespace, else the first watched namespace,
else the release's. */}}
{{- define "trainpipe.exampleDataNamespace" -}}
{{- .Values.exampleData.namespace | default (first (concat .Values.watchNamespaces (list .Release.Namespace))) -}}
{{- end -}}

{{/* The operator's RBAC rules: files/operator-rules.yaml, also the source of operator/deploy/rbac.yaml. */}}
{{- define "trainpipe.operatorRules" -}}
{{ .Files.Get "files/operator-rules.yaml" }}
{{- end -}}

{{- define "trainpipe.operatorNodeRules" -}}
{{ .Files.Get "files/operator-node-rules.yaml" }}
{{- end -}}
