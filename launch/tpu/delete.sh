#!/usr/bin/env bash
# Release the TPUs: delete the queued resource and its nodes (the workers' disks go with them; the run's
# checkpoints live in the gs:// workdir). Stop the run first (stop.sh) so it saves a last checkpoint.
#
#   bash launch/tpu/delete.sh --name=vitg [--dry-run]
set -euo pipefail
# shellcheck source=launch/tpu/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

usage() {
  print_header
  tpu_usage
}

parse_tpu_args "$@"
gcloud_location
run gcloud compute tpus queued-resources delete "$TPU_NAME" "${GCLOUD_LOCATION[@]}" --force --quiet
