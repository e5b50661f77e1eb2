"""CIF sample files: one file (``cif``), a directory (``cif_dir``), a zip archive (``cif_zip``), and the writer.

``cif_dir``
    A directory of ``*.cif`` files, read in natural name order (``2_x.cif`` before ``10_x.cif``).
``cif_zip``
    A zip archive of ``*.cif`` files, read in archive order (macOS ``__MACOSX/`` and ``._*`` members
    left out).
``cif``
    One CIF file; each ``data_`` block is one crystal (labelled ``<file>#data_<block>`` when there
    are several).

CIFs are parsed with pymatgen as given: no primitive-cell or Niggli reduction and no snapping of
fractional coordinates to "ideal" values (``frac_tolerance=0``), because samples are scored as the
model produced them. Sites keep the order of the CIF's ``atom_site`` loop where pymatgen's grouping
by species can be undone. A crystal's properties travel in a ``_benchmark_properties`` text field
(one JSON object) that :func:`write_cifs` writes and the readers read back.
"""

from __future__ import annotations

import json
import os
import re
import warnings
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmark.crystal import Crystal
from benchmark.files import atomic_write_text, replace_atomically
from benchmark.samples.base import (
    Match,
    Probe,
    ReadResult,
    SampleEntry,
    SampleFileError,
    SampleFormat,
    Unreadable,
    decode_text,
    exc_text,
    is_binary,
    one_line,
    plain_value,
    property_value,
    take,
)

__all__ = ["CIF_DIR", "CIF_FILE", "CIF_ZIP", "PROPERTIES_TAG", "entries_from_cif_text", "write_cifs"]

#: CIF data item under which :func:`write_cifs` stores a crystal's properties (as one JSON object).
PROPERTIES_TAG = "_benchmark_properties"


# ============================================================================ parsing
def _cif_blocks(text: str) -> list[tuple[str, str, Any]]:
    """Split CIF text into (block name, block text, block data mapping); raises on unparsable text."""
    from pymatgen.io.cif import CifFile

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cif = CifFile.from_str(text)
    return [(name, str(block), block.data) for name, block in cif.data.items()]


def _properties_from_block(data: Mapping[str, Any]) -> dict[str, Any]:
    raw = None
    for key, value in data.items():
        if str(key).lower() == PROPERTIES_TAG:
            raw = value
            break
    if raw is None or isinstance(raw, list):
        return {}
    try:
        parsed = json.loads(str(raw).strip())
    except ValueError:
        return {}
    if not isinstance(parsed, dict):
        return {}
    out = {}
    for k, v in parsed.items():
        pv = property_value(v)
        if pv is not None:
            out[str(k)] = pv
    return out


def _crystal_from_cif_block(block_text: str, data: Mapping[str, Any], source: str, label: str | None, extra: Mapping[str, Any] | None = None) -> SampleEntry:
    from pymatgen.io.cif import CifParser

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            parser = CifParser.from_str(block_text, frac_tolerance=0.0)
            structures = parser.parse_structures(primitive=False, on_error="raise")
    except Exception as exc:  # pymatgen raises many kinds (ValueError, KeyError, ZeroDivisionError...)
        return Unreadable(source, f"malformed CIF: {one_line(exc) or type(exc).__name__}")
    if not structures:
        return Unreadable(source, "malformed CIF: no structure in block")
    structure = structures[0]
    if not structure.is_ordered:
        return Unreadable(source, "disordered structure (partial occupancies) is not supported")
    props = _properties_from_block(data)
    if extra:
        props.update(extra)
    try:
        z = np.array([site.specie.Z for site in structure], dtype=np.int64)
        frac = np.array(structure.frac_coords, dtype=np.float64).reshape(-1, 3)
        order = _cif_site_order(structure, data)
        if order is not None:
            z, frac = z[order], frac[order]
        lat = structure.lattice
        return Crystal(z, frac, lat.abc, lat.angles, props, label)
    except Exception as exc:  # e.g. dummy species without an atomic number
        return Unreadable(source, f"unsupported structure: {exc_text(exc)}")


def _cif_number(text: Any) -> float:
    return float(re.sub(r"\(\d*\)$", "", str(text).strip()))


