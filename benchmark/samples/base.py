"""Sample files behind a format registry: the types, sniffing, and :func:`read_samples` / :func:`write_samples`.

A sample file format is a :class:`SampleFormat`: a name, a one-line description, the file suffixes
it claims, an optional ``sniff`` that recognises its files by content, a reader, and an optional
writer. Formats are registered like every other plugin, through the ``benchmark_sample_formats``
hook (:mod:`benchmark.hookspecs`): the built-in ones by :mod:`benchmark.samples.plugin`, a
third-party one by its package's entry point. :func:`read_samples` and :func:`sniff_format` ask
the registry, so ``evaluate`` and ``oracle predict`` read a newly registered format with no other
change.

Sniffing (:func:`sniff_format`) shows every registered format one :class:`Probe` of the path (is it
a directory, its first bytes, its name) and takes the strongest :class:`Match`: the content is
unmistakably the format's (``MAGIC``, e.g. a torch zip, a directory), the name ends in one of its
suffixes (``SUFFIX``), or the content looks like it (``CONTENT``). Between formats with equally
strong matches the longest matching suffix wins; a remaining tie is an error that names the
formats, so that a plugin can never silently take over another format's files.

A whole file that cannot be read raises :class:`SampleFileError` (one line naming the file). One
entry that cannot be turned into a :class:`~benchmark.crystal.Crystal` (a malformed CIF among good
ones, a frame without a periodic cell, a disordered structure) becomes an :class:`Unreadable`
entry in its place, so that the metrics can count it as invalid instead of the run failing.
"""

from __future__ import annotations

import difflib
import enum
import os
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from benchmark.crystal import Crystal

__all__ = [
    "Match",
    "Probe",
    "ReadResult",
    "SampleEntry",
    "SampleFileError",
    "SampleFormat",
    "SampleSet",
    "Unreadable",
    "SampleStream",
    "available_formats",
    "open_samples",
    "read_samples",
    "take_entries",
    "sniff_format",
    "write_samples",
]

_MAX_REASON = 240


class SampleFileError(ValueError):
    """A whole sample file cannot be read. The message is one line naming the file."""

    def __init__(self, path: Any, problem: str) -> None:
        self.path = str(path)
        self.problem = one_line(problem, limit=400)
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
        fmt: the name of the format the file was read as (see :func:`available_formats`).
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
        """The entries that could not be read."""
        return [e for e in self.entries if isinstance(e, Unreadable)]

    def __len__(self) -> int:
        return len(self.entries)


@dataclass
class ReadResult:
    """What a format's reader returns; :func:`read_samples` makes a :class:`SampleSet` of it.

    Attributes:
        entries: one :class:`Crystal` or :class:`Unreadable` per sample, in file order (at most
            ``limit`` of them; :func:`read_samples` cuts longer lists).
        references: ground truth paired one to one with ``entries``, if the file holds it.
        meta: format-specific facts for the run record.
    """

    entries: list[SampleEntry]
    references: list[SampleEntry] | None = None
    meta: dict = field(default_factory=dict)


class Match(enum.IntEnum):
    """How strongly a format claims a path (higher wins)."""

    NONE = 0  #: not this format
    CONTENT = 1  #: the content looks like this format (used when the name says nothing)
    SUFFIX = 2  #: the name ends in one of the format's suffixes
    MAGIC = 3  #: the content is unmistakably this format (a torch zip, a directory of CIFs)


