#!/usr/bin/env bash
# Create a Cloud TPU VM, pod slice or multislice through a queued resource (waits in line for capacity).
#
#   bash launch/tpu/create.sh --name=vitg --tpu-type=v5p-128 [--num-slices=2] [--spot] [--wait] [--dry-run]
#
# Then: setup.sh (install), train.sh (run), stop.sh (checkpoint and stop), delete.sh (release the TPUs).
set -euo pipefail
# shellcheck source=launch/tpu/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

usage() {
  print_header
  echo "  --wait                   poll until the queued resource is ACTIVE [WAIT=1]"
  tpu_usage
}

parse_tpu_args "$@"
gcloud_location

create=(gcloud compute tpus queued-resources create "$TPU_NAME" "${GCLOUD_LOCATION[@]}"
        "--accelerator-type=$TPU_TYPE" "--runtime-version=$RUNTIME_VERSION")
if [[ "$NUM_SLICES" == 1 ]]; then
  create+=("--node-id=$TPU_NAME")
else
  # Multislice: S identical slices NAME-0 ... NAME-(S-1), joined over the data-center network. The TPU runtime
  # gives every worker the MEGASCALE_* settings that connect the slices.
  create+=("--node-count=$NUM_SLICES" "--node-prefix=$TPU_NAME")
fi
if [[ "$SPOT" == 1 ]]; then create+=(--spot); fi
if [[ "$RESERVED" == 1 ]]; then create+=(--reserved); fi
run "${create[@]}"

describe=(gcloud compute tpus queued-resources describe "$TPU_NAME" "${GCLOUD_LOCATION[@]}"
          "--format=value(state.state)")
if [[ "$WAIT" == 1 ]]; then
  if [[ "$DRY_RUN" == 1 ]]; then
    echo "# until ACTIVE, every 60 s:"
    run "${describe[@]}"
  else
    while true; do
      state="$("${describe[@]}")"
      echo "$(date +%H:%M:%S) $TPU_NAME: $state" >&2
      case "$state" in
        ACTIVE) break ;;
        FAILED|SUSPENDED) die "queued resource $TPU_NAME is $state" ;;
      esac
      sleep 60
    done
  fi
else
  echo "# check with: $(quote "${describe[@]}")" >&2
fi
