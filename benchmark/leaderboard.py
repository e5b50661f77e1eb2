"""Leaderboard tables: reproduced run records side by side with the numbers the papers reported.

Everything here is a pure function of its inputs (records are plain dicts as stored by
:mod:`benchmark.store`; reported numbers are JSON files in ``benchmark/reported/``)::

    table = build_table(store.query(task="generation"), "generation", dataset="perov_5")
    print(render(table, "markdown"))

What a table holds comes from where each thing is declared: its columns, row labels and caption
notes from the task (:class:`benchmark.tasks.base.Task`), a column's label, unit, direction and
display from the metric that writes the key (:class:`benchmark.metrics.base.MetricKey`). Values are
kept in the project's units (fractions for rates); percentages are only applied when rendering for
humans (Markdown, LaTeX, HTML, through tabulate). CSV output carries raw full-precision values.

Runs measured under different scoring protocols (a record's ``protocol`` section, read by
:meth:`~benchmark.tasks.base.Task.protocol_of`: energy model, relaxation, hull, thresholds,
versions, and their fingerprint) are not comparable: a table whose rows of one dataset carry more
than one fingerprint shows them in labelled groups ("protocol A", "protocol B", "no protocol
recorded"), ranks and merges rows only within a group, and lists under the table the fields that
differ between the groups. :func:`leaderboard_tables` with ``strict=True`` refuses such a table
(:class:`ProtocolMixError`).
"""

from __future__ import annotations

import html
import io
import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from benchmark.metrics.base import MetricKey

#: Display order of the paper datasets when a table spans several.
DATASET_ORDER = ("perov_5", "carbon_24", "mp_20", "mp_40", "oqmd_20")

FORMATS = ("markdown", "latex", "csv", "html")
MISSING = "-"

ORIGIN_PROJECT = "this project"
ORIGIN_REPORTED = "reported"


# --------------------------------------------------------------------------------------------------
# what the tasks and metrics declare
# --------------------------------------------------------------------------------------------------


def _task(name: str) -> Any | None:
    """The registered task ``name`` (None for a task no plugin provides, e.g. of an old record)."""
    from benchmark.registry import get_plugins

    reg = get_plugins()["tasks"]
    return reg.get(name) if name in reg else None


def declarations() -> tuple[dict[str, MetricKey], tuple[Any, ...]]:
    """Every key the registered tasks and metrics declare, and the metrics whose keys depend on
    the run (they describe such keys on request). Read from the registry each time: plugins may
    be added while a process runs."""
    from benchmark.registry import get_plugins

    plugins = get_plugins()
    keys: dict[str, MetricKey] = {}
    dynamic = []
    for entry in plugins["tasks"]:
        keys.update(entry.load().keys)
    for entry in plugins["metrics"]:
        metric = entry.load()
        for k, v in metric.keys.items():
            keys.setdefault(k, v)
        if metric.describe_key is not None:
            dynamic.append(metric)
    return keys, tuple(dynamic)


def metric_key(key: str, higher_is_better: bool | None = None,
               known: tuple[dict[str, MetricKey], tuple[Any, ...]] | None = None) -> MetricKey:
    """How ``key`` is labelled, ranked and printed: its metric's (or task's) declaration, or a
    generic one (label = key, the stored direction) for a key nobody declares. ``known``: the
    result of :func:`declarations`, when the caller already has it."""
    keys, dynamic = known if known is not None else declarations()
    if key in keys:
        return keys[key]
    for metric in dynamic:
        found = metric.describe_key(key)
        if found is not None:
            return found
    return MetricKey(key, higher_is_better)


# --------------------------------------------------------------------------------------------------
# reported numbers
# --------------------------------------------------------------------------------------------------


def _reported_files() -> list[Any]:
    folder = resources.files("benchmark") / "reported"
    try:
        entries = [p for p in folder.iterdir() if p.name.endswith(".json")]
    except (FileNotFoundError, NotADirectoryError):
        return []
    return sorted(entries, key=lambda p: p.name)


def load_reported_files() -> dict[str, dict[str, Any]]:
    """Every reported-numbers file, parsed, keyed by its stem (``"cdvae"``, ``"dp_cdvae"``)."""
    out = {}
    for entry in _reported_files():
        out[entry.name[: -len(".json")]] = json.loads(entry.read_text(encoding="utf-8"))
    return out


