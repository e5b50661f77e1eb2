"""Results store: JSON records + SQLite index, atomic writes, recovery, schema versions."""

from __future__ import annotations

import json
import math
import os
import re
import sqlite3

import numpy as np
import pandas as pd
import pytest

from benchmark import store as store_mod
from benchmark.files import write_json_atomic
from benchmark.store import (
    SCHEMA_VERSION,
    ResultsStore,
    SchemaVersionError,
    environment_info,
    new_run_id,
)


def make_record(run_id: str, *, task="generation", dataset="perov_5", model="cdvae", status="ok",
                started_at="2026-11-21T22:15:00Z", value=0.9859, profile="cdvae") -> dict:
    return {
        "run_id": run_id,
        "kind": "evaluate",
        "task": task,
        "status": status,
        "dataset": {"name": dataset, "reference_split": "test", "file": f"{dataset}/test.csv",
                    "sha256": "ab" * 32, "n_reference": 3785},
        "model": {"name": model, "version": "1.0", "config": {"beta": 0.01}, "checkpoint_sha256": None},
        "samples": {"path": "samples.extxyz", "sha256": "cd" * 32, "format": "extxyz", "n": 10000},
        "profile": profile,
        "seed": 0,
        "metrics": {
            "comp_valid": {"value": value, "n": 10000, "higher_is_better": True, "unit": None, "uncertainty": None},
            "wdist_density": {"value": 0.1258, "n": 1000, "higher_is_better": False, "unit": "g/cm^3",
                              "uncertainty": 0.01},
        },
        "environment": {"python": "3.11", "platform": "linux", "packages": {}, "device": "cpu",
                        "git_commit": None, "plugins": {}},
        "started_at": started_at,
        "duration_s": 1.5,
        "timings": {"metrics": 1.2},
        "notes": [],
        "artifacts": {"per_structure": "per_structure.csv"},
        "schema_version": SCHEMA_VERSION,  # deliberately last: save() must put it first
    }


@pytest.fixture
def store(tmp_path):
    return ResultsStore(tmp_path / "runs")


def test_new_run_id_format():
    rid = new_run_id("generation", "perov_5")
    assert re.fullmatch(r"\d{8}T\d{6}-generation-perov_5-[0-9a-f]{6}", rid)
    assert new_run_id("generation", "perov_5") != rid
    assert "/" not in new_run_id("a/b", "c d")


def test_save_get_roundtrip_and_key_order(store):
    rec = make_record("r1")
    path = store.save(rec)
    assert path == store.root / "r1" / "record.json"
    on_disk = json.loads(path.read_text())
    assert next(iter(on_disk)) == "schema_version"
    got = store.get("r1")
    assert list(got)[0] == "schema_version"
    assert got == rec
    assert got["metrics"]["comp_valid"]["value"] == 0.9859


def test_query_filters_and_order(store):
    store.save(make_record("c", started_at="2026-01-03T00:00:00Z", model="diffcsp"))
    store.save(make_record("a", started_at="2026-01-01T00:00:00Z"))
    store.save(make_record("b", started_at="2026-01-02T00:00:00Z", dataset="mp_20"))
    store.save(make_record("d", started_at="2026-01-04T00:00:00Z", task="reconstruction", status="failed"))
    assert [r["run_id"] for r in store.query()] == ["a", "b", "c", "d"]
    assert [r["run_id"] for r in store.query(task="generation")] == ["a", "b", "c"]
    assert [r["run_id"] for r in store.query(dataset="perov_5", task="generation")] == ["a", "c"]
    assert [r["run_id"] for r in store.query(model="diffcsp")] == ["c"]
    assert [r["run_id"] for r in store.query(status="failed")] == ["d"]
    assert store.query(task="nope") == []


def test_save_upserts(store):
    store.save(make_record("r1", value=0.5))
    store.save(make_record("r1", value=0.75))
    rows = store.query()
    assert len(rows) == 1 and rows[0]["metrics"]["comp_valid"]["value"] == 0.75
    with sqlite3.connect(store.index_path) as conn:
        metrics = dict(conn.execute("SELECT key, value FROM metrics WHERE run_id = 'r1'").fetchall())
        cols = [r[1] for r in conn.execute("PRAGMA table_info(runs)").fetchall()]
    assert metrics == {"comp_valid": 0.75, "wdist_density": 0.1258}
    assert cols == ["run_id", "schema_version", "kind", "task", "dataset", "model", "profile", "status",
                    "started_at", "record_json"]
    assert store.metric_values("comp_valid") == [("r1", 0.75)]


def test_get_missing_raises(store):
    with pytest.raises(KeyError):
        store.get("nope")


def test_invalid_run_id_rejected(store):
    with pytest.raises(ValueError):
        store.save(make_record("../escape"))
    with pytest.raises(ValueError):
        store.save(make_record("ok", status="weird"))


