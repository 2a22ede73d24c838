# shellcheck shell=bash
# Helpers shared by the launch scripts (sourced, never run). Nothing here runs a command by itself.
#
#   run CMD ARGS...        runs the command, or under --dry-run prints it (shell-quoted, values filled in)
#   quote ARGS...          prints the arguments as one shell-quoted command line
#   xla_exports HARDWARE   the export lines of videomae_jax/xla_flags.py's recipe (the one place flags live),
#                          merged over the caller's environment (flags already set there win)
#   read_jax_pin           the jax version setup.py pins (the TPU install adds jax[tpu] at the same version)

LAUNCH_REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DRY_RUN="${DRY_RUN:-0}"

# Prints the calling script's header comment (the lines after the shebang, up to the first non-comment line).
print_header() {
  awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"
}

die() {
  echo "$(basename "$0"): $*" >&2
  exit 2
}

quote() {
  local out=() arg
  for arg in "$@"; do
    if [[ -n "$arg" && "$arg" =~ ^[A-Za-z0-9_@%+=:,./~-]+$ ]]; then
      out+=("$arg")
    else
      out+=("'${arg//\'/\'\\\'\'}'")
    fi
  done
  printf '%s\n' "${out[*]}"
}

run() {
  if [[ "$DRY_RUN" == 1 ]]; then
    quote "$@"
  else
    echo "+ $(quote "$@")" >&2
    "$@"
  fi
}

xla_exports() {
  PYTHONPATH="$LAUNCH_REPO_ROOT${PYTHONPATH:+:$PYTHONPATH}" "${PYTHON:-python3}" -m videomae_jax.tools.xla_flags \
    --hardware="$1" --format=shell --merge_environment
}

read_jax_pin() {
  sed -n 's/^ *"jax==\([0-9.]*\)".*/\1/p' "$LAUNCH_REPO_ROOT/setup.py" | head -n 1
}

# Splits "--key=value" / "--key value" for the caller's option loop: sets OPT_KEY, OPT_VALUE and OPT_SHIFT
# (how many words the option used). Flags without a value must be handled before calling it.
# shellcheck disable=SC2034  # OPT_* are read by the caller
split_option() {
  OPT_KEY="${1%%=*}"
  if [[ "$1" == *=* ]]; then
    OPT_VALUE="${1#*=}"
    OPT_SHIFT=1
  else
    [[ $# -ge 2 ]] || die "$1 needs a value"
    OPT_VALUE="$2"
    OPT_SHIFT=2
  fi
}