def load_reported(
    task: str | None = None,
    dataset: str | None = None,
    *,
    include_quoted: bool = False,
    include_supplementary: bool = False,
) -> list[dict[str, Any]]:
    """Rows of numbers published in the papers (``benchmark/reported/*.json``), in file order.

    Each row: ``{"model", "task", "dataset", "metrics": {key: value | None}, "source", "paper", ...}``
    with optional ``note``, ``reference`` (not a model, e.g. ground-truth validity), ``upper_bound``,
    ``device``, ``reported_text``. Rows that a paper merely quotes from another paper already in the
    folder (``quoted_from``) and supplementary ablations are left out unless asked for.
    """
    rows: list[dict[str, Any]] = []
    for stem, data in load_reported_files().items():
        for row in data.get("rows", []):
            if task is not None and row.get("task") != task:
                continue
            if dataset is not None and row.get("dataset") != dataset:
                continue
            if row.get("quoted_from") and not include_quoted:
                continue
            if row.get("supplementary") and not include_supplementary:
                continue
            rows.append(dict(row, paper=stem, metrics=dict(row.get("metrics") or {})))
    return rows


# --------------------------------------------------------------------------------------------------
# the table model
# --------------------------------------------------------------------------------------------------


@dataclass
class Row:
    label: str
    dataset: str | None
    values: dict[str, float | None]
    origin: str  # "this project" | "reported"
    source: str  # run id (this project) or the paper and table (reported)
    status: str = "ok"
    note: str | None = None
    reference: bool = False  # e.g. ground-truth validity: shown, never ranked
    upper_bound: frozenset[str] = frozenset()  # metric keys whose value is an upper bound ("< 60")
    best: set[str] = field(default_factory=set)  # metric keys where this row holds the best value
    profile: str | None = None
    run_id: str | None = None
    protocol: str | None = None  # the run's protocol fingerprint (None: not recorded, e.g. reported rows)


class ProtocolMixError(ValueError):
    """A table would rank rows measured under different scoring protocols side by side."""


@dataclass
class Table:
    task: str
    dataset: str | None
    columns: list[str]
    rows: list[Row]
    group_by_dataset: bool
    caption: str
    notes: list[str] = field(default_factory=list)
    # column -> its declaration (label, direction, display), resolved when the table is built
    keys: dict[str, MetricKey] = field(default_factory=dict)
    # protocol fingerprint -> its fields, in group order (protocol A, B, ...); empty when no row has one
    protocols: dict[str, Mapping[str, Any]] = field(default_factory=dict)
    # each dataset whose rows carry more than one protocol (None counts once any row has one), with them
    mixed: list[tuple[str | None, list[str | None]]] = field(default_factory=list)
    # lines under the table: the protocol groups and the fields that differ between them
    protocol_lines: list[str] = field(default_factory=list)

    @property
    def grouped(self) -> bool:
        """Whether the rows are shown in protocol groups (some dataset's rows mix protocols)."""
        return bool(self.mixed)

    def protocol_label(self, fingerprint: str | None) -> str:
        """``"A"``, ``"B"``, ... by the group's order in the table; ``"none"`` for rows without one."""
        if fingerprint is None or fingerprint not in self.protocols:
            return "none"
        index = list(self.protocols).index(fingerprint)
        return chr(ord("A") + index) if index < 26 else f"P{index + 1}"

    def group_title(self, fingerprint: str | None) -> str:
        """The caption of a group of rows: ``protocol A (0123456789ab)`` or ``no protocol recorded``."""
        if fingerprint is None:
            return "no protocol recorded"
        return f"protocol {self.protocol_label(fingerprint)} ({fingerprint[:12]})"

    @property
    def higher_is_better(self) -> dict[str, bool | None]:
        return {c: self.key(c).higher_is_better for c in self.columns}

    def key(self, column: str) -> MetricKey:
        return self.keys.get(column) or MetricKey(column)

    def labels(self) -> list[str]:
        return [self.key(c).label for c in self.columns]


def _num(value: Any) -> float | None:
    if isinstance(value, Mapping):
        value = value.get("value")
    if value is None or isinstance(value, bool):
        return None
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def _name(section: Any) -> str | None:
    if isinstance(section, Mapping):
        name = section.get("name")
        return None if name is None else str(name)
    return None if section is None else str(section)


def _changed_suffix(model: Any, label: str) -> str:
    """`` [field=value, ...]`` for the model settings a run changed from its preset (the record's
    ``model.changed``, written by the runner), leaving out a value the label already shows in
    parentheses (a task's own row label, e.g. ``con_cdvae (full)``); empty when none changed."""
    changed = model.get("changed") if isinstance(model, Mapping) else None
    if not isinstance(changed, Mapping):
        return ""
    parts = [f"{k}={'none' if v is None else v}" for k, v in sorted(changed.items()) if f"({v})" not in label]
    return f" [{', '.join(parts)}]" if parts else ""


