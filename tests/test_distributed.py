"""DistributedDataParallel: 2 CPU processes (gloo) == 1 process accumulating the same global batches."""

import os
import socket
import subprocess
import sys
from pathlib import Path

import torch

from rosetta import checkpoint as ckpt

HERE = Path(__file__).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(args, env_extra=None):
    env = {**os.environ, "PYTHONPATH": f"{HERE}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
           "OMP_NUM_THREADS": "1", **(env_extra or {})}
    result = subprocess.run(args, env=env, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


def weights(run_dir: Path, step: int):
    return ckpt.average_checkpoints([run_dir / "checkpoints" / f"step_{step:08d}"])


def test_two_processes_equal_one_process_over_the_same_global_batches(tmp_path):
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1",
                f"--master_port={free_port()}"]
    # 8 steps under DDP, written by rank 0 only, then resumed to 12 steps.
    run([*torchrun, str(HERE / "ddp_worker.py"), str(tmp_path / "ddp"), "1", "8"])
    run([*torchrun[:-1], f"--master_port={free_port()}", str(HERE / "ddp_worker.py"), str(tmp_path / "ddp"),
         "1", "12", "resume"])
    run([sys.executable, str(HERE / "ddp_worker.py"), str(tmp_path / "single"), "2", "12"])
    a, b = weights(tmp_path / "ddp", 12), weights(tmp_path / "single", 12)
    for name in a:
        assert torch.allclose(a[name], b[name], atol=1e-5, rtol=1e-4), name