def test_atomic_save_keeps_old_record(store, monkeypatch):
    store.save(make_record("r1", value=0.5))
    before = (store.root / "r1" / "record.json").read_bytes()

    def boom(src, dst):
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(store_mod.os, "replace", boom)
    with pytest.raises(OSError, match="simulated"):
        store.save(make_record("r1", value=0.99))
    monkeypatch.undo()
    assert (store.root / "r1" / "record.json").read_bytes() == before
    assert sorted(p.name for p in (store.root / "r1").iterdir()) == ["record.json"]
    assert store.get("r1")["metrics"]["comp_valid"]["value"] == 0.5
    assert store.query()[0]["metrics"]["comp_valid"]["value"] == 0.5  # index untouched too


def test_interrupted_index_update_is_recoverable(store, monkeypatch):
    def fail_index(records, replace_all=False):
        raise sqlite3.OperationalError("database is locked (simulated)")

    monkeypatch.setattr(store, "_index", fail_index)
    with pytest.raises(sqlite3.OperationalError):
        store.save(make_record("r1"))
    monkeypatch.undo()
    assert store.get("r1")["run_id"] == "r1"  # JSON written first
    assert store.query() == []
    assert store.rebuild_index() == 1
    assert [r["run_id"] for r in store.query()] == ["r1"]


def test_rebuild_index_after_deleting_index(store):
    store.save(make_record("r1", started_at="2026-01-01T00:00:00Z"))
    store.save(make_record("r2", started_at="2026-01-02T00:00:00Z", dataset="mp_20"))
    store.index_path.unlink()
    assert store.query() == []  # fresh empty index
    assert store.rebuild_index() == 2
    assert [r["run_id"] for r in store.query()] == ["r1", "r2"]
    assert [r["run_id"] for r in store.query(dataset="mp_20")] == ["r2"]


def test_rebuild_index_replaces_corrupt_index(store):
    store.save(make_record("r1"))
    store.index_path.write_bytes(b"this is not a sqlite database" * 100)
    assert store.rebuild_index() == 1
    assert [r["run_id"] for r in store.query()] == ["r1"]


def test_newer_schema_version_refused(store):
    store.save(make_record("r1"))
    path = store.root / "r1" / "record.json"
    rec = json.loads(path.read_text())
    rec["schema_version"] = SCHEMA_VERSION + 1
    path.write_text(json.dumps(rec))
    with pytest.raises(SchemaVersionError, match="newer"):
        store.get("r1")
    with pytest.raises(SchemaVersionError):
        store.rebuild_index()
    with pytest.raises(SchemaVersionError):
        store.save(dict(make_record("r2"), schema_version=SCHEMA_VERSION + 1))


def test_write_json_atomic_numpy_and_nan(tmp_path):
    path = write_json_atomic(tmp_path / "x.json", {
        "a": np.float32(0.5), "b": np.int64(3), "c": np.array([1.0, np.nan]), "d": float("nan"),
        "e": np.bool_(True), "f": float("inf"), "g": (1, 2),
    })
    text = path.read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text) == {"a": 0.5, "b": 3, "c": [1.0, None], "d": None, "e": True, "f": None, "g": [1, 2]}
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]


def test_save_converts_numpy_metrics(store):
    rec = make_record("r1")
    rec["metrics"]["comp_valid"]["value"] = np.float64(np.nan)
    rec["metrics"]["wdist_density"]["n"] = np.int64(1000)
    store.save(rec)
    got = store.get("r1")
    assert got["metrics"]["comp_valid"]["value"] is None
    assert got["metrics"]["wdist_density"]["n"] == 1000


def test_write_per_structure_list_and_dataframe(store):
    rows = [{"idx": 0, "struct_valid": True, "energy": 0.25}, {"idx": 1, "struct_valid": False, "energy": float("nan")}]
    path = store.write_per_structure("r1", rows)
    assert path == store.root / "r1" / "per_structure.csv"
    df = pd.read_csv(path)
    assert list(df.columns) == ["idx", "struct_valid", "energy"]
    assert df["energy"][0] == 0.25 and math.isnan(df["energy"][1])
    frame = pd.DataFrame({"idx": [0, 1, 2], "x": [1.5, 2.5, 3.5]})
    path2 = store.write_per_structure("r1", frame, name="other.csv")
    pd.testing.assert_frame_equal(pd.read_csv(path2), frame)
    assert not [p for p in (store.root / "r1").iterdir() if p.name.endswith(".tmp")]


def test_environment_info_shape():
    env = environment_info(packages=("numpy", "definitely-not-installed-pkg"))
    assert env["packages"]["numpy"] == np.__version__
    assert env["packages"]["definitely-not-installed-pkg"] is None
    assert env["python"].count(".") == 2
    assert set(env) >= {"python", "platform", "packages", "device", "git_commit", "plugins"}
    assert env["git_commit"] is None or re.fullmatch(r"[0-9a-f]{40}", env["git_commit"])


def test_concurrent_stores_share_index(tmp_path):
    a, b = ResultsStore(tmp_path), ResultsStore(tmp_path)
    a.save(make_record("r1"))
    b.save(make_record("r2", started_at="2026-12-01T00:00:00Z"))
    assert [r["run_id"] for r in a.query()] == ["r1", "r2"]
    assert os.path.exists(tmp_path / "index.sqlite")
