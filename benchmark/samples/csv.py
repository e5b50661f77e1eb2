"""CSV sample files (``csv``): a table with a ``cif`` column, the layout of the published MP-20 / Perov-5 / Carbon-24 CSVs.

Each row is one crystal (its CIF must hold exactly one data block). Other numeric columns become
properties (booleans, text and pandas' ``Unnamed: 0`` index column do not), ``material_id``
becomes the label (else the row index). ``.tsv`` files are read tab-separated.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from benchmark.samples.base import (
    Match,
    Probe,
    ReadResult,
    SampleEntry,
    SampleFileError,
    SampleFormat,
    Unreadable,
    exc_text,
    is_binary,
    plain_value,
    property_value,
)
from benchmark.samples.cif import entries_from_cif_text

__all__ = ["CSV"]

SUFFIXES = (".csv", ".tsv")


def _read_csv(path: Path, limit: int | None, batch_idx: int = 0) -> ReadResult:
    import pandas as pd

    with open(path, "rb") as fh:
        head = fh.read(8192)
    if is_binary(head):
        raise SampleFileError(path, "not a CSV file (binary data)")
    sep = "\t" if path.suffix.lower() == ".tsv" else ","
    try:
        df = pd.read_csv(path, sep=sep, nrows=limit)
    except Exception as exc:
        raise SampleFileError(path, f"not a readable CSV file ({exc_text(exc)})") from None
    columns = {str(c).strip().lower(): c for c in df.columns}
    if "cif" not in columns:
        shown = ", ".join(str(c) for c in list(df.columns)[:8])
        raise SampleFileError(path, f"CSV has no 'cif' column (columns: {shown})")
    cif_col = columns["cif"]
    id_col = columns.get("material_id")
    prop_cols = []
    for c in df.columns:
        if c in (cif_col, id_col) or str(c).startswith("Unnamed:"):
            continue
        dtype = df[c].dtype
        if pd.api.types.is_bool_dtype(dtype) or not pd.api.types.is_numeric_dtype(dtype):
            continue
        prop_cols.append(c)
    if len(df) == 0 and limit != 0:
        raise SampleFileError(path, "empty: CSV has no rows")
    out: list[SampleEntry] = []
    for i, row in enumerate(df.itertuples(index=False, name=None)):
        record = dict(zip(df.columns, row))
        source = f"{path.name}:row {i}"
        label = str(i)
        if id_col is not None and not (isinstance(record[id_col], float) and math.isnan(record[id_col])):
            label = str(plain_value(record[id_col]))
        props: dict[str, Any] = {}
        for c in prop_cols:
            v = property_value(record[c])
            if v is None or (isinstance(v, float) and math.isnan(v)):
                continue
            props[str(c)] = v
        cif_text = record[cif_col]
        if not isinstance(cif_text, str) or not cif_text.strip():
            out.append(Unreadable(source, "missing CIF"))
            continue
        entries = entries_from_cif_text(cif_text, source, label, props)
        if len(entries) != 1:
            out.append(Unreadable(source, f"CIF has {len(entries)} data blocks, expected 1"))
        else:
            out.append(entries[0])
    return ReadResult(out)


def _sniff(probe: Probe) -> Match:
    if probe.is_dir:
        return Match.NONE
    if probe.has_suffix(SUFFIXES):
        return Match.SUFFIX
    if probe.is_binary:
        return Match.NONE
    header = probe.first_line
    cells = [c.strip().strip('"').lower() for c in header.split(",")]
    return Match.CONTENT if "," in header and "cif" in cells else Match.NONE


CSV = SampleFormat(
    name="csv",
    description="a CSV (or .tsv) table with a cif column; numeric columns become properties, material_id the label",
    read=_read_csv,
    suffixes=SUFFIXES,
    sniff=_sniff,
)
