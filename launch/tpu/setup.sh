#!/usr/bin/env bash
# Install videomae_jax on every worker of every slice: the code (git clone at a commit, or an upload of this
# working tree), a virtual environment, `pip install -e .` and jax[tpu] at the version setup.py pins.
#
#   bash launch/tpu/setup.sh --name=vitg [--source=git --repo-url=URL --ref=COMMIT | --source=copy] [--dry-run]
#
# Run it again after changing the code; it updates in place.
set -euo pipefail
# shellcheck source=launch/tpu/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

usage() {
  print_header
  tpu_usage
}

parse_tpu_args "$@"
gcloud_location
jax_version="$(read_jax_pin)"
[[ -n "$jax_version" ]] || die "could not read the jax pin from setup.py"

case "$SOURCE" in
  git)
    if [[ -z "$REPO_URL" ]]; then
      REPO_URL="$(git -C "$LAUNCH_REPO_ROOT" remote get-url origin 2>/dev/null || true)"
    fi
    [[ -n "$REPO_URL" ]] || die "no --repo-url and this checkout has no 'origin' remote; or use --source=copy"
    if [[ -z "$REF" ]]; then REF="$(git -C "$LAUNCH_REPO_ROOT" rev-parse HEAD)"; fi
    fetch="if [ -d \$HOME/$REMOTE_DIR/.git ]; then git -C \$HOME/$REMOTE_DIR fetch -q origin;"
    fetch+=" else git clone -q $(quote "$REPO_URL") \$HOME/$REMOTE_DIR; fi"
    fetch+=" && git -C \$HOME/$REMOTE_DIR checkout -q $(quote "$REF")"
    ;;
  copy)
    # Tracked and untracked-but-not-ignored files, as they are now (uncommitted edits included).
    archive="${TMPDIR:-/tmp}/videomae_jax_src.tar.gz"
    if [[ "$DRY_RUN" == 1 ]]; then
      echo "# pack this working tree:"
      echo "git -C $(quote "$LAUNCH_REPO_ROOT") ls-files -z -co --exclude-standard | tar -C $(quote "$LAUNCH_REPO_ROOT") --null -T - -czf $(quote "$archive")"
    else
      git -C "$LAUNCH_REPO_ROOT" ls-files -z -co --exclude-standard \
        | tar -C "$LAUNCH_REPO_ROOT" --null -T - -czf "$archive"
    fi
    while read -r node; do
      run gcloud compute tpus tpu-vm scp "$archive" "$node:videomae_jax_src.tar.gz" "${GCLOUD_LOCATION[@]}" \
        --worker=all
    done < <(node_names)
    fetch="rm -rf \$HOME/$REMOTE_DIR && mkdir -p \$HOME/$REMOTE_DIR && tar -xzf \$HOME/videomae_jax_src.tar.gz -C \$HOME/$REMOTE_DIR"
    ;;
  *) die "--source must be git or copy, got $SOURCE" ;;
esac

remote="set -euo pipefail"
remote+="; (command -v git >/dev/null && python3 -m venv --help >/dev/null) ||"
remote+=" (sudo apt-get -qq update && sudo apt-get -qq install -y git python3-venv)"
remote+="; $fetch"
remote+="; [ -x \$HOME/$REMOTE_VENV/bin/python ] || python3 -m venv \$HOME/$REMOTE_VENV"
remote+="; \$HOME/$REMOTE_VENV/bin/pip install -q --upgrade pip"
remote+="; \$HOME/$REMOTE_VENV/bin/pip install -q -e \$HOME/$REMOTE_DIR 'jax[tpu]==$jax_version'"
# Import check only: touching the TPU here would make each worker wait for the whole slice (and every slice).
remote+="; \$HOME/$REMOTE_VENV/bin/python -c 'import jax, videomae_jax; print(\"videomae_jax ready, jax\", jax.__version__)'"

while read -r node; do
  ssh_all "$node" "$remote"
done < <(node_names)
