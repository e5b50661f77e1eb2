"""Con-CDVAE's pretrained CGCNN oracles: safe strict loading, the CGCNN graph, accuracy on MP-20 rows.

The pinned predictions below were computed with this module and agree (to < 5e-6) with a line-by-line
transcription of the reference code (txie-93/cgcnn ``model.py`` and Con-CDVAE's ``cgcnn/data.py``,
fed ``Structure.from_str(cif)``) on all 69 ``mp_20_sample`` rows. Those rows are MP-20 crystals
(val.csv and test.csv are the same 10 rows, also present in train.csv: 49 distinct crystals), likely
seen in training by the MP-20/MP-40 models, so the accuracy bounds check the wiring (weights,
normaliser, features, class index), not generalisation.
"""

from __future__ import annotations

import json
import math
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmark.crystal import Crystal
from benchmark.metrics.oracles.cdvae import CheckpointError, OracleWeightsNotFound
from benchmark.metrics.oracles.cgcnn import (
    CGCNN_ORACLES,
    CGCNNOracle,
    CrystalGraph,
    FeaturizationError,
    GaussianDistance,
    build_model,
    collate,
    featurize,
    load_checkpoint,
    neighbour_table,
)

torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[2]
ORACLE_ROOT = Path(os.environ.get("BENCHMARK_ORACLE_DIR") or REPO.parent / "shared" / "oracles")
SPLITS = ("train", "val", "test")

#: normaliser (mean, std) of the regression checkpoints, from the checkpoints' README
NORMALISERS = {
    "mpall20_fm": (-1.23796, 1.05850), "mpall20_bg": (0.63885, 1.22324),
    "mpall40_fm": (-1.44680, 1.05741), "mpall40_bg": (0.85052, 1.36278),
    "oqmd_fm": (-0.59863, 0.87076), "oqmd_bg": (0.33013, 0.96168),
}

#: oracle -> (mean prediction over the 69 rows, prediction for mp-995393, LiS4, whose atoms have
#: fewer than 12 neighbours within 8 Å and so exercise CGCNN's padding)
PINNED = {
    "cgcnn-mpall20-fm": (-1.24260, -0.88912),
    "cgcnn-mpall20-bg": (0.95494, 4.93690),
    "cgcnn-mpall20-Cfm": (0.42914, 0.54392),
    "cgcnn-mpall20-Cbg": (0.32370, 0.99539),
    "cgcnn-mpall40-fm": (-1.22843, -0.83468),
    "cgcnn-mpall40-bg": (0.97583, 3.31845),
    "cgcnn-mpall40-Cfm": (0.41056, 0.52867),
    "cgcnn-mpall40-Cbg": (0.31607, 0.96721),
    "cgcnn-oqmd-fm": (-1.16841, -0.83429),
    "cgcnn-oqmd-bg": (0.88052, 1.69920),
    "cgcnn-oqmd-Cfm": (0.38730, 0.00006),
    "cgcnn-oqmd-Cbg": (0.31370, 0.94178),
}

