"""Run records: one JSON file per run plus an embedded SQLite index for querying.

Layout under the store root::

    <root>/index.sqlite                 # derived, rebuildable index (runs + metrics tables)
    <root>/<run_id>/record.json         # the source of truth for one run
    <root>/<run_id>/per_structure.csv   # optional per-structure table
    <root>/<run_id>/...                 # other artifacts (paths recorded in record["artifacts"])

A run record is a JSON-serialisable dict whose first key is ``schema_version``::

    {
      "schema_version": 1,
      "run_id": "20261121T221500-generation-perov_5-1a2b3c",
      "kind": "evaluate" | "run",
      "task": "generation",
      "status": "ok" | "not_supported" | "failed",
      "dataset": {"name", "reference_split", "file", "sha256", "n_reference"},
      "model": {"name", "version", "config": {...}, "checkpoint_sha256"},
      "samples": {"path", "sha256", "format", "n"},
      "profile": "cdvae",
      "seed": 0 | None,
      "metrics": {key: {"value", "n", "higher_is_better", "unit", "uncertainty"}},
      "environment": {"python", "platform", "packages": {...}, "device", "git_commit", "plugins": {...}},
      "started_at": "2026-11-21T22:15:00Z",
      "duration_s": 12.3,
      "timings": {name: seconds},
      "notes": [str, ...],
      "artifacts": {name: relative path},
    }

The JSON file is always written first (atomically, through :mod:`benchmark.files`: temporary
file in the same directory, fsync, rename); the index is updated afterwards in a single
transaction. An interrupted save therefore leaves at worst a record that is not yet indexed, which
:meth:`ResultsStore.rebuild_index` recovers. Deleting ``index.sqlite`` loses nothing; a corrupt
one is moved aside (``index.sqlite.corrupt-<hex>``) and rebuilt.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import platform
import secrets
import sqlite3
import subprocess
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from benchmark.files import atomic_write_bytes, move_aside, to_jsonable, write_json_atomic

SCHEMA_VERSION = 1

RECORD_FILE = "record.json"
INDEX_FILE = "index.sqlite"

KINDS = ("evaluate", "run")
STATUSES = ("ok", "not_supported", "failed")

#: Record keys in their canonical order (``schema_version`` first).
RECORD_KEYS = (
    "schema_version",
    "run_id",
    "kind",
    "task",
    "status",
    "dataset",
    "model",
    "samples",
    "profile",
    "seed",
    "metrics",
    "environment",
    "started_at",
    "duration_s",
    "timings",
    "notes",
    "artifacts",
)

METRIC_FIELDS = ("value", "n", "higher_is_better", "unit", "uncertainty")

DEFAULT_PACKAGES = ("numpy", "scipy", "pymatgen", "matminer", "smact", "torch", "torch_geometric", "ase", "pluggy")


class SchemaVersionError(ValueError):
    """A record was written by a newer version of the project than this one can read."""


class RecordNotFoundError(KeyError):
    """No record with the requested run id."""


# --------------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------------


def _slug(text: Any) -> str:
    out = "".join(c if (c.isalnum() or c in "_.") else "_" for c in str(text).strip())
    return out.strip("_") or "x"


def utc_now_iso() -> str:
    """The current time as ISO 8601 UTC with a ``Z`` suffix, second precision."""
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def new_run_id(task: str, dataset: str) -> str:
    """``<UTC timestamp>-<task>-<dataset>-<6 hex>``, e.g. ``20261121T221500-generation-perov_5-1a2b3c``.

    Ids sort chronologically and are safe as directory names.
    """
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
    return f"{stamp}-{_slug(task)}-{_slug(dataset)}-{secrets.token_hex(3)}"


def _git_commit(directory: Path) -> str | None:
    try:
        proc = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=str(directory),
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if proc.returncode != 0:
        return None
    commit = proc.stdout.strip()
    return commit or None


def _package_version(name: str) -> str | None:
    from importlib import metadata

    candidates = [name, name.replace("_", "-"), name.replace("-", "_")]
    for cand in dict.fromkeys(candidates):
        try:
            return metadata.version(cand)
        except metadata.PackageNotFoundError:
            continue
        except Exception:  # pragma: no cover - broken metadata
            return None
    return None


def environment_info(packages: Iterable[str] = DEFAULT_PACKAGES) -> dict[str, Any]:
    """Python, platform, versions of ``packages`` (None when not installed), git commit of the project.

    ``device`` and ``plugins`` are left for the caller to fill in (None / empty here).
    """
    src_dir = Path(__file__).resolve().parent
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": {name: _package_version(name) for name in packages},
        "device": None,
        "git_commit": _git_commit(src_dir),
        "plugins": {},
    }


def normalize_record(record: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``record`` with ``schema_version`` first, canonical key order, JSON types only."""
    rec = to_jsonable(dict(record))
    rec.setdefault("schema_version", SCHEMA_VERSION)
    out: dict[str, Any] = {"schema_version": rec["schema_version"]}
    for key in RECORD_KEYS[1:]:
        if key in rec:
            out[key] = rec[key]
    for key, value in rec.items():  # unknown keys are kept, after the known ones
        if key not in out:
            out[key] = value
    return out


