#!/usr/bin/env bash
# System calls, context switches and CPU per saga of each process of the order flow, counted by
# `perf stat` over a window in the middle of a run: the orchestrator and the three services on
# fresh databases (durable, FULL), driven open loop at --rate sagas/s, or closed loop with
# --window sagas in flight when --rate is 0. What costs a small turn (the ZeroMQ I/O threads'
# wake-ups, SQLite's WAL writes and locks, fsync) shows here as counts, which move far less
# between runs than CPU time does on a shared machine. Needs perf.
#
#   bench/syscalls_per_saga.sh [--samples build/default/samples] [--rate 0] [--window 1000]
#                              [--seconds 10] [-- ORCHESTRATOR FLAGS...]
set -euo pipefail

samples=build/default/samples
rate=0
window=1000
seconds=10
while [[ $# -gt 0 ]]; do
  case "$1" in
    --samples) samples=$2; shift 2 ;;
    --rate) rate=$2; shift 2 ;;
    --window) window=$2; shift 2 ;;
    --seconds) seconds=$2; shift 2 ;;
    --) shift; break ;;
    *) echo "usage: $0 [--samples DIR] [--rate R] [--window W] [--seconds S] [-- FLAGS]" >&2
       exit 2 ;;
  esac
done
command -v perf >/dev/null || { echo "needs perf (apt-get install linux-perf)" >&2; exit 1; }
samples=$(cd "$samples" && pwd)
work=$(mktemp -d /tmp/syscalls_per_saga.XXXXXX)
source "$(dirname "$0")/cluster.sh"
trap 'cluster_stop; rm -rf "$work"' EXIT

calls=(pwrite64 pread64 fdatasync fcntl write read sendto recvfrom poll epoll_wait epoll_ctl
  getpid futex)
events=task-clock,context-switches
for call in "${calls[@]}"; do events+=",syscalls:sys_enter_$call"; done

cluster_start "$work" full "$@"
names=(orchestrator inventory payment shipping)
processes=("$cluster_orchestrator" "${cluster_participants[@]}")
warm_up=3
measured=$(( seconds - warm_up - 2 ))
(( measured >= 1 )) || { echo "--seconds must be at least 6" >&2; exit 2; }
(
  sleep "$warm_up"
  for i in "${!processes[@]}"; do
    perf stat -x, -e "$events" -p "${processes[$i]}" -- sleep "$measured" \
      2>"$work/stat.${names[$i]}" &
  done
  wait
) &
counting=$!
if [[ $rate == 0 ]]; then
  cluster_drive "$work" "$window" --duration "$seconds" --json "$work/drive.json"
else
  cluster_drive "$work" 0 --rate "$rate" --duration "$seconds" --json "$work/drive.json"
fi
wait "$counting"

python3 - "$work" "$measured" "${names[@]}" <<'EOF'
import json, sys
work, measured, names = sys.argv[1], float(sys.argv[2]), sys.argv[3:]
drive = json.load(open(f"{work}/drive.json"))
sagas = drive["throughput_sagas_per_s"] * measured
print(f"{drive['throughput_sagas_per_s']:.0f} sagas/s, latency p50 {drive['latency_ms']['p50']:.1f} ms, "
      f"p99 {drive['latency_ms']['p99']:.1f} ms; per saga over {measured:.0f} s in the middle:")
rows = {}
for name in names:
    for line in open(f"{work}/stat.{name}"):
        fields = line.strip().split(",")
        if len(fields) < 3 or not fields[0].replace(".", "").isdigit():
            continue
        event = fields[2].replace("syscalls:sys_enter_", "")
        value = float(fields[0]) * (1000 if event == "task-clock" else 1)  # ms -> us
        rows.setdefault(event, {})[name] = value / sagas
print(f"{'':18s}" + "".join(f"{n:>14s}" for n in names))
for event, by_name in rows.items():
    label = "CPU (us)" if event == "task-clock" else event
    print(f"{label:18s}" + "".join(f"{by_name.get(n, 0):14.2f}" for n in names))
calls = {n: sum(v.get(n, 0) for e, v in rows.items() if e not in ("task-clock", "context-switches"))
         for n in names}
print(f"{'counted calls':18s}" + "".join(f"{calls[n]:14.2f}" for n in names))
EOF
