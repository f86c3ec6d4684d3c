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
# Starts are counted once their turn has committed: waits up to 5 s for the count to be $1.
expect_started() {
  for _ in $(seq 1 100); do [ "$(started)" = "$1" ] && return 0; sleep 0.05; done
  fail "expected $1 sagas started, stats say $(started)"
}

good='{"order_id":"o-1","customer_id":"c-1","address":"1 Main St","items":[{"sku":"sku-pen","quantity":1,"unit_price_cents":150}]}'
bad='{"order_id":"o-2","customer_id":"c-1","address":"1 Main St"}'

reply=$(request "{\"op\":\"start_many\",\"orders\":[$good,$bad]}") && fail "a bad order was accepted: $reply"
[[ $reply == *'"ok":false'* && $reply == *items* ]] || fail "unexpected refusal: $reply"
sleep 0.5  # a start, had there been one, would have committed by now
[ "$(started)" = 0 ] || fail "the good order of a refused request started"

reply=$(request "{\"op\":\"start\",\"order\":$bad}") && fail "a bad order was accepted: $reply"
reply=$(request '{"op":"start_many","orders":"none"}') && fail "orders that are no array: $reply"
[[ $reply == *'orders must be an array'* ]] || fail "unexpected refusal: $reply"

reply=$(request "{\"op\":\"start_many\",\"orders\":[$good,$good]}") || fail "refused: $reply"
[ "$(grep -o '"[0-9a-f-]\{36\}"' <<<"$reply" | sort -u | wc -l)" = 2 ] || fail "not two ids: $reply"
reply=$(request "{\"op\":\"start\",\"order\":$good,\"correlationId\":\"req-1\"}") || fail "refused: $reply"
[[ $reply == *'"sagaId":"'* ]] || fail "no saga id: $reply"
expect_started 3
echo "intake: ok"
