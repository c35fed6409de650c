#!/bin/sh
# cluster-bench.sh measures the cost of cluster mode on one machine (issue 13,
# BENCHMARKS.md "Cluster cost"): events/s through /v1/batch, and CPU seconds
# per event of the vigie and nats-server processes, for
#
#   1. one node with its embedded NATS server;
#   2. one node in cluster mode on a 3-server nats-server cluster (R3 streams);
#   3. three nodes in cluster mode on that cluster, the load spread over them.
#
# Every node runs without plugins (`plugins: []`, as the README advises for
# all but one node until segmentation is partitioned), shares one keyring and
# master key, and is driven by `vigie bench --target` (10-event batches,
# CONNS connections, DUR, rate counted until every outbox is empty).
#
# Usage, from the repository root:  scripts/cluster-bench.sh [scenario...]
#   scenarios: embedded single three (default: all three)
# Environment: DUR (default 20s), CONNS (32), BASE_PORT (27000), NATS_SERVER
# (default: nats-server on PATH, else /usr/sbin/nats-server), KEEP=1 keeps
# the work dir. Output: a table per scenario and one JSON line each.
set -eu

DUR=${DUR:-20s}
CONNS=${CONNS:-32}
BASE=${BASE_PORT:-27000}
NATS=${NATS_SERVER:-$(command -v nats-server || echo /usr/sbin/nats-server)}
[ -x "$NATS" ] || { echo "cluster-bench: nats-server not found (set NATS_SERVER)" >&2; exit 1; }
HZ=$(getconf CLK_TCK)

W=$(mktemp -d /tmp/vigie-cluster-bench.XXXXXX)
PIDS=""
stop_all() {
	for p in $PIDS; do kill "$p" 2>/dev/null || true; done
	for p in $PIDS; do while kill -0 "$p" 2>/dev/null; do sleep 0.1; done; done
	PIDS=""
}
cleanup() {
	stop_all
	[ "${KEEP:-}" = 1 ] || rm -rf "$W"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

go build -o "$W/vigie" ./proxy/cmd/vigie
VIGIE_MASTER_KEY=$("$W/vigie" keys master new)
export VIGIE_MASTER_KEY

# cpu PID: user+system clock ticks of a process so far.
cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }

wait_url() { # URL: until it answers 200 (30 s at most)
	i=0
	until curl -fsS -o /dev/null "$1" 2>/dev/null; do
		i=$((i + 1))
		[ $i -lt 300 ] || { echo "cluster-bench: $1 not ready" >&2; exit 1; }
		sleep 0.1
	done
}

NATS_PIDS=""
start_nats() { # a fresh 3-server cluster: clients on BASE+1..3, routes BASE+11..13, monitoring BASE+31..33
	NATS_PIDS=""
	routes=""
	for i in 1 2 3; do routes="$routes${routes:+, }\"nats-route://127.0.0.1:$((BASE + 10 + i))\""; done
	for i in 1 2 3; do
		d="$W/nats$i"
		rm -rf "$d" && mkdir -p "$d"
		cat >"$d/nats.conf" <<EOF
server_name: "nats$i"
listen: "127.0.0.1:$((BASE + i))"
http: "127.0.0.1:$((BASE + 30 + i))"
jetstream { store_dir: "$d/store" }
cluster { name: "vigie-bench", listen: "127.0.0.1:$((BASE + 10 + i))", routes: [$routes] }
EOF
		"$NATS" -c "$d/nats.conf" >"$d/log" 2>&1 &
		NATS_PIDS="$NATS_PIDS $!"
		PIDS="$PIDS $!"
	done
	NATS_URL="nats://127.0.0.1:$((BASE + 1)),nats://127.0.0.1:$((BASE + 2)),nats://127.0.0.1:$((BASE + 3))"
	for i in 1 2 3; do wait_url "http://127.0.0.1:$((BASE + 30 + i))/healthz"; done
}

