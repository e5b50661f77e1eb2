"""Reading and writing sample files: the crystals a generative model produced.

Supported inputs (``sniff_format`` tells them apart; ``read_samples(fmt=...)`` overrides it):

``cif_dir``
    A directory of ``*.cif`` files, read in natural name order (``2_x.cif`` before ``10_x.cif``).
``cif_zip``
    A zip archive of ``*.cif`` files, read in archive order.
``cif``
    One CIF file; each ``data_`` block is one crystal.
``extxyz``
    Extended XYZ (``.xyz`` / ``.extxyz``), one frame per crystal; scalar ``info`` entries (and
    scalar results of a stored single-point calculator, e.g. ``energy``) become properties and an
    ``info["label"]`` becomes the label.
``csv``
    A table with a ``cif`` column (the layout of the published MP-20 / Perov-5 / Carbon-24 CSVs);
    other numeric columns become properties, ``material_id`` becomes the label.
``cdvae_gen`` / ``cdvae_recon`` / ``cdvae_opt``
    The ``eval_gen.pt`` / ``eval_recon.pt`` / ``eval_opt.pt`` files written by the published CDVAE
    evaluation script. They are pickles, so they are loaded without importing anything outside a
    short whitelist: first with ``torch.load(weights_only=True)``, then, if that refuses the
    file's globals (``argparse.Namespace``, torch_geometric batches, numpy scalars), with a
    restricted unpickler that maps torch_geometric classes and ``argparse.Namespace`` to inert
    records (:class:`PickledRecord`) and refuses every other unknown global.

A whole file that cannot be read raises :class:`SampleFileError` (one line naming the file). One
entry that cannot be turned into a :class:`~benchmark.crystal.Crystal` (a malformed CIF among good
ones, a frame without a periodic cell, a disordered structure) becomes an :class:`Unreadable`
entry in its place, so that the metrics can count it as invalid instead of the run failing.

CIFs are parsed with pymatgen as given: no primitive-cell or Niggli reduction and no snapping of
fractional coordinates to "ideal" values (``frac_tolerance=0``), because samples are scored as the
model produced them.
"""

from __future__ import annotations

import io
import json
import math
import os
import pickle
import re
import tempfile
import types
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

import numpy as np

from benchmark.crystal import Crystal, crystals_from_arrays

__all__ = [
    "FORMATS",
    "PickledRecord",
    "SampleEntry",
    "SampleFileError",
    "SampleSet",
    "Unreadable",
    "read_samples",
    "sniff_format",
    "write_cifs",
    "write_extxyz",
]

FORMATS: tuple[str, ...] = ("cif_dir", "cif_zip", "cif", "extxyz", "csv", "cdvae_gen", "cdvae_recon", "cdvae_opt")

#: CIF data item under which :func:`write_cifs` stores a crystal's properties (as one JSON object).
PROPERTIES_TAG = "_benchmark_properties"

_MAX_REASON = 240


class SampleFileError(ValueError):
    """A whole sample file cannot be read. The message is one line naming the file."""

    def __init__(self, path: Any, problem: str) -> None:
        self.path = str(path)
        self.problem = _one_line(problem, limit=400)
        super().__init__(f"{self.path}: {self.problem}")


@dataclass(frozen=True)
class Unreadable:
    """One entry of a sample file that could not be turned into a :class:`Crystal`.

    Attributes:
        source: where the entry came from, e.g. ``"samples.zip:bad.cif"`` or ``"samples.csv:row 7"``.
        reason: why it could not be read, e.g. ``"malformed CIF: <short parser message>"``.
    """

    source: str
    reason: str


SampleEntry = Crystal | Unreadable


@dataclass
class SampleSet:
    """The entries of one sample file, in file order.

    Attributes:
        entries: one :class:`Crystal` or :class:`Unreadable` per sample.
        fmt: the format the file was read as (one of :data:`FORMATS`).
        path: the file or directory read.
        references: ground-truth entries paired one to one with ``entries`` (the
            ``input_data_batch`` of ``eval_recon.pt``), or None.
        meta: format-specific facts, e.g. ``{"num_evals": 1, "batch_idx": 0}``.
    """

    entries: list[SampleEntry]
    fmt: str
    path: Path
    references: list[SampleEntry] | None = None
    meta: dict = field(default_factory=dict)

    @property
    def crystals(self) -> list[Crystal]:
        """The entries that were read as crystals (Unreadable ones left out)."""
        return [e for e in self.entries if isinstance(e, Crystal)]

    @property
    def unreadable(self) -> list[Unreadable]:
        return [e for e in self.entries if isinstance(e, Unreadable)]

    def __len__(self) -> int:
        return len(self.entries)


