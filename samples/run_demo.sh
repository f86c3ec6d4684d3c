#!/usr/bin/env bash
# Runs the order flow as separate processes: the orchestrator, the inventory, payment and
# shipping services, and the driver that places the orders and checks the services' ledgers.
# Every process it starts is stopped on exit, also when interrupted.
#
# Environment: BIN (directory of the built samples, default build/default/samples),
# WORK (scratch directory, recreated; default build/demo), ORDERS (default 1000),
# RATE (orders/s, 0 = as fast as possible; default 0),
# RESTART (a service to kill with SIGKILL mid-run and start again: inventory, payment or shipping),
# DURABILITY (full, normal or off; default full),
# METRICS (HOST:PORT for the orchestrator's Prometheus endpoint, e.g. 127.0.0.1:0 for any free
# port; default off; the endpoint is scraped into WORK/metrics.txt before the orchestrator stops),
# LOG_FORMAT (console or json; default console), LOG_LEVEL (debug, info, warn, error; default info),
# ORCHESTRATOR_FLAGS (more flags for the orchestrator, e.g. "--lag-pending-warning 50").
set -euo pipefail

BIN=${BIN:-build/default/samples}
WORK=${WORK:-build/demo}
ORDERS=${ORDERS:-1000}
RATE=${RATE:-0}
RESTART=${RESTART:-}
DURABILITY=${DURABILITY:-full}
METRICS=${METRICS:-}
LOG_FORMAT=${LOG_FORMAT:-console}
LOG_LEVEL=${LOG_LEVEL:-info}
read -r -a extra_flags <<<"${ORCHESTRATOR_FLAGS:-}"

rm -rf "$WORK"
mkdir -p "$WORK"
declare -A pids=()

cleanup() {
  local status=$?
  trap - EXIT INT TERM
  for name in "${!pids[@]}"; do kill -TERM "${pids[$name]}" 2>/dev/null || true; done
  for name in "${!pids[@]}"; do wait "${pids[$name]}" 2>/dev/null || true; done
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

metrics_flags=()
[ -n "$METRICS" ] && metrics_flags=(--metrics-listen "$METRICS")
"$BIN/order_orchestrator/order_orchestrator" --router 'tcp://127.0.0.1:*' \
  --events 'tcp://127.0.0.1:*' --intake 'tcp://127.0.0.1:*' --db "$WORK/orchestrator.db" \
  --durability "$DURABILITY" --heartbeat-ms 200 --command-timeout-ms 1000 \
  --log-format "$LOG_FORMAT" --log-level "$LOG_LEVEL" "${metrics_flags[@]}" "${extra_flags[@]}" \
  --endpoints-file "$WORK/endpoints" >/dev/null 2>"$WORK/orchestrator.log" &
pids[orchestrator]=$!
for _ in $(seq 1 100); do [ -f "$WORK/endpoints" ] && break; sleep 0.05; done
[ -f "$WORK/endpoints" ] || { echo "the orchestrator did not start; see $WORK/orchestrator.log"; exit 1; }
router=$(sed -n 's/^router=//p' "$WORK/endpoints")
intake=$(sed -n 's/^intake=//p' "$WORK/endpoints")
metrics_url=$(sed -n 's/^metrics=//p' "$WORK/endpoints")

start_service() {
  local name=$1
  "$BIN/services/${name}_service" --orchestrator "$router" --instance "${name}-1" \
    --db "$WORK/$name.db" --heartbeat-ms 200 --durability "$DURABILITY" \
    2>>"$WORK/$name.log" &
  pids[$name]=$!
}
for service in inventory payment shipping; do start_service "$service"; done

echo "Orchestrator on $router (orders: $intake); services: inventory, payment, shipping"
[ -n "$metrics_url" ] && echo "Metrics on $metrics_url"
"$BIN/order_driver/order_driver" --intake "$intake" --orders "$ORDERS" --rate "$RATE" \
  --inventory-db "$WORK/inventory.db" --payment-db "$WORK/payment.db" \
  --shipping-db "$WORK/shipping.db" &
driver=$!
pids[driver]=$driver

if [ -n "$RESTART" ]; then
  sleep 1
  echo "Killing the $RESTART service (SIGKILL) and starting it again"
  kill -KILL "${pids[$RESTART]}" 2>/dev/null || true
  wait "${pids[$RESTART]}" 2>/dev/null || true
  sleep 0.5
  start_service "$RESTART"
fi

set +e
wait "$driver"
result=$?
set -e
unset "pids[driver]"

if [ -n "$metrics_url" ]; then
  curl -s "$metrics_url" >"$WORK/metrics.txt" || echo "could not scrape $metrics_url"
fi

if [ "$result" -eq 0 ]; then
  example=$(grep -m1 -oE 'sagaId(=|":")[0-9a-f-]{36}' "$WORK/orchestrator.log" | grep -oE '[0-9a-f-]{36}$' || true)
  cat <<NEXT

Next:
  - Logs: $WORK/orchestrator.log (one "saga ended" line per outcome, with its sagaId,
    correlationId and causationId; LOG_FORMAT=json for JSON lines) and
    $WORK/{inventory,payment,shipping}.log.${metrics_url:+
  - Metrics: $WORK/metrics.txt (scraped from $metrics_url at the end).}
  - The orchestrator's database: $WORK/orchestrator.db. One saga's history:
      sqlite3 $WORK/orchestrator.db "SELECT kind, message_type, from_state, to_state FROM journal WHERE saga_id = '${example:-<saga id>}' ORDER BY sequence"
  - The services' ledgers: $WORK/inventory.db, $WORK/payment.db, $WORK/shipping.db.
NEXT
fi
exit "$result"
