#!/usr/bin/env bash
# The sample orchestrator's intake contract (samples/README.md): a start_many request is checked
# whole before any of its orders starts, so one bad order refuses the request and starts nothing;
# good requests start their sagas and answer their ids. Talks to the intake through
# `order_driver --request`; no participant is needed, the sagas just wait for their first reply.
#
# Environment: BIN (directory of the built samples), WORK (scratch directory, recreated).
set -euo pipefail

BIN=${BIN:-build/default/samples}
WORK=${WORK:-build/intake-test}
rm -rf "$WORK"
mkdir -p "$WORK"

"$BIN/order_orchestrator/order_orchestrator" --router 'tcp://127.0.0.1:*' \
  --events 'tcp://127.0.0.1:*' --intake 'tcp://127.0.0.1:*' --db "$WORK/orchestrator.db" \
  --durability off --endpoints-file "$WORK/endpoints" >/dev/null 2>"$WORK/orchestrator.log" &
orchestrator=$!
trap 'kill "$orchestrator" 2>/dev/null || true; wait 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do [ -s "$WORK/endpoints" ] && break; sleep 0.05; done
intake=$(sed -n 's/^intake=//p' "$WORK/endpoints")
[ -n "$intake" ] || { echo "the orchestrator did not start; see $WORK/orchestrator.log"; exit 1; }

request() { "$BIN/order_driver/order_driver" --intake "$intake" --request "$1"; }
fail() { echo "FAIL: $*"; exit 1; }
started() { request '{"op":"stats"}' | sed -n 's/.*"sagas_started":\([0-9]*\).*/\1/p'; }
# Starts are counted once their turn has committed: waits up to 5 s for the count to be $1, then
# checks it stays there.
expect_started() {
  for _ in $(seq 1 100); do [ "$(started)" = "$1" ] && break; sleep 0.05; done
  sleep 0.3
  [ "$(started)" = "$1" ] || fail "expected $1 sagas started, stats say $(started)"
}
# A refused request: the driver exits 1 (2 would be no answer at all) and the error names $2.
refused() {
  local rc=0
  reply=$(request "$1") || rc=$?
  [ "$rc" = 1 ] || fail "expected a refusal (exit 1), got exit $rc: $reply"
  [[ $reply == *'"ok":false'* && $reply == *"$2"* ]] || fail "unexpected refusal: $reply"
}

good='{"order_id":"o-1","customer_id":"c-1","address":"1 Main St","items":[{"sku":"sku-pen","quantity":1,"unit_price_cents":150}]}'
bad='{"order_id":"o-2","customer_id":"c-1","address":"1 Main St"}'

refused "{\"op\":\"start_many\",\"orders\":[$good,$bad]}" items
expect_started 0  # the good order of the refused request did not start
refused "{\"op\":\"start\",\"order\":$bad}" items
refused '{"op":"start_many","orders":"none"}' 'orders must be an array'
refused '{"op":"launch"}' 'unknown op'
expect_started 0

reply=$(request "{\"op\":\"start_many\",\"orders\":[$good,$good]}") || fail "refused: $reply"
[ "$(grep -o '"[0-9a-f-]\{36\}"' <<<"$reply" | sort -u | wc -l)" = 2 ] || fail "not two ids: $reply"
reply=$(request "{\"op\":\"start\",\"order\":$good,\"correlationId\":\"req-1\"}") || fail "refused: $reply"
[[ $reply == *'"sagaId":"'* ]] || fail "no saga id: $reply"
expect_started 3
echo "intake: ok"