# ============================================================================ small helpers
def _one_line(text: Any, limit: int = _MAX_REASON) -> str:
    """Collapse a (possibly multi-line, ANSI-coloured) message into one short line."""
    s = re.sub(r"\x1b\[[0-9;]*m", "", str(text))
    parts = [p.strip() for p in s.splitlines() if p.strip()]
    s = "; ".join(parts) if parts else ""
    if len(s) > limit:
        s = s[: limit - 3].rstrip() + "..."
    return s


def _exc_text(exc: BaseException) -> str:
    msg = _one_line(exc)
    return f"{type(exc).__name__}: {msg}" if msg else type(exc).__name__


def _natural_key(name: str) -> list[Any]:
    return [int(tok) if tok.isdigit() else tok.lower() for tok in re.split(r"(\d+)", name)]


def _is_binary(head: bytes) -> bool:
    return b"\x00" in head


def _decode_text(data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def _plain_value(value: Any) -> Any:
    """numpy scalars -> Python scalars; anything else unchanged."""
    if isinstance(value, np.generic):
        return value.item()
    return value


def _property_value(value: Any) -> int | float | str | None:
    """A usable property value (int, float or str), or None for anything else (bools included)."""
    value = _plain_value(value)
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float, str)):
        return value
    return None


def _check_limit(limit: int | None) -> None:
    if limit is not None and (not isinstance(limit, (int, np.integer)) or isinstance(limit, bool) or limit < 0):
        raise ValueError(f"limit must be a non-negative integer or None, got {limit!r}")


# ============================================================================ format sniffing
_CDVAE_KIND_BY_NAME = (("eval_recon", "cdvae_recon"), ("eval_opt", "cdvae_opt"), ("eval_gen", "cdvae_gen"))


def _check_exists(path: Path) -> None:
    if not path.exists():
        raise SampleFileError(path, "no such file or directory")
    if path.is_file() and path.stat().st_size == 0:
        raise SampleFileError(path, "empty file (0 bytes)")


def _torch_pickle_bytes(path: Path) -> bytes | None:
    """The pickle record of a torch zip file, or None if ``path`` is not one."""
    try:
        with zipfile.ZipFile(path) as zf:
            names = [n for n in zf.namelist() if n.endswith("data.pkl")]
            if not names:
                return None
            return zf.read(min(names, key=len))
    except (zipfile.BadZipFile, OSError, KeyError):
        return None


def _cdvae_kind(path: Path, pickle_bytes: bytes | None = None) -> str:
    stem = path.name.lower()
    for marker, kind in _CDVAE_KIND_BY_NAME:
        if marker in stem:
            return kind
    if pickle_bytes is None:
        pickle_bytes = _torch_pickle_bytes(path)
        if pickle_bytes is None:  # legacy (pre-1.6) torch serialisation: one plain pickle stream
            try:
                pickle_bytes = path.read_bytes()
            except OSError:
                pickle_bytes = b""
    return "cdvae_recon" if b"input_data_batch" in pickle_bytes else "cdvae_gen"