class Probe:
    """What sniffing looks at, read once per path and shared by every format's ``sniff``.

    Attributes:
        path: the path being sniffed.
        is_dir: whether it is a directory.
        head: its first :attr:`HEAD_BYTES` bytes (empty for a directory).
    """

    HEAD_BYTES = 8192

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.is_dir = self.path.is_dir()
        self.head = b""
        if not self.is_dir:
            with open(self.path, "rb") as fh:
                self.head = fh.read(self.HEAD_BYTES)
        self._memo: dict[str, Any] = {}

    @property
    def name(self) -> str:
        """The file name, lower case."""
        return self.path.name.lower()

    def has_suffix(self, suffixes: Sequence[str]) -> bool:
        """Whether the name ends in one of ``suffixes`` (case-insensitive; ``".crystals.json"`` works)."""
        return any(self.name.endswith(s.lower()) for s in suffixes)

    @property
    def is_zip(self) -> bool:
        """Whether the content starts like a zip archive."""
        return self.head.startswith(b"PK\x03\x04") or self.head.startswith(b"PK\x05\x06")

    @property
    def is_binary(self) -> bool:
        """Whether the first bytes hold a NUL byte (no text format does)."""
        return is_binary(self.head)

    @cached_property
    def text(self) -> str:
        """The first bytes decoded as text (UTF-8, else Latin-1)."""
        return decode_text(self.head)

    @cached_property
    def first_line(self) -> str:
        """The first non-blank line of :attr:`text`, stripped."""
        return next((ln.strip() for ln in self.text.splitlines() if ln.strip()), "")

    def zip_names(self) -> list[str] | None:
        """The member names of a zip archive, or None if the path is not a readable zip."""
        import zipfile

        def names() -> list[str] | None:
            if not self.is_zip:
                return None
            try:
                with zipfile.ZipFile(self.path) as zf:
                    return zf.namelist()
            except (zipfile.BadZipFile, OSError):
                return None

        return self.memo("zip_names", names)

    def memo(self, key: str, compute: Callable[[], Any]) -> Any:
        """``compute()``, once per probe: lets several formats share an expensive look at the file."""
        if key not in self._memo:
            self._memo[key] = compute()
        return self._memo[key]


Reader = Callable[[Path, int | None, int], ReadResult]
Writer = Callable[[Sequence[Crystal], Path], Path]
# iterate(path, limit, batch_idx) -> the entries one at a time, in file order (the same ones ``read`` returns)
Iterate = Callable[[Path, int | None, int], Iterator["SampleEntry"]]


@dataclass(frozen=True)
class SampleFormat:
    """One sample file format, as registered through the ``benchmark_sample_formats`` hook.

    Attributes:
        name: what ``read_samples(fmt=...)`` takes and the run record stores, e.g. ``"extxyz"``.
        description: one line for ``python -m benchmark list formats``.
        read: ``read(path, limit, batch_idx) -> ReadResult``: the entries of ``path`` in file
            order, at most ``limit`` of them (None: all); ``batch_idx`` picks one of several
            evaluations in files that hold more than one (formats without them ignore it). Raises
            :class:`SampleFileError` when the file as a whole is unusable; an entry that cannot be
            read becomes an :class:`Unreadable`.
        suffixes: file-name endings the format claims (lower case, with the dot).
        sniff: ``sniff(probe) -> Match``; None claims the files whose names end in ``suffixes``
            (and, with ``directory``, any directory).
        write: ``write(crystals, path) -> path`` if the format can be written.
        directory: the format reads a directory rather than a file.
        iterate: ``iterate(path, limit, batch_idx) -> iterator of entries``: the entries ``read``
            returns, exactly, but one at a time from the file, so that :func:`open_samples` can
            stream a file of any size in bounded memory (None: the format is read whole). Like
            ``read`` it raises :class:`SampleFileError` for an unusable file, possibly only once
            iteration reaches the bad part.
    """

    name: str
    description: str
    read: Reader
    suffixes: tuple[str, ...] = ()
    sniff: Callable[[Probe], Match] | None = None
    write: Writer | None = None
    directory: bool = False
    iterate: Iterate | None = None

    def match(self, probe: Probe) -> Match:
        """How strongly this format claims the probed path."""
        if self.sniff is not None:
            return Match(self.sniff(probe))
        if probe.is_dir:
            return Match.MAGIC if self.directory else Match.NONE
        if not self.directory and self.suffixes and probe.has_suffix(self.suffixes):
            return Match.SUFFIX
        return Match.NONE

    def suffix_length(self, name: str) -> int:
        """Length of the longest of :attr:`suffixes` that ``name`` ends in (0 if none)."""
        name = name.lower()
        return max((len(s) for s in self.suffixes if name.endswith(s.lower())), default=0)


# ============================================================================ small helpers for formats
def one_line(text: Any, limit: int = _MAX_REASON) -> str:
    """Collapse a (possibly multi-line, ANSI-coloured) message into one short line."""
    s = re.sub(r"\x1b\[[0-9;]*m", "", str(text))
    parts = [p.strip() for p in s.splitlines() if p.strip()]
    s = "; ".join(parts) if parts else ""
    if len(s) > limit:
        s = s[: limit - 3].rstrip() + "..."
    return s


