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

**Several devices and nodes** (:class:`TrainingResources`): the accelerator, number of devices and
nodes, Lightning strategy and precision reach the Trainer without any model's ``fit`` taking them.
The runner enters :func:`training_resources` around ``model.fit(...)``; every :func:`train_module`
call inside (a third-party plugin's too) builds its Trainer with them, and records what ran (world
size, this process's global rank) in the :class:`TrainingSession` the context yields. Defaults are
one device, strategy ``auto``, ``32-true``: the Trainer of a plain call. Under Lightning's ``ddp``
strategy the whole command is re-launched once per extra local device (Lightning's subprocess
launcher), or started once per task by SLURM's ``srun`` (Lightning's ``SLURMEnvironment``, which
nothing here overrides); every process fits, and the caller asks :attr:`TrainingSession.is_global_zero`
before writing anything.
"""

from __future__ import annotations

import contextlib
import contextvars
import csv
import dataclasses
import importlib.util
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

CHECKPOINT_DIR = "checkpoints"
LAST_CHECKPOINT = "last.ckpt"
LOG_NAME = "logs"
ACCELERATORS = {"cpu": "cpu", "cuda": "gpu", "gpu": "gpu", "auto": "auto", "mps": "mps"}


#: Lightning's precision strings (``lightning.fabric.connector._PRECISION_INPUT_STR``), listed here so
#: the command line can offer them without importing Lightning (a test checks the two agree)
PRECISIONS = ("32-true", "16-mixed", "bf16-mixed", "16-true", "bf16-true", "64-true",
              "transformer-engine", "transformer-engine-float16")
#: strategy names accepted besides those in Lightning's StrategyRegistry (which has no "auto")
LIGHTNING_STRATEGY_NAMES = ("auto", "ddp", "ddp_spawn", "ddp_fork", "ddp_notebook", "fsdp", "deepspeed")


@dataclass(frozen=True)
class TrainingResources:
    """Where and how Lightning trains: the Trainer's ``accelerator``, ``devices``, ``num_nodes``,
    ``strategy`` and ``precision``.

    ``accelerator`` None means "from the ``device`` argument of :func:`train_module`" (the run's
    ``--device``: cpu -> cpu, cuda -> gpu, auto -> auto); a value wins over ``device``. ``devices``
    is a positive number of devices per node or ``"auto"`` (Lightning's choice: every GPU of the
    node, one process on a CPU). The defaults are exactly a plain one-device Trainer.
    """

    accelerator: str | None = None
    devices: int | str = 1
    num_nodes: int = 1
    strategy: str = "auto"
    precision: str = "32-true"

    def __post_init__(self) -> None:
        if self.accelerator is not None and self.accelerator.split(":", 1)[0].lower() not in ACCELERATORS:
            raise ValueError(f"unknown accelerator {self.accelerator!r}; valid: {', '.join(sorted(ACCELERATORS))}")
        if not (self.devices == "auto" or (isinstance(self.devices, int) and not isinstance(self.devices, bool) and self.devices >= 1)):
            raise ValueError(f"devices must be a positive number or 'auto', got {self.devices!r}")
        if not (isinstance(self.num_nodes, int) and self.num_nodes >= 1):
            raise ValueError(f"num_nodes must be a positive number, got {self.num_nodes!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"unknown precision {self.precision!r}; valid: {', '.join(PRECISIONS)}")

    def world_size(self, device: str = "cpu") -> int:
        """The number of training processes: devices per node (``"auto"`` resolved here) x nodes."""
        return resolved_devices(self, device) * self.num_nodes

    def changed(self) -> dict[str, Any]:
        """The settings given that differ from the defaults, as given."""
        default = dataclasses.asdict(TrainingResources())
        return {k: v for k, v in dataclasses.asdict(self).items() if v != default[k]}

    def key_fields(self, device: str = "cpu") -> dict[str, Any]:
        """The settings that change what is trained (not only where): number of processes per
        node (``"auto"`` resolved on this machine), nodes, strategy (``auto`` on several processes
        is ``ddp``, as Lightning and this loop choose, so ``--devices 2`` and ``--devices 2
        --strategy ddp`` are one model) and precision, each only when it differs from the default.
        The world size changes the effective batch size and the precision the arithmetic; the
        accelerator, like ``--device``, does not enter a model's key."""
        default = TrainingResources()
        out: dict[str, Any] = {}
        devices = resolved_devices(self, device)
        if devices != default.devices:
            out["devices"] = devices
        if self.num_nodes != default.num_nodes:
            out["num_nodes"] = self.num_nodes
        strategy = "ddp" if self.strategy == "auto" and devices * self.num_nodes > 1 else self.strategy
        if strategy != default.strategy:
            out["strategy"] = strategy
        if self.precision != default.precision:
            out["precision"] = self.precision
        return out