def sniff_format(path: str | os.PathLike[str]) -> str:
    """Guess the format of a sample file from its suffix, whether it is a directory, and magic bytes.

    Returns one of :data:`FORMATS`. Raises :class:`SampleFileError` for a missing path, an empty
    file, or content that matches no supported format.
    """
    path = Path(path)
    _check_exists(path)
    if path.is_dir():
        return "cif_dir"
    with open(path, "rb") as fh:
        head = fh.read(8192)
    suffix = path.suffix.lower()
    is_zip = head.startswith(b"PK\x03\x04") or head.startswith(b"PK\x05\x06")
    if is_zip:
        pkl = _torch_pickle_bytes(path)
        if pkl is not None:
            return _cdvae_kind(path, pkl)
        return "cif_zip"
    if suffix in (".pt", ".pth", ".ckpt"):
        return _cdvae_kind(path)
    if suffix == ".zip":
        return "cif_zip"  # the reader reports that it is not a zip archive
    if suffix == ".cif" or suffix == ".mcif":
        return "cif"
    if suffix in (".xyz", ".extxyz"):
        return "extxyz"
    if suffix in (".csv", ".tsv"):
        return "csv"
    # No telling suffix: look at the content.
    if head[:1] == b"\x80":  # a pickle stream (legacy torch.save)
        return _cdvae_kind(path)
    if _is_binary(head):
        raise SampleFileError(path, "cannot tell the format: binary data that is neither a zip archive nor a torch file")
    text = _decode_text(head)
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    if re.search(r"(?im)^\s*data_\S*", text) and "_cell_length" in text:
        return "cif"
    if lines and lines[0].isdigit():
        return "extxyz"
    if lines and "," in lines[0] and "cif" in [c.strip().strip('"').lower() for c in lines[0].split(",")]:
        return "csv"
    raise SampleFileError(path, "cannot tell the format (expected CIF, extended XYZ, a CSV with a cif column, a zip of CIFs or a CDVAE .pt file)")


# ============================================================================ CIF
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
        pv = _property_value(v)
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
        return Unreadable(source, f"malformed CIF: {_one_line(exc) or type(exc).__name__}")
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
        return Unreadable(source, f"unsupported structure: {_exc_text(exc)}")


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


def _entries_from_cif_text(text: str, source: str, label: str, extra: Mapping[str, Any] | None = None) -> list[SampleEntry]:
    """All crystals of one CIF file (one per data block). Never raises: failures become Unreadable."""
    if not text.strip():
        return [Unreadable(source, "malformed CIF: empty file")]
    if "\x00" in text:
        return [Unreadable(source, "malformed CIF: binary data")]
    try:
        blocks = _cif_blocks(text)
    except Exception as exc:
        return [Unreadable(source, f"malformed CIF: {_one_line(exc) or type(exc).__name__}")]
    if not blocks:
        return [Unreadable(source, "malformed CIF: no data_ block")]
    if len(blocks) == 1:
        name, btext, data = blocks[0]
        return [_crystal_from_cif_block(btext, data, source, label, extra)]
    out: list[SampleEntry] = []
    for name, btext, data in blocks:
        out.append(_crystal_from_cif_block(btext, data, f"{source}#data_{name}", f"{label}#data_{name}", extra))
    return out


def _take(entries: Iterable[SampleEntry], limit: int | None) -> list[SampleEntry]:
    out: list[SampleEntry] = []
    if limit == 0:
        return out
    for e in entries:
        out.append(e)
        if limit is not None and len(out) >= limit:
            break
    return out


def _read_cif_dir(path: Path, limit: int | None) -> list[SampleEntry]:
    files = sorted((p for p in path.iterdir() if p.is_file() and p.suffix.lower() == ".cif"), key=lambda p: _natural_key(p.name))
    if not files:
        raise SampleFileError(path, "empty: no .cif files in directory")

    def gen() -> Iterator[SampleEntry]:
        for f in files:
            source = f"{path.name}/{f.name}"
            try:
                data = f.read_bytes()
            except OSError as exc:
                yield Unreadable(source, f"cannot read file: {_exc_text(exc)}")
                continue
            yield from _entries_from_cif_text(_decode_text(data), source, f.name)

    return _take(gen(), limit)


def _read_cif_zip(path: Path, limit: int | None) -> list[SampleEntry]:
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise SampleFileError(path, f"not a readable zip archive ({_exc_text(exc)})") from None
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
                    yield Unreadable(source, f"cannot read zip member: {_exc_text(exc)}")
                    continue
                yield from _entries_from_cif_text(_decode_text(data), source, Path(info.filename).name)

        return _take(gen(), limit)


def _read_cif_file(path: Path, limit: int | None) -> list[SampleEntry]:
    data = path.read_bytes()
    if _is_binary(data[:8192]):
        raise SampleFileError(path, "not a CIF file (binary data)")
    text = _decode_text(data)
    if not re.search(r"(?im)^\s*data_", text):
        raise SampleFileError(path, "not a CIF file: no data_ block")
    return _take(_entries_from_cif_text(text, path.name, path.name), limit)


