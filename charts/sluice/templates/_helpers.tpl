{{/* The release's full name: the release name, with "-sluice" unless it already holds it. */}}
{{- define "sluice.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "sluice.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "sluice.labels" -}}
{{ include "sluice.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "sluice.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "sluice.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is needed when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The namespaces the controller watches in scope "namespace", as a JSON list (read it
     with fromJsonArray). */}}
{{- define "sluice.watchedNamespaces" -}}
{{- toJson (default (list .Release.Namespace) .Values.rbac.namespaces) -}}
{{- end -}}

{{- define "sluice.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/* What the controller does with the kinds it watches in a namespace: shared by the
     ClusterRole (scope cluster) and the watched namespace's Role (scope namespace). */}}
{{- define "sluice.namespacedRules" -}}
- apiGroups: [sluice.dev]
  resources: [rollouts]
  verbs: [list, watch, patch]
- apiGroups: [sluice.dev]
  resources: [rollouts/status]
  verbs: [update, patch]
- apiGroups: [sluice.dev]
  resources: [rollouts/finalizers]
  verbs: [update]
- apiGroups: [sluice.dev]
  resources: [analysisruns]
  verbs: [list, watch, create, patch, delete]
- apiGroups: [sluice.dev]
  resources: [analysisruns/status]
  verbs: [update]
- apiGroups: [sluice.dev]
  resources: [analysistemplates]
  verbs: [list, watch]
- apiGroups: [sluice.dev]
  resources: [rolloutexercises]
  verbs: [list, watch, patch]
- apiGroups: [sluice.dev]
  resources: [rolloutexercises/status]
  verbs: [update]
- apiGroups: [apps]
  resources: [replicasets]
  verbs: [list, watch, create, patch, delete]
- apiGroups: [apps]
  resources: [deployments]
  verbs: [list, watch]
- apiGroups: [apps]
  resources: [deployments/scale]
  verbs: [patch]
- apiGroups: [""]
  resources: [pods]
  verbs: [list, watch, patch]
- apiGroups: [""]
  resources: [pods/eviction]
  verbs: [create]
- apiGroups: [""]
  resources: [services]
  verbs: [list, watch, patch]
- apiGroups: [""]
  resources: [secrets, configmaps]
  verbs: [get]
- apiGroups: [events.k8s.io]
  resources: [events]
  verbs: [create, patch]
- apiGroups: [batch]
  resources: [jobs]
  verbs: [get, list, watch, create, delete]
- apiGroups: [networking.istio.io]
  resources: [virtualservices, destinationrules]
  verbs: [get, list, watch, update]
- apiGroups: [gateway.networking.k8s.io]
  resources: [httproutes]
  verbs: [get, list, watch, update]
{{- end -}}

{{/* The leader Lease, in the release's namespace. */}}
{{- define "sluice.leaseRules" -}}
- apiGroups: [coordination.k8s.io]
  resources: [leases]
  verbs: [get, create, patch]
{{- end -}}
