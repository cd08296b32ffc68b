#!/usr/bin/env bash
# Runs every benchmark of docs/benchmarks.md on this machine and writes the
# JSON files under docs/bench/. Takes about 50 minutes on 2 cores; run it on
# an otherwise idle machine, from a clean checkout (reports record the commit). Loopback only; every run stops by itself.
set -euo pipefail
cd "$(dirname "$0")/.."
out=docs/bench
mkdir -p "$out"

if ! command -v nginx >/dev/null 2>&1 && [ ! -x /usr/sbin/nginx ]; then
  echo "== installing nginx-light (Debian) for the side-by-side run"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light
fi

cargo build --release --benches --bins
bin=target/release/tcpmax

echo "== tcpmax bench: 10k (heartbeat baseline), 100k, 500k, 1M, 2M"
for c in 10k 100k 500k 1M 2M; do
  "$bin" bench -c "$c" --hold 10s --json "$out/bench_$c.json" >/dev/null
  python3 -c "import json,sys; r=json.load(open('$out/bench_$c.json')); print('$c', r['held'], round(r['connect_rate_per_s']), r['ping_rtt_us']['p99'], round(r['user_bytes_per_connection'],1), round(r['teardown_seconds'],1))"
done

echo "== ramp beside the kernel's own rate (C baseline), 1M and 2M"
cargo bench --bench ramp -- --count 1M --json "$out/ramp_1m.json" >/dev/null
cargo bench --bench ramp -- --count 2M --json "$out/ramp_2m.json" >/dev/null
echo "== the ramp in alternating rounds, compared by medians, 1M and 2M"
cargo bench --bench ramp_rounds -- --count 1M --rounds 3 --json "$out/ramp_rounds_1m.json" >/dev/null
cargo bench --bench ramp_rounds -- --count 2M --rounds 3 --json "$out/ramp_rounds_2m.json" >/dev/null

echo "== tcpmax serve beside nginx, 500k idle connections"
cargo bench --bench servers -- --count 500k --json "$out/servers_500k.json" >/dev/null

echo "== protocols: WebSocket and MQTT at 1M, TLS at 500k, both ends tcpmax"
"$bin" bench -c 1M --hold 10s --ws --json "$out/bench_ws_1M.json" >/dev/null
"$bin" bench -c 1M --hold 10s --mqtt --json "$out/bench_mqtt_1M.json" >/dev/null
"$bin" bench -c 500k --hold 10s --tls --json "$out/bench_tls_500k.json" >/dev/null

if ! command -v mosquitto >/dev/null 2>&1 && [ ! -x /usr/sbin/mosquitto ]; then
  echo "== installing mosquitto (Debian) for the broker run"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mosquitto
fi
echo "== TLS handshake rate beside nginx; load --mqtt against mosquitto to its limit"
cargo bench --bench peers -- --count 20k --mqtt-count 25k --json "$out/peers.json" >/dev/null
echo "== what an idle server costs: serve and nginx, idle and holding 500k idle connections, 60 s each"
cargo bench --bench idle -- --duration 60s --count 500k --json "$out/idle.json" >/dev/null

echo "== serve holding 500k; shard cost"
cargo bench --bench serve_hold -- --count 500k --json "$out/serve_hold_500k.json" >/dev/null
cargo bench --bench shard_cost -- --shards 32 --json "$out/shard_cost.json" >/dev/null

echo "== load from many hosts rehearsed: 4 agent namespaces, 400k in total, merged (needs root and ip)"
cargo bench --bench rehearsal -- --agents 4 --count 400k --hold 10s --json "$out/rehearsal_400k.json" >/dev/null
echo "== tcpmax cluster: 50,000 through HAProxy, then the failure rehearsal (root, haproxy)"
if ! command -v haproxy >/dev/null 2>&1; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq haproxy
fi
cargo bench --bench cluster -- --json "$out/cluster_50k.json" --hold 20s >/dev/null
cargo bench --bench cluster -- --json "$out/cluster_kill_50k.json" --hold 30s --kill b3@10s >/dev/null

echo "== the ignored stress tests (one source IP past 65,535, ...)"
cargo test --release -- --ignored