# ============================================================================ extended XYZ
def _crystal_from_atoms(atoms: Any, source: str, index: int) -> SampleEntry:
    try:
        pbc = np.asarray(atoms.pbc, dtype=bool)
        volume = float(abs(atoms.cell.volume))
        if not pbc.all() or not math.isfinite(volume) or volume < 1e-12:
            return Unreadable(source, f"no periodic cell (pbc={''.join('T' if p else 'F' for p in pbc)}, volume={volume:g})")
        props: dict[str, Any] = {}
        calc = getattr(atoms, "calc", None)
        results = getattr(calc, "results", None)
        if isinstance(results, Mapping):  # ase moves e.g. energy= from the comment line into a calculator
            for k, v in results.items():
                pv = _property_value(v)
                if pv is not None:
                    props[str(k)] = pv
        label: str | None = str(index)
        for k, v in atoms.info.items():
            if k == "label":
                label = str(_plain_value(v))
                continue
            pv = _property_value(v)
            if pv is not None:
                props[str(k)] = pv
        return Crystal.from_lattice_matrix(
            atoms.get_atomic_numbers(), atoms.get_scaled_positions(wrap=False), atoms.cell.array, props, label
        )
    except Exception as exc:
        return Unreadable(source, f"unusable frame: {_exc_text(exc)}")


def _read_extxyz(path: Path, limit: int | None) -> list[SampleEntry]:
    import ase.io

    with open(path, "rb") as fh:
        head = fh.read(8192)
    if _is_binary(head):
        raise SampleFileError(path, "not an extended XYZ file (binary data)")
    if limit == 0:
        return []
    index = ":" if limit is None else f":{int(limit)}"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            frames = ase.io.read(str(path), index=index, format="extxyz")
    except Exception as exc:
        raise SampleFileError(path, f"not a readable extended XYZ file ({_exc_text(exc)})") from None
    if not isinstance(frames, list):
        frames = [frames]
    if not frames:
        raise SampleFileError(path, "empty: no frames in extended XYZ file")
    return [_crystal_from_atoms(a, f"{path.name}:frame {i}", i) for i, a in enumerate(frames)]


# ============================================================================ CSV
def _read_csv(path: Path, limit: int | None) -> list[SampleEntry]:
    import pandas as pd

    with open(path, "rb") as fh:
        head = fh.read(8192)
    if _is_binary(head):
        raise SampleFileError(path, "not a CSV file (binary data)")
    sep = "\t" if path.suffix.lower() == ".tsv" else ","
    try:
        df = pd.read_csv(path, sep=sep, nrows=limit)
    except Exception as exc:
        raise SampleFileError(path, f"not a readable CSV file ({_exc_text(exc)})") from None
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
            label = str(_plain_value(record[id_col]))
        props: dict[str, Any] = {}
        for c in prop_cols:
            v = _property_value(record[c])
            if v is None or (isinstance(v, float) and math.isnan(v)):
                continue
            props[str(c)] = v
        cif_text = record[cif_col]
        if not isinstance(cif_text, str) or not cif_text.strip():
            out.append(Unreadable(source, "missing CIF"))
            continue
        entries = _entries_from_cif_text(cif_text, source, label, props)
        if len(entries) != 1:
            out.append(Unreadable(source, f"CIF has {len(entries)} data blocks, expected 1"))
        else:
            out.append(entries[0])
    return out