def _record_row(record: Mapping[str, Any], task: Any | None) -> Row:
    status = record.get("status") or "ok"
    metrics = record.get("metrics") or {}
    values: dict[str, float | None] = {}
    if status == "ok":
        values = {str(k): _num(v) for k, v in metrics.items()}
        if task is not None:
            values = task.row_values(values)
    label = _name(record.get("model")) or "?"
    if task is not None:
        label = task.row_label(record, label)
    label += _changed_suffix(record.get("model"), label)
    run_id = record.get("run_id")
    notes = record.get("notes") or []
    note = "; ".join(str(n) for n in notes) if notes else None
    if status == "not_supported":
        note = note or "not supported by this model"
    return Row(
        label=label,
        dataset=_name(record.get("dataset")),
        values=values,
        origin=ORIGIN_PROJECT,
        source=str(run_id) if run_id else "",
        status=status,
        note=note,
        profile=record.get("profile"),
        run_id=run_id,
    )


def _reported_row(row: Mapping[str, Any], task: Any | None) -> Row:
    values = {str(k): _num(v) for k, v in (row.get("metrics") or {}).items()}
    if task is not None:
        values = task.row_values(values)
    upper = row.get("upper_bound")
    if upper is True:
        upper_keys = frozenset(values)
    elif isinstance(upper, (list, tuple)):
        upper_keys = frozenset(str(k) for k in upper)
    else:
        upper_keys = frozenset()
    return Row(
        label=str(row.get("model")),
        dataset=row.get("dataset"),
        values=values,
        origin=ORIGIN_REPORTED,
        source=str(row.get("source") or row.get("paper") or ""),
        status="ok",
        note=row.get("note"),
        reference=bool(row.get("reference")),
        upper_bound=upper_keys,
    )


def _merge_rows(rows: list[Row], records: list[Mapping[str, Any]], task: Any) -> list[Row]:
    """The ``ok`` runs with the same :meth:`~benchmark.tasks.base.Task.merge_key` and the same
    protocol fingerprint become one row (a later run's value wins when two runs fill the same
    column)."""
    merged: dict[tuple[str, str | None], Row] = {}
    out: list[Row] = []
    for row, record in zip(rows, records):
        key = task.merge_key(record) if row.status == "ok" else None
        if key is None:
            out.append(row)
            continue
        first = merged.get((key, row.protocol))
        if first is None:
            merged[(key, row.protocol)] = row
            out.append(row)
            continue
        first.values.update({k: v for k, v in row.values.items() if v is not None})
        first.source = f"{first.source}, {row.source}" if row.source else first.source
        if row.note:
            first.note = f"{first.note}; {row.note}" if first.note else row.note
    return out


# --------------------------------------------------------------------------------------------------
# protocol groups
# --------------------------------------------------------------------------------------------------


def _protocol(record: Mapping[str, Any], task: Any | None) -> Mapping[str, Any] | None:
    from benchmark.tasks.base import protocol_section

    return task.protocol_of(record) if task is not None else protocol_section(record)


