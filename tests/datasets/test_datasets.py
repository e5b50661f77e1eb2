"""Dataset plugins: published CSVs, Niggli reduction as published, caching, lookup order, download check."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest

from benchmark.datasets import base
from benchmark.datasets.base import Dataset, DatasetNotFound, git_blob_id
from benchmark.registry import get_plugins


@pytest.mark.data
def test_perov5_dev_splits_and_properties(shared_data: Path) -> None:
    ds = get_plugins()["datasets"].get("perov_5_dev")
    val = ds.load("val", progress=False)
    assert len(val) == 512 and all(c.num_atoms == 5 for c in val)
    assert {"heat_ref", "heat_all", "dir_gap", "ind_gap"} <= set(val[0].properties)
    assert ds.target == "heat_ref" and ds.protocol_family == "perov_5"


@pytest.mark.data
def test_crystals_are_niggli_reduced_as_published(shared_data: Path) -> None:
    import pandas as pd
    from pymatgen.core import Lattice, Structure

    ds = get_plugins()["datasets"].get("carbon_24")
    crystals = ds.load("val", progress=False, limit=5)
    df = pd.read_csv(shared_data / "carbon_24" / "val.csv", nrows=5)
    for c, cif in zip(crystals, df["cif"]):
        s = Structure.from_str(cif, fmt="cif").get_reduced_structure()
        expected = Structure(Lattice.from_parameters(*s.lattice.parameters), s.species, s.frac_coords)
        assert np.allclose(c.lengths, expected.lattice.abc) and np.allclose(c.angles, expected.lattice.angles)
        assert np.allclose(c.frac_coords, expected.frac_coords)
        assert c.properties["energy_per_atom"] == pytest.approx(df.loc[df["cif"] == cif, "energy_per_atom"].item())


@pytest.mark.data
def test_parsed_split_is_cached(shared_data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ds = get_plugins()["datasets"].get("mp_20_sample")
    first = ds.load("test", progress=False)
    monkeypatch.setattr(base, "_parse_row", lambda cif: (_ for _ in ()).throw(AssertionError("parsed again")))
    second = ds.load("test", progress=False)
    assert [c.label for c in first] == [c.label for c in second]


def test_explicit_dir_wins_then_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    for d in (a, b):
        (d / "toyset").mkdir(parents=True)
        (d / "toyset" / "test.csv").write_text("cif\n")
    monkeypatch.setenv("BENCHMARK_DATA_DIR", str(b))
    ds = Dataset(name="toyset", description="", folder="toyset")
    assert ds.file_path("test", data_dir=a) == a / "toyset" / "test.csv"
    assert ds.file_path("test") == b / "toyset" / "test.csv"


def test_missing_file_error_says_how_to_provide_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BENCHMARK_DATA_DIR", str(tmp_path))
    ds = get_plugins()["datasets"].get("perov_5")
    with pytest.raises(DatasetNotFound, match="BENCHMARK_DATA_DIR") as err:
        ds.file_path("train")
    assert "perov_5/train.csv" in str(err.value)
    with pytest.raises(DatasetNotFound, match="no split"):
        ds.file_path("nonsense")


def test_git_blob_id_matches_git() -> None:
    # `printf 'hello\n' | git hash-object --stdin`
    assert git_blob_id(b"hello\n") == "ce013625030ba8dba906f756967f9e9ca394464a"


class _FakeResponse(io.BytesIO):
    headers = {"Content-Length": "0"}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_download_is_verified_byte_for_byte(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import urllib.request

    content = b"material_id,cif\n"
    monkeypatch.setenv("BENCHMARK_DATA_DIR", str(tmp_path / "empty"))
    monkeypatch.setenv("BENCHMARK_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("BENCHMARK_OFFLINE")
    asked: list[str] = []

    def fake_urlopen(url, timeout=0):
        asked.append(url)
        return _FakeResponse(content)

    monkeypatch.setattr(urllib.request, "urlopen", fake_urlopen)
    good = Dataset(name="x", description="", folder="x", official_blobs={"test": git_blob_id(content)})
    path = good.file_path("test")
    assert path.read_bytes() == content and base.CDVAE_COMMIT in asked[0]
    bad = Dataset(name="y", description="", folder="y", official_blobs={"test": "0" * 40})
    with pytest.raises(DatasetNotFound, match="does not match"):
        bad.file_path("test")
    assert not (tmp_path / "cache" / "datasets" / "y" / "test.csv").exists()


def test_offline_never_downloads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import urllib.request

    monkeypatch.setenv("BENCHMARK_DATA_DIR", str(tmp_path))
    monkeypatch.setattr(urllib.request, "urlopen", lambda *a, **k: pytest.fail("network used while offline"))
    with pytest.raises(DatasetNotFound):
        get_plugins()["datasets"].get("mp_20").file_path("test")