# ============================================================================ CDVAE .pt files
class PickledRecord:
    """Inert stand-in for a pickled object whose class is not imported (torch_geometric data,
    ``argparse.Namespace``). It only stores what the pickle gave it.

    Attribute lookup reads the stored state; for torch_geometric >= 2 objects, whose state is
    ``{"_store": <GlobalStorage state {"_mapping": {...}}>, ...}``, it falls through to
    ``_store._mapping`` and ``_mapping``, so ``record.frac_coords`` works for a pickled ``Batch``.
    ``record["key"]`` does the same lookup.
    """

    _pickled_module: str = "?"
    _pickled_name: str = "?"

    def __new__(cls, *args: Any, **kwargs: Any) -> "PickledRecord":
        self = object.__new__(cls)
        object.__setattr__(self, "_state", {})
        object.__setattr__(self, "_args", args)
        return self

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if kwargs:
            self._state.update({str(k): v for k, v in kwargs.items()})

    def __setstate__(self, state: Any) -> None:
        slots = None
        if (
            isinstance(state, tuple)
            and len(state) == 2
            and (state[0] is None or isinstance(state[0], dict))
            and (state[1] is None or isinstance(state[1], dict))
        ):
            state, slots = state
        if isinstance(state, dict):
            self._state.update({str(k): v for k, v in state.items()})
        elif state is not None:
            self._state["__state__"] = state
        if slots:
            self._state.update({str(k): v for k, v in slots.items()})

    def __setattr__(self, name: str, value: Any) -> None:
        self._state[name] = value

    def __call__(self, *args: Any, **kwargs: Any) -> "PickledRecord":
        # torch_geometric pickles a Batch as DynamicInheritanceGetter()(Batch, Data): calling a record
        # gives a fresh record of the same stand-in class.
        return type(self)(*args, **kwargs)

    def _lookup(self, name: str) -> Any:
        state = object.__getattribute__(self, "_state")
        if name in state:
            return state[name]
        mapping = state.get("_mapping")
        if isinstance(mapping, dict) and name in mapping:
            return mapping[name]
        store = state.get("_store")
        if isinstance(store, PickledRecord):
            return store._lookup(name)
        if isinstance(store, dict):
            if name in store:
                return store[name]
            inner = store.get("_mapping")
            if isinstance(inner, dict) and name in inner:
                return inner[name]
        raise KeyError(name)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        try:
            return self._lookup(name)
        except KeyError:
            raise AttributeError(f"{self._pickled_module}.{self._pickled_name} record has no attribute {name!r}") from None

    def __getitem__(self, name: str) -> Any:
        return self._lookup(name)

    def __contains__(self, name: object) -> bool:
        try:
            self._lookup(str(name))
        except KeyError:
            return False
        return True

    def to_dict(self) -> dict[str, Any]:
        """The stored state (not including the ``_store`` fall-through)."""
        return dict(self._state)

    def __repr__(self) -> str:
        return f"<PickledRecord {self._pickled_module}.{self._pickled_name} keys={sorted(self._state)}>"


def _latin1_encode(obj: Any, encoding: str = "utf-8", errors: str = "strict") -> bytes:
    """``_codecs.encode`` as protocol-2 pickles use it for bytes (latin-1 only)."""
    if not isinstance(obj, str) or str(encoding).lower().replace("_", "-") not in ("latin1", "latin-1", "iso-8859-1"):
        raise pickle.UnpicklingError(f"refusing _codecs.encode with encoding {encoding!r}")
    return obj.encode("latin-1", errors="strict")


def _wrap_function(fn: Callable[..., Any]) -> Callable[..., Any]:
    """A fresh wrapper, so that a BUILD opcode aimed at the function can only touch the wrapper."""

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return fn(*args, **kwargs)

    return wrapper


_TORCH_REBUILD_FUNCTIONS = frozenset(
    {"_rebuild_tensor", "_rebuild_tensor_v2", "_rebuild_tensor_v3", "_rebuild_parameter"}
)
_BUILTINS = frozenset(
    {"set", "frozenset", "slice", "complex", "range", "bytearray", "bytes", "list", "dict", "tuple", "int", "float", "str", "bool"}
)


