"""Fault test: a training process killed with SIGKILL resumes from ``last.ckpt`` and completes.

A subprocess trains a tiny regression module with a delay per epoch; once ``last.ckpt`` exists it
is killed (no chance to clean up), then the same command runs again on the same ``run_dir``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from benchmark.training import read_loss_curve

MAX_EPOCHS = 30

SCRIPT = r'''
import json, sys, time
import lightning, torch
from torch.utils.data import DataLoader, TensorDataset
from benchmark.training import train_module

run_dir, max_epochs, delay = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])

class Slow(lightning.LightningModule):
    def __init__(self):
        super().__init__()
        self.save_hyperparameters({"lr": 0.05})
        self.linear = torch.nn.Linear(3, 1)
    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = torch.nn.functional.mse_loss(self.linear(x), y)
        self.log("train_loss", loss, on_step=False, on_epoch=True)
        return loss
    def on_train_epoch_end(self):
        time.sleep(delay)
    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.hparams["lr"])

g = torch.Generator().manual_seed(0)
x = torch.randn(32, 3, generator=g)
y = x @ torch.tensor([[1.0], [-2.0], [0.5]])
loader = DataLoader(TensorDataset(x, y), batch_size=8, shuffle=True)
summary = train_module(Slow(), loader, None, run_dir, max_epochs=max_epochs, progress=False)
print("SUMMARY " + json.dumps(summary), flush=True)
'''


def epochs_by_version(run_dir: Path) -> dict[int, list[int]]:
    """The epochs each logged version (one per training call) recorded a train_loss for."""
    out: dict[int, list[int]] = {}
    for row in read_loss_curve(run_dir):
        if "train_loss" in row:
            out.setdefault(row["version"], []).append(row["epoch"])
    return out


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_killed_training_resumes_and_completes(tmp_path):
    script = tmp_path / "train_slow.py"
    script.write_text(SCRIPT)
    run_dir = tmp_path / "run"
    last = run_dir / "checkpoints" / "last.ckpt"
    env = dict(os.environ, PYTHONUNBUFFERED="1")

    proc = subprocess.Popen(
        [sys.executable, str(script), str(run_dir), str(MAX_EPOCHS), "0.4"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while not last.is_file():
            assert proc.poll() is None, f"training exited before writing a checkpoint:\n{proc.stdout.read()}"
            assert time.monotonic() < deadline, "no last.ckpt after 30 s"
            time.sleep(0.05)
        time.sleep(0.5)  # let it get a little further into the run
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL
    killed_at = torch.load(last, weights_only=True)["epoch"]  # the last epoch it finished
    assert killed_at < MAX_EPOCHS - 1, "the run finished before it was killed: raise the delay"

    done = subprocess.run(
        [sys.executable, str(script), str(run_dir), str(MAX_EPOCHS), "0"],
        capture_output=True, env=env, text=True, timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    (line,) = [l for l in done.stdout.splitlines() if l.startswith("SUMMARY ")]
    summary = json.loads(line[len("SUMMARY "):])
    assert summary["resumed_from"] == str(last)
    assert summary["epochs"] == MAX_EPOCHS
    assert summary["global_step"] == MAX_EPOCHS * 4  # 32 rows / batch 8, no step repeated or lost

    epochs = epochs_by_version(run_dir)
    assert sorted(epochs) == [0, 1], epochs
    before, after = epochs[0], epochs[1]
    assert before == list(range(len(before))), before  # logged in order up to the kill
    assert after == list(range(killed_at + 1, MAX_EPOCHS)), after  # resumed after the checkpoint
    assert set(before) | set(after) == set(range(MAX_EPOCHS))
    # at most the epoch that was in progress (logged, not yet checkpointed) is trained twice
    assert len(set(before) & set(after)) <= 1
    assert max(before) <= killed_at + 1
