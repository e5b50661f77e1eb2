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
"""

from __future__ import annotations

import html
import io
import json
import math
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
    """The ``ok`` runs with the same :meth:`~benchmark.tasks.base.Task.merge_key` become one row
    (a later run's value wins when two runs fill the same column)."""
    merged: dict[str, Row] = {}
    out: list[Row] = []
    for row, record in zip(rows, records):
        key = task.merge_key(record) if row.status == "ok" else None
        if key is None:
            out.append(row)
            continue
        first = merged.get(key)
        if first is None:
            merged[key] = row
            out.append(row)
            continue
        first.values.update({k: v for k, v in row.values.items() if v is not None})
        first.source = f"{first.source}, {row.source}" if row.source else first.source
        if row.note:
            first.note = f"{first.note}; {row.note}" if first.note else row.note
    return out


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
    marked on every row holding it, compared over all rows of the same dataset, reported ones
    included; reference rows (ground truth) are never ranked.
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
    # order: by dataset (when grouped), reported rows first (paper order), then ours (oldest first)
    order = {id(r): i for i, r in enumerate(all_rows)}
    if group:
        all_rows.sort(key=lambda r: (_dataset_key(r.dataset), order[id(r)]))

    # best values, per dataset
    for ds in {r.dataset for r in all_rows}:
        rows_ds = [r for r in all_rows if r.dataset == ds and r.status == "ok" and not r.reference]
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

    title = task.replace("_", " ")
    caption = f"{title[:1].upper()}{title[1:]}"
    if dataset is not None:
        caption += f" on {dataset}"
    caption += ". Best value per column in bold"
    caption += " (per dataset)." if group else "."
    if notes:
        caption += " " + " ".join(notes)
    return Table(task=task, dataset=dataset, columns=columns, rows=all_rows, group_by_dataset=group, caption=caption, notes=notes, keys=keys)


def leaderboard_tables(store: Any, task: str | None = None, dataset: str | None = None, include_reported: bool = True) -> list[Table]:
    """The tables ``python -m benchmark leaderboard`` prints: ``task``'s, or every registered
    task's in :attr:`~benchmark.tasks.base.Task.leaderboard_order` (the tasks that are not
    ``leaderboard_default`` only when runs of them are stored, else their reported rows alone would
    crowd it). A table without any row is left out."""
    from benchmark.registry import get_plugins

    if task is not None:
        names = [task]
    else:
        tasks = sorted((e.load() for e in get_plugins()["tasks"]), key=lambda t: (t.leaderboard_order, t.name))
        names = [t.name for t in tasks if t.leaderboard_default or store.query(task=t.name, dataset=dataset)]
    tables = [build_table(store.query(task=name, dataset=dataset), name, dataset=dataset, include_reported=include_reported) for name in names]
    return [t for t in tables if t.rows]


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


def _md_escape(text: str) -> str:
    return str(text).replace("|", "\\|")


def _render_markdown(table: Table) -> str:
    from tabulate import tabulate

    header, body, align = _grid(table, _md_escape, lambda t: f"**{t}**")
    text = tabulate(body, headers=header, tablefmt="pipe", colalign=align, disable_numparse=True)
    return text + "\n\n" + _md_escape(table.caption) + "\n"


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
    rows: list[Any] = []
    for i, cells in enumerate(body):
        if table.group_by_dataset and i > 0 and table.rows[i].dataset != table.rows[i - 1].dataset:
            rows.append(SEPARATING_LINE)  # a \midrule between the datasets' blocks
        rows.append(cells)
    text = tabulate(rows, headers=header, tablefmt=_booktabs_raw(), colalign=align, disable_numparse=True)
    return "\n".join([r"\begin{table}[ht]", r"\centering", r"\caption{" + latex_escape(table.caption) + "}", text, r"\end{table}"]) + "\n"


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
    buf = io.StringIO()
    pd.DataFrame(rows, columns=columns).to_csv(buf, index=False, lineterminator="\n")
    return buf.getvalue()


def _render_html(table: Table) -> str:
    from tabulate import tabulate

    header, body, align = _grid(table, html.escape, lambda t: f"<strong>{t}</strong>")
    text = tabulate(body, headers=header, tablefmt="unsafehtml", colalign=align, disable_numparse=True)
    # tabulate writes a bare <table>: give it the class and the caption
    text = text.replace("<table>", f'<table class="leaderboard">\n<caption>{html.escape(table.caption)}</caption>', 1)
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
    "Row",
    "Table",
    "build_table",
    "declarations",
    "format_value",
    "latex_escape",
    "leaderboard_tables",
    "load_reported",
    "load_reported_files",
    "metric_key",
    "render",
]