def _cif_site_order(structure: Any, data: Mapping[str, Any]) -> np.ndarray | None:
    """Indices that put pymatgen's sites back into the order of the CIF's atom_site loop.

    pymatgen groups sites by species when it parses a CIF; for a CIF with one listed site per
    atom (P1, as samples are written) the file order is recoverable by matching each loop row to
    the parsed site of the same element at the same fractional position (mod 1). Returns None when
    that matching is not one to one (symmetry-expanded CIFs), leaving pymatgen's order.
    """
    lowered = {str(k).lower(): v for k, v in data.items()}
    cols = [lowered.get(f"_atom_site_fract_{a}") for a in "xyz"]
    symbols = lowered.get("_atom_site_type_symbol") or lowered.get("_atom_site_label")
    n = len(structure)
    if any(not isinstance(c, list) or len(c) != n for c in cols) or not isinstance(symbols, list) or len(symbols) != n:
        return None
    try:
        rows = np.array([[_cif_number(v) for v in c] for c in cols], dtype=np.float64).T
    except ValueError:
        return None
    row_el = []
    for sym in symbols:
        m = re.match(r"[A-Z][a-z]?", str(sym).strip())
        if m is None:
            return None
        row_el.append(m.group(0))
    site_el = [site.specie.symbol for site in structure]
    sites = np.array(structure.frac_coords, dtype=np.float64).reshape(-1, 3)
    used = np.zeros(n, dtype=bool)
    order = np.empty(n, dtype=np.int64)
    for i in range(n):
        diff = sites - rows[i]
        diff -= np.round(diff)
        dist = np.abs(diff).max(axis=1)
        dist[used] = np.inf
        dist[[el != row_el[i] for el in site_el]] = np.inf
        j = int(np.argmin(dist))
        if not dist[j] < 1e-3:
            return None
        used[j] = True
        order[i] = j
    return order


def entries_from_cif_text(text: str, source: str, label: str, extra: Mapping[str, Any] | None = None) -> list[SampleEntry]:
    """All crystals of one CIF text (one per data block). Never raises: failures become Unreadable.

    Args:
        source: where the text came from, for :class:`Unreadable` entries.
        label: the crystals' label (``<label>#data_<block>`` when there are several blocks).
        extra: properties added to every crystal (over those stored in the CIF).
    """
    if not text.strip():
        return [Unreadable(source, "malformed CIF: empty file")]
    if "\x00" in text:
        return [Unreadable(source, "malformed CIF: binary data")]
    try:
        blocks = _cif_blocks(text)
    except Exception as exc:
        return [Unreadable(source, f"malformed CIF: {one_line(exc) or type(exc).__name__}")]
    if not blocks:
        return [Unreadable(source, "malformed CIF: no data_ block")]
    if len(blocks) == 1:
        name, btext, data = blocks[0]
        return [_crystal_from_cif_block(btext, data, source, label, extra)]
    out: list[SampleEntry] = []
    for name, btext, data in blocks:
        out.append(_crystal_from_cif_block(btext, data, f"{source}#data_{name}", f"{label}#data_{name}", extra))
    return out


def _natural_key(name: str) -> list[Any]:
    return [int(tok) if tok.isdigit() else tok.lower() for tok in re.split(r"(\d+)", name)]


# ============================================================================ readers
def _read_cif_dir(path: Path, limit: int | None, batch_idx: int = 0) -> ReadResult:
    files = sorted((p for p in path.iterdir() if p.is_file() and p.suffix.lower() == ".cif"), key=lambda p: _natural_key(p.name))
    if not files:
        raise SampleFileError(path, "empty: no .cif files in directory")

    def gen() -> Iterator[SampleEntry]:
        for f in files:
            source = f"{path.name}/{f.name}"
            try:
                data = f.read_bytes()
            except OSError as exc:
                yield Unreadable(source, f"cannot read file: {exc_text(exc)}")
                continue
            yield from entries_from_cif_text(decode_text(data), source, f.name)

    return ReadResult(take(gen(), limit))


def _read_cif_zip(path: Path, limit: int | None, batch_idx: int = 0) -> ReadResult:
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise SampleFileError(path, f"not a readable zip archive ({exc_text(exc)})") from None
    with zf:
        members = [
            info
            for info in zf.infolist()
            if not info.is_dir() and info.filename.lower().endswith(".cif") and not info.filename.startswith("__MACOSX/")
            and not Path(info.filename).name.startswith("._")
        ]
        if not members:
            raise SampleFileError(path, "empty: no .cif files in zip archive")

        def gen() -> Iterator[SampleEntry]:
            for info in members:
                source = f"{path.name}:{info.filename}"
                try:
                    data = zf.read(info)
                except Exception as exc:  # bad CRC, unsupported compression...
                    yield Unreadable(source, f"cannot read zip member: {exc_text(exc)}")
                    continue
                yield from entries_from_cif_text(decode_text(data), source, Path(info.filename).name)

        return ReadResult(take(gen(), limit))


def _read_cif_file(path: Path, limit: int | None, batch_idx: int = 0) -> ReadResult:
    data = path.read_bytes()
    if is_binary(data[:8192]):
        raise SampleFileError(path, "not a CIF file (binary data)")
    text = decode_text(data)
    if not re.search(r"(?im)^\s*data_", text):
        raise SampleFileError(path, "not a CIF file: no data_ block")
    return ReadResult(take(entries_from_cif_text(text, path.name, path.name), limit))


