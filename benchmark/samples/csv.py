"""CSV sample files (``csv``): a table with a ``cif`` column, the layout of the published MP-20 / Perov-5 / Carbon-24 CSVs.

Each row is one crystal (its CIF must hold exactly one data block). Other numeric columns become
properties (booleans, text and pandas' ``Unnamed: 0`` index column do not), ``material_id``
becomes the label (else the row index). ``.tsv`` files are read tab-separated.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
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


def _open(path: Path) -> str:
    """The separator of ``path`` after checking it is text."""
    with open(path, "rb") as fh:
        head = fh.read(8192)
    if is_binary(head):
        raise SampleFileError(path, "not a CSV file (binary data)")
    return "\t" if path.suffix.lower() == ".tsv" else ","


def _columns(path: Path, names: list[Any], dtypes: Mapping[Any, Any]) -> tuple[Any, Any, list[Any]]:
    """(the cif column, the material_id column or None, the property columns) of a table with
    columns ``names`` whose dtypes were inferred over the whole file (which decides which columns
    are properties; ``dtypes`` need not hold the cif column)."""
    import pandas as pd

    columns = {str(c).strip().lower(): c for c in names}
    if "cif" not in columns:
        shown = ", ".join(str(c) for c in list(names)[:8])
        raise SampleFileError(path, f"CSV has no 'cif' column (columns: {shown})")
    cif_col = columns["cif"]
    id_col = columns.get("material_id")
    prop_cols = []
    for c in names:
        if c in (cif_col, id_col) or str(c).startswith("Unnamed:"):
            continue
        dtype = dtypes[c]
        if pd.api.types.is_bool_dtype(dtype) or not pd.api.types.is_numeric_dtype(dtype):
            continue
        prop_cols.append(c)
    return cif_col, id_col, prop_cols


def _entry(path: Path, i: int, record: dict[Any, Any], cif_text: Any, id_col: Any, prop_cols: list[Any]) -> SampleEntry:
    """Row ``i`` as a crystal (or Unreadable): ``record`` holds its id and property columns."""
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
    if not isinstance(cif_text, str) or not cif_text.strip():
        return Unreadable(source, "missing CIF")
    entries = entries_from_cif_text(cif_text, source, label, props)
    if len(entries) != 1:
        return Unreadable(source, f"CIF has {len(entries)} data blocks, expected 1")
    return entries[0]


def _read_csv(path: Path, limit: int | None, batch_idx: int = 0) -> ReadResult:
    import pandas as pd

    sep = _open(path)
    try:
        df = pd.read_csv(path, sep=sep, nrows=limit)
    except Exception as exc:
        raise SampleFileError(path, f"not a readable CSV file ({exc_text(exc)})") from None
    cif_col, id_col, prop_cols = _columns(path, list(df.columns), df.dtypes)
    if len(df) == 0 and limit != 0:
        raise SampleFileError(path, "empty: CSV has no rows")
    out: list[SampleEntry] = []
    for i, row in enumerate(df.itertuples(index=False, name=None)):
        record = dict(zip(df.columns, row))
        out.append(_entry(path, i, record, record[cif_col], id_col, prop_cols))
    return ReadResult(out)


STREAM_ROWS = 1000  # rows of CIF text parsed per pandas chunk when streaming


def _iter_csv(path: Path, limit: int | None, batch_idx: int = 0) -> Iterator[SampleEntry]:
    """The entries :func:`_read_csv` returns, a chunk of rows at a time.

    Which columns are properties and how ids read depends on dtypes pandas infers over the whole
    column, so the small columns (everything but the CIF text) are read whole first; the CIF
    column, nearly all of the file, is then read ``STREAM_ROWS`` rows at a time (as text: a
    whole-file read keeps the text of a column that is not all numbers as it is)."""
    import pandas as pd

    sep = _open(path)
    try:
        header = pd.read_csv(path, sep=sep, nrows=0)
        columns = {str(c).strip().lower(): c for c in header.columns}
        cif_name = columns.get("cif")
        small = pd.read_csv(path, sep=sep, nrows=limit, usecols=lambda c: c != cif_name)
    except Exception as exc:
        raise SampleFileError(path, f"not a readable CSV file ({exc_text(exc)})") from None
    cif_col, id_col, prop_cols = _columns(path, list(header.columns), small.dtypes)
    if limit == 0:
        return
    small_cols = list(small.columns)
    small_rows = small.itertuples(index=False, name=None)
    i = 0
    try:
        reader = pd.read_csv(path, sep=sep, nrows=limit, usecols=[cif_col], dtype={cif_col: object}, chunksize=STREAM_ROWS)
        chunks = iter(reader)
    except Exception as exc:
        raise SampleFileError(path, f"not a readable CSV file ({exc_text(exc)})") from None
    while True:
        try:
            chunk = next(chunks)
        except StopIteration:
            break
        except Exception as exc:
            raise SampleFileError(path, f"not a readable CSV file ({exc_text(exc)})") from None
        for cif_text in chunk[cif_col].tolist():
            record = dict(zip(small_cols, next(small_rows))) if small_cols else {}
            yield _entry(path, i, record, cif_text, id_col, prop_cols)
            i += 1
    if i == 0:
        raise SampleFileError(path, "empty: CSV has no rows")


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
    iterate=_iter_csv,
)
