#!/usr/bin/env bash
# Instructions the engine executes per order saga, counted by callgrind: saga_engine_loop runs a
# small and a large fixed amount of work (in memory, or on a WAL file without fsync), and the
# difference divided by the difference in sagas is the engine's cost per saga, free of start-up.
# Only Engine::run_once and Engine::start are counted: the replies the loop builds between turns
# are the participants' work. The figure is the same from run to run on the same build (to a
# few hundredths of a percent), so it is the one to compare two builds by. Run it with
# --loop pointing at each build's saga_engine_loop. --top N also prints the N functions with the
# most inclusive instructions in the large run.
#
#   bench/instructions_per_saga.sh [--loop build/default/bench/saga_engine_loop] [--store file]
#                                  [--in-flight 100] [--top 0] [-- SAGA_ENGINE_LOOP FLAGS...]
set -euo pipefail

loop=build/default/bench/saga_engine_loop
store=file
in_flight=100
top=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --loop) loop=$2; shift 2 ;;
    --store) store=$2; shift 2 ;;
    --in-flight) in_flight=$2; shift 2 ;;
    --top) top=$2; shift 2 ;;
    --) shift; break ;;
    *) echo "usage: $0 [--loop PATH] [--store memory|file] [--in-flight N] [--top N] [-- FLAGS]" >&2
       exit 2 ;;
  esac
done
loop_flags=("$@")
command -v valgrind >/dev/null || { echo "needs valgrind (apt-get install valgrind)" >&2; exit 1; }
work=$(mktemp -d /tmp/instructions_per_saga.XXXXXX)
trap 'rm -rf "$work"' EXIT

small=200
large=1200
count() {
  valgrind --tool=callgrind --callgrind-out-file="$work/cg.$1" \
    '--toggle-collect=saga::Engine::run_once()' '--toggle-collect=saga::Engine::start(*' \
    "$loop" --sagas "$1" --in-flight "$in_flight" --store "$store" --path "$work/loop.db" \
    "${loop_flags[@]}" >"$work/out.$1" 2>&1 || { cat "$work/out.$1" >&2; exit 1; }
  sed -n 's/.*Collected : \([0-9]*\).*/\1/p' "$work/out.$1"
}
a=$(count $small)
b=$(count $large)
echo "$(( (b - a) / (large - small) )) instructions per saga in the engine" \
  "(store $store, $in_flight in flight; $small and $large sagas: $a and $b)"
if [[ $top -gt 0 ]]; then
  callgrind_annotate --inclusive=yes "$work/cg.$large" 2>/dev/null |
    awk '/^ *[0-9,]+ \(/ { print }' | sed -E 's/\[[^]]*\]$//' | cut -c1-160 | head -n "$top"
fi
