"""Issue 17 item 5: scoring streams the sample file in chunks, with the numbers of the whole-file path.

The streamed path (``EvaluateOptions.chunk_size``) reads a chunk of entries at a time, keeps the
results compactly with their fingerprints on disk (:class:`CompactResults`) and computes coverage
from blocks of the distance matrices; every aggregate metric, note and per-structure value must be
the one the whole-file path gives. Small chunk and block sizes put many boundaries in a few
hundred samples, and the files hold unreadable entries and invalid crystals.
"""

from __future__ import annotations

import csv
import gc
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from benchmark.crystal import Crystal
from benchmark.metrics import generation
from benchmark.metrics.base import EvalContext
from benchmark.metrics.crystal_eval import CrystalResult
from benchmark.metrics.profiles import get_profile
from benchmark.metrics.result_store import CompactResults
from benchmark.registry import get_plugins
from benchmark.samples import open_samples, read_samples
from benchmark.tasks.evaluation import EvaluateOptions, evaluate


def toy(split: str) -> list[Crystal]:
    return get_plugins()["datasets"].get("toy").load(split, progress=False)


def jittered(crystals: list[Crystal], seed: int, scale: float) -> list[Crystal]:
    """Copies with moved atoms: some too close (structurally invalid), most new structures."""
    rng = np.random.default_rng(seed)
    out = []
    for k, c in enumerate(crystals):
        frac = np.asarray(c.frac_coords) + rng.normal(0, scale, np.shape(c.frac_coords))
        out.append(Crystal(c.atomic_numbers, frac, c.lengths, c.angles, {}, f"jit{seed}-{k}"))
    return out


def write_messy_extxyz(path: Path, crystals: list[Crystal], bad_at: tuple[int, ...]) -> None:
    """Extended XYZ with a non-periodic frame (an unreadable entry) at each of ``bad_at``."""
    import ase
    import ase.io

    frames = [c.to_atoms() for c in crystals]
    for k in sorted(bad_at, reverse=True):
        frames.insert(k, ase.Atoms("H2", positions=[[0, 0, 0], [0, 0, 0.74]], pbc=False))
    ase.io.write(str(path), frames, format="extxyz")


def samples_file(tmp_path: Path, n_jittered: int = 60) -> Path:
    base = toy("val") + toy("test")  # 128 real toy crystals: coverage, and duplicates of the training set
    crystals = base + jittered(base[:n_jittered], 1, 0.08) + base[:10]  # + repeats: uniqueness has something to find
    path = tmp_path / "messy.extxyz"
    write_messy_extxyz(path, crystals, bad_at=(0, 5, 77))
    return path


def score(path: Path, chunk_size: int | None) -> object:
    opts = EvaluateOptions(task="generation", dataset="toy", samples=path, n_jobs=1, backend="sequential", progress=False, store=False,
                           chunk_size=chunk_size, task_options={"n_property_samples": 50})
    return evaluate(opts)


def assert_same(whole: object, streamed: object) -> None:
    import pandas as pd

    assert {k: v.as_dict() for k, v in whole.metrics.items()} == {k: v.as_dict() for k, v in streamed.metrics.items()}  # exact, not approx
    pd.testing.assert_frame_equal(whole.per_structure, streamed.per_structure, check_exact=True)
    assert whole.notes == streamed.notes
    for key in ("fingerprints", "samples", "profile_settings"):
        assert whole.record[key] == streamed.record[key], key


def test_streamed_scoring_gives_the_numbers_of_the_whole_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = samples_file(tmp_path)
    whole = score(path, None)
    monkeypatch.setattr(generation, "COVERAGE_BLOCK", 5)  # many distance blocks, some with no fingerprinted sample
    streamed = score(path, 7)
    assert_same(whole, streamed)
    table = streamed.per_structure
    assert len(table) == 201 and table["reason"].str.startswith("unreadable").sum() == 3
    assert 0 < table["valid"].mean() < 1 and table["in_property_sample"].sum() == 50
    assert streamed.metrics["cov_recall"].value > 0 and streamed.metrics["uniqueness"].value < 1
    assert any("could not be read" in n for n in streamed.notes)


def test_streamed_csv_matches_whole_file(tmp_path: Path) -> None:
    """CSV: a missing CIF and a broken one among the toy validation rows, one chunk boundary in
    the middle of them."""
    from benchmark.datasets.toy import ensure_generated

    rows = list(csv.reader(open(ensure_generated() / "val.csv", newline="")))
    header, body = rows[0], rows[1:40]
    ci = [h.strip().lower() for h in header].index("cif")
    body[3][ci] = ""
    body[8][ci] = "data_broken\n_cell_length_a nonsense\n"
    path = tmp_path / "samples.csv"
    with open(path, "w", newline="") as fh:
        csv.writer(fh).writerows([header, *body])
    assert_same(score(path, None), score(path, 4))


