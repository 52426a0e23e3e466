{{/*
flotilla.nodeName: the virtual node of the cluster part.
*/}}
{{- define "flotilla.nodeName" -}}
{{- .Values.cluster.nodeName | default .Values.cluster.name -}}
{{- end }}

{{/*
flotilla.selectorLabels: what a Deployment of this release selects its pods by; (dict "ctx" . "component" c),
component node (a workload cluster's flotilla) or webhook.
*/}}
{{- define "flotilla.selectorLabels" -}}
app.kubernetes.io/name: flotilla
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/*
flotilla.labels: the selector labels and the rest of Kubernetes' recommended labels.
*/}}
{{- define "flotilla.labels" -}}
{{ include "flotilla.selectorLabels" . }}
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .ctx.Chart.Name .ctx.Chart.Version | replace "+" "_" }}
{{- end }}

{{- define "flotilla.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end }}

{{/*
flotilla.podSpec: what every pod of the chart shares, (dict "ctx" . "component" c). Hardened to the restricted
Pod Security Standard: non-root, no privilege escalation, no capabilities, the runtime's seccomp profile, a
read-only root file system. No ServiceAccount token: flotilla runs with the credentials `flotilla join` made
and the webhook calls no API.
*/}}
{{- define "flotilla.podSpec" -}}
automountServiceAccountToken: false
enableServiceLinks: false
securityContext:
  runAsNonRoot: true
  runAsUser: 65532
  runAsGroup: 65532
  fsGroup: 65532
  seccompProfile:
    type: RuntimeDefault
{{- with .ctx.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .ctx.Values.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- with .ctx.Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .ctx.Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
affinity:
{{- if .ctx.Values.affinity }}
  {{- toYaml .ctx.Values.affinity | nindent 2 }}
{{- else }}
  # Replicas on different machines, so losing one does not lose both.
  podAntiAffinity:
    preferredDuringSchedulingIgnoredDuringExecution:
      - weight: 100
        podAffinityTerm:
          topologyKey: kubernetes.io/hostname
          labelSelector:
            matchLabels:
              {{- include "flotilla.selectorLabels" . | nindent 14 }}
{{- end }}
{{- end }}

{{/*
flotilla.containerSecurityContext: the container's half of the hardening.
*/}}
{{- define "flotilla.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
privileged: false
capabilities:
  drop: [ALL]
{{- end }}

{{/*
flotilla.pdb: a PodDisruptionBudget keeping one replica through drains and node upgrades, (dict "ctx" .
"component" c "name" n "replicas" r). Only with two replicas or more: with one it would block every drain.
*/}}
{{- define "flotilla.pdb" -}}
{{- if gt (int .replicas) 1 }}
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ .name }}
  namespace: {{ .ctx.Release.Namespace }}
  labels:
    {{- include "flotilla.labels" . | nindent 4 }}
spec:
  minAvailable: 1
  selector:
    matchLabels:
      {{- include "flotilla.selectorLabels" . | nindent 6 }}
{{- end }}
{{- end }}