#: Accuracy bounds on the 69 rows (measured value in the comment). A regression bound sits ~1.4x
#: above the measured MAE and below every broken variant tried by hand: identity or swapped
#: normaliser (MAE >= 0.46), shuffled atom_init features (>= 0.85), Gaussian width sqrt(0.2) instead
#: of 0.2 (>= 0.38), batch norms in training mode (>= 0.165). Classifiers: shuffled features give
#: AUC 0.23-0.81 and accuracy 0.46-0.73; swapped class indices give AUC 1 - AUC.
MAE_BOUND = {
    "cgcnn-mpall20-fm": 0.11,   # 0.0766 eV/atom
    "cgcnn-mpall40-fm": 0.13,   # 0.0908
    "cgcnn-oqmd-fm": 0.17,      # 0.1193
    "cgcnn-mpall20-bg": 0.45,   # 0.3412 eV
    "cgcnn-mpall40-bg": 0.33,   # 0.2320
    "cgcnn-oqmd-bg": 0.31,      # 0.2178
}
#: oracle -> (min accuracy, min ROC AUC); measured acc / AUC in the comments
CLASS_BOUND = {
    "cgcnn-mpall20-Cfm": (0.90, 0.99),  # 0.942 / 1.000
    "cgcnn-mpall40-Cfm": (0.90, 0.99),  # 0.942 / 1.000
    "cgcnn-oqmd-Cfm": (0.90, 0.99),     # 0.986 / 1.000
    "cgcnn-mpall20-Cbg": (0.85, 0.95),  # 0.957 / 0.992
    "cgcnn-mpall40-Cbg": (0.85, 0.95),  # 0.899 / 0.977
    "cgcnn-oqmd-Cbg": (0.85, 0.95),     # 0.913 / 0.991
}


# ---------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def cgcnn_dir() -> Path:
    d = ORACLE_ROOT / "con_cdvae_cgcnn"
    if not (d / "atom_init.json").is_file() or not all((d / f"{stem}.pth.tar").is_file() for stem, *_ in CGCNN_ORACLES.values()):
        pytest.skip("no Con-CDVAE CGCNN files: set BENCHMARK_ORACLE_DIR to a directory holding con_cdvae_cgcnn/")
    return d


_ORACLES: dict[str, CGCNNOracle] = {}


def _oracle(name: str, cgcnn_dir: Path) -> CGCNNOracle:
    if name not in _ORACLES:
        _ORACLES[name] = CGCNNOracle(name, oracle_dir=cgcnn_dir.parent).load()
    return _ORACLES[name]


_ROWS: list[Crystal] = []


@pytest.fixture
def mp20_rows(shared_data: Path) -> list[Crystal]:
    """The 69 mp_20_sample rows (49 train, 10 val, 10 test; val and test are the same rows, which
    are also among the train rows), parsed once, CIFs as given."""
    from benchmark.samples import read_samples

    paths = [shared_data / "mp_20_sample" / f"{split}.csv" for split in SPLITS]
    if not all(p.is_file() for p in paths):
        pytest.skip("no mp_20_sample CSVs in the data directory")
    if not _ROWS:
        for p in paths:
            _ROWS.extend(read_samples(p).entries)
    assert len(_ROWS) == 69 and all(isinstance(c, Crystal) for c in _ROWS)
    return list(_ROWS)


_GRAPHS: list[CrystalGraph] = []


@pytest.fixture
def mp20_graphs(mp20_rows: list[Crystal], cgcnn_dir: Path) -> list[CrystalGraph]:
    """The rows' CGCNN graphs (the same for all twelve oracles), built once."""
    if not _GRAPHS:
        oracle = _oracle("cgcnn-mpall20-fm", cgcnn_dir)
        _GRAPHS.extend(oracle.featurize(c) for c in mp20_rows)
    return list(_GRAPHS)


def _table(features: int = 5) -> dict[int, np.ndarray]:
    """A synthetic atom_init table: element Z -> (Z, Z+0.5, ...)."""
    return {z: z + 0.5 * np.arange(features) for z in range(1, 101)}


def _auc(y: np.ndarray, score: np.ndarray) -> float:
    """ROC AUC as the Mann-Whitney probability that a positive outscores a negative (ties 1/2)."""
    pos, neg = score[y == 1], score[y == 0]
    greater = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return float(greater / (len(pos) * len(neg)))