def test_open_samples_gives_the_entries_of_read_samples(tmp_path: Path) -> None:
    path = samples_file(tmp_path, n_jittered=5)
    whole = read_samples(path, limit=50).entries
    stream = open_samples(path, limit=50)
    assert stream.streamed
    got = [e for chunk in stream.chunks(6) for e in chunk]
    assert len(got) == len(whole) == stream.n == 50
    for a, b in zip(whole, got):
        assert type(a) is type(b)
        if isinstance(a, Crystal):
            assert a.label == b.label and np.array_equal(a.frac_coords, b.frac_coords) and np.array_equal(a.lattice_matrix, b.lattice_matrix)
        else:
            assert a == b
    picked = stream.take([40, 0, 17])
    assert sorted(picked) == [0, 17, 40] and picked[17].label == whole[17].label
    assert stream[17].label == whole[17].label and [e.label for e in stream[2:5]] == [e.label for e in whole[2:5]]


def test_blocked_coverage_equals_the_whole_distance_matrices() -> None:
    """COV and AMSD/AMCD from blocks of the distance matrices equal those of CDVAE's whole
    ``cdist`` matrices bit for bit, on random fingerprints (some samples without any)."""
    from scipy.spatial.distance import cdist

    rng = np.random.default_rng(3)
    profile = get_profile("cdvae")

    def results(n: int, missing: float) -> list[CrystalResult]:
        out = []
        for k in range(n):
            has = rng.random() > missing
            out.append(CrystalResult(k, str(k), 5, "X", True, True, True, has, [],
                                     rng.random(61) * 0.3 if has else None, rng.random(132) * 3 if has else None))
        return out

    gen, ref = results(157, 0.1), results(41, 0.0)
    # the published computation: the whole matrices
    g = [r for r in gen if r.struct_fp is not None]
    sd = cdist(np.stack([r.struct_fp for r in g]), np.stack([r.struct_fp for r in ref]))
    cd = cdist(profile.scale_composition(np.stack([r.comp_fp for r in g])), profile.scale_composition(np.stack([r.comp_fp for r in ref])))
    cut = (float(np.median(sd.min(axis=1))), float(np.median(cd.min(axis=1))))  # some pairs covered, not all
    ctx = EvalContext(task="generation", dataset="x", family=None, profile=profile, seed=0, samples=gen, reference=ref,
                      options={"cov_cutoffs": cut})
    listed = generation.coverage(ctx)  # the list path, one block
    compact = CompactResults()
    for a in range(0, len(gen), 10):
        compact.extend(gen[a : a + 10])
    for block in (1, 6, 1024):
        ctx_b = EvalContext(task="generation", dataset="x", family=None, profile=profile, seed=0, samples=compact, reference=ref,
                            options={"cov_cutoffs": cut})
        got = generation.coverage(ctx_b, block=block)
        assert got["amsd_recall"].value == float(np.mean(sd.min(axis=0)))
        assert got["amsd_precision"].value == float(np.mean(sd.min(axis=1)))
        assert got["amcd_recall"].value == float(np.mean(cd.min(axis=0)))
        assert got["amcd_precision"].value == float(np.mean(cd.min(axis=1)))
        assert got["cov_recall"].value == float(np.mean((sd.min(axis=0) <= cut[0]) & (cd.min(axis=0) <= cut[1])))
        assert got["cov_precision"].value == float(np.sum((sd.min(axis=1) <= cut[0]) & (cd.min(axis=1) <= cut[1])) / len(gen))
        assert 0 < got["cov_recall"].value < 1 and 0 < got["cov_precision"].value < 1
        assert got == listed
        assert ctx_b.per_structure == ctx.per_structure


def test_compact_results_give_back_what_was_stored() -> None:
    rng = np.random.default_rng(0)
    items = [CrystalResult(k, None if k % 3 else f"l{k}", k, f"F{k % 4}", bool(k % 2), True, bool(k % 3), False,
                           [] if k % 2 else ["a; b", "c"], rng.random(61) if k % 5 else None, rng.random(132) if k % 7 else None,
                           None if k % 4 == 0 else float(k) / 3, None if k % 6 == 0 else k % 5, np.nan if k == 3 else 0.5, 10.0 + k,
                           "fast" if k % 2 else None, None) for k in range(23)]
    store = CompactResults()
    store.extend(items[:9])
    store.extend(items[9:])
    assert len(store) == 23
    for a, b in zip(items, store):
        for f in ("index", "label", "n_atoms", "formula", "constructed", "comp_valid", "struct_valid", "valid", "reasons", "density",
                  "n_elems", "volume", "fp_backend", "fp_fallback"):
            assert getattr(a, f) == getattr(b, f), f
        assert (a.min_dist is None and b.min_dist is None) or np.array_equal(a.min_dist, b.min_dist, equal_nan=True)
        for f in ("struct_fp", "comp_fp"):
            x, y = getattr(a, f), getattr(b, f)
            assert (x is None and y is None) or np.array_equal(x, y)
    assert store[-1].index == 22 and [r.index for r in store[3:6]] == [3, 4, 5]
    assert store.column("reason") == [r.reason for r in items]


