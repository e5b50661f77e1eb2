"""Leaderboard tables: reproduced run records side by side with the numbers the papers reported.

Everything here is a pure function of its inputs (records are plain dicts as stored by
:mod:`benchmark.store`; reported numbers are JSON files in ``benchmark/reported/``)::

    table = build_table(store.query(task="generation"), "generation", dataset="perov_5")
    print(render(table, "markdown"))

Values are kept in the project's units (fractions for rates); percentages are only applied when
rendering for humans (markdown, LaTeX, HTML). CSV output carries raw full-precision values.
"""

from __future__ import annotations

import csv
import html
import io
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

# --------------------------------------------------------------------------------------------------
# metric metadata
# --------------------------------------------------------------------------------------------------

#: Columns of each task's table, in display order. Columns with no value in any row are dropped.
TASK_COLUMNS: dict[str, list[str]] = {
    "generation": [
        "struct_valid",
        "comp_valid",
        "valid",
        "cov_recall",
        "cov_precision",
        "amsd_recall",
        "amsd_precision",
        "amcd_recall",
        "amcd_precision",
        "wdist_density",
        "wdist_prop",
        "wdist_num_elems",
        "comp_div",
        "struct_div",
        "uniqueness",
        "novelty",
    ],
    "reconstruction": ["match_rate", "rms_dist"],
    "property_optimization": ["SR5", "SR10", "SR15"],
    "sampling_speed": ["seconds_per_crystal", "crystals_per_second", "seconds_for_10000"],
    "ground_state": ["gs_match_rate", "gs_mean_rms", "gs_rms_dvolume_per_atom", "gs_rms_denergy_per_atom"],
    # Con-CDVAE Table 2 (joint band gap / formation energy classes), then Table B1 (crystal systems,
    # in the paper's column order); a run fills the column of its condition set, and the joint
    # success of any other condition set a stored run has is appended after these
    "conditional_generation": [
        "success[BG_type=zero,FM_type=high]",
        "success[BG_type=zero,FM_type=low]",
        "success[BG_type=non-zero,FM_type=high]",
        "success[BG_type=non-zero,FM_type=low]",
        "success[CS_type=triclinic]",
        "success[CS_type=monoclinic]",
        "success[CS_type=orthorhombic]",
        "success[CS_type=tetragonal]",
        "success[CS_type=trigonal]",
        "success[CS_type=hexagonal]",
        "success[CS_type=cubic]",
    ],
}


@dataclass(frozen=True)
class MetricInfo:
    """How a metric is labelled, ranked and printed.

    ``display``: ``"percent"`` (a fraction printed x100 with 2 decimals, 1 decimal from 100 up),
    ``"sig"`` (like the papers: ``digits`` decimals below 1, ``digits`` significant digits otherwise) or
    ``"fixed"`` (``digits`` decimals).
    """

    label: str
    higher_is_better: bool | None
    display: str = "sig"
    digits: int = 4
    unit: str | None = None