def _restricted_pickle_module(source: str) -> types.ModuleType:
    """A ``pickle``-like module whose Unpickler only resolves whitelisted globals.

    Used as ``torch.load(..., pickle_module=..., weights_only=False)``: torch subclasses our
    ``Unpickler`` and calls our ``find_class`` for every global in the file (storage classes it
    resolves itself, to inert storage types). Everything torch_geometric and ``argparse.Namespace``
    become :class:`PickledRecord` subclasses; any other global outside the whitelist raises
    ``pickle.UnpicklingError``.
    """
    import collections

    import torch

    record_classes: dict[tuple[str, str], type] = {}

    def record_class(module: str, name: str) -> type:
        key = (module, name)
        if key not in record_classes:
            safe = re.sub(r"\W", "_", name) or "Record"
            record_classes[key] = type(safe, (PickledRecord,), {"_pickled_module": module, "_pickled_name": name})
        return record_classes[key]

    def safe_reconstructor(cls: Any, base: Any, state: Any) -> Any:
        # copyreg._reconstructor as protocol 0/1 pickles use it, for record classes only
        if isinstance(cls, type) and issubclass(cls, PickledRecord) and base is object:
            return cls()
        raise pickle.UnpicklingError(f"refusing copyreg._reconstructor for {cls!r} from {source}")

    def resolve(module: str, name: str) -> Any:
        if module == "torch_geometric" or module.startswith("torch_geometric."):
            return record_class(module, name)
        if module == "argparse" and name == "Namespace":
            return record_class(module, name)
        if module == "collections" and name == "OrderedDict":
            return collections.OrderedDict
        if module in ("builtins", "__builtin__") and name in _BUILTINS:
            import builtins

            return getattr(builtins, name)
        if module in ("_codecs", "codecs") and name == "encode":
            return _latin1_encode
        if module == "copyreg" and name == "_reconstructor":
            return safe_reconstructor
        if module == "torch._utils" and name in _TORCH_REBUILD_FUNCTIONS:
            return _wrap_function(getattr(torch._utils, name))
        if module == "torch.serialization" and name == "_get_layout":
            return _wrap_function(torch.serialization._get_layout)
        if module == "torch":
            if name in ("Size", "device"):
                return getattr(torch, name)
            obj = getattr(torch, name, None)
            if isinstance(obj, torch.dtype) or isinstance(obj, torch.layout) or isinstance(obj, torch.memory_format):
                return obj
            if name.endswith("Storage") and isinstance(obj, type):
                return obj
        if module == "torch.storage" and name in ("UntypedStorage", "TypedStorage"):
            return getattr(torch.storage, name)
        if module in ("numpy.core.multiarray", "numpy._core.multiarray") and name in ("_reconstruct", "scalar"):
            return getattr(np._core.multiarray if hasattr(np, "_core") else np.core.multiarray, name)
        if module in ("numpy.core.numeric", "numpy._core.numeric") and name == "_frombuffer":
            return getattr(np._core.numeric if hasattr(np, "_core") else np.core.numeric, name)
        if module == "numpy" and name in ("dtype", "ndarray"):
            return getattr(np, name)
        if module == "numpy.dtypes" and name.endswith("DType"):
            obj = getattr(getattr(np, "dtypes", None), name, None)
            if isinstance(obj, type):
                return obj
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from {source}")

    class Unpickler(pickle.Unpickler):
        """Unpickler that resolves only whitelisted globals (see :func:`_restricted_pickle_module`)."""

        def find_class(self, module: str, name: str) -> Any:  # noqa: D401 - pickle API
            return resolve(module, name)

    def load(file: Any, **kwargs: Any) -> Any:
        return Unpickler(file, **kwargs).load()

    def loads(data: bytes, **kwargs: Any) -> Any:
        return Unpickler(io.BytesIO(data), **kwargs).load()

    module = types.ModuleType("benchmark_restricted_pickle")
    module.Unpickler = Unpickler  # type: ignore[attr-defined]
    module.load = load  # type: ignore[attr-defined]
    module.loads = loads  # type: ignore[attr-defined]
    module.UnpicklingError = pickle.UnpicklingError  # type: ignore[attr-defined]
    module.__version__ = "1"  # type: ignore[attr-defined]
    return module


def _safe_torch_load(path: Path) -> Any:
    """Load a torch.save'd file without running pickled code (see module docstring)."""
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return torch.load(str(path), map_location="cpu", weights_only=True)
        except Exception:
            pass  # typically disallowed globals; retry with the restricted unpickler
        try:
            return torch.load(
                str(path), map_location="cpu", pickle_module=_restricted_pickle_module(path.name), weights_only=False
            )
        except Exception as exc:
            raise SampleFileError(path, f"cannot load torch file safely: {_exc_text(exc)}") from None


def _field(obj: Any, key: str) -> Any:
    if isinstance(obj, Mapping):
        return obj[key]
    if isinstance(obj, PickledRecord):
        return obj[key]
    return getattr(obj, key)


def _simple_setting(obj: Any) -> dict[str, Any] | None:
    if obj is None:
        return None
    if isinstance(obj, PickledRecord):
        items = obj.to_dict()
    elif isinstance(obj, Mapping):
        items = dict(obj)
    elif hasattr(obj, "__dict__"):
        items = dict(vars(obj))
    else:
        return None
    out: dict[str, Any] = {}
    for k, v in items.items():
        v = _plain_value(v)
        if v is None or isinstance(v, (bool, int, float, str)):
            out[str(k)] = v
    return out


