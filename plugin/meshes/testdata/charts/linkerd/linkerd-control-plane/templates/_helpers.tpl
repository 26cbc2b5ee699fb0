{{- define "linkerd.labels" -}}
app.kubernetes.io/part-of: Linkerd
app.kubernetes.io/version: {{ .Values.linkerdVersion }}
linkerd.io/control-plane-ns: {{ .Release.Namespace }}
{{- end }}

{{- define "linkerd.deployment" -}}
apiVersion: apps/v1
kind: Deployment
metadata:
  annotations:
    linkerd.io/created-by: linkerd/helm {{ .root.Values.linkerdVersion }}
  labels:
    app.kubernetes.io/name: {{ .component }}
    {{- include "linkerd.labels" .root | nindent 4 }}
    linkerd.io/control-plane-component: {{ .component }}
  name: linkerd-{{ .component }}
  namespace: {{ .root.Release.Namespace }}
spec:
  replicas: {{ .root.Values.controllerReplicas }}
  revisionHistoryLimit: 10
  selector:
    matchLabels:
      linkerd.io/control-plane-component: {{ .component }}
      linkerd.io/control-plane-ns: {{ .root.Release.Namespace }}
      linkerd.io/proxy-deployment: linkerd-{{ .component }}
  template:
    metadata:
      annotations:
        linkerd.io/created-by: linkerd/helm {{ .root.Values.linkerdVersion }}
        linkerd.io/proxy-version: {{ .root.Values.linkerdVersion }}
        linkerd.io/trust-root-sha256: {{ .root.Values.identityTrustAnchorsPEM | sha256sum }}
      labels:
        linkerd.io/control-plane-component: {{ .component }}
        linkerd.io/control-plane-ns: {{ .root.Release.Namespace }}
        linkerd.io/workload-ns: {{ .root.Release.Namespace }}
        linkerd.io/proxy-deployment: linkerd-{{ .component }}
    spec:
      nodeSelector:
        kubernetes.io/os: linux
      containers:
      - name: {{ .component }}
        image: {{ .root.Values.controllerImage }}:{{ .root.Values.linkerdVersion }}
        imagePullPolicy: IfNotPresent
        args:
        - {{ .component }}
        - -log-level=info
        - -controller-namespace={{ .root.Release.Namespace }}
        - -identity-trust-domain={{ .root.Values.identityTrustDomain }}
        ports:
        - containerPort: 9990
          name: admin-http
        readinessProbe:
          failureThreshold: 7
          httpGet:
            path: /ready
            port: 9990
        resources:
          requests:
            cpu: 10m
            memory: 16Mi
        securityContext:
          allowPrivilegeEscalation: false
          capabilities:
            drop: [ALL]
          readOnlyRootFilesystem: true
          runAsNonRoot: true
          runAsUser: 2103
          seccompProfile:
            type: RuntimeDefault
      serviceAccountName: linkerd-{{ .component }}
{{- end }}
