"""The shared PyTorch Lightning training loop of every neural model.

:func:`train_module` fits a ``LightningModule`` with the benchmark's conventions:

* seeded (``lightning.seed_everything(seed, workers=True)``), so a CPU run is repeatable;
* checkpoints under ``run_dir/checkpoints`` every epoch: ``last.ckpt`` (always the latest) and the
  best one by ``val_loss`` when there is a validation loader;
* **resumable**: when ``run_dir/checkpoints/last.ckpt`` exists, training continues from it (epoch,
  global step, optimizer and scheduler state, callbacks) up to ``max_epochs``; an interrupted run
  (killed, pre-empted) is simply started again with the same ``run_dir``;
* **no pickled code on resume**: the checkpoint is read with ``weights_only=True``
  (``Trainer.fit(..., weights_only=True)``, i.e. ``torch.load(..., weights_only=True)``), which
  only rebuilds tensors and plain containers and refuses any other pickled object. Everything a
  module puts in its checkpoint must therefore be plain data: call ``self.save_hyperparameters``
  only with numbers, strings, booleans, ``None`` and lists/tuples/dicts of those (pass a config
  dataclass as ``dataclasses.asdict(config)``, never the object), and store extra state in
  ``on_save_checkpoint`` as tensors or plain containers;
* logs: a :class:`~lightning.pytorch.loggers.CSVLogger` under ``run_dir/logs/version_K`` (one
  version per call, so a resumed run appends a new version) and a TensorBoard logger next to it
  when ``tensorboard`` is installed. :func:`read_loss_curve` reads all CSV versions in order.

* **no step on non-finite gradients**: an optimiser step whose gradients hold a NaN or an infinity
  is skipped (:class:`SkipNonFiniteSteps`) instead of writing NaN into every weight, and the number
  skipped is reported (``skipped_steps``). None of the released codes guards this; a step they would
  have taken is taken here unchanged, and one that would have ended their run in NaN is counted.

A module logs ``train_loss`` (and ``val_loss`` when validating) with ``self.log``; prefer
``on_epoch=True`` so that the epoch mean is recorded.
"""

from __future__ import annotations

import csv
import importlib.util
import math
import re
from pathlib import Path
from typing import Any

CHECKPOINT_DIR = "checkpoints"
LAST_CHECKPOINT = "last.ckpt"
LOG_NAME = "logs"
ACCELERATORS = {"cpu": "cpu", "cuda": "gpu", "gpu": "gpu", "auto": "auto", "mps": "mps"}


def _no_progress() -> bool:
    from benchmark.settings import env_flag

    return env_flag("BENCHMARK_NO_PROGRESS")


def last_checkpoint(run_dir: str | Path) -> Path | None:
    """``run_dir/checkpoints/last.ckpt`` if it exists, else None."""
    path = Path(run_dir) / CHECKPOINT_DIR / LAST_CHECKPOINT
    return path if path.is_file() else None


def _accelerator(device: str) -> str:
    key = device.split(":", 1)[0].lower()
    if key not in ACCELERATORS:
        raise ValueError(f"unknown device {device!r}; valid: cpu, cuda, auto")
    return ACCELERATORS[key]


def _as_float(value: Any) -> float | None:
    if value is None:
        return None
    try:
        out = float(value.detach().cpu().item() if hasattr(value, "detach") else value)
    except (TypeError, ValueError):
        return None
    return out


def _metric(metrics: dict[str, Any], name: str) -> float | None:
    for key in (name, f"{name}_epoch", f"{name}_step"):
        if key in metrics:
            return _as_float(metrics[key])
    return None


def _version_number(path: Path) -> int:
    m = re.fullmatch(r"version_(\d+)", path.name)
    return int(m.group(1)) if m else -1


def metrics_csv_files(run_dir: str | Path) -> list[Path]:
    """The CSV logs of every training call in ``run_dir``, oldest first."""
    root = Path(run_dir) / LOG_NAME
    if not root.is_dir():
        return []
    versions = sorted((d for d in root.iterdir() if d.is_dir() and _version_number(d) >= 0), key=_version_number)
    return [d / "metrics.csv" for d in versions if (d / "metrics.csv").is_file()]


def read_loss_curve(run_dir: str | Path) -> list[dict[str, Any]]:
    """The rows of every CSV log in ``run_dir`` (all versions, in order), for plots and notes.

    Each row is a dict of the logged columns that have a value in that row (numbers as float,
    ``epoch`` and ``step`` as int) plus ``version`` (the log version the row comes from). Rows of
    a run that was interrupted and resumed appear once per call that logged them.
    """
    rows: list[dict[str, Any]] = []
    for path in metrics_csv_files(run_dir):
        version = _version_number(path.parent)
        with path.open(newline="") as fh:
            for raw in csv.DictReader(fh):
                row: dict[str, Any] = {"version": version}
                for key, value in raw.items():
                    if key is None or value in (None, ""):
                        continue
                    try:
                        number = float(value)
                    except ValueError:
                        row[key] = value
                        continue
                    row[key] = int(number) if key in ("epoch", "step") and math.isfinite(number) else number
                rows.append(row)
    return rows