def _read_cdvae(path: Path, kind: str, limit: int | None, batch_idx: int) -> tuple[list[SampleEntry], list[SampleEntry] | None, dict]:
    import torch

    data = _safe_torch_load(path)
    if not isinstance(data, Mapping):
        raise SampleFileError(path, f"not a CDVAE evaluation file: top-level object is {type(data).__name__}, not a dict")
    keys = ("frac_coords", "atom_types", "num_atoms", "lengths", "angles")
    missing = [k for k in keys if k not in data]
    if missing:
        raise SampleFileError(path, f"not a CDVAE evaluation file: missing key(s) {', '.join(missing)}")

    arrays: dict[str, Any] = {}
    for k in keys:
        v = data[k]
        if not isinstance(v, torch.Tensor):
            try:
                v = torch.as_tensor(np.asarray(v))
            except Exception:
                raise SampleFileError(path, f"key {k!r} is not an array ({type(v).__name__})") from None
        arrays[k] = v
    # Files without the leading num_evals axis are read as one evaluation.
    expect_ndim = {"frac_coords": 3, "atom_types": 2, "num_atoms": 2, "lengths": 3, "angles": 3}
    for k, nd in expect_ndim.items():
        if arrays[k].dim() == nd - 1:
            arrays[k] = arrays[k].unsqueeze(0)
        elif arrays[k].dim() != nd:
            raise SampleFileError(path, f"key {k!r} has shape {tuple(arrays[k].shape)}, expected {nd} dimensions")
    num_evals = int(arrays["frac_coords"].shape[0])
    if any(int(arrays[k].shape[0]) != num_evals for k in keys):
        raise SampleFileError(path, "arrays disagree on the number of evaluations (leading axis)")
    if not -num_evals <= batch_idx < num_evals:
        raise SampleFileError(path, f"batch_idx {batch_idx} out of range: the file holds {num_evals} evaluation(s)")
    try:
        crystals = crystals_from_arrays(*(arrays[k][batch_idx] for k in ("frac_coords", "atom_types", "lengths", "angles", "num_atoms")))
    except ValueError as exc:
        raise SampleFileError(path, f"inconsistent arrays: {_one_line(exc)}") from None

    meta: dict[str, Any] = {"num_evals": num_evals, "batch_idx": batch_idx}
    if "time" in data:
        t = _plain_value(data["time"])
        if isinstance(t, (int, float)) and not isinstance(t, bool):
            meta["time"] = float(t)
    setting = _simple_setting(data.get("eval_setting"))
    if setting is not None:
        meta["eval_setting"] = setting
    if kind == "cdvae_opt":
        meta["num_crystals"] = len(crystals)

    references: list[SampleEntry] | None = None
    if kind == "cdvae_recon":
        batch = data.get("input_data_batch")
        if batch is None:
            meta["references_missing"] = True
        else:
            try:
                refs = crystals_from_arrays(*(_field(batch, k) for k in ("frac_coords", "atom_types", "lengths", "angles", "num_atoms")))
            except (KeyError, AttributeError, ValueError, TypeError) as exc:
                raise SampleFileError(path, f"unusable input_data_batch: {_exc_text(exc)}") from None
            if len(refs) != len(crystals):
                raise SampleFileError(path, f"input_data_batch holds {len(refs)} crystals but the reconstructions {len(crystals)}")
            references = list(refs)

    entries: list[SampleEntry] = list(crystals)
    if limit is not None:
        entries = entries[:limit]
        if references is not None:
            references = references[:limit]
    return entries, references, meta


