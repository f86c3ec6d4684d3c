#!/usr/bin/env bash
# CPU time per saga of each process of the order flow, over a fixed amount of work: the
# orchestrator and the three services on fresh databases in a scratch directory, a warm-up, then
# `--orders` sagas with 1,000 in flight, repeated `--runs` times. Prints every run and the median,
# and the driver's sagas/s of each.
#
# CPU per saga moves far less from run to run than throughput does on a shared machine, so this
# is the figure to compare two builds by (run it with --samples pointing at each, alternately).
# Durable (FULL) everywhere, as in saga_bench's E runs.
#
#   bench/cpu_per_saga.sh [--samples build/default/samples] [--orders 20000] [--runs 3]
set -euo pipefail

samples=build/default/samples
orders=20000
runs=3
while [[ $# -gt 0 ]]; do
  case "$1" in
    --samples) samples=$2; shift 2 ;;
    --orders) orders=$2; shift 2 ;;
    --runs) runs=$2; shift 2 ;;
    *) echo "usage: $0 [--samples DIR] [--orders N] [--runs K]" >&2; exit 2 ;;
  esac
done
samples=$(cd "$samples" && pwd)
work=$(mktemp -d /tmp/cpu_per_saga.XXXXXX)
source "$(dirname "$0")/cluster.sh"
trap 'cluster_stop; rm -rf "$work"' EXIT

# utime + stime of a process, in clock ticks.
ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

run_once() {
  local dir=$work/run$1
  cluster_start "$dir" full
  local dbs=(--inventory-db "$dir/inventory.db" --payment-db "$dir/payment.db"
    --shipping-db "$dir/shipping.db")
  cluster_drive "$dir" 1000 "${dbs[@]}" --orders 3000 --first-order 900000000  # warm-up
  local names=(orchestrator inventory payment shipping) before=()
  local processes=("$cluster_orchestrator" "${cluster_participants[@]}")
  for pid in "${processes[@]}"; do before+=("$(ticks "$pid")"); done
  local started=$SECONDS
  cluster_drive "$dir" 1000 "${dbs[@]}" --orders "$orders"
  local line="run $1:"
  for i in "${!processes[@]}"; do
    local used=$(($(ticks "${processes[$i]}") - ${before[$i]}))
    local us=$((used * 1000000 / $(getconf CLK_TCK) / orders))
    line+=" ${names[$i]} ${us} µs"
    echo "${names[$i]} $us" >>"$work/figures"
  done
  # The driver's own figure for the measured run (its log also holds the warm-up's).
  local rate
  rate=$(sed -n 's/^Throughput *\([0-9.]*\) sagas.*/\1/p' "$dir/driver.log" | tail -n 1)
  echo "sagas/s ${rate%.*}" >>"$work/figures"
  echo "$line per saga ($orders sagas in $((SECONDS - started)) s, $rate sagas/s)"
  cluster_stop
}

for run in $(seq 1 "$runs"); do run_once "$run"; done
echo -n "median:"
median_of() {
  awk -v n="$1" '$1 == n { print $2 }' "$work/figures" | sort -n |
    awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'
}
for name in orchestrator inventory payment shipping; do
  echo -n " $name $(median_of "$name") µs"
done
echo " CPU per saga; $(median_of sagas/s) sagas/s (throughput moves far more between runs)"
