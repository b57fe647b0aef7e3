{{/*
Shared pieces of the chart. Object names are fixed (dyad-agent, dyad-config, ...), not derived
from the release name: a cluster has one pod network, and tools and docs name these objects.
*/}}

{{/* Labels on every object; `component` is the Dyad process (agent, ipam, ...). */}}
{{- define "dyad.labels" -}}
app.kubernetes.io/name: dyad
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/part-of: dyad
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version }}
{{- end }}

{{/* The subset that selects a component's pods: stable across upgrades. */}}
{{- define "dyad.selectorLabels" -}}
app.kubernetes.io/name: dyad
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* The Dyad image, `repository:tag`, the tag defaulting to the chart's appVersion. */}}
{{- define "dyad.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end }}

{{/*
How a Dyad service is started: the image's command, the workload's node flags (optional third
argument, e.g. the agent's V8 heap limits), then the service's entry. Arguments: the root, the
directory under services/, the flags.
*/}}
{{- define "dyad.command" -}}
{{- $root := index . 0 -}}
{{- $service := index . 1 -}}
{{- $flags := list -}}
{{- if gt (len .) 2 }}{{ $flags = index . 2 | default list }}{{ end -}}
{{- $cmd := concat $root.Values.image.command $flags (list (printf $root.Values.image.entry $service)) -}}
{{- toJson $cmd -}}
{{- end }}

{{/* True (non-empty) when the chart runs NATS itself. */}}
{{- define "dyad.natsInChart" -}}
{{- if not .Values.nats.external.url }}true{{ end -}}
{{- end }}

{{/*
NATS_URL of every Dyad process: the external URL, or every NATS node's client port by address.
Node addresses, not a Service name: agents need NATS before their node has pod networking, so
before cluster DNS, and Dyad does not rely on kube-proxy for ClusterIPs (README: bootstrap).
*/}}
{{- define "dyad.natsUrl" -}}
{{- if .Values.nats.external.url -}}
{{- .Values.nats.external.url -}}
{{- else -}}
{{- $urls := list -}}
{{- range (include "dyad.natsAddresses" . | fromJsonArray) -}}
{{- $urls = append $urls (printf "nats://%s:%d" (include "dyad.hostPort" .) (int $.Values.nats.ports.client)) -}}
{{- end -}}
{{- join "," $urls -}}
{{- end -}}
{{- end }}

{{/* An address as the host part of a URL: IPv6 in brackets. */}}
{{- define "dyad.hostPort" -}}
{{- if contains ":" . }}[{{ . }}]{{ else }}{{ . }}{{ end -}}
{{- end }}

{{/* nats.nodeAddresses, checked: one per replica, no duplicates, no brackets or ports. */}}
{{- define "dyad.natsAddresses" -}}
{{- $addrs := .Values.nats.nodeAddresses -}}
{{- if ne (len $addrs) (int .Values.nats.replicas) -}}
{{- fail (printf "nats.nodeAddresses must list the address of each of the %d NATS nodes (labelled %s), or set nats.external.url: see deploy/README.md, 'The bootstrap problem'" (int .Values.nats.replicas) (toJson .Values.nats.nodeSelector)) -}}
{{- end -}}
{{- if ne (len (uniq $addrs)) (len $addrs) -}}
{{- fail "nats.nodeAddresses has duplicates: one NATS server per node" -}}
{{- end -}}
{{- range $addrs -}}
{{- if or (hasPrefix "[" .) (regexMatch "^[^:]*:[0-9]+$" .) -}}
{{- fail (printf "nats.nodeAddresses: %q: a bare address, without brackets or port" .) -}}
{{- end -}}
{{- end -}}
{{- toJson $addrs -}}
{{- end }}

{{/* The stream replica count rendered into dyad-config (jetstream-replicas). */}}
{{- define "dyad.streamReplicas" -}}
{{- if .Values.nats.streamReplicas -}}
{{- .Values.nats.streamReplicas -}}
{{- else if .Values.nats.external.url -}}
1
{{- else -}}
{{- min 5 (int .Values.nats.replicas) -}}
{{- end -}}
{{- end }}

{{/* The Secret whose `ca.crt` signed the NATS servers' certificates, or nothing (no TLS). */}}
{{- define "dyad.natsCaSecret" -}}
{{- if .Values.nats.external.url -}}
{{- .Values.nats.external.caSecret -}}
{{- else -}}
dyad-nats
{{- end -}}
{{- end }}

{{/*
Environment every Dyad process shares: NATS, log level, and the health server bound on the pod's
address, where the kubelet's probes reach it (pods run on the host network, so it is the node's
address: not 127.0.0.1, which the kubelet would not probe, and not every interface).
Arguments: the root, the health port, the process's NATS identity (`agent` for the node agent:
`agent-<its node>`). Its NATS credential is its projected ServiceAccount token (natsClientVolumes),
which the auth callout (dyad-nats-auth) turns into that identity.
*/}}
{{- define "dyad.commonEnv" -}}
{{- $root := index . 0 -}}
{{- $healthPort := index . 1 -}}
{{- $identity := index . 2 -}}
- name: NATS_URL
  value: {{ include "dyad.natsUrl" $root | quote }}
- name: NATS_TOKEN_FILE
  value: /var/run/secrets/dyad-nats/token
{{- if eq $identity "agent" }}
- name: DYAD_NODE_NAME
  valueFrom:
    fieldRef:
      fieldPath: spec.nodeName
# the callout names an agent by the node its token's pod is bound to: the same node
- name: NATS_IDENTITY
  value: agent-$(DYAD_NODE_NAME)
{{- else }}
- name: NATS_IDENTITY
  value: {{ $identity | quote }}
{{- end }}
{{- if include "dyad.natsCaSecret" $root }}
- name: NATS_CA
  value: /etc/dyad/nats-ca/ca.crt
{{- end }}
- name: DYAD_HEALTH_HOST
  valueFrom:
    fieldRef:
      fieldPath: status.podIP
- name: DYAD_HEALTH_PORT
  value: {{ $healthPort | quote }}
- name: LOG_LEVEL
  value: {{ $root.Values.logLevel | quote }}
- name: DYAD_CONFIG_DIR
  value: /etc/dyad/config
{{- end }}

{{/*
A Dyad process's NATS credential and trust: a ServiceAccount token projected with the NATS
audience (not an API server credential: the API server accepts only tokens for its own
audience; the kubelet rotates it, the bus reads it on every connect), and the CA of the servers.
*/}}
{{- define "dyad.natsClientVolumes" -}}
- name: nats-token
  projected:
    sources:
      - serviceAccountToken:
          audience: {{ .Values.nats.auth.audience | quote }}
          expirationSeconds: {{ .Values.nats.auth.tokenExpirationSeconds }}
          path: token
{{- with include "dyad.natsCaVolume" . }}
{{ . }}
{{- end }}
{{- end }}
{{- define "dyad.natsCaVolume" -}}
{{- with include "dyad.natsCaSecret" . -}}
- name: nats-ca
  secret:
    secretName: {{ . }}
    items:
      - key: ca.crt
        path: ca.crt
{{- end }}
{{- end }}
{{- /* beside the kubelet's own secrets, never under /run/dyad, which the agent empties on uninstall */ -}}
{{- define "dyad.natsClientMounts" -}}
- name: nats-token
  mountPath: /var/run/secrets/dyad-nats
  readOnly: true
{{- with include "dyad.natsCaMount" . }}
{{ . }}
{{- end }}
{{- end }}
{{- define "dyad.natsCaMount" -}}
{{- if include "dyad.natsCaSecret" . -}}
- name: nats-ca
  mountPath: /etc/dyad/nats-ca
  readOnly: true
{{- end }}
{{- end }}

{{/*
The API server itself rather than the `kubernetes` Service's ClusterIP, when
kubeBridge.apiServer says where (a cluster without kube-proxy): for kube-bridge and
dyad-nats-auth, the two processes that talk to it.
*/}}
{{- define "dyad.apiServerEnv" -}}
{{- with .Values.kubeBridge.apiServer }}
{{- if and .host .port -}}
- name: KUBERNETES_SERVICE_HOST
  value: {{ .host | quote }}
- name: KUBERNETES_SERVICE_PORT
  value: {{ .port | toString | quote }}
{{- end }}
{{- end }}
{{- end }}

{{/* Liveness and readiness on the health server; the pod IP is the default probe host. */}}
{{- define "dyad.probes" -}}
livenessProbe:
  httpGet:
    path: /healthz
    port: health
  initialDelaySeconds: 10
  periodSeconds: 10
  timeoutSeconds: 5
  failureThreshold: 6
readinessProbe:
  httpGet:
    path: /readyz
    port: health
  periodSeconds: 5
  timeoutSeconds: 5
  failureThreshold: 3
{{- end }}

{{/* The dyad-config ConfigMap, mounted read-only in every Dyad container at one path. */}}
{{- define "dyad.configVolume" -}}
- name: dyad-config
  configMap:
    name: dyad-config
{{- end }}
{{- define "dyad.configMount" -}}
- name: dyad-config
  mountPath: /etc/dyad/config
  readOnly: true
{{- end }}

{{/*
Security context of a service that needs no privilege: not root, no capability, read-only root
filesystem, the runtime's default seccomp profile.
*/}}
{{- define "dyad.restrictedContainer" -}}
securityContext:
  runAsNonRoot: true
  runAsUser: {{ .Values.serviceUser }}
  runAsGroup: {{ .Values.serviceUser }}
  allowPrivilegeEscalation: false
  readOnlyRootFilesystem: true
  capabilities:
    drop: ["ALL"]
  seccompProfile:
    type: RuntimeDefault
{{- end }}

{{/* Checksum of the config, so changing it rolls the pods that read it at start. */}}
{{- define "dyad.configChecksum" -}}
checksum/dyad-config: {{ include (print .Template.BasePath "/config.yaml") . | sha256sum }}
{{- end }}
