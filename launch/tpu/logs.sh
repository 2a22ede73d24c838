#!/usr/bin/env bash
# Show the end of the training log of worker 0 of the first slice (process 0 logs the metrics).
#
#   bash launch/tpu/logs.sh --name=vitg [--lines=100] [--dry-run]
set -euo pipefail
# shellcheck source=launch/tpu/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

usage() {
  print_header
  tpu_usage
}

lines=100
args=()
for arg in "$@"; do
  case "$arg" in
    --lines=*) lines="${arg#--lines=}" ;;
    *) args+=("$arg") ;;
  esac
done
parse_tpu_args "${args[@]}"
gcloud_location
node="$(node_names | head -n 1)"
run gcloud compute tpus tpu-vm ssh "$node" "${GCLOUD_LOCATION[@]}" --worker=0 \
  --command="tail -n $lines \$HOME/$REMOTE_LOGS/train.log"
