"""Fault test: a Con-CDVAE fit killed with SIGKILL while it trains a prior (step two) resumes, like
step one, when it is started again in the same directory: step one is found finished (not trained
again), and the prior continues from its ``last.ckpt`` to ``prior_epochs``.

Modelled on tests/core/test_training_resume_kill.py: a subprocess fits a tiny model whose prior
steps are slowed down; once the prior has a ``last.ckpt`` it is killed, then the same command
runs again.
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

from tests.core.test_training_resume_kill import epochs_by_version

PRIOR_EPOCHS = 12
STEPS_PER_EPOCH = 2  # 8 training crystals, prior batches of 4

SCRIPT = r'''
import json, sys, time
from pathlib import Path
import torch
torch.set_num_threads(1)
from benchmark.config import resolve
from benchmark.models.con_cdvae.plugin import ConCDVAEModel
from benchmark.models.con_cdvae.prior import LatentPrior
from benchmark.testing import contract_crystals

run_dir, prior_epochs, delay = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
real_loss = LatentPrior.loss

def slow_loss(self, *args, **kwargs):  # a slow prior training step
    if self.training:
        time.sleep(delay)
    return real_loss(self, *args, **kwargs)

LatentPrior.loss = slow_loss
cfg = resolve(ConCDVAEModel.Config, "smoke", None, None, {
    "conditions": ["num_atoms"], "max_epochs": 1, "num_noise_level": 2, "prior_epochs": prior_epochs, "prior_batch_size": 4,
    "prior_lr_factor": 0.6, "prior_gradient_clip_val": 0.5, "prior_gradient_clip_algorithm": "value"})
summary = ConCDVAEModel(cfg).fit(contract_crystals(8), contract_crystals(4, offset=8), Path(run_dir), seed=0)
print("SUMMARY " + json.dumps(summary, default=str), flush=True)
'''


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_killed_prior_training_resumes_and_completes(tmp_path: Path) -> None:
    script = tmp_path / "fit_con_cdvae.py"
    script.write_text(SCRIPT)
    run_dir = tmp_path / "run"
    prior_dir = run_dir / "prior_default"
    last = prior_dir / "checkpoints" / "last.ckpt"
    env = dict(os.environ, PYTHONUNBUFFERED="1", BENCHMARK_NO_PROGRESS="1")

    proc = subprocess.Popen([sys.executable, str(script), str(run_dir), str(PRIOR_EPOCHS), "0.25"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True)
    try:
        deadline = time.monotonic() + 240
        while not last.is_file():
            assert proc.poll() is None, f"the fit exited before the prior wrote a checkpoint:\n{proc.stdout.read()}"
            assert time.monotonic() < deadline, "no prior last.ckpt after 240 s"
            time.sleep(0.05)
        time.sleep(0.6)  # a little further into the prior's training
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL
    killed_at = torch.load(last, weights_only=True)["epoch"]  # the last prior epoch it finished
    assert killed_at < PRIOR_EPOCHS - 1, "the prior finished before it was killed: raise the delay"
    step_one = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)

    done = subprocess.run([sys.executable, str(script), str(run_dir), str(PRIOR_EPOCHS), "0"],
                          capture_output=True, env=env, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (line,) = [ln for ln in done.stdout.splitlines() if ln.startswith("SUMMARY ")]
    summary = json.loads(line[len("SUMMARY "):])
    # step one was finished: resumed, not trained again
    assert summary["resumed_from"] == str(run_dir / "checkpoints" / "last.ckpt") and summary["epochs"] == 1
    assert torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == step_one["global_step"]
    # the prior continued from its checkpoint, no step repeated or lost
    prior = summary["prior_default"]
    assert prior["resumed_from"] == str(last)
    assert prior["epochs"] == PRIOR_EPOCHS and prior["global_step"] == PRIOR_EPOCHS * STEPS_PER_EPOCH
    assert prior["kept"] == "best" and prior["best_epoch"] is not None
    epochs = epochs_by_version(prior_dir)
    assert sorted(epochs) == [0, 1], epochs
    before, after = epochs[0], epochs[1]
    assert before == list(range(len(before))), before
    assert after == list(range(killed_at + 1, PRIOR_EPOCHS)), after
    assert set(before) | set(after) == set(range(PRIOR_EPOCHS))
    assert len(set(before) & set(after)) <= 1  # at most the epoch in progress at the kill runs twice