# ============================================================================ sniffing
def _sniff_cif_dir(probe: Probe) -> Match:
    return Match.MAGIC if probe.is_dir else Match.NONE


def _sniff_cif_zip(probe: Probe) -> Match:
    if probe.is_dir:
        return Match.NONE
    names = probe.zip_names()
    if names is not None and any(n.lower().endswith(".cif") for n in names):
        return Match.MAGIC
    if probe.has_suffix(CIF_ZIP_SUFFIXES):
        return Match.SUFFIX  # the reader says what is wrong with it (not a zip, no CIFs in it)
    # any other zip archive: ours unless a format recognises it (a torch file is CDVAE's)
    return Match.CONTENT if probe.is_zip else Match.NONE


def _sniff_cif_file(probe: Probe) -> Match:
    if probe.is_dir:
        return Match.NONE
    if probe.has_suffix(CIF_FILE_SUFFIXES):
        return Match.SUFFIX
    if probe.is_binary:
        return Match.NONE
    # the first line that is not a comment opens a data block (a CSV of CIFs has a header first)
    meaningful = (ln.strip() for ln in probe.text.splitlines() if ln.strip() and not ln.lstrip().startswith("#"))
    first = next(meaningful, "")
    return Match.CONTENT if first.lower().startswith("data_") else Match.NONE


# ============================================================================ writing
def _cif_text(crystal: Crystal) -> str:
    from pymatgen.io.cif import CifWriter

    text = str(CifWriter(crystal.to_structure()))
    props = {k: plain_value(v) for k, v in crystal.properties.items()}
    if props:
        if not text.endswith("\n"):
            text += "\n"
        text += f"{PROPERTIES_TAG}\n;\n{json.dumps(props, sort_keys=True)}\n;\n"
    return text


def _safe_name(text: str) -> str:
    s = re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._")
    return s[:80] or "crystal"


def _cif_names(crystals: Sequence[Crystal]) -> list[str]:
    width = max(1, len(str(max(len(crystals) - 1, 0))))
    names = []
    for i, c in enumerate(crystals):
        if c.label:
            stem = _safe_name(str(c.label))
            if stem.lower().endswith(".cif"):
                stem = stem[:-4] or "crystal"
        else:
            try:
                stem = _safe_name(c.to_structure().composition.reduced_formula)
            except Exception:
                stem = "crystal"
        names.append(f"{i:0{width}d}_{stem}.cif")
    return names


def _write_cif_zip(crystals: Sequence[Crystal], path: Path) -> Path:
    texts = [_cif_text(c) for c in crystals]
    names = _cif_names(crystals)

    def write(tmp: Path) -> None:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for name, text in zip(names, texts):
                zf.writestr(name, text)

    return replace_atomically(path, write)


def _write_cif_dir(crystals: Sequence[Crystal], path: Path) -> Path:
    texts = [_cif_text(c) for c in crystals]
    path.mkdir(parents=True, exist_ok=True)
    for name, text in zip(_cif_names(crystals), texts):
        atomic_write_text(path / name, text)
    return path


def write_cifs(crystals: Sequence[Crystal], path: str | os.PathLike[str]) -> Path:
    """Write crystals as CIFs: one zip archive if ``path`` ends in ``.zip``, else a directory.

    Files are named ``<index>_<label-or-formula>.cif`` with the index zero-padded to a common
    width, so name order is crystal order. Properties are stored in a ``_benchmark_properties``
    text field (JSON) that :func:`~benchmark.samples.read_samples` reads back. The zip is written
    atomically; in a directory each file is, and other files already there are left alone.
    """
    p = Path(path)
    if p.suffix.lower() == ".zip":
        return _write_cif_zip(crystals, p)
    return _write_cif_dir(crystals, p)


# ============================================================================ the formats
CIF_ZIP_SUFFIXES = (".zip",)
CIF_FILE_SUFFIXES = (".cif", ".mcif")

CIF_DIR = SampleFormat(
    name="cif_dir",
    description="a directory of *.cif files, read in natural name order (2_x.cif before 10_x.cif)",
    read=_read_cif_dir,
    sniff=_sniff_cif_dir,
    write=_write_cif_dir,
    directory=True,
)
CIF_ZIP = SampleFormat(
    name="cif_zip",
    description="a zip archive of *.cif files, read in archive order",
    read=_read_cif_zip,
    suffixes=CIF_ZIP_SUFFIXES,
    sniff=_sniff_cif_zip,
    write=_write_cif_zip,
)
CIF_FILE = SampleFormat(
    name="cif",
    description="one CIF file; each data_ block is one crystal",
    read=_read_cif_file,
    suffixes=CIF_FILE_SUFFIXES,
    sniff=_sniff_cif_file,
)