METRIC_INFO: dict[str, MetricInfo] = {
    "struct_valid": MetricInfo("Struc. valid (%)", True, "percent"),
    "comp_valid": MetricInfo("Comp. valid (%)", True, "percent"),
    "valid": MetricInfo("Valid (%)", True, "percent"),
    "cov_recall": MetricInfo("COV-R (%)", True, "percent"),
    "cov_precision": MetricInfo("COV-P (%)", True, "percent"),
    "amsd_recall": MetricInfo("AMSD-R", False, "sig", 4),
    "amsd_precision": MetricInfo("AMSD-P", False, "sig", 4),
    "amcd_recall": MetricInfo("AMCD-R", False, "sig", 4),
    "amcd_precision": MetricInfo("AMCD-P", False, "sig", 4),
    "wdist_density": MetricInfo("ρ EMD", False, "sig", 4, "g/cm^3"),
    "wdist_prop": MetricInfo("E EMD", False, "sig", 4, "eV/atom"),
    "wdist_num_elems": MetricInfo("# elem. EMD", False, "sig", 4),
    "comp_div": MetricInfo("Comp. div.", True, "sig", 4),
    "struct_div": MetricInfo("Struc. div.", True, "sig", 4),
    "uniqueness": MetricInfo("Unique (%)", True, "percent"),
    "novelty": MetricInfo("Novel (%)", True, "percent"),
    "match_rate": MetricInfo("Match rate (%)", True, "percent"),
    "rms_dist": MetricInfo("RMSE", False, "fixed", 4),
    "SR5": MetricInfo("SR5", True, "fixed", 2),
    "SR10": MetricInfo("SR10", True, "fixed", 2),
    "SR15": MetricInfo("SR15", True, "fixed", 2),
    "seconds_per_crystal": MetricInfo("s / crystal", False, "sig", 4, "s"),
    "crystals_per_second": MetricInfo("crystals / s", True, "sig", 4, "1/s"),
    "seconds_for_10000": MetricInfo("s / 10,000", False, "sig", 4, "s"),
    "gs_match_rate": MetricInfo("GS match rate (%)", True, "percent"),
    "gs_mean_rms": MetricInfo("GS ⟨δrms⟩", False, "fixed", 4),
    "gs_rms_dvolume_per_atom": MetricInfo("ΔV rms (Å³/atom)", False, "sig", 4, "Å^3/atom"),
    "gs_rms_denergy_per_atom": MetricInfo("ΔE rms (eV/atom)", False, "sig", 4, "eV/atom"),
}

#: Display order of the paper datasets when a table spans several.
DATASET_ORDER = ("perov_5", "carbon_24", "mp_20", "mp_40", "oqmd_20")

FORMATS = ("markdown", "latex", "csv", "html")
MISSING = "-"

ORIGIN_PROJECT = "this project"
ORIGIN_REPORTED = "reported"


def metric_info(key: str, higher_is_better: bool | None = None) -> MetricInfo:
    """METRIC_INFO[key], the conditional_generation keys (labelled from their condition set), or a
    generic entry (label = key) for metrics it does not know."""
    info = METRIC_INFO.get(key)
    if info is not None:
        return info
    conditional = _conditional_info(key)
    if conditional is not None:
        return conditional
    return MetricInfo(key, higher_is_better, "sig", 4)


def _conditional_info(key: str) -> MetricInfo | None:
    """``success[BG_type=zero,FM_type=high]`` -> "BG:zero; FE:high (%)", ``mad[band_gap=3].band_gap``
    -> "MAD BG (BG:3 eV)" (keys of :mod:`benchmark.metrics.conditional`)."""
    from benchmark.metrics.conditional import PROPERTIES, parse_key

    parsed = parse_key(key)
    if parsed is None:
        return None
    kind, pairs, target = parsed

    def short(name: str) -> str:  # Con-CDVAE's tables: "BG:zero; FE:high"
        return PROPERTIES[name].short if name in PROPERTIES else name

    def unit(name: str) -> str:
        spec = PROPERTIES.get(name)
        return f" {spec.unit}" if spec is not None and spec.unit else ""

    cond = "; ".join(f"{short(k)}:{v}{unit(k)}" for k, v in pairs.items())
    what = short(target or "")
    if kind == "success":
        return MetricInfo(f"{cond} (%)" if target is None else f"{what} of {cond} (%)", True, "percent")
    if kind == "predicted":
        return MetricInfo(f"checked, {cond} (%)", True, "percent")
    target_unit = unit(target or "").strip() or None
    if kind == "mad":
        return MetricInfo(f"MAD {what} ({cond})", False, "sig", 4, target_unit)
    return MetricInfo(f"median {what} ({cond})", None, "sig", 4, target_unit)


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
    higher_is_better: dict[str, bool | None] = field(default_factory=dict)

    def labels(self) -> list[str]:
        return [metric_info(c, self.higher_is_better.get(c)).label for c in self.columns]


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


def _record_row(record: Mapping[str, Any], task: str) -> Row:
    status = record.get("status") or "ok"
    metrics = record.get("metrics") or {}
    values: dict[str, float | None] = {}
    if status == "ok":
        values = {str(k): _num(v) for k, v in metrics.items()}
        if task == "sampling_speed":
            spc = values.get("seconds_per_crystal")
            cps = values.get("crystals_per_second")
            if spc is None and cps:
                spc = 1.0 / cps
            if values.get("seconds_for_10000") is None and spc is not None:
                values["seconds_for_10000"] = spc * 10000.0
    model = record.get("model")
    label = _name(model) or "?"
    strategy = ((model or {}).get("config") or {}).get("strategy") if isinstance(model, Mapping) else None
    if task == "conditional_generation" and strategy:
        label = f"{label} ({strategy})"  # Con-CDVAE's strategies are rows of its tables
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