def _peak_of_scoring(path: Path, chunk_size: int | None) -> int:
    """Peak traced Python allocation (bytes) while scoring ``path`` with the metrics every sample
    feeds (validity, coverage, and the 20-sample property statistics and diversity)."""
    opts = EvaluateOptions(task="generation", dataset="toy", samples=path, n_jobs=1, backend="sequential", progress=False, store=False,
                           chunk_size=chunk_size, metrics=("validity", "coverage", "property_statistics", "diversity"),
                           task_options={"n_property_samples": 20})
    gc.collect()
    threshold = gc.get_threshold()
    gc.set_threshold(50)  # collect cyclic garbage (ASE's atoms, pymatgen's sites) early: less noise in the peak
    tracemalloc.start()
    try:
        evaluate(opts)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
        gc.set_threshold(*threshold)


def test_memory_of_streamed_scoring_grows_only_by_per_sample_numbers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Scoring 4x the samples in chunks of 8 may add only the per-sample numbers (flags, nearest
    distances, the per-structure table: about 1.3 KB a sample measured here), not the crystals
    and fingerprints the whole-file path holds (4.7 KB a sample for these 5-atom crystals,
    scripts/measure_memory.py). The same 20 crystals make both files, so that both runs fill the
    same caches (SMACT compositions, pymatgen's tables), which the warm-up fills first; tracemalloc
    slows featurisation several times, hence so few samples. The blocks the fingerprints are read
    in are bounded (1,024 samples) but fill up with the first samples, so they are made small here
    as the chunks are."""
    from benchmark.metrics import result_store

    monkeypatch.setattr(result_store, "ITER_BLOCK", 8)
    monkeypatch.setattr(generation, "COVERAGE_BLOCK", 8)
    crystals = toy("train")[:20]
    small, big = tmp_path / "n.extxyz", tmp_path / "4n.extxyz"
    write_messy_extxyz(small, crystals, bad_at=())
    write_messy_extxyz(big, crystals * 4, bad_at=())
    _peak_of_scoring(small, 8)  # warm-up: imports, the reference's fingerprints, every cache these crystals fill
    per_sample = (_peak_of_scoring(big, 8) - _peak_of_scoring(small, 8)) / 60
    print(f"streamed scoring grows by {per_sample:.0f} bytes per sample")
    assert per_sample < 2500, f"streamed scoring grows by {per_sample:.0f} bytes per sample"


def test_uniqueness_with_a_tiny_structure_cache_matches_keeping_every_structure(monkeypatch: pytest.MonkeyPatch) -> None:
    """Uniqueness keeps the unique samples as slim crystals and only a few built structures; the
    flags must be those of the published way, every unique structure kept built."""
    from collections import defaultdict

    from benchmark.metrics import novelty

    base = toy("val")[:30]
    crystals = base + jittered(base, 2, 0.002) + jittered(base[:15], 3, 0.2) + base[:5]  # near-copies, new structures, exact repeats
    profile = get_profile("cdvae")
    samples = [CrystalResult(k, None, c.num_atoms, "", True, True, True, True) for k, c in enumerate(crystals)]
    ctx = EvalContext(task="generation", dataset="toy", family=None, profile=profile, seed=0, samples=samples, sample_crystals=crystals,
                      options={"backend": "sequential"})
    monkeypatch.setattr(novelty, "STRUCTURE_CACHE", 2)
    got = novelty.uniqueness(ctx)
    # the published way: every unique structure kept, compared in file order within its formula
    matcher = novelty._matcher(profile.novelty_matcher)
    seen: dict[object, list[object]] = defaultdict(list)
    expected = []
    for c in crystals:
        s = c.to_structure()
        dup = any(novelty._fits(matcher, s, t) for t in seen[novelty._formula_key(c)])
        if not dup:
            seen[novelty._formula_key(c)].append(s)
        expected.append(not dup)
    assert ctx.per_structure["unique"] == expected
    assert got["uniqueness"].value == sum(expected) / len(crystals) and 0 < sum(expected) < len(crystals)