VIGIE_PIDS=""
TARGETS=""
start_vigie() { # N [NATS_URL]: node N (port BASE+20+N), cluster mode when a URL is given
	n=$1
	d="$W/vigie$n"
	rm -rf "$d" && mkdir -p "$d/data"
	{
		echo "listen: 127.0.0.1:$((BASE + 20 + n))"
		echo "data_dir: $d/data"
		echo "log_level: warn"
		echo "plugins: []"
		echo "keys: {secrets_dir: $d/secrets}"
		if [ -n "${2:-}" ]; then
			echo "nats: {url: \"$2\"}"
			echo "cluster: {node_id: v$n}"
		fi
	} >"$d/vigie.yaml"
	if [ "$n" -gt 1 ]; then cp "$W/vigie1/data/keyring.json" "$d/data/"; fi
	"$W/vigie" --config "$d/vigie.yaml" >"$d/log" 2>&1 &
	VIGIE_PIDS="$VIGIE_PIDS $!"
	PIDS="$PIDS $!"
	TARGETS="$TARGETS${TARGETS:+,}http://127.0.0.1:$((BASE + 20 + n))"
	wait_url "http://127.0.0.1:$((BASE + 20 + n))/readyz"
}

ticks() { # PIDS: each one's ticks, space-separated
	for p in $1; do printf '%s ' "$(cpu "$p")"; done
}

measure() { # NAME
	v0=$(ticks "$VIGIE_PIDS")
	n0=$(ticks "$NATS_PIDS")
	# A run with failed requests (e.g. 503 dedup_unavailable when the KV
	# claims time out on an overloaded machine) still reports its figures.
	out=$("$W/vigie" bench --target "$TARGETS" --duration "$DUR" --connections "$CONNS" --json) ||
		echo "cluster-bench: $1: bench exited with status $? (failed requests are in its JSON line)" >&2
	v1=$(ticks "$VIGIE_PIDS")
	n1=$(ticks "$NATS_PIDS")
	echo "$out" | sed '$d'
	echo "$out" | tail -1 | python3 -c '
import json, sys
r = json.loads(sys.stdin.read())
name, hz = sys.argv[1], float(sys.argv[2])
d = lambda a, b: [(int(y) - int(x)) / hz for x, y in zip(a.split(), b.split())]
vig, nat = d(sys.argv[3], sys.argv[4]), d(sys.argv[5], sys.argv[6])
ev = r["events"]
us = lambda s: s / ev * 1e6
r.update(scenario=name, vigie_cpu_s=vig, nats_cpu_s=nat,
         vigie_cpu_us_per_event=us(sum(vig)), nats_cpu_us_per_event=us(sum(nat)),
         per_vigie_us_per_event=[us(s) for s in vig], per_nats_us_per_event=[us(s) for s in nat])
print("%s: %.0f events/s in all, %d failed requests; CPU per event: vigie %.1f us (%s), nats-server %.1f us (%s)" % (
    name, r["eps"], r["failed_requests"], r["vigie_cpu_us_per_event"], " + ".join("%.0f" % us(s) for s in vig),
    r["nats_cpu_us_per_event"], " + ".join("%.0f" % us(s) for s in nat) or "embedded"))
print(json.dumps(r))' "$1" "$HZ" "$v0" "$v1" "$n0" "$n1"
}

scenarios=${*:-embedded single three}
for s in $scenarios; do
	VIGIE_PIDS="" NATS_PIDS="" TARGETS=""
	case $s in
	embedded) start_vigie 1 ;;
	single)
		start_nats
		start_vigie 1 "$NATS_URL"
		;;
	three)
		start_nats
		for n in 1 2 3; do start_vigie "$n" "$NATS_URL"; done
		;;
	*)
		echo "cluster-bench: unknown scenario $s (embedded, single, three)" >&2
		exit 2
		;;
	esac
	echo "== $s"
	measure "$s"
	stop_all
done
