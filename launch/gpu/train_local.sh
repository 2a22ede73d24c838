#!/usr/bin/env bash
# Pretraining on the GPUs of this machine (no SLURM): one process drives all visible GPUs.
#
#   bash launch/gpu/train_local.sh --config=configs/vitg_pretrain.py --workdir=runs/vitg \
#       [--gpus=0,1,2,3] [--hardware=h100] [--venv=.venv] [--config.x=y ...] [--dry-run]
#
# Exports the XLA settings of videomae_jax/xla_flags.py for --hardware, prints them (so the log records them) and
# `exec`s python, so SIGTERM / SIGUSR1 sent to this script's pid (kill, docker stop, a scheduler) reach the
# trainer, which saves a checkpoint at the next step boundary and exits. Run the same command again to resume.
set -euo pipefail
# shellcheck source=launch/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

HARDWARE="${HARDWARE:-h100}"
GPUS="${GPUS:-}"
VENV="${VENV:-}"
CONFIG="${CONFIG:-configs/vitg_pretrain.py}"
WORKDIR="${WORKDIR:-}"
EXTRA_ARGS=()

usage() {
  print_header
  cat <<EOF
Options (environment variable in brackets):
  --hardware=NAME     XLA recipe: h100, h200, a100 [HARDWARE] (default h100)
  --gpus=LIST         CUDA_VISIBLE_DEVICES, e.g. 0,1,2,3 [GPUS] (default: all)
  --venv=DIR          virtual environment to activate [VENV]
  --config=FILE       [CONFIG] (default configs/vitg_pretrain.py)
  --workdir=DIR       run directory [WORKDIR]
  --config.KEY=VALUE  passed to videomae_jax.main (repeatable); so is everything after --
  --dry-run           print what would run, values filled in; run nothing
EOF
}

while [[ $# -gt 0 ]]; do
  case "$1" in
    -h|--help) usage; exit 0 ;;
    --dry-run) DRY_RUN=1; shift ;;
    --config.*) EXTRA_ARGS+=("$1"); shift ;;
    --) shift; EXTRA_ARGS+=("$@"); break ;;
    --*)
      split_option "$@"
      case "$OPT_KEY" in
        --hardware) HARDWARE="$OPT_VALUE" ;;
        --gpus) GPUS="$OPT_VALUE" ;;
        --venv) VENV="$OPT_VALUE" ;;
        --config) CONFIG="$OPT_VALUE" ;;
        --workdir) WORKDIR="$OPT_VALUE" ;;
        *) die "unknown option $OPT_KEY (see --help)" ;;
      esac
      shift "$OPT_SHIFT"
      ;;
    *) die "unexpected argument $1 (see --help)" ;;
  esac
done
[[ -n "$WORKDIR" ]] || die "--workdir=DIR is required"

commands="cd $(quote "$LAUNCH_REPO_ROOT")"
if [[ -n "$VENV" ]]; then commands+=$'\n'"set +u; source $(quote "$VENV/bin/activate"); set -u"; fi
commands+=$'\n'"$(xla_exports "$HARDWARE")"
if [[ -n "$GPUS" ]]; then commands+=$'\n'"export CUDA_VISIBLE_DEVICES=$(quote "$GPUS")"; fi
commands+=$'\n'"export VIDEOMAE_HARDWARE=$(quote "$HARDWARE")"
main=(python -u -m videomae_jax.main "--config=$CONFIG" "--workdir=$WORKDIR" "${EXTRA_ARGS[@]}")
commands+=$'\n'"exec $(quote "${main[@]}")"

if [[ "$DRY_RUN" == 1 ]]; then
  echo "$commands"
  exit 0
fi
echo "== $(date -u +%FT%TZ) $(hostname): videomae_jax on ${GPUS:-all} GPUs ($HARDWARE)"
echo "$commands"
eval "$commands"