def epoch_losses(run_dir: str | Path, key: str = "train_loss") -> dict[int, float]:
    """``{epoch: loss}`` from the CSV logs (the epoch-level value; later versions win)."""
    out: dict[int, float] = {}
    for row in read_loss_curve(run_dir):
        if "epoch" not in row:
            continue
        for name in (f"{key}_epoch", key):
            if name in row and isinstance(row[name], float):
                out[row["epoch"]] = row[name]
                break
    return dict(sorted(out.items()))


def _skip_callback_class() -> type:
    """:class:`SkipNonFiniteSteps`, built on first use so importing this module needs no Lightning."""
    from lightning.pytorch.callbacks import Callback

    class SkipNonFiniteSteps(Callback):
        """Skip an optimiser step whose gradients are not all finite, and count it.

        Runs in ``on_before_optimizer_step`` (after backward, before clipping and the step): when
        any gradient holds a NaN or an infinity, every gradient of that optimiser is zeroed (so
        clipping, which runs next, sees finite values) and an optimiser step pre-hook then sets
        them to ``None``, so ``optimizer.step()`` leaves the weights and the optimiser's moments as
        they were (a zero gradient would still move Adam's weights by their momentum). Clipping by norm alone would not help: a NaN norm makes
        every clipped gradient NaN. The count is kept in the checkpoint, so a resumed run reports
        the total. This guards the backward pass only: a forward pass that overflows (as CDVAE's
        encoder does when its log-variance diverges) is the model's to report.
        """

        def __init__(self) -> None:
            self.skipped = 0
            self._warned = False
            self._skip_next: set[int] = set()
            self._hooked: set[int] = set()

        def _drop_gradients(self, optimizer: Any, args: Any, kwargs: Any) -> None:
            """Step pre-hook: no gradient, no update, when this step was marked non-finite."""
            if id(optimizer) in self._skip_next:
                self._skip_next.discard(id(optimizer))
                for group in optimizer.param_groups:
                    for p in group["params"]:
                        p.grad = None

        def on_before_optimizer_step(self, trainer: Any, pl_module: Any, optimizer: Any) -> None:
            import torch

            inner = getattr(optimizer, "optimizer", optimizer)  # Lightning wraps the torch optimiser
            params = [p for group in inner.param_groups for p in group["params"] if p.grad is not None]
            if all(bool(torch.isfinite(p.grad).all()) for p in params):
                return
            if id(inner) not in self._hooked:
                inner.register_step_pre_hook(self._drop_gradients)
                self._hooked.add(id(inner))
            for p in params:
                p.grad.zero_()
            self._skip_next.add(id(inner))
            self.skipped += 1
            if not self._warned:
                from lightning.pytorch.utilities import rank_zero_warn

                rank_zero_warn(f"non-finite gradients at step {trainer.global_step} (epoch {trainer.current_epoch}): "
                               "the optimiser step is skipped; the fit summary counts such steps (skipped_steps)")
                self._warned = True

        def state_dict(self) -> dict[str, Any]:
            return {"skipped": self.skipped}

        def load_state_dict(self, state_dict: dict[str, Any]) -> None:
            self.skipped = int(state_dict.get("skipped", 0))

    return SkipNonFiniteSteps