@dataclass
class TrainingSession:
    """What :func:`train_module` calls inside one :func:`training_resources` block did: one dict
    per Trainer (``accelerator``, ``devices``, ``num_nodes``, ``strategy``, ``precision``,
    ``world_size``, ``global_rank``) in ``fits``."""

    resources: TrainingResources
    fits: list[dict[str, Any]] = field(default_factory=list)

    @property
    def global_rank(self) -> int:
        """This process's global rank in the last distributed fit (0 without one)."""
        return int(self.fits[-1]["global_rank"]) if self.fits else 0

    @property
    def is_global_zero(self) -> bool:
        """True in the process that writes checkpoints, records and samples (rank zero)."""
        return self.global_rank == 0

    def summary(self) -> dict[str, Any]:
        """The ``training`` section of ``fit.json`` and of a run record: what the last Lightning
        fit ran on (or, when the model trained without Lightning, the settings asked for and
        ``world_size`` 1), the settings asked for, and the number of Lightning fits."""
        asked = dataclasses.asdict(self.resources)
        if self.fits:
            ran = {k: v for k, v in self.fits[-1].items() if k != "global_rank"}
        else:
            ran = {**asked, "world_size": 1}
        return {**ran, "requested": asked, "lightning_fits": len(self.fits)}


_SESSION: contextvars.ContextVar[TrainingSession | None] = contextvars.ContextVar("benchmark_training_session", default=None)


@contextlib.contextmanager
def training_resources(resources: TrainingResources | None = None) -> Iterator[TrainingSession]:
    """Every :func:`train_module` call in this block trains with ``resources`` (default: one
    device) and reports to the yielded :class:`TrainingSession`. This is how the command line's
    ``--devices``/``--strategy``/... reach a model's training without a ``fit`` argument."""
    session = TrainingSession(resources or TrainingResources())
    token = _SESSION.set(session)
    try:
        yield session
    finally:
        _SESSION.reset(token)


def current_session() -> TrainingSession | None:
    """The session of the enclosing :func:`training_resources` block, or None."""
    return _SESSION.get()


def resolved_devices(resources: TrainingResources, device: str = "cpu") -> int:
    """The number of processes per node ``resources`` gives: ``devices``, or for ``"auto"`` what
    Lightning's accelerator counts on this machine (1 on a CPU)."""
    if resources.devices != "auto":
        return int(resources.devices)
    accelerator = _accelerator(resources.accelerator or device)
    if accelerator == "cpu":
        return 1  # Lightning's CPUAccelerator.auto_device_count
    import torch

    if accelerator in ("gpu", "auto") and torch.cuda.is_available():
        return int(torch.cuda.device_count())
    return 1


def is_lightning_strategy(name: str) -> bool:
    """True when ``name`` is a Lightning training strategy (``auto``, ``ddp``, ``fsdp``,
    ``deepspeed_stage_2``, ... any name in Lightning's StrategyRegistry)."""
    if name in LIGHTNING_STRATEGY_NAMES or name.startswith(("ddp_", "fsdp_", "deepspeed_")):
        return True
    from lightning.pytorch.strategies import StrategyRegistry

    return name in StrategyRegistry.available_strategies()


def trainer_arguments(resources: TrainingResources, device: str = "cpu") -> dict[str, Any]:
    """The Trainer's ``accelerator``, ``devices``, ``num_nodes``, ``strategy`` and ``precision``.

    The accelerator comes from ``resources.accelerator`` when set, else from ``device``. A
    strategy ``auto`` with more than one device per node is ``ddp`` (as this loop always did): the
    subprocess launcher that re-runs the command, which works from a script and from ``python -m``.
    Nothing here picks a cluster environment: Lightning detects SLURM (or torchelastic) by itself.
    """
    strategy = resources.strategy
    if strategy == "auto" and isinstance(resources.devices, int) and resources.devices > 1:
        strategy = "ddp"
    return {
        "accelerator": _accelerator(resources.accelerator or device),
        "devices": resources.devices,
        "num_nodes": resources.num_nodes,
        "strategy": strategy,
        "precision": resources.precision,
    }


