#!/usr/bin/env bash
# Pretraining on SLURM GPU nodes: one process per node, all of the node's GPUs in that process.
#
#   bash launch/gpu/slurm_train.sh --nodes=8 --config=configs/vitg_pretrain.py --workdir=/shared/runs/vitg \
#       [--partition=P --account=A --time=48:00:00 --venv=/shared/venv --requeue] [--config.x=y ...] [--dry-run]
#
# Run from a login node it submits itself with sbatch; inside the allocation (sbatch, or salloc + this script) it
# exports the XLA/NCCL settings of videomae_jax/xla_flags.py for --hardware and starts
#   srun python -m videomae_jax.main --config=... --workdir=...
# jax.distributed.initialize() reads the rank, size and coordinator from SLURM's variables; JAX_LOCAL_DEVICE_IDS
# makes each process use all GPUs of its node (JAX's SLURM default is one GPU per process).
# Preemption: SLURM sends SIGUSR1 to the job steps --signal-seconds (300) before the time limit; the trainer
# saves a checkpoint at the next step boundary and exits. SIGTERM (scancel, preemption) does the same. Submitting
# the same command again resumes from the workdir's last checkpoint (--requeue does it for preempted jobs).
#SBATCH --job-name=videomae
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=1
#SBATCH --gpus-per-node=8
#SBATCH --signal=USR1@300
#SBATCH --output=slurm-%x-%j.out
set -euo pipefail

# Inside an allocation SLURM runs a copy of this file from its spool directory: then the repository is the
# working directory (the submitter passes --chdir) or the directory sbatch was called from.
for lib in "$(dirname "${BASH_SOURCE[0]}")/../lib.sh" "$PWD/launch/lib.sh" "${SLURM_SUBMIT_DIR:-.}/launch/lib.sh"; do
  if [[ -f "$lib" ]]; then
    # shellcheck source=launch/lib.sh
    source "$lib"
    break
  fi
done
[[ -n "${LAUNCH_REPO_ROOT:-}" ]] || { echo "slurm_train.sh: run it from the repository root" >&2; exit 2; }

NODES="${NODES:-2}"
GPUS_PER_NODE="${GPUS_PER_NODE:-8}"
CPUS_PER_NODE="${CPUS_PER_NODE:-}"
HARDWARE="${HARDWARE:-h100}"
PARTITION="${PARTITION:-}"
ACCOUNT="${ACCOUNT:-}"
QOS="${QOS:-}"
TIME_LIMIT="${TIME_LIMIT:-48:00:00}"
JOB_NAME="${JOB_NAME:-videomae}"
SIGNAL_SECONDS="${SIGNAL_SECONDS:-300}"
REQUEUE="${REQUEUE:-0}"
LOG_DIR="${LOG_DIR:-logs}"
VENV="${VENV:-}"
CONFIG="${CONFIG:-configs/vitg_pretrain.py}"
WORKDIR="${WORKDIR:-}"
EXTRA_ENV=()
EXTRA_ARGS=()

usage() {
  print_header
  cat <<EOF
Options (environment variable in brackets):
  --nodes=N              nodes [NODES] (default 2)
  --gpus-per-node=G      [GPUS_PER_NODE] (default 8)
  --cpus-per-node=C      CPUs for the one task per node (data loading) [CPUS_PER_NODE] (default: SLURM's)
  --hardware=NAME        XLA recipe and device: h100, h200, a100 [HARDWARE] (default h100)
  --partition=P --account=A --qos=Q   [PARTITION, ACCOUNT, QOS]
  --time=HH:MM:SS        time limit [TIME_LIMIT] (default 48:00:00)
  --job-name=NAME        [JOB_NAME] (default videomae)
  --signal-seconds=S     SIGUSR1 this long before the time limit [SIGNAL_SECONDS] (default 300)
  --requeue              let SLURM requeue the job after preemption [REQUEUE=1]
  --log-dir=DIR          SLURM output files, relative to the repo [LOG_DIR] (default logs)
  --venv=DIR             virtual environment to activate on the nodes [VENV]
  --env=KEY=VALUE        extra environment for the run, e.g. NCCL_IB_HCA=mlx5 (repeatable)
  --config=FILE          [CONFIG] (default configs/vitg_pretrain.py)
  --workdir=DIR          run directory on a filesystem every node sees [WORKDIR]
  --config.KEY=VALUE     passed to videomae_jax.main (repeatable); so is everything after --
  --dry-run              print the sbatch command and what the job runs, values filled in; run nothing
EOF
}

while [[ $# -gt 0 ]]; do
  case "$1" in
    -h|--help) usage; exit 0 ;;
    --dry-run) DRY_RUN=1; shift ;;
    --requeue) REQUEUE=1; shift ;;
    --config.*) EXTRA_ARGS+=("$1"); shift ;;
    --) shift; EXTRA_ARGS+=("$@"); break ;;
    --*)
      split_option "$@"
      case "$OPT_KEY" in
        --nodes) NODES="$OPT_VALUE" ;;
        --gpus-per-node) GPUS_PER_NODE="$OPT_VALUE" ;;
        --cpus-per-node) CPUS_PER_NODE="$OPT_VALUE" ;;
        --hardware) HARDWARE="$OPT_VALUE" ;;
        --partition) PARTITION="$OPT_VALUE" ;;
        --account) ACCOUNT="$OPT_VALUE" ;;
        --qos) QOS="$OPT_VALUE" ;;
        --time) TIME_LIMIT="$OPT_VALUE" ;;
        --job-name) JOB_NAME="$OPT_VALUE" ;;
        --signal-seconds) SIGNAL_SECONDS="$OPT_VALUE" ;;
        --log-dir) LOG_DIR="$OPT_VALUE" ;;
        --venv) VENV="$OPT_VALUE" ;;
        --env) [[ "$OPT_VALUE" == *=* ]] || die "--env needs KEY=VALUE"; EXTRA_ENV+=("$OPT_VALUE") ;;
        --config) CONFIG="$OPT_VALUE" ;;
        --workdir) WORKDIR="$OPT_VALUE" ;;
        *) die "unknown option $OPT_KEY (see --help)" ;;
      esac
      shift "$OPT_SHIFT"
      ;;
    *) die "unexpected argument $1 (see --help)" ;;
  esac
