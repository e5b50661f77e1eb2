"""Extended XYZ sample files (``extxyz``): what MatterGen and ASE write, one frame per crystal.

Read and written with ASE. Scalar ``info`` entries of a frame (and scalar results of a stored
single-point calculator: ASE moves e.g. ``energy=`` from the comment line into one) become the
crystal's properties; ``info["label"]`` becomes its label (else the frame index). A frame without a
periodic cell becomes an :class:`~benchmark.samples.Unreadable` entry.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmark.crystal import Crystal
from benchmark.files import replace_atomically
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

__all__ = ["EXTXYZ", "write_extxyz"]

SUFFIXES = (".xyz", ".extxyz")


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
                pv = property_value(v)
                if pv is not None:
                    props[str(k)] = pv
        label: str | None = str(index)
        for k, v in atoms.info.items():
            if k == "label":
                label = str(plain_value(v))
                continue
            pv = property_value(v)
            if pv is not None:
                props[str(k)] = pv
        return Crystal.from_lattice_matrix(
            atoms.get_atomic_numbers(), atoms.get_scaled_positions(wrap=False), atoms.cell.array, props, label
        )
    except Exception as exc:
        return Unreadable(source, f"unusable frame: {exc_text(exc)}")


def _read_extxyz(path: Path, limit: int | None, batch_idx: int = 0) -> ReadResult:
    import ase.io

    with open(path, "rb") as fh:
        head = fh.read(8192)
    if is_binary(head):
        raise SampleFileError(path, "not an extended XYZ file (binary data)")
    if limit == 0:
        return ReadResult([])
    index = ":" if limit is None else f":{int(limit)}"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            frames = ase.io.read(str(path), index=index, format="extxyz")
    except Exception as exc:
        raise SampleFileError(path, f"not a readable extended XYZ file ({exc_text(exc)})") from None
    if not isinstance(frames, list):
        frames = [frames]
    if not frames:
        raise SampleFileError(path, "empty: no frames in extended XYZ file")
    return ReadResult([_crystal_from_atoms(a, f"{path.name}:frame {i}", i) for i, a in enumerate(frames)])


def _frame_texts(path: Path) -> Iterator[str]:
    """The text of each frame of an extended XYZ file, one at a time, split where ASE's reader
    splits them (an atom-count line, a comment line, that many atom lines, up to three ``VEC``
    lines; a blank line ends the file). ASE's own ``iread`` first indexes every frame of the file
    and keeps the index (about 700 bytes a frame), which is what streaming avoids."""
    with open(path, "r") as fh:
        while True:
            head = fh.readline()
            if head.strip() == "":
                return
            try:
                natoms = int(head)
            except ValueError as exc:
                raise SampleFileError(path, f"not a readable extended XYZ file (XYZError: ase.io.extxyz: Expected xyz header but got: {exc})") from None
            lines = [head, fh.readline()]
            lines.extend(fh.readline() for _ in range(natoms))
            while True:
                pos = fh.tell()
                line = fh.readline()
                if line.lstrip().startswith("VEC"):
                    lines.append(line)
                else:
                    fh.seek(pos)
                    break
            yield "".join(lines)


def _iter_extxyz(path: Path, limit: int | None, batch_idx: int = 0) -> Iterator[SampleEntry]:
    """The entries :func:`_read_extxyz` returns, one frame at a time: each frame's text is parsed
    by ``ase.io.read`` as a one-frame file, which is how ASE parses every frame of a whole file."""
    import io

    import ase.io

    with open(path, "rb") as fh:
        head = fh.read(8192)
    if is_binary(head):
        raise SampleFileError(path, "not an extended XYZ file (binary data)")
    if limit == 0:
        return
    i = 0
    for text in _frame_texts(path):
        if limit is not None and i >= limit:
            return
        # warnings are silenced while ASE parses the frame only, never while the caller holds it
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                atoms = ase.io.read(io.StringIO(text), index=0, format="extxyz")
        except Exception as exc:
            raise SampleFileError(path, f"not a readable extended XYZ file ({exc_text(exc)})") from None
        yield _crystal_from_atoms(atoms, f"{path.name}:frame {i}", i)
        i += 1
    if i == 0:
        raise SampleFileError(path, "empty: no frames in extended XYZ file")


def _sniff(probe: Probe) -> Match:
    if probe.is_dir:
        return Match.NONE
    if probe.has_suffix(SUFFIXES):
        return Match.SUFFIX
    # an XYZ frame starts with its atom count
    return Match.CONTENT if not probe.is_binary and probe.first_line.isdigit() else Match.NONE


def write_extxyz(crystals: Sequence[Crystal], path: str | os.PathLike[str]) -> Path:
    """Write crystals as one extended XYZ file, atomically (:func:`benchmark.files.replace_atomically`).

    Each frame carries the crystal's properties and ``label`` in its comment line. Note that ase
    reads numeric-looking strings back as numbers and moves ``energy``-like keys into a
    calculator; :func:`~benchmark.samples.read_samples` turns those back into properties.
    """
    import ase.io

    frames = [c.to_atoms() for c in crystals]

    def write(tmp: Path) -> None:
        ase.io.write(str(tmp), frames, format="extxyz")

    return replace_atomically(path, write)


EXTXYZ = SampleFormat(
    name="extxyz",
    description="extended XYZ (.xyz/.extxyz), one frame per crystal; scalar info entries become properties",
    read=_read_extxyz,
    suffixes=SUFFIXES,
    sniff=_sniff,
    write=write_extxyz,
    iterate=_iter_extxyz,
)