def flatten_fields(fields: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested protocol fields as dotted keys (``{"relaxation": {"fmax": 0.05}}`` ->
    ``{"relaxation.fmax": 0.05}``); lists and empty mappings are values."""
    out: dict[str, Any] = {}
    for key, value in fields.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.update(flatten_fields(value, name + "."))
        else:
            out[name] = value
    return out


_DIGEST = re.compile(r"[0-9a-fA-F]{32,}")
_ABSENT = object()


def _field_text(value: Any) -> str:
    """A protocol value for the notes: strings as they are (a hex digest shortened to 12
    characters), anything else as compact JSON; ``absent`` for a field a group does not have."""
    if value is _ABSENT:
        return "absent"
    if isinstance(value, str):
        return value[:12] if _DIGEST.fullmatch(value) else value
    return json.dumps(value, sort_keys=True, default=str)


def protocol_differences(groups: Mapping[str, Mapping[str, Any]]) -> list[tuple[str, dict[str, str]]]:
    """The fields (dotted keys) whose values differ between the labelled ``groups``
    (label -> fields), each with every group's value as displayed; equal fields are left out. With
    a single group every field is listed: there is nothing it could equal."""
    flat = {label: flatten_fields(fields) for label, fields in groups.items()}
    names = list(dict.fromkeys(k for fields in flat.values() for k in fields))
    out = []
    for name in names:
        values = {label: fields.get(name, _ABSENT) for label, fields in flat.items()}
        texts = {label: _field_text(v) for label, v in values.items()}
        distinct = {json.dumps(v, sort_keys=True, default=str) if v is not _ABSENT else "\0absent" for v in values.values()}
        if len(distinct) > 1 or len(flat) == 1:
            out.append((name, texts))
    return out


def _difference_lines(table: Table, fingerprints: Iterable[str | None]) -> list[str]:
    groups = {table.protocol_label(fp): table.protocols[fp] for fp in fingerprints if fp is not None}
    return [f"{name}: " + ", ".join(f"{label} = {text}" for label, text in texts.items())
            for name, texts in protocol_differences(groups)]


def _group_members(table: Table, dataset: str | None, fingerprint: str | None) -> str:
    rows = [r for r in table.rows if r.dataset == dataset and r.protocol == fingerprint]
    runs = [r.source for r in rows if r.origin == ORIGIN_PROJECT and r.source]
    reported = sum(1 for r in rows if r.origin == ORIGIN_REPORTED)
    parts = ([f"{reported} reported row{'s' if reported != 1 else ''}"] if reported else [])
    if runs:
        parts.append(f"run{'s' if len(runs) > 1 else ''} {', '.join(runs)}")
    return "; ".join(parts) or "no rows"


def protocol_conflicts(table: Table) -> list[str]:
    """One paragraph for each dataset of ``table`` whose rows mix protocols: the table, its
    groups with their runs, the fields that differ and what to do; empty when none does."""
    out = []
    for dataset, fingerprints in table.mixed:
        where = f"the {table.task} table" + (f" on {dataset}" if dataset else "")
        groups = ", ".join(
            f"{table.protocol_label(fp)} ({'fingerprint ' + fp[:12] if fp else 'no protocol recorded'}: "
            f"{_group_members(table, dataset, fp)})" for fp in fingerprints)
        text = f"{where} mixes {len(fingerprints)} scoring protocols, so its rows are not comparable: {groups}"
        lines = _difference_lines(table, fingerprints)
        if len([fp for fp in fingerprints if fp is not None]) > 1:
            text += "; they differ in " + ("; ".join(lines) if lines else "nothing but their fingerprints")
        text += ". Keep runs of one protocol together (another --runs-dir for the others)"
        if any(r.origin == ORIGIN_REPORTED and r.dataset == dataset for r in table.rows) and None in fingerprints:
            text += ", leave out the papers' rows (--no-reported)"
        text += " or drop --strict to print the groups apart."
        out.append(text)
    return out


def _protocol_groups(table: Table, protocol_fields: Mapping[str, Mapping[str, Any]]) -> None:
    """Orders ``table``'s rows by protocol group within each dataset, ranks within groups, and
    fills its protocol attributes, caption note and the lines under it."""
    present = [r.protocol for r in table.rows if r.protocol is not None]
    table.protocols = {fp: protocol_fields[fp] for fp in dict.fromkeys(present)}
    if not table.protocols:
        return
    for dataset in dict.fromkeys(r.dataset for r in table.rows):
        fingerprints = list(dict.fromkeys(r.protocol for r in table.rows if r.dataset == dataset))
        if len(fingerprints) > 1:
            table.mixed.append((dataset, fingerprints))
    if not table.mixed:
        by_dataset = {r.dataset: r.protocol for r in table.rows if r.protocol is not None}
        if len(table.protocols) == 1:
            table.notes.append(f"Protocol fingerprint {present[0][:12]}.")
        else:
            table.notes.append("Protocol fingerprints: " + "; ".join(f"{ds} {fp[:12]}" for ds, fp in by_dataset.items()) + ".")
        return
    table.notes.append("Rows measured under different scoring protocols (fingerprints of energy model, settings, "
                       "reference data and versions) are shown in separate groups and ranked within them; "
                       "the fields that differ are listed below the table.")
    fingerprints_shown = list(dict.fromkeys(r.protocol for r in table.rows))
    lines = []
    for fp in fingerprints_shown:
        if fp is None:
            lines.append("none: no protocol recorded (the papers' reported numbers, runs stored without one)")
        else:
            lines.append(f"{table.protocol_label(fp)}: fingerprint {fp[:12]}")
    table.protocol_lines = ["Protocol groups: " + "; ".join(lines) + "."] + _difference_lines(table, fingerprints_shown)


def _dataset_key(name: str | None) -> tuple[int, str]:
    if name in DATASET_ORDER:
        return (DATASET_ORDER.index(name), "")
    return (len(DATASET_ORDER), name or "")


def _record_hib(records: Iterable[Mapping[str, Any]]) -> dict[str, bool]:
    out: dict[str, bool] = {}
    for record in records:
        for key, entry in (record.get("metrics") or {}).items():
            if isinstance(entry, Mapping) and isinstance(entry.get("higher_is_better"), bool):
                out.setdefault(str(key), entry["higher_is_better"])
    return out


def _is_better(a: float, b: float, higher: bool) -> bool:
    return a > b if higher else a < b


def _same(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-15)


def build_table(
    records: Iterable[Mapping[str, Any]],
    task: str,
    dataset: str | None = None,
    include_reported: bool = True,
    reported: Iterable[Mapping[str, Any]] | None = None,
) -> Table:
    """One leaderboard table for ``task`` (and ``dataset``, or all datasets grouped).

    Rows: stored records of the task with status ``ok`` or ``not_supported`` (the latter show "-"
    everywhere), labelled by the task (:meth:`~benchmark.tasks.base.Task.row_label`) and marked
    "this project" with their run id; and, when ``include_reported``, the papers' rows
    (``reported`` if given, else :func:`load_reported`). Columns: the task's, only those with at
    least one value. The best value of each column (max or min per its declared direction) is
    marked on every row holding it, compared over all rows of the same dataset and protocol
    fingerprint, reported ones included; reference rows (ground truth) are never ranked. Rows of
    one dataset with different fingerprints are ordered into protocol groups (see the module doc).
    """
    task_obj = _task(task)
    records = [r for r in records if r.get("task") == task]
    if dataset is not None:
        records = [r for r in records if _name(r.get("dataset")) == dataset]
    records = [r for r in records if (r.get("status") or "ok") in ("ok", "not_supported")]
    records.sort(key=lambda r: (str(r.get("started_at") or ""), str(r.get("run_id") or "")))

    reported_rows: list[Row] = []
    if include_reported:
        source = load_reported(task, dataset) if reported is None else reported
        for row in source:
            if row.get("task") != task or (dataset is not None and row.get("dataset") != dataset):
                continue
            reported_rows.append(_reported_row(row, task_obj))
    project_rows = [_record_row(r, task_obj) for r in records]
    protocol_fields: dict[str, Mapping[str, Any]] = {}
    for row, record in zip(project_rows, records):
        section = _protocol(record, task_obj)
        if section is not None:
            row.protocol = str(section["fingerprint"])
            protocol_fields.setdefault(row.protocol, section["fields"])
    if task_obj is not None:
        project_rows = _merge_rows(project_rows, records, task_obj)

    all_rows = reported_rows + project_rows
    seen = [k for row in all_rows for k in row.values]
    candidates = task_obj.table_columns(seen) if task_obj is not None else list(dict.fromkeys(seen))
    columns = [c for c in candidates if any(r.values.get(c) is not None for r in all_rows)]
    if not columns and candidates and all_rows:
        # only "not supported" rows: still show the task's headline columns, each "-"
        columns = candidates[: task_obj.headline_columns if task_obj is not None else 3]
    hib_from_records = _record_hib(records)
    known = declarations()
    keys = {c: metric_key(c, hib_from_records.get(c), known) for c in columns}
    hib = {c: k.higher_is_better for c, k in keys.items()}

    datasets = sorted({r.dataset for r in all_rows if r.dataset is not None}, key=_dataset_key)
    group = dataset is None and len(datasets) > 1
    # order: by dataset (when grouped), then protocol group (in order of appearance), reported rows
    # first (paper order), then ours (oldest first)
    order = {id(r): i for i, r in enumerate(all_rows)}
    protocol_order = {fp: i for i, fp in enumerate(dict.fromkeys(r.protocol for r in all_rows))}
    all_rows.sort(key=lambda r: (_dataset_key(r.dataset) if group else (0, ""), protocol_order[r.protocol], order[id(r)]))

    # best values, per dataset and protocol: rows measured differently are not ranked together
    for ds, fp in {(r.dataset, r.protocol) for r in all_rows}:
        rows_ds = [r for r in all_rows if r.dataset == ds and r.protocol == fp and r.status == "ok" and not r.reference]
        for col in columns:
            higher = hib.get(col)
            if higher is None:
                continue
            best: float | None = None
            for r in rows_ds:
                v = r.values.get(col)
                if v is not None and (best is None or _is_better(v, best, higher)):
                    best = v
            if best is None:
                continue
            for r in rows_ds:
                v = r.values.get(col)
                if v is not None and _same(v, best):
                    r.best.add(col)

    profiles = sorted({str(r.profile) for r in project_rows if r.profile})
    oracles = sorted(
        {
            str(entry.get("oracle"))
            for rec in records
            for entry in (rec.get("metrics") or {}).values()
            if isinstance(entry, Mapping) and entry.get("oracle")
        }
    )
    notes: list[str] = []
    if profiles:
        notes.append("Reproduced rows use metric profile " + ", ".join(profiles) + ".")
    if task_obj is not None:
        notes += task_obj.table_notes(records, oracles)
    elif oracles:
        notes.append("Property oracle: " + ", ".join(oracles) + ".")
    if reported_rows:
        notes.append("Reported rows are the numbers published in the cited papers.")
    if any(r.upper_bound for r in all_rows):
        notes.append("'<' marks an upper bound as reported.")
    if any(r.reference for r in all_rows):
        notes.append("Reference rows (ground truth) are not ranked.")

    table = Table(task=task, dataset=dataset, columns=columns, rows=all_rows, group_by_dataset=group, caption="", notes=notes, keys=keys)
    _protocol_groups(table, protocol_fields)

    title = task.replace("_", " ")
    caption = f"{title[:1].upper()}{title[1:]}"
    if dataset is not None:
        caption += f" on {dataset}"
    caption += ". Best value per column in bold"
    per = [what for what, on in (("dataset", group), ("protocol group", table.grouped)) if on]
    caption += f" (per {' and '.join(per)})." if per else "."
    if notes:
        caption += " " + " ".join(notes)
    table.caption = caption
    return table


def leaderboard_tables(store: Any, task: str | None = None, dataset: str | None = None, include_reported: bool = True,
                       strict: bool = False) -> list[Table]:
    """The tables ``python -m benchmark leaderboard`` prints: ``task``'s, or every registered
    task's in :attr:`~benchmark.tasks.base.Task.leaderboard_order` (the tasks that are not
    ``leaderboard_default`` only when runs of them are stored, else their reported rows alone would
    crowd it). A table without any row is left out. ``strict``: raise :class:`ProtocolMixError`
    (one paragraph per offending table and dataset, :func:`protocol_conflicts`) when a table
    would show rows of different protocols side by side."""
    from benchmark.registry import get_plugins

    if task is not None:
        names = [task]
    else:
        tasks = sorted((e.load() for e in get_plugins()["tasks"]), key=lambda t: (t.leaderboard_order, t.name))
        names = [t.name for t in tasks if t.leaderboard_default or store.query(task=t.name, dataset=dataset)]
    tables = [build_table(store.query(task=name, dataset=dataset), name, dataset=dataset, include_reported=include_reported) for name in names]
    tables = [t for t in tables if t.rows]
    if strict:
        conflicts = [text for t in tables for text in protocol_conflicts(t)]
        if conflicts:
            raise ProtocolMixError("\n".join(conflicts))
    return tables


# --------------------------------------------------------------------------------------------------
# formatting
# --------------------------------------------------------------------------------------------------


def _sig(value: float, digits: int) -> str:
    """Paper-style: ``digits`` decimals for 0.001 <= |x| < 1 (0.0264, 0.1258), else ``digits``
    significant digits (156.0, 10.27, 0.0001234); zeros print as 0.00."""
    if value == 0:
        return "0.00"
    if 1e-3 <= abs(value) < 1 and round(abs(value), digits) < 1:
        return f"{value:.{digits}f}"
    magnitude = math.floor(math.log10(abs(value)))
    decimals = digits - 1 - magnitude
    rounded = round(value, decimals)
    # rounding can carry into a new digit (9.9996 -> 10.00); one decimal fewer then
    if rounded != 0 and math.floor(math.log10(abs(rounded))) != magnitude:
        decimals -= 1
    return f"{value:.{max(decimals, 0)}f}"


def format_value(key: str, value: float | None, info: MetricKey | None = None) -> str:
    """Human display of one value, as the key's declaration says: percentages for rates,
    the papers' significant digits otherwise."""
    if value is None:
        return MISSING
    info = info or metric_key(key)
    if info.display == "percent":
        pct = value * 100.0
        return f"{pct:.1f}" if abs(round(pct, 2)) >= 100.0 else f"{pct:.2f}"
    if info.display == "fixed":
        return f"{value:.{info.digits}f}"
    return _sig(value, info.digits)


