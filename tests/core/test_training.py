"""The shared Lightning loop: losses fall, checkpoints and CSV logs are written, a second call
resumes from ``last.ckpt``, and resuming reads checkpoints with ``weights_only=True``."""

from __future__ import annotations

import pickle

import lightning
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from benchmark.training import epoch_losses, last_checkpoint, read_loss_curve, train_module


class LinearRegression(lightning.LightningModule):
    def __init__(self, lr: float = 0.05) -> None:
        super().__init__()
        self.save_hyperparameters({"lr": lr, "features": 3})  # plain data only
        self.linear = torch.nn.Linear(3, 1)

    def _loss(self, batch):
        x, y = batch
        return torch.nn.functional.mse_loss(self.linear(x), y)

    def training_step(self, batch, batch_idx):
        loss = self._loss(batch)
        self.log("train_loss", loss, on_step=False, on_epoch=True)
        return loss

    def validation_step(self, batch, batch_idx):
        self.log("val_loss", self._loss(batch), on_step=False, on_epoch=True)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.hparams["lr"])


class NotAllowlisted:
    """A class torch's weights_only unpickler does not know."""

    def __init__(self) -> None:
        self.value = 1


def loaders(n: int = 64, batch_size: int = 16):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 3, generator=g)
    y = x @ torch.tensor([[1.0], [-2.0], [0.5]]) + 0.01 * torch.randn(n, 1, generator=g)
    data = TensorDataset(x, y)
    return DataLoader(data, batch_size=batch_size, shuffle=True), DataLoader(data, batch_size=batch_size)


def test_train_loss_falls_and_writes_checkpoint_and_log(tmp_path):
    train, val = loaders()
    summary = train_module(LinearRegression(), train, val, tmp_path, max_epochs=4, progress=False)
    assert summary["epochs"] == 4
    assert summary["global_step"] == 4 * 4
    assert summary["resumed_from"] is None
    assert isinstance(summary["train_loss"], float) and isinstance(summary["val_loss"], float)
    assert (tmp_path / "checkpoints" / "last.ckpt").is_file()
    assert last_checkpoint(tmp_path) == tmp_path / "checkpoints" / "last.ckpt"
    assert len(list((tmp_path / "checkpoints").glob("epoch=*.ckpt"))) == 1  # best by val_loss
    assert summary["metrics_csv"].endswith("metrics.csv")

    rows = read_loss_curve(tmp_path)
    assert rows and all(r["version"] == 0 for r in rows)
    losses = epoch_losses(tmp_path)
    assert sorted(losses) == [0, 1, 2, 3]
    assert losses[3] < losses[0]
    assert summary["train_loss"] == pytest.approx(losses[3])
    assert sorted(epoch_losses(tmp_path, "val_loss")) == [0, 1, 2, 3]


def test_no_validation_loader(tmp_path):
    train, _ = loaders()
    summary = train_module(LinearRegression(), train, None, tmp_path, max_epochs=2, progress=False)
    assert summary["val_loss"] is None
    assert summary["epochs"] == 2
    assert last_checkpoint(tmp_path) is not None


def test_second_call_resumes_from_last_checkpoint(tmp_path):
    train, val = loaders()
    first = train_module(LinearRegression(), train, val, tmp_path, max_epochs=3, progress=False)
    module = LinearRegression()
    second = train_module(module, train, val, tmp_path, max_epochs=6, progress=False)
    assert second["resumed_from"] == str(tmp_path / "checkpoints" / "last.ckpt")
    assert (first["epochs"], second["epochs"]) == (3, 6)
    assert second["global_step"] == first["global_step"] * 2  # continues, not restarted
    assert second["train_loss"] < first["train_loss"]

    rows = read_loss_curve(tmp_path)
    by_version: dict[int, set[int]] = {}
    for r in rows:
        if "train_loss" in r:
            by_version.setdefault(r["version"], set()).add(r["epoch"])
    assert by_version == {0: {0, 1, 2}, 1: {3, 4, 5}}

    # already at max_epochs: nothing more is trained, the summary still reports the losses
    third = train_module(LinearRegression(), train, val, tmp_path, max_epochs=6, progress=False)
    assert third["epochs"] == 6 and third["global_step"] == second["global_step"]
    assert third["train_loss"] == pytest.approx(second["train_loss"])


def test_resume_refuses_pickled_objects(tmp_path):
    """The checkpoint is read with weights_only=True: a non-allowlisted object stops the resume."""
    train, val = loaders()
    train_module(LinearRegression(), train, val, tmp_path, max_epochs=1, progress=False)
    path = tmp_path / "checkpoints" / "last.ckpt"
    ckpt = torch.load(path, weights_only=False)
    ckpt["hyper_parameters"]["payload"] = NotAllowlisted()
    torch.save(ckpt, path)
    with pytest.raises(pickle.UnpicklingError, match="Weights only load failed"):
        train_module(LinearRegression(), train, val, tmp_path, max_epochs=2, progress=False)


def test_unknown_device_is_an_error(tmp_path):
    train, val = loaders()
    with pytest.raises(ValueError, match="unknown device"):
        train_module(LinearRegression(), train, val, tmp_path, max_epochs=1, device="tpu9", progress=False)


def test_read_loss_curve_without_logs(tmp_path):
    assert read_loss_curve(tmp_path) == []
    assert epoch_losses(tmp_path) == {}


