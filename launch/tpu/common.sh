# shellcheck shell=bash
# Options shared by the Cloud TPU scripts (sourced by create.sh, setup.sh, train.sh, stop.sh, logs.sh,
# delete.sh). Every option also reads an environment variable of the same meaning, so
#   TPU_NAME=vitg ZONE=us-east5-a bash launch/tpu/train.sh --config=configs/vitg_pretrain.py --workdir=gs://b/r
# works too. Flags win over variables.
# shellcheck source=launch/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

TPU_NAME="${TPU_NAME:-videomae-${USER:-user}}"
PROJECT="${PROJECT:-${CLOUDSDK_CORE_PROJECT:-}}"   # empty: gcloud's configured default project
TPU_TYPE="${TPU_TYPE:-v5p-128}"                      # v5p-128 = 64 chips; v5litepod-256 = 256 v5e chips
NUM_SLICES="${NUM_SLICES:-1}"
ZONE="${ZONE:-}"
RUNTIME_VERSION="${RUNTIME_VERSION:-}"
SPOT="${SPOT:-0}"
RESERVED="${RESERVED:-0}"
WAIT="${WAIT:-0}"
CONFIG="${CONFIG:-configs/vitg_pretrain.py}"
WORKDIR="${WORKDIR:-}"
SOURCE="${SOURCE:-git}"                              # git: clone REPO_URL at REF on the workers; copy: upload
REPO_URL="${REPO_URL:-}"
REF="${REF:-}"
REMOTE_DIR="${REMOTE_DIR:-videomae_jax}"             # on the workers, relative to the home directory
REMOTE_VENV="${REMOTE_VENV:-videomae_venv}"
REMOTE_LOGS="${REMOTE_LOGS:-videomae_logs}"
ATTACH="${ATTACH:-0}"
SIGNAL="${SIGNAL:-TERM}"
SET_MEGASCALE="${SET_MEGASCALE:-0}"
MEGASCALE_PORT="${MEGASCALE_PORT:-8080}"
EXTRA_ARGS=()                                        # --config.x=y overrides and anything after --