def _reported_row(row: Mapping[str, Any]) -> Row:
    values = {str(k): _num(v) for k, v in (row.get("metrics") or {}).items()}
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


def _merge_condition_rows(rows: list[Row], records: list[Mapping[str, Any]]) -> list[Row]:
    """conditional_generation: one run fills one column (its condition set), so the ``ok`` runs of
    the same model, strategy, config, checkpoint, dataset and profile are merged into one row, as
    the paper's rows hold one model's results for every condition set (a later run's value wins
    when two runs fill the same column)."""
    merged: dict[str, Row] = {}
    out: list[Row] = []
    for row, record in zip(rows, records):
        if row.status != "ok":
            out.append(row)
            continue
        model = record.get("model") if isinstance(record.get("model"), Mapping) else {}
        key = json.dumps([row.label, row.dataset, row.profile, model.get("version"), model.get("config"), model.get("checkpoint_sha256")],
                         sort_keys=True, default=str)
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
    everywhere), labelled by model name and marked "this project" with their run id; and, when
    ``include_reported``, the papers' rows (``reported`` if given, else :func:`load_reported`).
    Only columns with at least one value are kept. The best value of each column (max or min per
    ``higher_is_better``) is marked on every row holding it, compared over all rows of the same
    dataset, reported ones included; reference rows (ground truth) are never ranked.
    """
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
            reported_rows.append(_reported_row(row))
    project_rows = [_record_row(r, task) for r in records]
    if task == "conditional_generation":
        project_rows = _merge_condition_rows(project_rows, records)

    hib_from_records = _record_hib(records)
    candidates = list(TASK_COLUMNS.get(task, []))
    if not candidates:  # unknown task: every metric key, first-seen order
        for row in reported_rows + project_rows:
            for key in row.values:
                if key not in candidates:
                    candidates.append(key)
    if task == "conditional_generation":  # the joint success of condition sets outside the paper's tables
        for row in reported_rows + project_rows:
            for key in row.values:
                if key.startswith("success[") and key.endswith("]") and key not in candidates:
                    candidates.append(key)
    all_rows = reported_rows + project_rows
    columns = [c for c in candidates if any(r.values.get(c) is not None for r in all_rows)]
    if not columns and candidates and all_rows:
        # only "not supported" rows: still show the task's headline columns, each "-"
        columns = candidates[: {"generation": 7, "reconstruction": 2, "property_optimization": 3}.get(task, 3)]
    hib = {c: metric_info(c, hib_from_records.get(c)).higher_is_better for c in columns}

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
    if task == "conditional_generation":
        notes.append("Success: fraction of the generated crystals meeting every target of the column's condition set "
                     "(classes by CGCNN classifiers, P >= 0.5; crystal system by SpacegroupAnalyzer, symprec 0.2, angle 5°; "
                     "values within a tolerance); reproduced rows merge the runs of one model, strategy and checkpoint.")
    if oracles and task == "ground_state":
        notes.append("Relaxed with " + ", ".join(oracles) + " (reproduced rows); the reported rows were relaxed with DFT (VASP, PBE) at 10 GPa.")
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
    return Table(
        task=task,
        dataset=dataset,
        columns=columns,
        rows=all_rows,
        group_by_dataset=group,
        caption=caption,
        notes=notes,
        higher_is_better=hib,
    )


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


def format_value(key: str, value: float | None, info: MetricInfo | None = None) -> str:
    """Human display of one value: percentages for rate metrics, significant digits otherwise."""
    if value is None:
        return MISSING
    info = info or metric_info(key)
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
        text = format_value(col, value, metric_info(col, table.higher_is_better.get(col)))
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


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|")


def _render_markdown(table: Table) -> str:
    header = ["Model"] + (["Dataset"] if table.group_by_dataset else []) + table.labels() + ["Source"]
    align = [":---"] + ([":---"] if table.group_by_dataset else []) + ["---:"] * len(table.columns) + [":---"]
    lines = ["| " + " | ".join(_md_escape(h) for h in header) + " |", "| " + " | ".join(align) + " |"]
    for row in table.rows:
        cells = [_md_escape(row.label)]
        if table.group_by_dataset:
            cells.append(_md_escape(row.dataset or MISSING))
        cells += [f"**{t}**" if best else t for t, best in _cells(table, row)]
        cells.append(_md_escape(_source_text(row)))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n\n" + _md_escape(table.caption) + "\n"


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
}


def latex_escape(text: str) -> str:
    """Escape LaTeX special characters (``_`` ``%`` ``&`` ``#`` ...) and the few non-ASCII symbols
    used in metric labels."""
    return "".join(_LATEX_SPECIAL.get(ch) or _LATEX_UNICODE.get(ch, ch) for ch in str(text))


def _render_latex(table: Table) -> str:
    n_text = 1 + (1 if table.group_by_dataset else 0)
    spec = "l" * n_text + "r" * len(table.columns) + "l"
    header = ["Model"] + (["Dataset"] if table.group_by_dataset else []) + table.labels() + ["Source"]
    lines = [
        r"\begin{table}[ht]",
        r"\centering",
        r"\caption{" + latex_escape(table.caption) + "}",
        r"\begin{tabular}{" + spec + "}",
        r"\toprule",
        " & ".join(latex_escape(h) for h in header) + r" \\",
        r"\midrule",
    ]
    previous = object()
    for i, row in enumerate(table.rows):
        if table.group_by_dataset and i > 0 and row.dataset != previous:
            lines.append(r"\midrule")
        previous = row.dataset
        cells = [latex_escape(row.label)]
        if table.group_by_dataset:
            cells.append(latex_escape(row.dataset or MISSING))
        cells += [r"\textbf{" + latex_escape(t) + "}" if best else latex_escape(t) for t, best in _cells(table, row)]
        cells.append(latex_escape(_source_text(row)))
        lines.append(" & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines) + "\n"


def _raw(value: float | None) -> str:
    return "" if value is None else repr(float(value))


def _render_csv(table: Table) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["model", "dataset", *table.columns, "origin", "source", "status", "upper_bound", "note"])
    for row in table.rows:
        values = [_raw(row.values.get(c) if row.status == "ok" else None) for c in table.columns]
        writer.writerow(
            [
                row.label,
                row.dataset or "",
                *values,
                row.origin,
                row.source,
                row.status,
                ";".join(sorted(row.upper_bound)),
                row.note or "",
            ]
        )
    return buf.getvalue()


def _render_html(table: Table) -> str:
    esc = html.escape
    header = ["Model"] + (["Dataset"] if table.group_by_dataset else []) + table.labels() + ["Source"]
    out = [
        '<table class="leaderboard" style="border-collapse: collapse;">',
        f"<caption>{esc(table.caption)}</caption>",
        "<thead>",
        "<tr>" + "".join(f'<th style="padding: 2px 8px;">{esc(h)}</th>' for h in header) + "</tr>",
        "</thead>",
        "<tbody>",
    ]
    for row in table.rows:
        cells = [f"<td>{esc(row.label)}</td>"]
        if table.group_by_dataset:
            cells.append(f"<td>{esc(row.dataset or MISSING)}</td>")
        for text, best in _cells(table, row):
            body = f"<strong>{esc(text)}</strong>" if best else esc(text)
            cells.append(f'<td style="text-align: right; padding: 2px 8px;">{body}</td>')
        title = f' title="{esc(row.note, quote=True)}"' if row.note else ""
        cells.append(f"<td{title}>{esc(_source_text(row))}</td>")
        out.append(f'<tr class="{esc(row.origin.replace(" ", "-"))}">' + "".join(cells) + "</tr>")
    out += ["</tbody>", "</table>"]
    return "\n".join(out) + "\n"


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
    "METRIC_INFO",
    "MetricInfo",
    "Row",
    "TASK_COLUMNS",
    "Table",
    "build_table",
    "format_value",
    "latex_escape",
    "load_reported",
    "load_reported_files",
    "metric_info",
    "render",
]