def _cells(table: Table, row: Row) -> list[tuple[str, bool]]:
    out = []
    for col in table.columns:
        value = row.values.get(col) if row.status == "ok" else None
        text = format_value(col, value, table.key(col))
        if value is not None and col in row.upper_bound:
            text = "< " + text
        out.append((text, col in row.best))
    return out


def _source_text(row: Row) -> str:
    if row.origin == ORIGIN_PROJECT:
        text = f"{ORIGIN_PROJECT} ({row.source})" if row.source else ORIGIN_PROJECT
        if row.status == "not_supported":
            text += ", not supported"
        return text
    return f"{ORIGIN_REPORTED}: {row.source}" if row.source else ORIGIN_REPORTED


def _grid(table: Table, escape: Any, bold: Any) -> tuple[list[str], list[list[str]], list[str]]:
    """Header, body and column alignment of a table for tabulate, cells escaped for the output
    format and the best values wrapped by ``bold``."""
    header = ["Model"] + (["Dataset"] if table.group_by_dataset else []) + table.labels() + ["Source"]
    align = ["left"] + (["left"] if table.group_by_dataset else []) + ["right"] * len(table.columns) + ["left"]
    body = []
    for row in table.rows:
        cells = [escape(row.label)] + ([escape(row.dataset or MISSING)] if table.group_by_dataset else [])
        cells += [bold(escape(t)) if best else escape(t) for t, best in _cells(table, row)]
        body.append(cells + [escape(_source_text(row))])
    return [escape(h) for h in header], body, align