def check_schema_version(record: Mapping[str, Any], where: str = "record") -> None:
    version = record.get("schema_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise SchemaVersionError(f"{where}: missing or invalid schema_version {version!r}")
    if version > SCHEMA_VERSION:
        raise SchemaVersionError(
            f"{where}: schema_version {version} is newer than this version of the benchmark "
            f"understands ({SCHEMA_VERSION}); upgrade crystal-gen-benchmark to read it"
        )


def validate_record(record: Mapping[str, Any]) -> None:
    """Raise ValueError when the fields the store relies on are missing or malformed."""
    check_schema_version(record)
    run_id = record.get("run_id")
    if not isinstance(run_id, str) or not run_id or run_id != run_id.strip() or any(c in run_id for c in "/\\") or run_id in {".", ".."}:
        raise ValueError(f"invalid run_id {run_id!r}")
    if record.get("kind") is not None and record["kind"] not in KINDS:
        raise ValueError(f"invalid kind {record['kind']!r}; expected one of {KINDS}")
    if record.get("status") is not None and record["status"] not in STATUSES:
        raise ValueError(f"invalid status {record['status']!r}; expected one of {STATUSES}")
    metrics = record.get("metrics") or {}
    if not isinstance(metrics, Mapping):
        raise ValueError("metrics must be a mapping of key -> {value, n, higher_is_better, unit, uncertainty}")
    for key, entry in metrics.items():
        if not isinstance(entry, Mapping):
            raise ValueError(f"metric {key!r} must be a mapping with a 'value' field")


def _name_of(section: Any) -> str | None:
    if isinstance(section, Mapping):
        name = section.get("name")
        return None if name is None else str(name)
    if section is None:
        return None
    return str(section)


def _metric_value(entry: Any) -> float | None:
    value = entry.get("value") if isinstance(entry, Mapping) else entry
    if value is None or isinstance(value, bool):
        return None if value is None else float(value)
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


# --------------------------------------------------------------------------------------------------
# the store
# --------------------------------------------------------------------------------------------------

_SCHEMA_SQL = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    schema_version INTEGER,
    kind TEXT,
    task TEXT,
    dataset TEXT,
    model TEXT,
    profile TEXT,
    status TEXT,
    started_at TEXT,
    record_json TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS metrics (
    run_id TEXT NOT NULL,
    key TEXT NOT NULL,
    value REAL,
    PRIMARY KEY (run_id, key)
);
CREATE INDEX IF NOT EXISTS runs_task_dataset ON runs (task, dataset);
CREATE INDEX IF NOT EXISTS metrics_key ON metrics (key);
"""


class ResultsStore:
    """Run records under ``root``: ``<run_id>/record.json`` files plus ``index.sqlite``."""

    def __init__(self, root: str | os.PathLike[str]):
        self.root = Path(root).expanduser()
        self.root.mkdir(parents=True, exist_ok=True)

    # -- paths ---------------------------------------------------------------------------------
    @property
    def index_path(self) -> Path:
        return self.root / INDEX_FILE

    def _check_run_id(self, run_id: str) -> str:
        if not isinstance(run_id, str) or not run_id or any(c in run_id for c in "/\\") or run_id in {".", ".."}:
            raise ValueError(f"invalid run_id {run_id!r}")
        return run_id

    def run_dir(self, run_id: str) -> Path:
        """``root/<run_id>/``, created if missing."""
        path = self.root / self._check_run_id(run_id)
        path.mkdir(parents=True, exist_ok=True)
        return path

    def record_path(self, run_id: str) -> Path:
        return self.root / self._check_run_id(run_id) / RECORD_FILE

    # -- sqlite --------------------------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(str(self.index_path), timeout=30, isolation_level=None)
        try:
            conn.execute("PRAGMA busy_timeout = 30000")
            conn.executescript(_SCHEMA_SQL)
        except sqlite3.DatabaseError:
            conn.close()
            raise
        return conn

    @staticmethod
    def _index_rows(record: Mapping[str, Any]) -> tuple[tuple, list[tuple]]:
        run = (
            record["run_id"],
            record.get("schema_version"),
            record.get("kind"),
            record.get("task"),
            _name_of(record.get("dataset")),
            _name_of(record.get("model")),
            record.get("profile"),
            record.get("status"),
            record.get("started_at"),
            json.dumps(record, ensure_ascii=False, allow_nan=False),
        )
        metrics = [
            (record["run_id"], str(key), _metric_value(entry)) for key, entry in (record.get("metrics") or {}).items()
        ]
        return run, metrics

    @staticmethod
    def _upsert(conn: sqlite3.Connection, records: Iterable[Mapping[str, Any]]) -> None:
        for record in records:
            run, metrics = ResultsStore._index_rows(record)
            conn.execute(
                "INSERT OR REPLACE INTO runs (run_id, schema_version, kind, task, dataset, model, profile, "
                "status, started_at, record_json) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                run,
            )
            conn.execute("DELETE FROM metrics WHERE run_id = ?", (record["run_id"],))
            conn.executemany("INSERT INTO metrics (run_id, key, value) VALUES (?, ?, ?)", metrics)

    def _index(self, records: list[Mapping[str, Any]], *, replace_all: bool = False) -> None:
        conn = self._connect()
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                if replace_all:
                    conn.execute("DELETE FROM metrics")
                    conn.execute("DELETE FROM runs")
                self._upsert(conn, records)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        finally:
            conn.close()

    # -- public API ----------------------------------------------------------------------------
    def save(self, record: Mapping[str, Any]) -> Path:
        """Write ``root/<run_id>/record.json`` atomically, then upsert it into the index.

        Returns the path of record.json.
        """
        rec = normalize_record(record)
        validate_record(rec)
        path = self.run_dir(rec["run_id"]) / RECORD_FILE
        write_json_atomic(path, rec)
        self._index([rec])
        return path

    def _read_file(self, path: Path) -> dict[str, Any]:
        with open(path, encoding="utf-8") as fh:
            record = json.load(fh)
        if not isinstance(record, dict):
            raise ValueError(f"{path}: not a run record (expected a JSON object)")
        check_schema_version(record, where=str(path))
        return record

    def get(self, run_id: str) -> dict[str, Any]:
        """The record of ``run_id`` (read from record.json, the source of truth)."""
        path = self.record_path(run_id)
        if not path.is_file():
            raise RecordNotFoundError(f"no run record {run_id!r} under {self.root}")
        return self._read_file(path)

    def exists(self, run_id: str) -> bool:
        return self.record_path(run_id).is_file()

    def query(
        self,
        task: str | None = None,
        dataset: str | None = None,
        model: str | None = None,
        status: str | None = None,
    ) -> list[dict[str, Any]]:
        """Indexed records matching every given filter, oldest first (by started_at, then run_id)."""
        clauses, params = [], []
        for column, value in (("task", task), ("dataset", dataset), ("model", model), ("status", status)):
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        sql = "SELECT record_json FROM runs"
        if clauses:
            sql += " WHERE " + " AND ".join(clauses)
        sql += " ORDER BY COALESCE(started_at, ''), run_id"
        conn = self._connect()
        try:
            rows = conn.execute(sql, params).fetchall()
        finally:
            conn.close()
        out = []
        for (text,) in rows:
            record = json.loads(text)
            check_schema_version(record, where=f"index entry {record.get('run_id')!r}")
            out.append(record)
        return out

    def metric_values(self, key: str, task: str | None = None, dataset: str | None = None) -> list[tuple[str, float | None]]:
        """(run_id, value) pairs of one metric across indexed runs, oldest first."""
        sql = (
            "SELECT m.run_id, m.value FROM metrics m JOIN runs r ON r.run_id = m.run_id WHERE m.key = ?"
        )
        params: list[Any] = [key]
        if task is not None:
            sql += " AND r.task = ?"
            params.append(task)
        if dataset is not None:
            sql += " AND r.dataset = ?"
            params.append(dataset)
        sql += " ORDER BY COALESCE(r.started_at, ''), r.run_id"
        conn = self._connect()
        try:
            return [(r, v) for r, v in conn.execute(sql, params).fetchall()]
        finally:
            conn.close()

    def rebuild_index(self) -> int:
        """Re-read every ``<run_id>/record.json`` and rebuild the index from scratch.

        A corrupt index file is moved aside first. Records newer than this schema raise
        :class:`SchemaVersionError`; unreadable JSON files are skipped. Returns the number indexed.
        """
        records = []
        for path in sorted(self.root.glob(f"*/{RECORD_FILE}")):
            try:
                record = self._read_file(path)
            except (json.JSONDecodeError, UnicodeDecodeError, ValueError) as exc:
                if isinstance(exc, SchemaVersionError):
                    raise
                continue
            if not record.get("run_id"):
                record = dict(record, run_id=path.parent.name)
            records.append(record)
        try:
            self._index(records, replace_all=True)
        except sqlite3.DatabaseError:
            corrupt = self.index_path
            if corrupt.exists():
                move_aside(corrupt, "corrupt")
            for suffix in ("-wal", "-shm", "-journal"):
                extra = corrupt.with_name(corrupt.name + suffix)
                if extra.exists():
                    extra.unlink()
            self._index(records, replace_all=True)
        return len(records)

    def write_per_structure(self, run_id: str, rows: Any, name: str = "per_structure.csv") -> Path:
        """Write a per-structure table (list of dicts or a pandas DataFrame) atomically as CSV."""
        path = self.run_dir(run_id) / name
        if hasattr(rows, "to_csv"):
            text = rows.to_csv(index=False)
        else:
            rows = [dict(r) for r in rows]
            fields: list[str] = []
            for row in rows:
                for key in row:
                    if key not in fields:
                        fields.append(key)
            buf = io.StringIO()
            writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
            writer.writeheader()
            for row in rows:
                writer.writerow({k: _csv_cell(v) for k, v in row.items()})
            text = buf.getvalue()
        return atomic_write_bytes(path, text.encode("utf-8"))


def _csv_cell(value: Any) -> Any:
    value = to_jsonable(value) if not isinstance(value, str) else value
    if value is None:
        return ""
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    return value


__all__ = [
    "SCHEMA_VERSION",
    "RecordNotFoundError",
    "ResultsStore",
    "SchemaVersionError",
    "check_schema_version",
    "environment_info",
    "new_run_id",
    "normalize_record",
    "utc_now_iso",
    "validate_record",
]
