#!/usr/bin/env bash
# Runs the order flow as separate processes: the orchestrator, the inventory, payment and
# shipping services, and the driver that places the orders and checks the services' ledgers.
# Every process it starts is stopped on exit, also when interrupted.
#
# Environment: BIN (directory of the built samples, default build/default/samples),
# WORK (scratch directory, recreated; default build/demo), ORDERS (default 1000),
# RATE (orders/s, 0 = as fast as possible; default 0),
# RESTART (a service to kill with SIGKILL mid-run and start again: inventory, payment or shipping),
# DURABILITY (full, normal or off; default full).
set -euo pipefail

BIN=${BIN:-build/default/samples}
WORK=${WORK:-build/demo}
ORDERS=${ORDERS:-1000}
RATE=${RATE:-0}
RESTART=${RESTART:-}
DURABILITY=${DURABILITY:-full}

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

"$BIN/order_orchestrator/order_orchestrator" --router 'tcp://127.0.0.1:*' \
  --events 'tcp://127.0.0.1:*' --intake 'tcp://127.0.0.1:*' --db "$WORK/orchestrator.db" \
  --durability "$DURABILITY" --heartbeat-ms 200 --command-timeout-ms 1000 \
  --endpoints-file "$WORK/endpoints" 2>"$WORK/orchestrator.log" &
pids[orchestrator]=$!
for _ in $(seq 1 100); do [ -f "$WORK/endpoints" ] && break; sleep 0.05; done
[ -f "$WORK/endpoints" ] || { echo "the orchestrator did not start; see $WORK/orchestrator.log"; exit 1; }
router=$(sed -n 's/^router=//p' "$WORK/endpoints")
intake=$(sed -n 's/^intake=//p' "$WORK/endpoints")

start_service() {
  local name=$1
  "$BIN/services/${name}_service" --orchestrator "$router" --instance "${name}-1" \
    --db "$WORK/$name.db" --heartbeat-ms 200 --durability "$DURABILITY" \
    2>>"$WORK/$name.log" &
  pids[$name]=$!
}
for service in inventory payment shipping; do start_service "$service"; done

echo "Orchestrator on $router (orders: $intake); services: inventory, payment, shipping"
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

if [ "$result" -eq 0 ]; then
  example=$(grep -m1 -o 'saga [0-9a-f-]* ' "$WORK/orchestrator.log" | cut -d' ' -f2 || true)
  cat <<NEXT

Next:
  - Logs: $WORK/orchestrator.log (one line per saga outcome, with its correlation id) and
    $WORK/{inventory,payment,shipping}.log.
  - The orchestrator's database: $WORK/orchestrator.db. One saga's history:
      sqlite3 $WORK/orchestrator.db "SELECT kind, message_type, from_state, to_state FROM journal WHERE saga_id = '${example:-<saga id>}' ORDER BY sequence"
  - The services' ledgers: $WORK/inventory.db, $WORK/payment.db, $WORK/shipping.db.
NEXT
fi
exit "$result"