def _group_starts(table: Table) -> dict[int, str]:
    """Row index -> the title of the protocol group starting there (in a grouped table, at the
    first row and wherever the dataset or the protocol changes); empty when not grouped."""
    if not table.grouped:
        return {}
    out = {}
    for i, row in enumerate(table.rows):
        if i == 0 or (row.dataset, row.protocol) != (table.rows[i - 1].dataset, table.rows[i - 1].protocol):
            title = table.group_title(row.protocol)
            out[i] = f"{title}, {row.dataset}" if table.group_by_dataset and row.dataset else title
    return out


def _with_group_rows(table: Table, body: list[list[str]], title_cell: Any) -> list[list[str]]:
    """``body`` with a label row (``title_cell(index, title)`` then empty cells) before each
    protocol group."""
    starts = _group_starts(table)
    out = []
    for i, cells in enumerate(body):
        if i in starts:
            out.append([title_cell(i, starts[i])] + [""] * (len(cells) - 1))
        out.append(cells)
    return out


def _placeholder(i: int) -> str:
    return f"@@protocol-group-{i}@@"


def _md_escape(text: str) -> str:
    return str(text).replace("|", "\\|")


def _render_markdown(table: Table) -> str:
    from tabulate import tabulate

    header, body, align = _grid(table, _md_escape, lambda t: f"**{t}**")
    body = _with_group_rows(table, body, lambda i, title: f"*{_md_escape(title)}*")
    text = tabulate(body, headers=header, tablefmt="pipe", colalign=align, disable_numparse=True)
    text += "\n\n" + _md_escape(table.caption) + "\n"
    if table.protocol_lines:
        text += "\n" + "".join(f"- {_md_escape(line)}\n" for line in table.protocol_lines)
    return text