def exc_text(exc: BaseException) -> str:
    """``"<ExceptionType>: <one-line message>"``."""
    msg = one_line(exc)
    return f"{type(exc).__name__}: {msg}" if msg else type(exc).__name__


def is_binary(head: bytes) -> bool:
    """Whether bytes hold a NUL byte (no text format does)."""
    return b"\x00" in head


def decode_text(data: bytes) -> str:
    """Bytes as text: UTF-8 (a BOM dropped), else Latin-1 (which decodes anything)."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def plain_value(value: Any) -> Any:
    """numpy scalars -> Python scalars; anything else unchanged."""
    if isinstance(value, np.generic):
        return value.item()
    return value


def property_value(value: Any) -> int | float | str | None:
    """A usable property value (int, float or str), or None for anything else (bools included)."""
    value = plain_value(value)
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float, str)):
        return value
    return None


def take(entries: Any, limit: int | None) -> list[SampleEntry]:
    """The first ``limit`` items of an iterable (all for None), consuming no more of it than that."""
    out: list[SampleEntry] = []
    if limit == 0:
        return out
    for e in entries:
        out.append(e)
        if limit is not None and len(out) >= limit:
            break
    return out


def _check_limit(limit: int | None) -> None:
    if limit is not None and (not isinstance(limit, (int, np.integer)) or isinstance(limit, bool) or limit < 0):
        raise ValueError(f"limit must be a non-negative integer or None, got {limit!r}")


def _check_exists(path: Path) -> None:
    if not path.exists():
        raise SampleFileError(path, "no such file or directory")
    if path.is_file() and path.stat().st_size == 0:
        raise SampleFileError(path, "empty file (0 bytes)")


# ============================================================================ the registry
def available_formats() -> dict[str, SampleFormat]:
    """Every registered format by name (built-in and plugin ones), in name order."""
    from benchmark.registry import RegistryError, get_plugins

    out: dict[str, SampleFormat] = {}
    for entry in get_plugins()["formats"]:
        fmt = entry.load()
        if not isinstance(fmt, SampleFormat):
            raise RegistryError(f"format {entry.name!r} from {entry.source or '?'} is a {type(fmt).__name__}, not a SampleFormat")
        if fmt.name != entry.name:
            raise RegistryError(f"format entry {entry.name!r} from {entry.source or '?'} builds a SampleFormat named {fmt.name!r}")
        out[entry.name] = fmt
    return out


def _unknown(kind: str, name: str, names: Sequence[str]) -> ValueError:
    close = difflib.get_close_matches(name, list(names), n=1, cutoff=0.5)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    return ValueError(f"unknown {kind} {name!r}.{hint} Valid formats: {', '.join(names) or '(none)'}")


def _sniff(path: Path, formats: dict[str, SampleFormat]) -> SampleFormat:
    try:
        probe = Probe(path)
    except OSError as exc:
        raise SampleFileError(path, f"cannot read: {exc_text(exc)}") from None
    scored = [(fmt.match(probe), fmt.suffix_length(probe.name), fmt) for fmt in formats.values()]
    best = max((s[0] for s in scored), default=Match.NONE)
    if best == Match.NONE:
        names = ", ".join(formats)
        if probe.is_binary:
            raise SampleFileError(path, f"cannot tell the format: binary data that no registered format recognises (formats: {names})")
        raise SampleFileError(path, f"cannot tell the format of this file (formats: {names})")
    top = [s for s in scored if s[0] == best]
    longest = max(s[1] for s in top)
    top = [s for s in top if s[1] == longest]
    if len(top) > 1:
        names = " and ".join(repr(s[2].name) for s in top)
        raise SampleFileError(path, f"ambiguous format: {names} both claim this file; choose one with fmt=")
    return top[0][2]


def sniff_format(path: str | os.PathLike[str]) -> str:
    """The name of the registered format that claims ``path`` (see the module docstring).

    Raises:
        SampleFileError: the path is missing or an empty file, no format recognises it, or two
            formats claim it equally.
    """
    path = Path(path)
    _check_exists(path)
    return _sniff(path, available_formats()).name


def read_samples(
    path: str | os.PathLike[str], *, fmt: str | None = None, limit: int | None = None, batch_idx: int = 0
) -> SampleSet:
    """Read a sample file (or directory) into a :class:`SampleSet`.

    Args:
        path: a file or directory in any registered format (built in: a directory of CIFs, a zip of
            CIFs, a CIF, an extended XYZ file, a CSV with a ``cif`` column, a CDVAE
            ``eval_gen.pt`` / ``eval_recon.pt`` / ``eval_opt.pt``).
        fmt: a registered format name; None sniffs it (:func:`sniff_format`).
        limit: keep only the first ``limit`` entries (and, for reconstructions, the same prefix of
            the references).
        batch_idx: for files holding several evaluations (CDVAE's), which one to read (negative
            indices count from the end, as in the published reader).

    Raises:
        SampleFileError: the path is missing, empty, of the wrong kind, or unreadable as a whole.
        ValueError: ``fmt`` or ``limit`` is invalid.
    """
    p = Path(path)
    sample_format = _resolve_format(p, fmt, limit)
    result = _read_whole(p, sample_format, limit, int(batch_idx))
    entries, references = result.entries, result.references
    return SampleSet(entries=entries, fmt=sample_format.name, path=p, references=references, meta=result.meta)


class SampleStream:
    """A sample file read in chunks, again on each pass (:func:`open_samples`).

    Iterating it (or :meth:`chunks`) reads the file from its start, so only one chunk of entries
    is in memory at a time; :attr:`n` is known after the first full pass. A format without an
    ``iterate`` is read whole once and its entries are kept (``streamed`` is False), so every
    format works, the big ones in bounded memory.

    Attributes:
        fmt: the format's name; ``path``: the file; ``references``/``meta``: as in :class:`SampleSet`
            (a streamed format has neither).
    """

    def __init__(self, path: Path, sample_format: SampleFormat, limit: int | None, batch_idx: int) -> None:
        self.path = path
        self.fmt = sample_format.name
        self._format = sample_format
        self._limit = limit
        self._batch_idx = batch_idx
        self.references: list[SampleEntry] | None = None
        self.meta: dict = {}
        self._entries: list[SampleEntry] | None = None
        self._n: int | None = None
        if sample_format.iterate is None:  # no streaming reader: read whole, as read_samples does
            whole = _read_whole(path, sample_format, limit, batch_idx)
            self._entries, self.references, self.meta = whole.entries, whole.references, whole.meta
            self._n = len(self._entries)

    @property
    def streamed(self) -> bool:
        """Whether passes read the file (True) or a list read once (False)."""
        return self._entries is None

    @property
    def n(self) -> int:
        """The number of entries (one full pass the first time it is asked, if none was made yet)."""
        if self._n is None:
            self._n = sum(1 for _ in self)
        return self._n

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator[SampleEntry]:
        if self._entries is not None:
            yield from self._entries
            return
        count = 0
        try:
            for entry in self._format.iterate(self.path, self._limit, self._batch_idx):  # type: ignore[misc]
                if self._limit is not None and count >= self._limit:  # an iterator that reads more than asked is cut here
                    break
                count += 1
                yield entry
        except SampleFileError:
            raise
        except OSError as exc:
            raise SampleFileError(self.path, f"cannot read: {exc_text(exc)}") from None
        self._n = count

    def take(self, indices: Sequence[int]) -> dict[int, SampleEntry]:
        """The entries at ``indices`` (file positions), in one pass: {index: entry}."""
        wanted = {int(k) for k in indices}
        if self._entries is not None:
            return {k: self._entries[k] for k in wanted}
        out: dict[int, SampleEntry] = {}
        last = max(wanted, default=-1)
        if last < 0:
            return out
        for k, entry in enumerate(self):
            if k in wanted:
                out[k] = entry
            if k >= last:
                break
        missing = wanted - out.keys()
        if missing:
            raise IndexError(f"{self.path}: no entry {min(missing)} (the file has fewer)")
        return out

    def __getitem__(self, k: Any) -> Any:
        """An entry (or a list for a slice). A streamed file is read up to it: a pass per call, so
        metrics that need many entries iterate instead (or use :meth:`take`)."""
        if isinstance(k, slice):
            if self._entries is not None:
                return self._entries[k]
            positions = range(*k.indices(self.n))
            got = self.take(positions)
            return [got[i] for i in positions]
        k = int(k)
        if k < 0:
            k += self.n
        if k < 0:
            raise IndexError(k)
        return self.take([k])[k]

    def chunks(self, size: int) -> Iterator[list[SampleEntry]]:
        """The entries in file order, ``size`` at a time (the last chunk may be shorter)."""
        if size <= 0:
            raise ValueError(f"chunk size must be positive, got {size}")
        chunk: list[SampleEntry] = []
        for entry in self:
            chunk.append(entry)
            if len(chunk) >= size:
                yield chunk
                chunk = []
        if chunk:
            yield chunk


def _resolve_format(p: Path, fmt: str | None, limit: int | None) -> SampleFormat:
    """The format of ``p`` (given or sniffed), with the checks :func:`read_samples` makes."""
    _check_limit(limit)
    formats = available_formats()
    if fmt is not None and fmt not in formats:
        raise _unknown("sample format", fmt, list(formats))
    _check_exists(p)
    sample_format = formats[fmt] if fmt is not None else _sniff(p, formats)
    if sample_format.directory and not p.is_dir():
        raise SampleFileError(p, f"format {sample_format.name} needs a directory")
    if not sample_format.directory and p.is_dir():
        raise SampleFileError(p, f"is a directory, not a {sample_format.name} file")
    return sample_format


def _read_whole(p: Path, sample_format: SampleFormat, limit: int | None, batch_idx: int) -> ReadResult:
    """``sample_format.read``, checked and cut to ``limit``."""
    try:
        result = sample_format.read(p, limit, int(batch_idx))
    except SampleFileError:
        raise
    except OSError as exc:
        raise SampleFileError(p, f"cannot read: {exc_text(exc)}") from None
    if not isinstance(result, ReadResult):
        raise TypeError(f"the reader of format {sample_format.name!r} returned {type(result).__name__}, not a ReadResult")
    entries = list(result.entries)
    references = None if result.references is None else list(result.references)
    if limit is not None:  # a reader that reads more than asked is cut here
        entries = entries[:limit]
        references = None if references is None else references[:limit]
    return ReadResult(entries, references, dict(result.meta))


def take_entries(entries: Sequence[Any], indices: Sequence[int]) -> dict[int, Any]:
    """The entries at ``indices`` as {index: entry}: one pass for a :class:`SampleStream`
    (:meth:`SampleStream.take`), plain indexing for a list."""
    take = getattr(entries, "take", None)
    return take(indices) if take is not None else {k: entries[k] for k in indices}


def open_samples(
    path: str | os.PathLike[str], *, fmt: str | None = None, limit: int | None = None, batch_idx: int = 0
) -> SampleStream:
    """A sample file as a :class:`SampleStream`: the entries :func:`read_samples` would return, in
    the same order, read chunk by chunk on each pass for formats that can stream (extended XYZ,
    CSV), read whole for the others. Arguments and errors as :func:`read_samples` (a streamed
    file's problems may surface only during a pass)."""
    p = Path(path)
    sample_format = _resolve_format(p, fmt, limit)
    return SampleStream(p, sample_format, limit, int(batch_idx))


def write_samples(crystals: Sequence[Crystal], path: str | os.PathLike[str], fmt: str | None = None) -> Path:
    """Write crystals in a registered format that has a writer; returns what was written.

    Args:
        fmt: the format name; None picks the writable format whose suffix the name ends in
            (``.extxyz`` / ``.xyz`` -> ``extxyz``, ``.zip`` -> ``cif_zip``). A directory of CIFs
            is written with ``fmt="cif_dir"``.

    Raises:
        ValueError: ``fmt`` is unknown or has no writer, or None and the name says nothing.
    """
    p = Path(path)
    formats = available_formats()
    writable = {name: f for name, f in formats.items() if f.write is not None}
    if fmt is None:
        by_suffix = sorted(((f.suffix_length(p.name), name) for name, f in writable.items() if not f.directory), reverse=True)
        if not by_suffix or by_suffix[0][0] == 0:
            raise ValueError(f"cannot tell which format to write {p} in from its name; pass fmt= (writable formats: {', '.join(writable)})")
        fmt = by_suffix[0][1]
    if fmt not in formats:
        raise _unknown("sample format", fmt, list(formats))
    if fmt not in writable:
        raise ValueError(f"format {fmt!r} can be read but not written; writable formats: {', '.join(writable)}")
    return writable[fmt].write(list(crystals), p)  # type: ignore[misc]  # writable: write is not None