done
[[ -n "$WORKDIR" ]] || die "--workdir=DIR is required (a directory every node sees)"
[[ "$NODES" =~ ^[1-9][0-9]*$ ]] || die "--nodes must be a positive integer, got $NODES"
[[ "$GPUS_PER_NODE" =~ ^[1-9][0-9]*$ ]] || die "--gpus-per-node must be a positive integer, got $GPUS_PER_NODE"

# What runs inside the allocation: environment, then one srun task per node. `exec` makes srun the batch
# shell itself, so a signal sent to the batch shell also reaches srun, which forwards it to python.
job_commands() {
  local nodes="$1"
  echo "cd $(quote "$LAUNCH_REPO_ROOT")"
  if [[ -n "$VENV" ]]; then
    echo "set +u; source $(quote "$VENV/bin/activate"); set -u"
  fi
  xla_exports "$HARDWARE"
  local ids
  ids="$(seq -s, 0 $((GPUS_PER_NODE - 1)))"
  echo "export JAX_LOCAL_DEVICE_IDS=$ids"
  echo "export VIDEOMAE_HARDWARE=$(quote "$HARDWARE")"
  local pair
  for pair in "${EXTRA_ENV[@]}"; do
    echo "export ${pair%%=*}=$(quote "${pair#*=}")"
  done
  local srun_cmd=(srun "--nodes=$nodes" --ntasks-per-node=1 "--gpus-per-node=$GPUS_PER_NODE" --kill-on-bad-exit=1
                  python -u -m videomae_jax.main "--config=$CONFIG" "--workdir=$WORKDIR" "${EXTRA_ARGS[@]}")
  echo "exec $(quote "${srun_cmd[@]}")"
}

if [[ -z "${SLURM_JOB_ID:-}" ]]; then
  # Submit: sbatch options on the command line override the #SBATCH defaults above.
  sbatch_cmd=(sbatch "--job-name=$JOB_NAME" "--nodes=$NODES" --ntasks-per-node=1 "--gpus-per-node=$GPUS_PER_NODE"
              "--time=$TIME_LIMIT" "--signal=USR1@$SIGNAL_SECONDS" "--chdir=$LAUNCH_REPO_ROOT"
              "--output=$LOG_DIR/%x-%j.out" --export=ALL)
  if [[ -n "$CPUS_PER_NODE" ]]; then sbatch_cmd+=("--cpus-per-task=$CPUS_PER_NODE"); fi
  if [[ -n "$PARTITION" ]]; then sbatch_cmd+=("--partition=$PARTITION"); fi
  if [[ -n "$ACCOUNT" ]]; then sbatch_cmd+=("--account=$ACCOUNT"); fi
  if [[ -n "$QOS" ]]; then sbatch_cmd+=("--qos=$QOS"); fi
  if [[ "$REQUEUE" == 1 ]]; then sbatch_cmd+=(--requeue --open-mode=append); fi
  forwarded=("--nodes=$NODES" "--gpus-per-node=$GPUS_PER_NODE" "--hardware=$HARDWARE" "--config=$CONFIG"
             "--workdir=$WORKDIR")
  if [[ -n "$VENV" ]]; then forwarded+=("--venv=$VENV"); fi
  for pair in "${EXTRA_ENV[@]}"; do forwarded+=("--env=$pair"); done
  sbatch_cmd+=("$LAUNCH_REPO_ROOT/launch/gpu/slurm_train.sh" "${forwarded[@]}" "${EXTRA_ARGS[@]}")
  if [[ "$DRY_RUN" != 1 ]]; then mkdir -p "$LAUNCH_REPO_ROOT/$LOG_DIR"; fi
  run "${sbatch_cmd[@]}"
  if [[ "$DRY_RUN" == 1 ]]; then
    echo "# the job then runs, on its first node:"
    job_commands "$NODES"
  fi
  exit 0
fi

# Inside the allocation.
nodes="${SLURM_JOB_NUM_NODES:-$NODES}"
commands="$(job_commands "$nodes")"
if [[ "$DRY_RUN" == 1 ]]; then
  echo "$commands"
  exit 0
fi
echo "== $(date -u +%FT%TZ) job ${SLURM_JOB_ID} on ${SLURM_JOB_NODELIST:-?}: ${nodes} nodes x ${GPUS_PER_NODE} GPUs"
echo "$commands"
eval "$commands"