_LATEX_SPECIAL = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "<": r"\textless{}",
    ">": r"\textgreater{}",
}


_LATEX_UNICODE = {
    "ρ": r"$\rho$",
    "δ": r"$\delta$",
    "Δ": r"$\Delta$",
    "⟨": r"$\langle$",
    "⟩": r"$\rangle$",
    "Å": r"\AA{}",
    "³": r"$^3$",
    "–": "--",
    "—": "---",
    "°": r"$^\circ$",
    "±": r"$\pm$",
}


def latex_escape(text: str) -> str:
    """Escape LaTeX special characters (``_`` ``%`` ``&`` ``#`` ...) and the few non-ASCII symbols
    used in metric labels."""
    return "".join(_LATEX_SPECIAL.get(ch) or _LATEX_UNICODE.get(ch, ch) for ch in str(text))


def _booktabs_raw() -> Any:
    """tabulate's ``latex_booktabs`` layout (toprule / midrule / bottomrule) with cells taken as
    they are: they are escaped by :func:`latex_escape` first, so that ``\\textbf`` survives and the
    Greek letters of the labels become math."""
    from tabulate import DataRow, Line, TableFormat

    def begin(colwidths: list[int], colaligns: list[str]) -> str:
        spec = "".join({"left": "l", "right": "r", "center": "c", "decimal": "r"}.get(a, "l") for a in colaligns)
        return "\\begin{tabular}{" + spec + "}\n\\toprule"

    row = DataRow("", "&", "\\\\")
    return TableFormat(lineabove=begin, linebelowheader=Line("\\midrule", "", "", ""), linebetweenrows=None,
                       linebelow=Line("\\bottomrule\n\\end{tabular}", "", "", ""), headerrow=row, datarow=row, padding=1,
                       with_header_hide=None)