class DriftingAway(lightning.LightningModule):
    """Training pulls a scalar weight from 0 towards 5 while validation measures its distance
    from 1: val_loss falls until the weight passes 1, then rises, so the best epoch is early."""

    def __init__(self) -> None:
        super().__init__()
        self.save_hyperparameters({"kind": "drifting"})
        self.w = torch.nn.Parameter(torch.zeros(()))

    def training_step(self, batch, batch_idx):
        loss = (self.w - 5.0) ** 2
        self.log("train_loss", loss, on_step=False, on_epoch=True)
        return loss

    def validation_step(self, batch, batch_idx):
        self.log("val_loss", (self.w - 1.0) ** 2, on_step=False, on_epoch=True)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.05)


def _one_batch():
    return DataLoader(TensorDataset(torch.zeros(1, 1)), batch_size=1)


@pytest.mark.parametrize("keep", ["best", "last"])
def test_the_best_validation_epoch_is_kept(tmp_path, keep):
    """The released CDVAE-family codes keep the best-validation checkpoint; so does the loop by
    default, also when a second call only resumes the finished training."""
    module = DriftingAway()
    summary = train_module(module, _one_batch(), _one_batch(), tmp_path, max_epochs=8, progress=False, keep=keep)
    # w after epoch k (0-based): 5 - 5 * 0.9^(k+1): 0.5, 0.95, 1.355, ... -> closest to 1 after epoch 1
    assert summary["best_epoch"] == 1 and summary["best_val_loss"] == pytest.approx((0.95 - 1.0) ** 2, rel=1e-4)
    last = 5.0 - 5.0 * 0.9 ** 8
    assert summary["kept"] == keep
    assert float(module.w) == pytest.approx(0.95 if keep == "best" else last, rel=1e-5)
    again = DriftingAway()
    resumed = train_module(again, _one_batch(), _one_batch(), tmp_path, max_epochs=8, progress=False, keep=keep)
    assert resumed["resumed_from"] and resumed["best_epoch"] == 1
    assert float(again.w) == pytest.approx(float(module.w), rel=1e-6)


def test_last_checkpoint_is_the_last_epoch_when_validation_gets_worse(tmp_path):
    """last.ckpt is rewritten after every epoch, not only on a new best: with val_loss rising after
    epoch 1, a run stopped after 4 epochs resumes at epoch 4 (Lightning's save_last=True beside a
    monitored top-1 checkpoint left last.ckpt at the best epoch, and a resume trained epochs again)."""
    train_module(DriftingAway(), _one_batch(), _one_batch(), tmp_path, max_epochs=4, progress=False)
    state = torch.load(last_checkpoint(tmp_path), weights_only=True)
    assert state["epoch"] == 3 and state["global_step"] == 4
    assert float(state["state_dict"]["w"]) == pytest.approx(5.0 - 5.0 * 0.9 ** 4, rel=1e-5)
    assert len(list((tmp_path / "checkpoints").glob("epoch=1-*.ckpt"))) == 1  # the best epoch keeps its own file
    resumed = train_module(DriftingAway(), _one_batch(), _one_batch(), tmp_path, max_epochs=8, progress=False)
    assert resumed["global_step"] == 8 and resumed["best_epoch"] == 1
    second_call = [r["epoch"] for r in read_loss_curve(tmp_path) if r["version"] == 1 and "train_loss" in r]
    assert second_call == [4, 5, 6, 7]  # only the epochs not yet trained


def test_gradient_clipping_by_value(tmp_path):
    """gradient_clip_algorithm="value" clips each gradient element (CDVAE's released trainer): with
    the gradient 2 (w - 5) = -10 clipped to -0.5, one SGD step at lr 0.05 moves w by 0.025."""
    module = DriftingAway()
    train_module(module, _one_batch(), None, tmp_path, max_epochs=1, progress=False, gradient_clip_val=0.5,
                 gradient_clip_algorithm="value")
    assert float(module.w) == pytest.approx(0.025, rel=1e-5)


class OneNaNStep(DriftingAway):
    """DriftingAway whose third optimiser step (global step 2) has a NaN gradient."""

    def training_step(self, batch, batch_idx):
        loss = (self.w - 5.0) ** 2
        if self.global_step == 2:
            loss = loss * torch.tensor(float("nan"))
        self.log("train_loss", loss, on_step=False, on_epoch=True)
        return loss


@pytest.mark.parametrize("algorithm", ["norm", "value"])
def test_a_step_with_non_finite_gradients_is_skipped_and_counted(tmp_path, algorithm):
    """A NaN gradient would write NaN into the weight (clipping by norm makes every clipped gradient
    NaN); the loop skips that step, keeps training, and reports it; a resumed run reports the total."""
    module = OneNaNStep()
    summary = train_module(module, _one_batch(), None, tmp_path / "a", max_epochs=5, progress=False, gradient_clip_val=100.0,
                           gradient_clip_algorithm=algorithm)
    # four SGD steps of w <- w - 0.05 * 2 (w - 5), the NaN step left out: 5 - 5 * 0.9^4
    assert summary["skipped_steps"] == 1
    assert float(module.w) == pytest.approx(5.0 - 5.0 * 0.9 ** 4, rel=1e-5)
    resumed = train_module(OneNaNStep(), _one_batch(), None, tmp_path / "a", max_epochs=6, progress=False,
                           gradient_clip_val=100.0, gradient_clip_algorithm=algorithm)
    assert resumed["skipped_steps"] == 1
    unguarded = OneNaNStep()
    plain = train_module(unguarded, _one_batch(), None, tmp_path / "b", max_epochs=5, progress=False, gradient_clip_val=100.0,
                         gradient_clip_algorithm=algorithm, skip_nonfinite=False)
    assert plain["skipped_steps"] is None and torch.isnan(unguarded.w)