# ---------------------------------------------------------------------------------- (a) loading
@pytest.mark.parametrize("name", sorted(CGCNN_ORACLES))
def test_checkpoint_loads_strictly_through_restricted_reader(name: str, cgcnn_dir: Path) -> None:
    stem, _, prop, unit, task = CGCNN_ORACLES[name]
    ckpt = load_checkpoint(cgcnn_dir / f"{stem}.pth.tar")
    assert set(ckpt) == {"epoch", "state_dict", "best_mae_error", "optimizer", "normalizer", "args"}
    assert ckpt["args"]["task"] == task and ckpt["args"]["prop"] == prop
    model, classification, mean, std = build_model(ckpt)  # load_state_dict(strict=True) inside
    assert classification == (task == "classification") and not model.training
    state = ckpt["state_dict"]
    assert set(model.state_dict()) == set(state)
    for key, tensor in model.state_dict().items():
        assert torch.equal(tensor, state[key]), key
    assert model.fc_out.out_features == (2 if classification else 1)
    assert model.embedding.in_features == 92 and model.convs[0].nbr_fea_len == 41 and len(model.convs) == 3
    if classification:
        assert (mean, std) == (0.0, 1.0) and unit == "probability"
    else:
        assert (mean, std) == pytest.approx(NORMALISERS[stem], abs=1e-5)
    oracle = _oracle(name, cgcnn_dir)
    assert (oracle.name, oracle.property, oracle.unit, oracle.task) == (name, prop, unit, task)


