#!/usr/bin/env bash
# Maximum QPS of mesh-loadgen (fortio's library) against fortio's own CLI, side by side.
#
# Both run against the same mesh-echo server on loopback, at -qps 0 (as fast as the server
# answers) with the same connection count and Istio's pacing flags, for BENCH_SECONDS each,
# alternating BENCH_ROUNDS times (the order flips every round, so neither always runs on a
# warmer or a busier machine). It prints each run, the medians and their ratio
# (mesh-loadgen / fortio; issue 4 asks for at least 0.95).
#
# fortio v1.66.5 is the newest fortio whose CLI builds from the module proxy here (later
# ones import grol.io/grol, which is not served); it is installed into a temporary GOBIN
# from a temporary directory, so this repository's go.mod is not touched. Set FORTIO_BIN
# to use a fortio binary you already have.
#
# Usage: scripts/bench-loadgen.sh
#   BENCH_SECONDS=10 BENCH_CONNECTIONS=8 BENCH_ROUNDS=3 BENCH_PORT=<free port> FORTIO_BIN=...
# Traffic stays on 127.0.0.1. Every process started here is stopped by its PID.
set -euo pipefail
shopt -s inherit_errexit

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SECS=${BENCH_SECONDS:-10}
CONNS=${BENCH_CONNECTIONS:-8}
ROUNDS=${BENCH_ROUNDS:-3}
FORTIO_VERSION=v1.66.5
GO=${GO:-go}

WORK=$(mktemp -d "${TMPDIR:-/tmp}/bench-loadgen.XXXXXX")
ECHO_PID=""
cleanup() {
	if [[ -n "$ECHO_PID" ]]; then
		kill "$ECHO_PID" 2>/dev/null || true
		wait "$ECHO_PID" 2>/dev/null || true
	fi
	rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { echo "bench-loadgen: $*" >&2; }

log "building mesh-echo and mesh-loadgen"
(cd "$ROOT" && CGO_ENABLED=0 "$GO" build -trimpath -o "$WORK/" ./cmd/mesh-echo ./cmd/mesh-loadgen)

FORTIO=${FORTIO_BIN:-}
if [[ -z "$FORTIO" ]]; then
	log "installing fortio $FORTIO_VERSION (CLI) into a temporary directory"
	mkdir -p "$WORK/gobin" "$WORK/outside"
	# Outside any module, with -mod=mod: `go install pkg@version` then resolves fortio's own
	# go.mod and never reads or writes ours.
	(cd "$WORK/outside" && GOFLAGS=-mod=mod GOBIN="$WORK/gobin" CGO_ENABLED=0 "$GO" install "fortio.org/fortio@$FORTIO_VERSION")
	FORTIO="$WORK/gobin/fortio"
fi
FORTIO_REPORTED=$("$FORTIO" version)

# A free loopback port: nothing answers a connection to it.
PORT=${BENCH_PORT:-}
if [[ -z "$PORT" ]]; then
	for p in $(shuf -i 20000-40000 -n 50); do
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
			PORT=$p
			break
		fi
	done
fi
[[ -n "$PORT" ]] || { log "no free port found; set BENCH_PORT"; exit 1; }
URL="http://127.0.0.1:$PORT/"

"$WORK/mesh-echo" serve --listen "127.0.0.1:$PORT" >"$WORK/echo.log" 2>&1 &
ECHO_PID=$!
"$WORK/mesh-echo" get --retry-for 10s "http://127.0.0.1:$PORT/healthz" >/dev/null

# qps_of FILE KEY: the number after "KEY": in a JSON file (both tools write one per line).
qps_of() { sed -n "s/.*\"$2\": *\([0-9.eE+-]*\).*/\1/p" "$1" | head -n 1; }

run_fortio() {
	local out="$WORK/fortio-$1.json"
	"$FORTIO" load -quiet -jitter -uniform -nocatchup -keepalive -qps 0 -c "$CONNS" -t "${SECS}s" \
		-json "$out" "$URL" >"$WORK/fortio-$1.log" 2>&1
	qps_of "$out" ActualQPS
}

run_loadgen() {
	local out="$WORK/loadgen-$1.json"
	"$WORK/mesh-loadgen" --url "$URL" --qps 0 --connections "$CONNS" --duration "${SECS}s" \
		--output "$out" 2>"$WORK/loadgen-$1.log"
	qps_of "$out" actualQps
}

median() { sort -g | awk '{v[NR]=$1} END {if (NR % 2) print v[(NR+1)/2]; else print (v[NR/2]+v[NR/2+1])/2}'; }

log "target $URL, $CONNS connections, ${SECS}s per run, $ROUNDS rounds, $(nproc) CPUs"
FORTIO_QPS=()
LOADGEN_QPS=()
for ((r = 1; r <= ROUNDS; r++)); do
	if ((r % 2)); then
		f=$(run_fortio "$r")
		l=$(run_loadgen "$r")
	else
		l=$(run_loadgen "$r")
		f=$(run_fortio "$r")
	fi
	FORTIO_QPS+=("$f")
	LOADGEN_QPS+=("$l")
	printf 'round %d: fortio %.1f qps, mesh-loadgen %.1f qps\n' "$r" "$f" "$l"
done

FM=$(printf '%s\n' "${FORTIO_QPS[@]}" | median)
LM=$(printf '%s\n' "${LOADGEN_QPS[@]}" | median)
printf 'fortio CLI %s: median max QPS %.1f\n' "$FORTIO_REPORTED" "$FM"
printf 'mesh-loadgen (%s): median max QPS %.1f\n' "$(sed -n 's/.*"generator": *"\([^"]*\)".*/\1/p' "$WORK/loadgen-1.json")" "$LM"
awk -v l="$LM" -v f="$FM" 'BEGIN { printf "ratio mesh-loadgen / fortio: %.3f\n", l / f }'