def _what_ran(trainer: Any, strategy: str) -> dict[str, Any]:
    """The resources a Trainer actually used (``strategy``: the name it was given; ``auto`` is
    replaced by the name of what Lightning chose, e.g. ``single_device`` or ``ddp``)."""
    accelerator = type(trainer.accelerator).__name__.removesuffix("Accelerator").lower() or "unknown"
    if strategy == "auto":
        cls = type(trainer.strategy)
        strategy = getattr(cls, "strategy_name", None) or cls.__name__.removesuffix("Strategy").lower()
    return {
        "accelerator": accelerator,
        "devices": int(trainer.num_devices),
        "num_nodes": int(trainer.num_nodes),
        "strategy": str(strategy),
        "precision": str(trainer.precision),
        "world_size": int(trainer.world_size),
        "global_rank": int(trainer.global_rank),
    }


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
    devices: int | str | None = None,
    precision: str | None = None,
    resources: TrainingResources | None = None,
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
        device: "cpu", "cuda" or "auto" (the accelerator, unless ``resources.accelerator`` is set).
        devices: number of devices (or "auto"); more than one uses the "ddp" strategy unless the
            resources name another. None: from ``resources``.
        precision: Lightning precision string ("32-true", "16-mixed", "bf16-mixed"). None: from
            ``resources``.
        resources: accelerator, devices, nodes, strategy and precision; None: those of the
            enclosing :func:`training_resources` block, else one device, ``auto``, ``32-true``.
            ``devices`` and ``precision`` given here win over it.
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
        training (None when ``skip_nonfinite`` is False); and ``training``: what the Trainer ran on
        (``accelerator``, ``devices``, ``num_nodes``, ``strategy``, ``precision``, ``world_size``,
        ``global_rank``), also reported to the enclosing :func:`training_resources` session.

    Distributed (``world_size`` > 1): every process returns, holding the same weights. With
    ``keep="best"`` each process loads the one best checkpoint rank zero wrote: Lightning's
    ModelCheckpoint saves only when every rank's own ``val_loss`` (of its shard of the validation
    set, unless the module logs with ``sync_dist=True``) improved, under one file name, so all ranks
    name the same file (a test holds this). Only rank zero has written checkpoints and logs; the
    caller writes anything else only where ``global_rank`` is 0.
    """
    if keep not in ("best", "last"):
        raise ValueError(f"keep must be 'best' or 'last', got {keep!r}")
    import lightning
    from lightning.pytorch.callbacks import ModelCheckpoint
    from lightning.pytorch.loggers import CSVLogger

    session = current_session()
    if resources is None:
        resources = session.resources if session is not None else TrainingResources()
    if devices is not None or precision is not None:
        resources = dataclasses.replace(resources, **{k: v for k, v in (("devices", devices), ("precision", precision)) if v is not None})
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    lightning.seed_everything(seed, workers=True, verbose=False)

    # Two callbacks, not one with save_last=True: with a monitored top-1 checkpoint, Lightning 2.6
    # rewrites last.ckpt only on epochs that set a new best, so a run whose val_loss rose after
    # epoch 0 kept last.ckpt at epoch 0 and a resumed run trained those epochs again. Here
    # last.ckpt is rewritten after every epoch, and the best epoch has its own file.
    last_cb = ModelCheckpoint(dirpath=run_dir / CHECKPOINT_DIR, filename=Path(LAST_CHECKPOINT).stem, monitor=None, save_top_k=1,
                              every_n_epochs=1, enable_version_counter=False)
    best_cb = (ModelCheckpoint(dirpath=run_dir / CHECKPOINT_DIR, save_top_k=1, monitor="val_loss", every_n_epochs=1)
               if val_loader is not None else None)
    checkpoint_cb = best_cb if best_cb is not None else last_cb  # whose best_model_path is the kept weights
    skip_cb = _skip_callback_class()() if skip_nonfinite else None
    # flush every logging call: the log of a killed run keeps every epoch it finished
    csv_logger = CSVLogger(run_dir, name=LOG_NAME, flush_logs_every_n_steps=1)
    loggers: list[Any] = [csv_logger]
    if importlib.util.find_spec("tensorboard") is not None:  # pragma: no cover - not installed in CI
        from lightning.pytorch.loggers import TensorBoardLogger

        loggers.append(TensorBoardLogger(run_dir, name="tensorboard"))

    trainer_args = trainer_arguments(resources, device)
    if "spawn" in str(trainer_args["strategy"]):
        _check_picklable(module, str(trainer_args["strategy"]))
    trainer = lightning.Trainer(
        **trainer_args,
        max_epochs=max_epochs,
        # the best callback first: it is trainer.checkpoint_callback, whose best path a fork/spawn launcher hands back
        callbacks=([best_cb] if best_cb is not None else []) + [last_cb] + ([skip_cb] if skip_cb is not None else []),
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
    spawned = _trained_in_child_processes(trainer)
    if not spawned:  # (after a fork/spawn fit, this process's logger would only add an empty version)
        csv_logger.save()
    epochs, global_step = int(trainer.current_epoch), int(trainer.global_step)
    metrics_csv = Path(csv_logger.log_dir) / "metrics.csv"
    if spawned:
        # the child's logger chose the version; this process's logger would name the next one
        logs = metrics_csv_files(run_dir)
        metrics_csv = logs[-1] if logs else metrics_csv
        epochs, global_step = _recover_child_results(metrics_csv, checkpoint_cb, epochs, global_step)
    ran = _what_ran(trainer, trainer_args["strategy"])
    if session is not None:
        session.fits.append(ran)
    metrics = dict(trainer.callback_metrics)
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
        "epochs": epochs,
        "global_step": global_step,
        "resumed_from": str(resume) if resume is not None else None,
        "train_loss": train_loss,
        "val_loss": val_loss,
        "metrics_csv": str(metrics_csv),
        "kept": kept,
        "best_epoch": best_epoch,
        "best_val_loss": best_val,
        # (a fork/spawn strategy's children keep their count: not known here)
        "skipped_steps": skip_cb.skipped if skip_cb is not None and not spawned else None,
        "training": ran,
    }


def _check_picklable(module: Any, strategy: str) -> None:
    """A spawn strategy pickles the module into each new process: say so plainly, before any
    process starts, when it cannot be (the built-in models define their modules inside functions)."""
    import pickle

    try:
        pickle.dumps(module)
    except (pickle.PicklingError, AttributeError, TypeError) as exc:
        raise ValueError(f"strategy {strategy!r} pickles the LightningModule into new processes, and "
                         f"{type(module).__qualname__} cannot be pickled ({exc}); use 'ddp' (re-runs the command per "
                         "device) or, on Linux without CUDA, 'ddp_fork'") from exc


def _trained_in_child_processes(trainer: Any) -> bool:
    """True after a fork or spawn strategy (``ddp_fork``, ``ddp_spawn``, ``ddp_notebook``): the
    fit ran in child processes, and Lightning hands back to this one only the weights, the best
    checkpoint's path and the logged metrics, not the step counters, the best score or the
    callbacks' state (so ``skipped_steps`` is None after such a fit)."""
    launcher = getattr(trainer.strategy, "launcher", None)
    return trainer.world_size > 1 and type(launcher).__name__ == "_MultiProcessingLauncher"