def train_module(
    module: Any,
    train_loader: Any,
    val_loader: Any,
    run_dir: str | Path,
    *,
    max_epochs: int,
    seed: int = 0,
    device: str = "cpu",
    devices: int = 1,
    precision: str = "32-true",
    progress: bool = True,
    log_every_n_steps: int = 10,
    gradient_clip_val: float | None = None,
    gradient_clip_algorithm: str = "norm",
    keep: str = "best",
    skip_nonfinite: bool = True,
) -> dict[str, Any]:
    """Fit ``module`` for up to ``max_epochs`` epochs, resuming from ``run_dir/checkpoints/last.ckpt``.

    Args:
        module: a ``lightning.LightningModule`` that logs ``train_loss`` (and ``val_loss`` when
            ``val_loader`` is given). Its hyper-parameters and any state it adds to the checkpoint
            must be plain data (see the module doc): resuming reads the checkpoint with
            ``weights_only=True`` and refuses anything else.
        train_loader, val_loader: data loaders (``val_loader`` may be None: no validation, and the
            checkpoint keeps the latest epoch instead of the best ``val_loss``).
        run_dir: where checkpoints (``checkpoints/``) and logs (``logs/version_K/``) go.
        max_epochs: total number of epochs, counting those of a resumed run.
        seed: passed to ``lightning.seed_everything(seed, workers=True)``.
        device: "cpu", "cuda" or "auto".
        devices: number of devices; more than one uses the "ddp" strategy.
        precision: Lightning precision string, passed through ("32-true", "16-mixed", "bf16-mixed").
        progress: show the progress bar.
        log_every_n_steps: how often step-level metrics are logged.
        gradient_clip_val: gradient clipping threshold, or None.
        gradient_clip_algorithm: ``norm`` (clip the gradients' total norm) or ``value`` (clip each
            gradient element into [-value, value], as CDVAE's released trainer does).
        skip_nonfinite: skip (and count) optimiser steps with non-finite gradients
            (:class:`SkipNonFiniteSteps`); False lets them through, as the released codes do.
        keep: ``best``: after training, the module holds the weights of the epoch with the lowest
            ``val_loss`` (the released CDVAE, DP-CDVAE and Con-CDVAE keep that checkpoint), also
            when this call only resumed a finished training; ``last``: the last epoch's. Without
            validation the last epoch's are kept either way.

    Returns:
        ``{"epochs", "global_step", "resumed_from", "train_loss", "val_loss", "metrics_csv",
        "kept", "best_epoch", "best_val_loss", "skipped_steps"}``: epochs completed
        (``trainer.current_epoch``), optimizer steps, the checkpoint resumed from (str) or None, the
        last logged losses (float, ``val_loss`` None without validation), the path of this call's
        CSV log, which weights the module holds (``best`` or ``last``), the best epoch (0-based) and
        its ``val_loss``, and the optimiser steps skipped for non-finite gradients over the whole
        training (None when ``skip_nonfinite`` is False).
    """
    if keep not in ("best", "last"):
        raise ValueError(f"keep must be 'best' or 'last', got {keep!r}")
    import lightning
    from lightning.pytorch.callbacks import ModelCheckpoint
    from lightning.pytorch.loggers import CSVLogger

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    lightning.seed_everything(seed, workers=True, verbose=False)

    checkpoint_cb = ModelCheckpoint(
        dirpath=run_dir / CHECKPOINT_DIR,
        save_last=True,
        save_top_k=1,
        monitor="val_loss" if val_loader is not None else None,
        every_n_epochs=1,
    )
    skip_cb = _skip_callback_class()() if skip_nonfinite else None
    # flush every logging call: the log of a killed run keeps every epoch it finished
    csv_logger = CSVLogger(run_dir, name=LOG_NAME, flush_logs_every_n_steps=1)
    loggers: list[Any] = [csv_logger]
    if importlib.util.find_spec("tensorboard") is not None:  # pragma: no cover - not installed in CI
        from lightning.pytorch.loggers import TensorBoardLogger

        loggers.append(TensorBoardLogger(run_dir, name="tensorboard"))

    trainer = lightning.Trainer(
        accelerator=_accelerator(device),
        devices=devices,
        strategy="ddp" if devices > 1 else "auto",
        precision=precision,
        max_epochs=max_epochs,
        callbacks=[checkpoint_cb] + ([skip_cb] if skip_cb is not None else []),
        logger=loggers,
        # BENCHMARK_NO_PROGRESS: set by the runner for `--no-progress`, since Model.fit has no such argument
        enable_progress_bar=progress and not _no_progress(),
        enable_model_summary=False,
        log_every_n_steps=log_every_n_steps,
        gradient_clip_val=gradient_clip_val,
        gradient_clip_algorithm=gradient_clip_algorithm,
        num_sanity_val_steps=0,
    )
    resume = last_checkpoint(run_dir)
    trainer.fit(
        module,
        train_dataloaders=train_loader,
        val_dataloaders=val_loader,
        ckpt_path=str(resume) if resume is not None else None,
        weights_only=True,
    )
    csv_logger.save()
    metrics = dict(trainer.callback_metrics)
    metrics_csv = Path(csv_logger.log_dir) / "metrics.csv"
    train_loss = _metric(metrics, "train_loss")
    val_loss = _metric(metrics, "val_loss") if val_loader is not None else None
    if train_loss is None:  # nothing trained in this call (already at max_epochs): use the logs
        losses = epoch_losses(run_dir, "train_loss")
        train_loss = losses[max(losses)] if losses else None
    if val_loader is not None and val_loss is None:
        losses = epoch_losses(run_dir, "val_loss")
        val_loss = losses[max(losses)] if losses else None
    kept, best_epoch, best_val = "last", None, None
    best_path = Path(checkpoint_cb.best_model_path) if checkpoint_cb.best_model_path else None
    if val_loader is not None and best_path is not None and best_path.is_file():
        best_epoch = _checkpoint_epoch(best_path)
        best_val = _as_float(checkpoint_cb.best_model_score)
        if keep == "best":
            from benchmark.safeload import load_weights

            module.load_state_dict(load_weights(best_path)["state_dict"])
            kept = "best"
    return {
        "epochs": int(trainer.current_epoch),
        "global_step": int(trainer.global_step),
        "resumed_from": str(resume) if resume is not None else None,
        "train_loss": train_loss,
        "val_loss": val_loss,
        "metrics_csv": str(metrics_csv),
        "kept": kept,
        "best_epoch": best_epoch,
        "best_val_loss": best_val,
        "skipped_steps": skip_cb.skipped if skip_cb is not None else None,
    }


def _checkpoint_epoch(path: Path) -> int | None:
    """The epoch in a ModelCheckpoint file name (``epoch=12-step=340.ckpt`` -> 12)."""
    import re

    m = re.search(r"epoch=(\d+)", path.name)
    return int(m.group(1)) if m else None