tpu_usage() {
  cat <<EOF
Options (environment variable in brackets):
  --name=NAME              queued resource / TPU name [TPU_NAME] (default videomae-\$USER); with --num-slices>1
                           the slices are NAME-0 ... NAME-(S-1)
  --project=PROJECT        [PROJECT] (default: gcloud's configured project)
  --zone=ZONE              [ZONE] (default by type: v4 us-central2-b, v5e us-west4-a, v5p us-east5-a, v6e us-east5-b)
  --tpu-type=TYPE          accelerator type [TPU_TYPE] (default v5p-128), e.g. v4-64, v5litepod-256, v5p-512
  --num-slices=S           slices joined over DCN (multislice) [NUM_SLICES] (default 1)
  --runtime-version=V      TPU VM image [RUNTIME_VERSION] (default by type: tpu-ubuntu2204-base for v4,
                           v2-alpha-tpuv5-lite for v5e, v2-alpha-tpuv5 for v5p, v2-alpha-tpuv6e for v6e)
  --spot / --reserved      provisioning model [SPOT=1 / RESERVED=1] (default on-demand)
  --config=FILE            experiment config, relative to the repo [CONFIG] (default configs/vitg_pretrain.py)
  --workdir=gs://B/RUN     run directory, shared by all workers [WORKDIR]
  --source=git|copy        setup: clone REPO_URL at REF, or upload this working tree [SOURCE] (default git)
  --repo-url=URL --ref=REF [REPO_URL, REF] (default: this checkout's origin URL and HEAD commit)
  --config.KEY=VALUE       passed through to videomae_jax.main (repeatable); so is everything after --
  --dry-run                print the commands with every value filled in; run nothing
EOF
}

# parse_tpu_args "$@": fills the variables above; unknown options are an error.
parse_tpu_args() {
  while [[ $# -gt 0 ]]; do
    case "$1" in
      -h|--help) usage; exit 0 ;;
      --dry-run) DRY_RUN=1; shift ;;
      --spot) SPOT=1; shift ;;
      --reserved) RESERVED=1; shift ;;
      --wait) WAIT=1; shift ;;
      --attach) ATTACH=1; shift ;;
      --set-megascale) SET_MEGASCALE=1; shift ;;
      --kill) SIGNAL=KILL; shift ;;
      --config.*) EXTRA_ARGS+=("$1"); shift ;;
      --) shift; EXTRA_ARGS+=("$@"); break ;;
      --*)
        split_option "$@"
        case "$OPT_KEY" in
          --name) TPU_NAME="$OPT_VALUE" ;;
          --project) PROJECT="$OPT_VALUE" ;;
          --zone) ZONE="$OPT_VALUE" ;;
          --tpu-type) TPU_TYPE="$OPT_VALUE" ;;
          --num-slices) NUM_SLICES="$OPT_VALUE" ;;
          --runtime-version) RUNTIME_VERSION="$OPT_VALUE" ;;
          --config) CONFIG="$OPT_VALUE" ;;
          --workdir) WORKDIR="$OPT_VALUE" ;;
          --source) SOURCE="$OPT_VALUE" ;;
          --repo-url) REPO_URL="$OPT_VALUE" ;;
          --ref) REF="$OPT_VALUE" ;;
          --megascale-port) MEGASCALE_PORT="$OPT_VALUE" ;;
          *) die "unknown option $OPT_KEY (see --help)" ;;
        esac
        shift "$OPT_SHIFT"
        ;;
      *) die "unexpected argument $1 (see --help)" ;;
    esac
  done
  [[ "$NUM_SLICES" =~ ^[1-9][0-9]*$ ]] || die "--num-slices must be a positive integer, got $NUM_SLICES"
  local family
  family="$(tpu_family)"
  if [[ -z "$ZONE" ]]; then
    case "$family" in
      v4) ZONE=us-central2-b ;;
      v5e) ZONE=us-west4-a ;;
      v5p) ZONE=us-east5-a ;;
      v6e) ZONE=us-east5-b ;;
    esac
  fi
  if [[ -z "$RUNTIME_VERSION" ]]; then
    case "$family" in
      v4) RUNTIME_VERSION=tpu-ubuntu2204-base ;;
      v5e) RUNTIME_VERSION=v2-alpha-tpuv5-lite ;;
      v5p) RUNTIME_VERSION=v2-alpha-tpuv5 ;;
      v6e) RUNTIME_VERSION=v2-alpha-tpuv6e ;;
    esac
  fi
}

# v4 | v5e | v5p | v6e from the accelerator type (also the name videomae_jax.xla_flags knows the recipe by).
tpu_family() {
  case "$TPU_TYPE" in
    v4-*) echo v4 ;;
    v5litepod-*|v5e-*) echo v5e ;;
    v5p-*) echo v5p ;;
    v6e-*) echo v6e ;;
    *) die "unknown --tpu-type=$TPU_TYPE; use v4-N, v5litepod-N, v5p-N or v6e-N" ;;
  esac
}

# The TPU node names: NAME for one slice, NAME-0 ... NAME-(S-1) for a multislice queued resource.
node_names() {
  if [[ "$NUM_SLICES" == 1 ]]; then
    echo "$TPU_NAME"
  else
    local i
    for ((i = 0; i < NUM_SLICES; i++)); do echo "$TPU_NAME-$i"; done
  fi
}

# gcloud options every TPU command takes.
gcloud_location() {
  GCLOUD_LOCATION=("--zone=$ZONE")
  if [[ -n "$PROJECT" ]]; then GCLOUD_LOCATION+=("--project=$PROJECT"); fi
}

# ssh_all NODE REMOTE_COMMAND: runs the command on every worker of one TPU node.
ssh_all() {
  gcloud_location
  run gcloud compute tpus tpu-vm ssh "$1" "${GCLOUD_LOCATION[@]}" --worker=all --command="$2"
}
