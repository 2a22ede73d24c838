#!/usr/bin/env bash
# Start pretraining on every worker of every slice: the same `python -m videomae_jax.main` everywhere (JAX finds
# the other workers itself), with the TPU flags of videomae_jax/xla_flags.py for this TPU generation.
#
#   bash launch/tpu/train.sh --name=vitg --tpu-type=v5p-128 --config=configs/vitg_pretrain.py \
#       --workdir=gs://BUCKET/vitg_pretrain [--config.mesh.fsdp=4 ...] [--attach] [--dry-run]
#
# The run goes on in the background on each worker (log: ~/videomae_logs/train.log, pid in train.pid); --attach
# keeps it in the foreground here instead. Starting the same command again resumes from the workdir's checkpoint.
set -euo pipefail
# shellcheck source=launch/tpu/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

usage() {
  print_header
  echo "  --attach                 stream the output here instead of running in the background [ATTACH=1]"
  echo "  --set-megascale          export MEGASCALE_* for multislice yourself (the queued-resource runtime"
  echo "                           normally provides them) [SET_MEGASCALE=1]; --megascale-port=PORT (8080)"
  tpu_usage
}

parse_tpu_args "$@"
gcloud_location
[[ -n "$WORKDIR" ]] || die "--workdir=gs://BUCKET/RUN is required (every worker must see the same directory)"
if [[ "$WORKDIR" != gs://* ]]; then
  echo "$(basename "$0"): warning: --workdir=$WORKDIR is not on GCS; every worker needs the same directory" >&2
fi

hardware="$(tpu_family)"
flag_exports="$(xla_exports "$hardware")"

main=(-u -m videomae_jax.main "--config=$CONFIG" "--workdir=$WORKDIR" "${EXTRA_ARGS[@]}")
main_line="\$HOME/$REMOTE_VENV/bin/python $(quote "${main[@]}")"   # $HOME expands on the worker

slice=0
while read -r node; do
  remote="cd \$HOME/$REMOTE_DIR"
  remote+="; ${flag_exports//$'\n'/; }"
  if [[ "$NUM_SLICES" -gt 1 && "$SET_MEGASCALE" == 1 ]]; then
    coordinator_query=(gcloud compute tpus tpu-vm describe "$TPU_NAME-0" "${GCLOUD_LOCATION[@]}"
                       "--format=value(networkEndpoints[0].ipAddress)")
    if [[ "$DRY_RUN" == 1 ]]; then
      coordinator="<internal IP of $TPU_NAME-0 worker 0>"
      if [[ "$slice" == 0 ]]; then echo "# $coordinator, from: $(quote "${coordinator_query[@]}")"; fi
    else
      coordinator="$("${coordinator_query[@]}")"
    fi
    remote+="; export MEGASCALE_COORDINATOR_ADDRESS=$coordinator:$MEGASCALE_PORT MEGASCALE_PORT=$MEGASCALE_PORT"
    remote+=" MEGASCALE_NUM_SLICES=$NUM_SLICES MEGASCALE_SLICE_ID=$slice"
  fi
  remote+="; export VIDEOMAE_HARDWARE=$hardware"
  if [[ "$ATTACH" == 1 ]]; then
    remote+="; exec $main_line"
  else
    logs="\$HOME/$REMOTE_LOGS"
    remote+="; mkdir -p $logs"
    remote+="; { echo \"== \$(date -u +%FT%TZ) \$(hostname) $TPU_TYPE slice $slice\"; env | grep -E '^(LIBTPU_INIT_ARGS|XLA_FLAGS|MEGASCALE_|TPU_)' || true; } >> $logs/train.log"
    # setsid + nohup: the run outlives this ssh session; $! is python's pid (both exec), for stop.sh.
    remote+="; setsid nohup $main_line >> $logs/train.log 2>&1 < /dev/null &"
    remote+=" echo \$! > $logs/train.pid; echo \"started \$(hostname) pid \$(cat $logs/train.pid)\""
  fi
  if [[ "$ATTACH" == 1 && "$NUM_SLICES" -gt 1 && "$DRY_RUN" != 1 ]]; then
    ssh_all "$node" "$remote" &
  else
    ssh_all "$node" "$remote"
  fi
  slice=$((slice + 1))
done < <(node_names)
wait
if [[ "$ATTACH" != 1 && "$DRY_RUN" != 1 ]]; then
  echo "# follow with: bash launch/tpu/logs.sh --name=$TPU_NAME --zone=$ZONE --num-slices=$NUM_SLICES" >&2
fi