def _render_latex(table: Table) -> str:
    from tabulate import SEPARATING_LINE, tabulate

    header, body, align = _grid(table, latex_escape, lambda t: r"\textbf{" + t + "}")
    starts = _group_starts(table)
    rows: list[Any] = []
    for i, cells in enumerate(body):
        if i > 0 and ((table.group_by_dataset and table.rows[i].dataset != table.rows[i - 1].dataset) or i in starts):
            rows.append(SEPARATING_LINE)  # a \midrule between the datasets' (and protocol groups') blocks
        if i in starts:
            rows.append([_placeholder(i)] + [""] * (len(cells) - 1))
        rows.append(cells)
    text = tabulate(rows, headers=header, tablefmt=_booktabs_raw(), colalign=align, disable_numparse=True)
    # a group's label spans the table: tabulate cannot write \multicolumn, so its row is replaced
    lines = text.split("\n")
    for i, title in starts.items():
        at = next(k for k, line in enumerate(lines) if _placeholder(i) in line)
        lines[at] = r"\multicolumn{" + str(len(header)) + r"}{l}{\textit{" + latex_escape(title) + r"}} \\"
    parts = [r"\begin{table}[ht]", r"\centering", r"\caption{" + latex_escape(table.caption) + "}", "\n".join(lines)]
    if table.protocol_lines:
        parts += [r"\par\smallskip", "{\\footnotesize\\raggedright " + "\\par\n".join(latex_escape(line) for line in table.protocol_lines) + r"\par}"]
    return "\n".join(parts + [r"\end{table}"]) + "\n"


def _raw(value: float | None) -> str:
    return "" if value is None else repr(float(value))


def _render_csv(table: Table) -> str:
    import pandas as pd

    rows = []
    for row in table.rows:
        values = {c: (_raw(row.values.get(c)) if row.status == "ok" else "") for c in table.columns}
        rows.append({"model": row.label, "dataset": row.dataset or "", **values, "origin": row.origin, "source": row.source,
                     "status": row.status, "upper_bound": ";".join(sorted(row.upper_bound)), "note": row.note or ""})
    columns = ["model", "dataset", *table.columns, "origin", "source", "status", "upper_bound", "note"]
    if table.protocols:
        for row, values in zip(table.rows, rows):
            values["protocol"] = row.protocol or ""
        columns.append("protocol")
    buf = io.StringIO()
    pd.DataFrame(rows, columns=columns).to_csv(buf, index=False, lineterminator="\n")
    return buf.getvalue()


def _render_html(table: Table) -> str:
    from tabulate import tabulate

    header, body, align = _grid(table, html.escape, lambda t: f"<strong>{t}</strong>")
    starts = _group_starts(table)
    body = _with_group_rows(table, body, lambda i, title: _placeholder(i))
    text = tabulate(body, headers=header, tablefmt="unsafehtml", colalign=align, disable_numparse=True)
    # tabulate writes a bare <table>: give it the class and the caption
    text = text.replace("<table>", f'<table class="leaderboard">\n<caption>{html.escape(table.caption)}</caption>', 1)
    lines = text.split("\n")
    for i, title in starts.items():
        at = next(k for k, line in enumerate(lines) if _placeholder(i) in line)
        lines[at] = f'<tr class="protocol-group"><th colspan="{len(header)}" style="text-align: left;"><em>{html.escape(title)}</em></th></tr>'
    text = "\n".join(lines)
    if table.protocol_lines:
        text += '\n<ul class="protocol-groups">\n' + "".join(f"<li>{html.escape(line)}</li>\n" for line in table.protocol_lines) + "</ul>"
    return text + "\n"


_RENDERERS = {
    "markdown": _render_markdown,
    "md": _render_markdown,
    "latex": _render_latex,
    "tex": _render_latex,
    "csv": _render_csv,
    "html": _render_html,
}


def render(table: Table, fmt: str = "markdown") -> str:
    """``table`` as ``markdown`` | ``latex`` | ``csv`` | ``html`` text."""
    try:
        renderer = _RENDERERS[fmt.lower()]
    except KeyError:
        raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}") from None
    return renderer(table)


__all__ = [
    "DATASET_ORDER",
    "FORMATS",
    "ProtocolMixError",
    "Row",
    "Table",
    "build_table",
    "declarations",
    "flatten_fields",
    "format_value",
    "latex_escape",
    "leaderboard_tables",
    "load_reported",
    "load_reported_files",
    "metric_key",
    "protocol_conflicts",
    "protocol_differences",
    "render",
]