def test_published_checkpoints_need_no_restricted_unpickler(cgcnn_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Safe-loading path (a): torch's weights_only loader, numpy scalars allow-listed, reads all twelve."""
    from benchmark import safeload

    def no(*args: object, **kwargs: object) -> None:
        raise AssertionError("the restricted unpickler was used")

    monkeypatch.setattr(safeload, "load_foreign", no)
    for stem, *_ in CGCNN_ORACLES.values():
        ckpt = load_checkpoint(cgcnn_dir / f"{stem}.pth.tar")
        assert isinstance(ckpt["args"], dict) and isinstance(ckpt["best_mae_error"], (torch.Tensor, np.floating))


def test_checkpoint_with_namespace_args_loads_through_restricted_reader(cgcnn_dir: Path, tmp_path: Path) -> None:
    """Safe-loading path (b): reference-code checkpoints that pickle ``args`` as an argparse.Namespace."""
    import argparse

    from benchmark.safeload import PickledRecord

    ckpt = load_checkpoint(cgcnn_dir / "mpall20_fm.pth.tar")
    path = tmp_path / "namespace_args.pth.tar"
    torch.save({**ckpt, "args": argparse.Namespace(**ckpt["args"])}, path)
    again = load_checkpoint(path)
    assert isinstance(again["args"], PickledRecord) and again["args"].task == "regression"
    model, classification, mean, std = build_model(again)
    reference, _, ref_mean, ref_std = build_model(ckpt)
    assert not classification and (mean, std) == (ref_mean, ref_std)
    for key, tensor in model.state_dict().items():
        assert torch.equal(tensor, reference.state_dict()[key]), key


def test_missing_files_say_how_to_get_them(tmp_path: Path) -> None:
    with pytest.raises(OracleWeightsNotFound, match="oracle fetch con-cdvae"):
        CGCNNOracle("cgcnn-mpall20-fm", oracle_dir=tmp_path)
    (tmp_path / "atom_init.json").write_text(json.dumps({str(z): v.tolist() for z, v in _table(92).items()}))
    with pytest.raises(OracleWeightsNotFound, match="mpall20_fm.pth.tar"):
        CGCNNOracle("cgcnn-mpall20-fm", oracle_dir=tmp_path)
    with pytest.raises(ValueError, match="unknown CGCNN oracle"):
        CGCNNOracle("cgcnn-mp20-fm", oracle_dir=tmp_path)


def test_registered_oracles() -> None:
    from benchmark.registry import get_plugins

    reg = get_plugins(refresh=True)["oracles"]
    names = {f"cgcnn-{ds}-{t}" for ds in ("mpall20", "mpall40", "oqmd") for t in ("fm", "bg", "Cfm", "Cbg")}
    assert names == set(CGCNN_ORACLES) and names <= set(reg.names())
    assert all(reg.entry(n).source == "benchmark.metrics.oracles.plugin" for n in names)


# ---------------------------------------------------------------------------------- (b) malicious pickles
class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_checkpoint_is_refused_and_not_run(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    folder = tmp_path / "con_cdvae_cgcnn"
    folder.mkdir()
    (folder / "atom_init.json").write_text(json.dumps({str(z): v.tolist() for z, v in _table(92).items()}))
    for payload in (_Evil(marker), {"state_dict": {"embedding.weight": _Evil(marker)}, "args": {"task": "regression"}}):
        fake = folder / "mpall20_fm.pth.tar"
        torch.save(payload, fake)  # zip-format torch pickle whose unpickling would call os.system
        with pytest.raises(CheckpointError, match="refusing"):
            load_checkpoint(fake)
        with pytest.raises(CheckpointError):
            CGCNNOracle("cgcnn-mpall20-fm", oracle_dir=tmp_path).load()
        legacy = tmp_path / "legacy.pth.tar"
        legacy.write_bytes(pickle.dumps(payload, protocol=2))  # a plain (non-zip) pickle
        with pytest.raises(CheckpointError):
            load_checkpoint(legacy)
    assert not marker.exists()


# ---------------------------------------------------------------------------------- (c) the graph
def test_gaussian_expansion_by_hand() -> None:
    gdf = GaussianDistance()
    assert len(gdf.filter) == 41 and gdf.filter[0] == 0.0 and gdf.filter[-1] == pytest.approx(8.0) and gdf.var == 0.2
    e = gdf.expand(np.array([[3.0, 9.0]]))
    assert e.shape == (1, 2, 41)
    # exp(-(d - mu)^2 / 0.2^2): 1 at mu = d, e^-1 one step (0.2 Å) away, e^-4 two steps away
    assert e[0, 0, 15] == pytest.approx(1.0)
    assert e[0, 0, 14] == pytest.approx(math.exp(-1)) and e[0, 0, 16] == pytest.approx(math.exp(-1))
    assert e[0, 0, 13] == pytest.approx(math.exp(-4)) and e[0, 0, 0] == pytest.approx(math.exp(-225))
    # the padding distance, radius + 1 = 9 Å: only the last centre (8 Å) is not vanishingly small
    assert e[0, 1, 40] == pytest.approx(math.exp(-25)) and e[0, 1, 39] == pytest.approx(math.exp(-36))


def test_simple_cubic_neighbours() -> None:
    a = 3.0
    crystal = Crystal([84], [[0, 0, 0]], [a] * 3, [90] * 3)
    index, dist, n_short = neighbour_table(crystal.to_structure())
    assert index.shape == dist.shape == (1, 12) and n_short == 0
    assert np.all(index == 0)  # every neighbour is an image of the one atom
    np.testing.assert_allclose(dist[0, :6], a, atol=1e-9)  # the 6 faces
    np.testing.assert_allclose(dist[0, 6:], a * math.sqrt(2), atol=1e-9)  # then 6 of the 12 edges

    graph = featurize(crystal, _table())
    np.testing.assert_array_equal(graph.atom_fea, [[84, 84.5, 85, 85.5, 86]])
    assert graph.atom_fea.dtype == graph.nbr_fea.dtype == np.float32 and graph.nbr_fea.shape == (1, 12, 41)
    assert graph.nbr_fea[0, 0, 15] == pytest.approx(1.0) and graph.nbr_fea[0, 0, 16] == pytest.approx(math.exp(-1))
    # float32 (as the reference stores them): values below ~1e-45 underflow to 0
    np.testing.assert_allclose(graph.nbr_fea[0, 6], GaussianDistance().expand(np.array(a * math.sqrt(2))), rtol=1e-6, atol=1e-30)


def test_cscl_neighbour_indices_and_batch_offsets() -> None:
    a = 4.0
    crystal = Crystal([55, 17], [[0, 0, 0], [0.5, 0.5, 0.5]], [a] * 3, [90] * 3)
    graph = featurize(crystal, _table())
    # each atom: 8 of the other kind at a*sqrt(3)/2, then 4 of the 6 of its own kind at a
    for i, other in ((0, 1), (1, 0)):
        assert graph.nbr_fea_idx[i].tolist() == [other] * 8 + [i] * 4
        np.testing.assert_allclose(graph.distances[i], [a * math.sqrt(3) / 2] * 8 + [a] * 4, atol=1e-9)
    np.testing.assert_array_equal(graph.atom_fea[:, 0], [55, 17])
    atom_fea, nbr_fea, nbr_idx, counts = collate([graph, graph])
    assert counts == [2, 2] and atom_fea.shape == (4, 5) and nbr_fea.shape == (4, 12, 41)
    assert torch.equal(nbr_idx[2:], nbr_idx[:2] + 2)  # the second crystal's indices are shifted by 2


def test_few_neighbours_are_padded_as_cgcnn_pads_them() -> None:
    a = 7.5  # 6 images at 7.5 Å; the next (7.5*sqrt(2) = 10.6 Å) are beyond the 8 Å radius
    graph = featurize(Crystal([6], [[0, 0, 0]], [a] * 3, [90] * 3), _table())
    assert graph.n_short == 1
    assert graph.nbr_fea_idx.tolist() == [[0] * 12]  # padding index 0 is the crystal's first atom
    np.testing.assert_allclose(graph.distances[0], [a] * 6 + [9.0] * 6, atol=1e-9)
    np.testing.assert_allclose(graph.nbr_fea[0, 6:], np.broadcast_to(GaussianDistance().expand(np.array(9.0)), (6, 41)), rtol=1e-6, atol=1e-30)


def test_padding_warns_once(cgcnn_dir: Path) -> None:
    oracle = _oracle("cgcnn-mpall20-fm", cgcnn_dir)
    sparse = Crystal([6], [[0, 0, 0]], [7.5] * 3, [90] * 3)
    with pytest.warns(RuntimeWarning, match="1 of 2 crystals have atoms with fewer than 12 neighbours"):
        preds = oracle.predict([sparse, Crystal([6], [[0, 0, 0]], [2.0] * 3, [90] * 3)], progress=False)
    assert all(isinstance(p, float) for p in preds)


# ---------------------------------------------------------------------------------- (d) accuracy
@pytest.mark.parametrize("name", sorted(CGCNN_ORACLES))
def test_accuracy_on_mp20_sample(name: str, cgcnn_dir: Path, mp20_rows: list[Crystal], mp20_graphs: list[CrystalGraph]) -> None:
    oracle = _oracle(name, cgcnn_dir)
    pred = np.array(oracle.predict_graphs(mp20_graphs), dtype=float)
    truth = np.array([c.properties[oracle.property] for c in mp20_rows], dtype=float)
    assert pred.shape == (69,) and np.all(np.isfinite(pred))
    mean, lis4 = PINNED[name]
    assert pred.mean() == pytest.approx(mean, abs=1e-4)
    assert pred[[c.label for c in mp20_rows].index("mp-995393")] == pytest.approx(lis4, abs=1e-4)
    if oracle.task == "regression":
        assert np.abs(pred - truth).mean() < MAE_BOUND[name]
    else:
        assert np.all((pred >= 0) & (pred <= 1))
        min_acc, min_auc = CLASS_BOUND[name]
        assert ((pred > 0.5) == (truth == 1)).mean() >= min_acc
        assert _auc(truth, pred) >= min_auc


def test_predict_equals_predict_graphs(cgcnn_dir: Path, mp20_rows: list[Crystal], mp20_graphs: list[CrystalGraph]) -> None:
    oracle = _oracle("cgcnn-oqmd-Cbg", cgcnn_dir)
    with pytest.warns(RuntimeWarning, match="padded"):  # LiS4 (in train and in val/test)
        direct = oracle.predict(mp20_rows, batch_size=16, progress=False)
    np.testing.assert_allclose(direct, oracle.predict_graphs(mp20_graphs, batch_size=69), atol=1e-5)


def test_prediction_invariant_to_atom_order(cgcnn_dir: Path, mp20_rows: list[Crystal], rng: np.random.Generator) -> None:
    oracle = _oracle("cgcnn-mpall20-bg", cgcnn_dir)
    c = max(mp20_rows, key=lambda x: x.num_atoms)
    perm = rng.permutation(c.num_atoms)
    shuffled = Crystal(c.atomic_numbers[perm], c.frac_coords[perm], c.lengths, c.angles)
    a, b = oracle.predict([c, shuffled], progress=False)
    assert a == pytest.approx(b, abs=1e-4)


# ---------------------------------------------------------------------------------- (e) no graph
def test_crystals_without_a_graph_give_none(cgcnn_dir: Path) -> None:
    from benchmark.samples import Unreadable

    oracle = _oracle("cgcnn-mpall20-fm", cgcnn_dir)
    good = Crystal([11, 17], [[0, 0, 0], [0.5, 0.5, 0.5]], [3.3] * 3, [90] * 3)
    bad = [
        Crystal([8, 8], [[0, 0, 0], [float("nan"), 0.5, 0.5]], [4.0] * 3, [90] * 3),  # NaN coordinate
        Crystal(np.zeros(0, dtype=np.int64), np.zeros((0, 3)), [4.0] * 3, [90] * 3),  # no atoms
        Crystal([8], [[0, 0, 0]], [float("nan")] * 3, [90] * 3),  # no cell
        Crystal([8], [[0, 0, 0]], [0.0, 4.0, 4.0], [90] * 3),  # zero volume
        Crystal([8, 8], [[0, 0, 0], [0.5, 0.5, 0.5]], [0.05] * 3, [90] * 3),  # absurdly dense (about 7e7 neighbour pairs)
        Crystal([118], [[0, 0, 0]], [4.0] * 3, [90] * 3),  # no atom_init features for Og
        Unreadable("x.csv:row 3", "malformed CIF"),  # type: ignore[list-item]
    ]
    preds = oracle.predict([bad[0], good, *bad[1:]], progress=False)
    assert isinstance(preds[1], float) and math.isfinite(preds[1])
    assert preds[:1] + preds[2:] == [None] * len(bad)
    for crystal in bad[:-1]:
        with pytest.raises(FeaturizationError):
            oracle.featurize(crystal)


# ---------------------------------------------------------------------------------- command line
def test_cli_oracle_predict_json(tmp_path: Path, cgcnn_dir: Path, shared_data: Path, mp20_rows: list[Crystal]) -> None:
    samples = shared_data / "mp_20_sample" / "test.csv"
    out = tmp_path / "pred.json"
    env = dict(os.environ, BENCHMARK_DISABLE_PLUGIN_AUTOLOAD="1", BENCHMARK_ORACLE_DIR=str(cgcnn_dir.parent),
               OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    proc = subprocess.run(
        [sys.executable, "-P", "-m", "benchmark", "oracle", "predict", "--oracle", "cgcnn-mpall20-Cbg", "--samples", str(samples),
         "--json", str(out), "--no-progress"],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    record = json.loads(out.read_text())
    assert record["oracle"] == "cgcnn-mpall20-Cbg" and record["property"] == "BG_type" and record["unit"] == "probability"
    with pytest.warns(RuntimeWarning, match="padded"):  # LiS4 is among the test rows
        direct = _oracle("cgcnn-mpall20-Cbg", cgcnn_dir).predict(mp20_rows[-10:], progress=False)
    np.testing.assert_allclose(record["predictions"], direct, atol=1e-5)
