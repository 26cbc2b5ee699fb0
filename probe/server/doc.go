// Package server is the probe's HTTP interface, on one port (:9464 by
// default, MESH_PROBE_LISTEN):
//
//	GET /v1/snapshot?window=10s|1m|10m   one window's measurements, JSON (default window 1m;
//	                                     compact, indented with &pretty=true)
//	GET /metrics                         Prometheus exposition (own registry, mesh_probe_*)
//	GET /healthz                         200 while the process serves HTTP
//	GET /readyz                          200 while the programs are attached and the
//	                                     ring buffer is read; 503 with the reason otherwise
//
// A window other than 10s, 1m or 10m, or given twice, is answered 400 with
// a JSON status:
//
//	{"apiVersion":"kubectl-mesh.io/v1alpha1","kind":"Status","code":400,
//	 "message":"unknown window \"5m\": use one of 10s, 1m, 10m"}
//
// The snapshot document (probe/api.Snapshot), abridged and indented;
// docs/probe.md describes every field:
//
//	{
//	  "apiVersion": "kubectl-mesh.io/v1alpha1",
//	  "kind": "ProbeSnapshot",
//	  "window": "10s",
//	  "start": "2026-11-25T19:50:02.892516897Z",   complete slots only: a 10s window
//	  "end": "2026-11-25T19:50:12.892516897Z",     ends on a whole second
//	  "durationSeconds": 10,
//	  "mesh": "istio",
//	  "proxyDetected": true,
//	  "status": "ok",                    | "no proxy detected" | "no traffic in the window"
//	                                     | "requests could not be paired individually: mean only"
//	  "notes": [...],                    what the numbers do not cover (absent when nothing)
//	  "requests": 2455,                  inbound exchanges seen on eth0
//	  "measured": 2447,                  of which paired one by one
//	  "rps": 245.5,
//	  "edge":         {"count": 2447, "p50": 1.618, "p90": 1.962, "p99": 3.023, "p999": 7.684, "max": 10.225, "mean": 1.662},
//	  "app":          {...},             the same request between proxy and application (lo)
//	  "proxyAdded":   {...},             edge - app, per request
//	  "requestPath":  {...},             proxy time on the way in
//	  "responsePath": {...},             proxy time on the way out
//	  "proxyAddedMean": {"count": 2455, "mean": 0.423},   includes ambiguous requests settled in total
//	  "histograms": {"proxyAdded": {"buckets": [[1476, 3], [1477, 9], ...], "count": 2447,
//	                 "sumNs": 1035081000, "minNs": 201000, "maxNs": 9802000}, "edge": {...}, ...},
//	                                     the distributions behind the percentiles, mergeable across pods
//	  "cpu": [{"cgroupId": 4711, "cgroup": "/kubepods.slice/.../cri-containerd-<id>.scope",
//	           "containerId": "<id>", "name": "istio-proxy", "role": "proxy",
//	           "millicores": 41.2, "cpuMsPer1000Requests": 167.8}],
//	  "pairing": {"unmatchedEdge": 0, "unmatchedApp": 0, "ambiguousEdge": 8, "ambiguousApp": 8,
//	              "ambiguousSettled": 8, "pairedByRequestId": 0, "incomplete": 0, "predatesProbe": 0,
//	              "pipelined": 0, "tlsHandshake": 0, "outbound": 0},
//	  "losses": {"ringBufferFull": 0, "decodeErrors": 0, "overload": 0, "idleLate": 0},
//	  "outbound": {"status": "ok", "proxyDetected": true, "requests": 1204, "measured": 1190, "rps": 120.4,
//	               "edge": {...}, "app": {...}, "proxyAdded": {...}, ...}
//	                                     the application's calls through the proxy (lo outside,
//	                                     eth0 inside); absent without an outbound port
//	}
//
// Latencies are milliseconds rounded to the microsecond; quantiles are
// within 0.39% of the exact nearest-rank sample quantile, max and mean are
// exact.
package server
