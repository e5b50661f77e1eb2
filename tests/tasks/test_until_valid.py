"""The generation task's ``until_valid`` (CDVAE's FTCP protocol, Table 2 footnote 5: 1,000 valid
out of at most 100,000 draws): seeded batches until enough are valid or the budget is spent; the
stop rule decides only how many batches are drawn, every draw is scored, and resume works as in a
plain run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from benchmark.crystal import Crystal
from benchmark.models.base import Model, SampleBatch
from benchmark.registry import Entry, get_plugins
from benchmark.samples import read_samples
from benchmark.tasks.base import StopRule, batched
from benchmark.tasks.runner import RunOptions, run

MODEL = "until_valid_test_model"


def _crystal(seed: int, i: int, valid_share: float) -> Crystal:
    """Crystal i of the batch seeded ``seed``: NaCl (valid) with probability ``valid_share``, else a
    pair of atoms 0.2 Å apart (structurally invalid) or a zero-atom decode failure; ``tag`` names it."""
    rng = np.random.default_rng([seed, i])
    u, a = rng.random(), 4.0 + rng.random()
    tag = {"tag": float(seed % 100000) + i / 1000}
    if u < valid_share:
        return Crystal([11, 17], [[0, 0, 0], [0.5, 0.5, 0.5]], [a] * 3, [90, 90, 90], tag)
    if u < (1 + valid_share) / 2:
        return Crystal([11, 17], [[0, 0, 0], [0.2 / a, 0, 0]], [a] * 3, [90, 90, 90], tag)
    return Crystal(np.zeros(0, dtype=np.int64), np.zeros((0, 3)), [a] * 3, [90, 90, 90], {**tag, "decode_error": "does not decode"})


class Rare(Model):
    """A model with a set share of valid samples (``VALID_SHARE``); counts its calls."""

    name = MODEL
    capabilities = frozenset({"sample"})
    VALID_SHARE = 0.25
    calls: list[int] = []
    die_after: int | None = None

    def fit(self, train, val, run_dir, *, seed=0, device="cpu"):
        return {}

    def save(self, path):
        Path(path).write_bytes(b"x")

    @classmethod
    def load(cls, path, config=None):
        return cls(config)

    def sample(self, n, *, seed, device="cpu"):
        if Rare.die_after is not None and len(Rare.calls) >= Rare.die_after:
            raise KeyboardInterrupt  # as a user's Ctrl-C mid-sampling
        Rare.calls.append(seed)
        return SampleBatch([_crystal(seed, i, self.VALID_SHARE) for i in range(n)], model_evaluations=n)


@pytest.fixture
def rare() -> type[Rare]:
    if MODEL not in get_plugins()["models"]:
        get_plugins()["models"].add(Entry(MODEL, "test", lambda: Rare))
    Rare.calls = []
    Rare.VALID_SHARE = 0.25
    Rare.die_after = None
    return Rare


def _run(runs: Path, *overrides: str, seed: int = 0) -> dict:
    return run(RunOptions(model=MODEL, task="generation", dataset="toy", overrides=list(overrides), runs_dir=str(runs), seed=seed,
                          progress=False, n_jobs=1), log=lambda m: None)


def _tags(runs: Path, rec: dict) -> list[float]:
    return [c.properties["tag"] for c in read_samples(runs / rec["run_id"] / "samples.extxyz").entries]


def test_stops_once_enough_are_valid_and_scores_every_draw(rare: type[Rare], tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    rec = _run(runs, "task.n_samples=400", "task.batch_size=8", "task.until_valid=6")
    s = rec["sampling"]
    assert s["until_valid"] == 6 and s["valid_found"] >= 6 and s["budget_exhausted"] is False and s["budget"] == 400
    assert s["draws"] == 8 * s["batches"] < 400 and len(rare.calls) == s["batches"]
    # every draw is written and scored: validity over all draws, the valid count the rule saw
    assert len(_tags(runs, rec)) == s["draws"] and rec["metrics"]["valid"]["n"] == s["draws"]
    assert rec["metrics"]["valid"]["value"] * s["draws"] == pytest.approx(s["valid_found"])
    assert any(n.startswith("until_valid:") and "until" in n for n in rec["notes"])
    assert rec["task_config"]["until_valid"] == 6
    # its leaderboard row says how it was drawn, apart from a plain run's
    from benchmark.tasks.generation import GenerationTask

    label = GenerationTask().row_label(rec, MODEL)
    assert label == f"{MODEL} (until 6 valid: {s['valid_found']} of {s['draws']} draws)"
    assert GenerationTask().row_label({"sampling": None}, MODEL) == MODEL


def test_the_last_batch_is_the_one_that_reaches_the_target(rare: type[Rare], tmp_path: Path) -> None:
    """Counted batch by batch with the metric's own per-crystal validity: the batches before the
    last hold fewer valid crystals than asked for."""
    from benchmark.metrics.profiles import get_profile
    from benchmark.tasks.generation import count_valid

    rec = _run(tmp_path / "runs", "task.n_samples=400", "task.batch_size=8", "task.until_valid=6")
    profile = get_profile("cdvae")
    counts = [count_valid([_crystal(seed, i, 0.25) for i in range(8)], profile) for seed in rare.calls]
    assert sum(counts) == rec["sampling"]["valid_found"] >= 6 > sum(counts[:-1])


def test_budget_exhausted_is_flagged_and_noted(rare: type[Rare], tmp_path: Path) -> None:
    rare.VALID_SHARE = 0.0
    rec = _run(tmp_path / "runs", "task.n_samples=20", "task.batch_size=8", "task.until_valid=5")
    s = rec["sampling"]
    assert s == {**s, "draws": 20, "valid_found": 0, "budget_exhausted": True, "batches": 3}
    assert rec["metrics"]["valid"]["value"] == 0.0 and rec["metrics"]["valid"]["n"] == 20
    assert any("budget of 20 draws ran out with 0 valid crystals of the 5 asked for" in n for n in rec["notes"])


def test_same_seed_gives_the_plain_runs_first_crystals(rare: type[Rare], tmp_path: Path) -> None:
    plain = _run(tmp_path / "plain", "task.n_samples=64", "task.batch_size=8", seed=3)
    until = _run(tmp_path / "until", "task.n_samples=64", "task.batch_size=8", "task.until_valid=4", seed=3)
    k = until["sampling"]["draws"]
    assert 0 < k < 64
    assert _tags(tmp_path / "until", until) == _tags(tmp_path / "plain", plain)[:k]


def test_default_is_unchanged(rare: type[Rare], tmp_path: Path) -> None:
    rec = _run(tmp_path / "runs", "task.n_samples=20", "task.batch_size=8")
    assert "sampling" not in rec and not any(n.startswith("until_valid") for n in rec["notes"])
    assert rec["task_config"]["until_valid"] is None
    assert len(rare.calls) == 3 and rec["metrics"]["valid"]["n"] == 20


def test_until_valid_must_be_positive(rare: type[Rare], tmp_path: Path) -> None:
    from benchmark.tasks.runner import RunError

    with pytest.raises(RunError, match="until_valid must be positive"):
        _run(tmp_path / "runs", "task.until_valid=0")


def test_interrupted_run_resumes_without_redrawing(rare: type[Rare], tmp_path: Path) -> None:
    """A run interrupted after two batches, run again with the same options: batches 0 and 1 are
    read back from the work directory, only the rest are drawn, and the crystals and the stop point
    are those of an uninterrupted run."""
    args = ("task.n_samples=400", "task.batch_size=8", "task.until_valid=12")
    fresh = _run(tmp_path / "fresh", *args, seed=5)
    fresh_calls = list(rare.calls)
    assert len(fresh_calls) > 2
    rare.calls, rare.die_after = [], 2
    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path / "runs", *args, seed=5)
    assert rare.calls == fresh_calls[:2]
    rare.calls, rare.die_after = [], None
    resumed = _run(tmp_path / "runs", *args, seed=5)
    assert rare.calls == fresh_calls[2:]
    assert resumed["sampling"] == fresh["sampling"]
    assert _tags(tmp_path / "runs", resumed) == _tags(tmp_path / "fresh", fresh)


def test_resume_after_interruption_does_not_redraw(tmp_path: Path) -> None:
    """A run killed after two batches resumes from them: it reads them back (counting their valid
    crystals again), draws only the rest, and stops where an uninterrupted run stops."""
    made: list[int] = []

    def make(b: int, bn: int):
        made.append(b)
        return [_crystal(1000 + b, i, 0.25) for i in range(bn)], bn

    from benchmark.metrics.profiles import get_profile
    from benchmark.tasks.generation import valid_count_rule

    profile = get_profile("cdvae")
    fresh, _, _ = batched(tmp_path / "fresh", 400, 8, make, progress=False, stop=valid_count_rule(12, profile))
    n_fresh = len(made)
    assert 2 < n_fresh < 50

    class Killed(Exception):
        pass

    def dies_after_two(b: int, bn: int):
        if b >= 2:
            raise Killed
        return make(b, bn)

    made.clear()
    with pytest.raises(Killed):
        batched(tmp_path / "work", 400, 8, dies_after_two, progress=False, stop=valid_count_rule(12, profile))
    assert made == [0, 1]
    made.clear()
    rule = valid_count_rule(12, profile)
    resumed, evals, _ = batched(tmp_path / "work", 400, 8, make, progress=False, stop=rule)
    assert made == list(range(2, n_fresh))  # batches 0 and 1 are read back, not drawn again
    assert rule.batches == n_fresh and rule.reached
    assert [c.properties["tag"] for c in resumed] == [c.properties["tag"] for c in fresh]
    assert evals == 8 * n_fresh


def test_stop_rule_shows_the_count_and_never_draws_past_the_budget(tmp_path: Path) -> None:
    rule = StopRule(10**6, lambda crystals: len(crystals))
    crystals, _, _ = batched(tmp_path, 10, 4, lambda b, bn: ([_crystal(b, i, 1.0) for i in range(bn)], None), progress=False, stop=rule)
    assert len(crystals) == 10 and rule.batches == 3 and rule.found == 10 and not rule.reached
    assert rule.status == "valid 10/1000000"