def _recover_child_results(metrics_csv: Path, checkpoint_cb: Any, epochs: int, global_step: int) -> tuple[int, int]:
    """Epochs and optimiser steps of a fit that ran in child processes, from the CSV log its rank
    zero wrote in this call (the last logged epoch and step, 0-based; the step column holds the
    global step minus one), and the best ``val_loss`` from the best checkpoint's own state.
    (``last.ckpt`` holds the last epoch, but a fork/spawn launcher hands back only the first
    checkpoint callback's best path and score.)"""
    if metrics_csv.is_file():
        with metrics_csv.open(newline="") as fh:
            rows = list(csv.DictReader(fh))
        logged = [(int(float(r["epoch"])), int(float(r["step"]))) for r in rows if r.get("epoch") not in (None, "") and r.get("step") not in (None, "")]
        if logged:
            epochs = max(e for e, _ in logged) + 1
            global_step = max(st for _, st in logged) + 1
    best = Path(checkpoint_cb.best_model_path) if checkpoint_cb.best_model_path else None
    if best is not None and best.is_file() and checkpoint_cb.best_model_score is None:
        from benchmark.safeload import load_weights

        state = (load_weights(best).get("callbacks") or {}).get(checkpoint_cb.state_key) or {}
        checkpoint_cb.best_model_score = state.get("best_model_score")
    return epochs, global_step


def _checkpoint_epoch(path: Path) -> int | None:
    """The epoch in a ModelCheckpoint file name (``epoch=12-step=340.ckpt`` -> 12)."""
    import re

    m = re.search(r"epoch=(\d+)", path.name)
    return int(m.group(1)) if m else None
