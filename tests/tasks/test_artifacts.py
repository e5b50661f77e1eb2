"""Per-sample model artifacts (``SampleBatch.artifacts``): kept per batch next to the crystals,
read back on resume, concatenated, stored with the run and handed to the metrics; the CrysTens
consistency metric (Tables 1-2) reads them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from benchmark.crystal import Crystal
from benchmark.tasks.base import BatchError, batched
from tests.conftest import nacl, srtio3


def _crystals(n: int, seed: int) -> list[Crystal]:
    rng = np.random.default_rng(seed)
    return [Crystal([11, 17], [[0, 0, 0], [0.5, 0.5, 0.5]], [4 + rng.random()] * 3, [90, 90, 90]) for _ in range(n)]


def test_batched_keeps_artifacts_per_batch_and_reads_them_back(tmp_path: Path) -> None:
    calls: list[int] = []

    def make(b: int, bn: int):
        calls.append(b)
        return _crystals(bn, b), bn, {"t": np.full((bn, 2, 2), float(b)), "i": np.arange(bn) + 10 * b}

    crystals, evals, arrays = batched(tmp_path, 7, 3, make, progress=False)
    assert len(crystals) == 7 and evals == 7 and calls == [0, 1, 2]
    assert arrays["t"].shape == (7, 2, 2) and arrays["i"].tolist() == [0, 1, 2, 10, 11, 12, 20]
    assert (tmp_path / "batch_00000.npz").is_file()
    # resume: nothing is made again, the same arrays come back
    again = batched(tmp_path, 7, 3, make, progress=False)
    assert calls == [0, 1, 2] and again[2]["i"].tolist() == arrays["i"].tolist()
    # a marked batch whose arrays are gone is made again, not returned without them
    (tmp_path / "batch_00001.npz").unlink()
    third = batched(tmp_path, 7, 3, make, progress=False)
    assert calls == [0, 1, 2, 1] and third[2]["i"].tolist() == arrays["i"].tolist()


def test_batched_without_artifacts_is_unchanged(tmp_path: Path) -> None:
    crystals, evals, arrays = batched(tmp_path, 4, 3, lambda b, bn: (_crystals(bn, b), None), progress=False)
    assert len(crystals) == 4 and evals is None and arrays == {}
    assert not list(tmp_path.glob("*.npz"))


def test_batched_refuses_artifacts_that_do_not_fit(tmp_path: Path) -> None:
    with pytest.raises(BatchError, match="first axis"):
        batched(tmp_path / "a", 4, 4, lambda b, bn: (_crystals(bn, b), None, {"t": np.zeros((bn + 1, 3))}), progress=False)
    with pytest.raises(BatchError, match="same"):
        batched(tmp_path / "b", 4, 2, lambda b, bn: (_crystals(bn, b), None, {f"t{b}": np.zeros(bn)}), progress=False)


# ------------------------------------------------------------------------------------------ the metric
def _ctx(n: int, artifacts: dict):
    """An evaluation context with ``n`` samples (the metric only counts them)."""
    from benchmark.metrics.base import EvalContext
    from benchmark.metrics.profiles import get_profile

    return EvalContext(task="generation", dataset="toy", family=None, profile=get_profile("cdvae"), seed=0,
                       samples=[None] * n, artifacts=artifacts)  # type: ignore[list-item]


def _metric():
    from benchmark.registry import get_plugins

    return get_plugins()["metrics"].get("crystens")


def test_crystens_metric_reports_nothing_without_the_artifact() -> None:
    ctx = _ctx(2, {})
    assert _metric().compute(ctx) == {}


def test_crystens_metric_on_perfect_and_noisy_tensors() -> None:
    from benchmark.representations.crystens import encode_many

    arr, _ = encode_many([nacl(), srtio3()], progress=False)
    metric = _metric()
    ctx = _ctx(2, {"crystens_tensor": arr})
    values = metric.stamp(metric.compute(ctx))
    assert set(values) == set(metric.keys)
    for key in ("crystens_var_lengths", "crystens_var_angles", "crystens_var_space_group", "crystens_var_frac_coords",
                "crystens_coord_disagreement", "crystens_pairwise_disagreement"):
        assert values[key].value == pytest.approx(0, abs=1e-5) and values[key].higher_is_better is False, key
    assert values["crystens_decode_share"].value == 1.0 and values["crystens_decode_share"].n == 2
    assert values["crystens_var_lengths"].unit == "Å^2"
    noisy = np.clip(arr + np.random.default_rng(0).normal(0, 0.02, arr.shape), 0, 1)
    ctx = _ctx(2, {"crystens_tensor": noisy})
    assert metric.compute(ctx)["crystens_var_lengths"].value > 0.1
    ctx = _ctx(3, {"crystens_tensor": arr})
    assert metric.compute(ctx) == {} and "2 tensors for 3 samples" in ctx.notes[-1]


# ------------------------------------------------------------------------------------------ end to end
def test_run_stores_artifacts_and_scores_them(tmp_path: Path) -> None:
    """A model that hands over CrysTens tensors: the run stores artifacts.npz, the metric scores them."""
    from benchmark.models.base import Model, SampleBatch
    from benchmark.registry import Entry, get_plugins
    from benchmark.representations.crystens import encode_many
    from benchmark.tasks.runner import RunOptions, run

    class Tensors(Model):
        name = "crystens_artifact_test_model"
        capabilities = frozenset({"sample"})

        def fit(self, train, val, run_dir, *, seed=0, device="cpu"):
            return {}

        def save(self, path):
            Path(path).write_bytes(b"x")

        @classmethod
        def load(cls, path, config=None):
            return cls(config)

        def sample(self, n, *, seed, device="cpu"):
            crystals = _crystals(n, seed)
            arr, _ = encode_many(crystals, progress=False)
            return SampleBatch(crystals, n, {"crystens_tensor": arr})

    get_plugins()["models"].add(Entry("crystens_artifact_test_model", "test", lambda: Tensors))
    runs = tmp_path / "runs"
    rec = run(RunOptions(model="crystens_artifact_test_model", task="generation", dataset="toy",
                         overrides=["task.n_samples=6", "task.batch_size=4"], runs_dir=str(runs), progress=False, n_jobs=1),
              log=lambda m: None)
    assert rec["status"] == "ok"
    assert rec["artifacts"]["arrays"] == "artifacts.npz"
    with np.load(runs / rec["run_id"] / "artifacts.npz") as npz:
        assert npz["crystens_tensor"].shape == (6, 64, 64, 4)
    assert rec["metrics"]["crystens_decode_share"]["value"] == 1.0
    assert rec["metrics"]["crystens_var_lengths"]["value"] == pytest.approx(0, abs=1e-6)
