{{/* Names ------------------------------------------------------------------------------------ */}}

{{- define "dicomflow.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "dicomflow.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "dicomflow.labels" -}}
app.kubernetes.io/name: {{ include "dicomflow.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{/* Selector labels of one component: (list $ "receiver") */}}
{{- define "dicomflow.selectorLabels" -}}
{{- $ := index . 0 -}}
app.kubernetes.io/name: {{ include "dicomflow.name" $ }}
app.kubernetes.io/instance: {{ $.Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{- define "dicomflow.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "dicomflow.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "dicomflow.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/* The spool's claim of receiver replica 0 (volumeClaimTemplates name it <template>-<set>-<ordinal>). */}}
{{- define "dicomflow.spoolClaim" -}}
{{- printf "spool-%s-receiver-0" (include "dicomflow.fullname" .) -}}
{{- end -}}

{{- define "dicomflow.configDir" -}}/etc/dicomflow{{- end -}}
{{- define "dicomflow.caDir" -}}/etc/dicomflow-ca{{- end -}}

{{/* Settings ---------------------------------------------------------------------------------- */}}

{{/*
The keys of dicomflow.yaml that the chart sets from its own values (addresses, ports, the
`managed` switches, credentials); `config` may not set them.
*/}}
{{- define "dicomflow.ownedKeys" -}}
top: [data_dir, admin_password]
postgres: [managed, host, port, user, password, airflow_database, platform_database]
pacs: [managed, dicomweb_url, username, password]
s3: [managed, endpoint, access_key, secret_key, secure, region, bucket_prefix]
index: [backend, opensearch_url, opensearch_username, opensearch_password, opensearch_verify_certs, opensearch_ca_file, opensearch_managed]
airflow: [managed, url, username, password]
receiver: [managed, host, port, ae_title]
web: [managed, host, port]
{{- end -}}

{{/* The part of dicomflow.yaml that comes from the chart's values. */}}
{{- define "dicomflow.chartSettings" -}}
postgres:
  managed: false
  host: {{ required "postgres.host: the address of the platform's PostgreSQL" .Values.postgres.host | toJson }}
  port: {{ .Values.postgres.port | int }}
  user: {{ .Values.postgres.user | toJson }}
  platform_database: {{ .Values.postgres.platformDatabase | toJson }}
  airflow_database: {{ .Values.postgres.airflowDatabase | toJson }}
pacs:
  managed: false
  dicomweb_url: {{ required "pacs.dicomwebUrl: the DICOMweb root of the PACS" .Values.pacs.dicomwebUrl | toJson }}
  username: {{ .Values.pacs.username | toJson }}
s3:
  managed: false
  endpoint: {{ required "s3.endpoint: host:port of the S3 API" .Values.s3.endpoint | toJson }}
  secure: {{ .Values.s3.secure }}
  region: {{ .Values.s3.region | toJson }}
  bucket_prefix: {{ .Values.s3.bucketPrefix | toJson }}
index:
  backend: {{ .Values.index.backend | toJson }}
  opensearch_managed: false
  opensearch_url: {{ .Values.index.opensearch.url | toJson }}
  opensearch_username: {{ .Values.index.opensearch.username | toJson }}
  opensearch_verify_certs: {{ .Values.index.opensearch.verifyCerts }}
  opensearch_ca_file: {{ ternary (printf "%s/%s" (include "dicomflow.caDir" .) .Values.index.opensearch.caKey) "" (not (empty .Values.index.opensearch.caSecret)) | toJson }}
airflow:
  managed: false
  url: {{ required "airflow.url: the address of Airflow's API server" .Values.airflow.url | toJson }}
  username: {{ .Values.airflow.username | toJson }}
receiver:
  managed: false
  host: "0.0.0.0"
  port: {{ .Values.receiver.port | int }}
  ae_title: {{ .Values.receiver.aeTitle | toJson }}
web:
  managed: false
  host: "0.0.0.0"
  port: {{ .Values.web.port | int }}
{{- end -}}

{{/* dicomflow.yaml: `config` with the chart's settings over it, after checking `config`. */}}
{{- define "dicomflow.settingsFile" -}}
{{- $owned := include "dicomflow.ownedKeys" . | fromYaml -}}
{{- range $section, $value := .Values.config -}}
{{- if has $section $owned.top -}}
{{- fail (printf "config.%s is set by the chart: use the chart's values (dataDir, secrets.existingSecret) instead" $section) -}}
{{- end -}}
{{- if and (hasKey $owned $section) (kindIs "map" $value) -}}
{{- range $key, $_ := $value -}}
{{- if has $key (index $owned $section) -}}
{{- fail (printf "config.%s.%s is set by the chart from its own values (see values.yaml: %s); remove it from config" $section $key $section) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- $chart := include "dicomflow.chartSettings" . | fromYaml -}}
{{- if not (has .Values.index.backend (list "postgres" "opensearch")) -}}
{{- fail (printf "index.backend is %q: use postgres or opensearch" .Values.index.backend) -}}
{{- end -}}
{{- if and (eq .Values.index.backend "opensearch") (empty .Values.index.opensearch.url) -}}
{{- fail "index.opensearch.url: index.backend is opensearch, give the cluster's URL (e.g. https://opensearch:9200)" -}}
{{- end -}}
{{- mustMergeOverwrite (deepCopy .Values.config) $chart | toYaml -}}
{{- end -}}

{{/*
Environment of a dicomflow container: the settings file, the data directory and the credentials
it needs, by secretKeyRef. (list $ "postgres" "pacs" "s3" "admin" "opensearch" "airflow")
*/}}
{{- define "dicomflow.env" -}}
{{- $ := index . 0 -}}
{{- $needs := rest . -}}
{{- $secret := required "secrets.existingSecret: the name of the Secret with the platform's credentials" $.Values.secrets.existingSecret -}}
{{- $keys := $.Values.secrets.keys -}}
- name: DICOMFLOW_CONFIG
  value: {{ printf "%s/dicomflow.yaml" (include "dicomflow.configDir" $) | quote }}
- name: DICOMFLOW_DATA_DIR
  value: {{ $.Values.dataDir | quote }}
{{- if has "postgres" $needs }}
- name: DICOMFLOW_POSTGRES__PASSWORD
  valueFrom:
    secretKeyRef: {name: {{ $secret | quote }}, key: {{ $keys.postgresPassword | quote }}}
{{- end }}
{{- if has "pacs" $needs }}
- name: DICOMFLOW_PACS__PASSWORD
  valueFrom:
    secretKeyRef: {name: {{ $secret | quote }}, key: {{ $keys.pacsPassword | quote }}}
{{- end }}
{{- if has "s3" $needs }}
- name: DICOMFLOW_S3__ACCESS_KEY
  valueFrom:
    secretKeyRef: {name: {{ $secret | quote }}, key: {{ $keys.s3AccessKey | quote }}}
- name: DICOMFLOW_S3__SECRET_KEY
  valueFrom:
    secretKeyRef: {name: {{ $secret | quote }}, key: {{ $keys.s3SecretKey | quote }}}
{{- end }}
{{- if has "admin" $needs }}
- name: DICOMFLOW_ADMIN_PASSWORD
  valueFrom:
    secretKeyRef: {name: {{ $secret | quote }}, key: {{ $keys.adminPassword | quote }}}
{{- end }}
{{- if has "airflow" $needs }}
- name: DICOMFLOW_AIRFLOW__PASSWORD
  valueFrom:
    secretKeyRef: {name: {{ $secret | quote }}, key: {{ $keys.airflowPassword | quote }}}
{{- end }}
{{- if and (has "opensearch" $needs) (eq $.Values.index.backend "opensearch") $.Values.index.opensearch.username }}
- name: DICOMFLOW_INDEX__OPENSEARCH_PASSWORD
  valueFrom:
    secretKeyRef: {name: {{ $secret | quote }}, key: {{ $keys.opensearchPassword | quote }}}
{{- end }}
{{- end -}}

{{/* Volume mounts every dicomflow container has: the settings file and the OpenSearch CA. */}}
{{- define "dicomflow.commonMounts" -}}
- name: config
  mountPath: {{ include "dicomflow.configDir" . }}
  readOnly: true
{{- if .Values.index.opensearch.caSecret }}
- name: opensearch-ca
  mountPath: {{ include "dicomflow.caDir" . }}
  readOnly: true
{{- end }}
{{- end -}}

{{- define "dicomflow.commonVolumes" -}}
- name: config
  configMap:
    name: {{ include "dicomflow.fullname" . }}
{{- if .Values.index.opensearch.caSecret }}
- name: opensearch-ca
  secret:
    secretName: {{ .Values.index.opensearch.caSecret }}
{{- end }}
{{- end -}}

{{/* Does the spool need its pods on one node (not ReadWriteMany)? "true" or "" */}}
{{- define "dicomflow.spoolOnOneNode" -}}
{{- if not (has "ReadWriteMany" .Values.spool.accessModes) -}}true{{- end -}}
{{- end -}}