# ============================================================================ public reader
def read_samples(
    path: str | os.PathLike[str], *, fmt: str | None = None, limit: int | None = None, batch_idx: int = 0
) -> SampleSet:
    """Read a sample file (or directory) into a :class:`SampleSet`.

    Args:
        path: a directory of CIFs, a zip of CIFs, a CIF, an extended XYZ file, a CSV with a
            ``cif`` column, or a CDVAE ``eval_gen.pt`` / ``eval_recon.pt`` / ``eval_opt.pt``.
        fmt: one of :data:`FORMATS`; None sniffs it (:func:`sniff_format`).
        limit: keep only the first ``limit`` entries (and, for reconstructions, the same prefix of
            the references).
        batch_idx: for CDVAE files, which index of the leading ``num_evals`` axis to read
            (negative indices count from the end, as in the published reader).

    Raises:
        SampleFileError: the path is missing, empty, of the wrong kind, or unreadable as a whole.
        ValueError: ``fmt`` or ``limit`` is invalid.
    """
    p = Path(path)
    _check_limit(limit)
    if fmt is not None and fmt not in FORMATS:
        raise ValueError(f"unknown sample format {fmt!r}; expected one of {', '.join(FORMATS)}")
    _check_exists(p)
    if fmt is None:
        fmt = sniff_format(p)
    if fmt == "cif_dir" and not p.is_dir():
        raise SampleFileError(p, "format cif_dir needs a directory")
    if fmt != "cif_dir" and p.is_dir():
        raise SampleFileError(p, f"is a directory, not a {fmt} file")

    references: list[SampleEntry] | None = None
    meta: dict[str, Any] = {}
    try:
        if fmt == "cif_dir":
            entries = _read_cif_dir(p, limit)
        elif fmt == "cif_zip":
            entries = _read_cif_zip(p, limit)
        elif fmt == "cif":
            entries = _read_cif_file(p, limit)
        elif fmt == "extxyz":
            entries = _read_extxyz(p, limit)
        elif fmt == "csv":
            entries = _read_csv(p, limit)
        else:
            entries, references, meta = _read_cdvae(p, fmt, limit, int(batch_idx))
    except SampleFileError:
        raise
    except OSError as exc:
        raise SampleFileError(p, f"cannot read: {_exc_text(exc)}") from None
    return SampleSet(entries=entries, fmt=fmt, path=p, references=references, meta=meta)


# ============================================================================ writers
def _atomic_target(path: Path) -> tuple[int, str]:
    path.parent.mkdir(parents=True, exist_ok=True)
    return tempfile.mkstemp(dir=str(path.parent), prefix=f".{path.name}.", suffix=".tmp")


def _replace_atomically(path: Path, write: Callable[[str], None]) -> Path:
    fd, tmp = _atomic_target(path)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return path


def write_extxyz(crystals: Sequence[Crystal], path: str | os.PathLike[str]) -> Path:
    """Write crystals as one extended XYZ file (atomically: temp file, then ``os.replace``).

    Each frame carries the crystal's properties and ``label`` in its comment line. Note that ase
    reads numeric-looking strings back as numbers and moves ``energy``-like keys into a
    calculator; :func:`read_samples` turns those back into properties.
    """
    import ase.io

    p = Path(path)
    frames = [c.to_atoms() for c in crystals]

    def write(tmp: str) -> None:
        ase.io.write(tmp, frames, format="extxyz")

    return _replace_atomically(p, write)


def _cif_text(crystal: Crystal) -> str:
    from pymatgen.io.cif import CifWriter

    text = str(CifWriter(crystal.to_structure()))
    props = {k: _plain_value(v) for k, v in crystal.properties.items()}
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


def write_cifs(crystals: Sequence[Crystal], path: str | os.PathLike[str]) -> Path:
    """Write crystals as CIFs: one zip archive if ``path`` ends in ``.zip``, else a directory.

    Files are named ``<index>_<label-or-formula>.cif`` with the index zero-padded to a common
    width, so name order is crystal order. Properties are stored in a ``_benchmark_properties``
    text field (JSON) that :func:`read_samples` reads back. The zip is written atomically; in a
    directory each file is, and other files already there are left alone.
    """
    p = Path(path)
    texts = [_cif_text(c) for c in crystals]
    names = _cif_names(crystals)
    if p.suffix.lower() == ".zip":

        def write(tmp: str) -> None:
            with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
                for name, text in zip(names, texts):
                    zf.writestr(name, text)

        return _replace_atomically(p, write)

    p.mkdir(parents=True, exist_ok=True)
    for name, text in zip(names, texts):
        target = p / name

        def write_one(tmp: str, text: str = text) -> None:
            with open(tmp, "w", encoding="utf-8") as fh:
                fh.write(text)

        _replace_atomically(target, write_one)
    return p
