#!/usr/bin/env bash
# Stop the run on every worker the way a preemption does: SIGTERM asks the trainer to save a checkpoint at the
# next step boundary and exit (all workers agree on the step). --kill sends SIGKILL instead (no checkpoint).
#
#   bash launch/tpu/stop.sh --name=vitg [--num-slices=2] [--kill] [--dry-run]
set -euo pipefail
# shellcheck source=launch/tpu/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

usage() {
  print_header
  tpu_usage
}

parse_tpu_args "$@"
pid_file="\$HOME/$REMOTE_LOGS/train.pid"
remote="if [ -f $pid_file ] && kill -0 \"\$(cat $pid_file)\" 2>/dev/null;"
remote+=" then kill -$SIGNAL \"\$(cat $pid_file)\" && echo \"\$(hostname): sent SIG$SIGNAL to \$(cat $pid_file)\";"
remote+=" else echo \"\$(hostname): no run\"; fi"
while read -r node; do
  ssh_all "$node" "$remote"
done < <(node_names)
