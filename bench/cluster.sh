# Shared by the bench/*.sh scripts (source it): starts the order flow's four processes on fresh
# databases in a directory, on ephemeral loopback ports, and stops them.
#
#   cluster_start DIR PARTICIPANT_DURABILITY [ORCHESTRATOR FLAGS...]
#     sets cluster_orchestrator, cluster_participants (pids) and cluster_intake (the REP endpoint)
#   cluster_drive DIR WINDOW [ORDER_DRIVER FLAGS...]
#     places orders with at most WINDOW in flight, outcomes tracked, invariants not checked
#   cluster_stop                                stops whatever is still running
# Expects $samples (the built samples directory). $SERVICE_FLAGS, if set, is added to each
# service's command line (e.g. SERVICE_FLAGS="--batch 64"). Exits the script if the orchestrator
# does not come up.

cluster_pids=()
cluster_stop() {
  for pid in "${cluster_pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  cluster_pids=()
}

cluster_start() {
  local dir=$1 durability=$2 plenty=1000000000000
  shift 2
  mkdir -p "$dir"
  "$samples/order_orchestrator/order_orchestrator" "$@" --router 'tcp://127.0.0.1:*' \
    --events 'tcp://127.0.0.1:*' --intake 'tcp://127.0.0.1:*' --db "$dir/orchestrator.db" \
    --endpoints-file "$dir/endpoints" >"$dir/orchestrator.log" 2>&1 &
  cluster_orchestrator=$!
  cluster_pids=("$cluster_orchestrator")
  for _ in $(seq 200); do
    [[ -s $dir/endpoints ]] && break
    sleep 0.05
  done
  [[ -s $dir/endpoints ]] || { echo "the orchestrator did not start: $dir/orchestrator.log" >&2; exit 1; }
  sleep 0.1
  local router
  router=$(sed -n 's/^router=//p' "$dir/endpoints")
  cluster_intake=$(sed -n 's/^intake=//p' "$dir/endpoints")
  "$samples/services/inventory_service" --orchestrator "$router" --instance inventory-1 \
    --db "$dir/inventory.db" --durability "$durability" ${SERVICE_FLAGS:-} \
    --stock "sku-pen=$plenty,sku-book=$plenty,sku-lamp=$plenty,sku-chair=$plenty,sku-gold=$plenty" \
    >"$dir/inventory.log" 2>&1 &
  cluster_participants=($!)
  "$samples/services/payment_service" --orchestrator "$router" --instance payment-1 \
    --db "$dir/payment.db" --durability "$durability" ${SERVICE_FLAGS:-} --decline-rate 0 \
    --decline-above "$plenty" >"$dir/payment.log" 2>&1 &
  cluster_participants+=($!)
  "$samples/services/shipping_service" --orchestrator "$router" --instance shipping-1 \
    --db "$dir/shipping.db" --durability "$durability" ${SERVICE_FLAGS:-} --failure-rate 0 \
    >"$dir/shipping.log" 2>&1 &
  cluster_participants+=($!)
  cluster_pids+=("${cluster_participants[@]}")
  sleep 0.5
}

cluster_drive() {
  local dir=$1 window=$2
  shift 2
  "$samples/order_driver/order_driver" --intake "$cluster_intake" --track outcomes \
    --window "$window" --skip-invariants "$@" >>"$dir/driver.log" 2>&1
}
