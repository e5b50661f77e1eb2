"""CDVAE evaluation files: ``eval_gen.pt`` / ``eval_recon.pt`` / ``eval_opt.pt`` (formats ``cdvae_gen``, ``cdvae_recon``, ``cdvae_opt``).

The published CDVAE evaluation script saves a dict of stacked tensors with a leading ``num_evals``
axis (``frac_coords``, ``atom_types``, ``num_atoms``, ``lengths``, ``angles``), an
``eval_setting`` (an ``argparse.Namespace``), a ``time``, and for reconstructions the ground truth
as ``input_data_batch`` (a torch_geometric ``Batch``). Files without the leading axis are read as
one evaluation. ``batch_idx`` picks the evaluation.

These files are pickles, so they are read through :mod:`benchmark.safeload`: torch's
``weights_only`` loader first, then, for the torch_geometric batch and the ``Namespace``, the
restricted unpickler that turns them into inert :class:`~benchmark.safeload.PickledRecord`
objects and refuses every other global. No file can run code.

Which of the three a file is: its name (``eval_recon`` / ``eval_opt`` / ``eval_gen``), else
whether its pickle mentions ``input_data_batch`` (a reconstruction) or not (generation).
"""

from __future__ import annotations

import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from benchmark import safeload
from benchmark.crystal import crystals_from_arrays
from benchmark.safeload import PickledRecord
from benchmark.samples.base import (
    Match,
    Probe,
    ReadResult,
    SampleEntry,
    SampleFileError,
    SampleFormat,
    exc_text,
    one_line,
    plain_value,
)

__all__ = ["CDVAE_GEN", "CDVAE_OPT", "CDVAE_RECON"]

SUFFIXES = (".pt", ".pth", ".ckpt")
_KIND_BY_NAME = (("eval_recon", "cdvae_recon"), ("eval_opt", "cdvae_opt"), ("eval_gen", "cdvae_gen"))
_KEYS = ("frac_coords", "atom_types", "num_atoms", "lengths", "angles")


# ============================================================================ which kind
def _torch_pickle_bytes(probe: Probe) -> bytes | None:
    """The pickle record of a torch zip file, or None if the path is not one."""
    names = probe.zip_names()
    if names is None:
        return None
    pickles = [n for n in names if n.endswith("data.pkl")]
    if not pickles:
        return None
    try:
        with zipfile.ZipFile(probe.path) as zf:
            return zf.read(min(pickles, key=len))
    except (zipfile.BadZipFile, OSError, KeyError):
        return None


def _kind(probe: Probe) -> str:
    """``cdvae_gen`` / ``cdvae_recon`` / ``cdvae_opt``: from the file name, else the pickle's content."""
    for marker, kind in _KIND_BY_NAME:
        if marker in probe.name:
            return kind
    pickle_bytes = probe.memo("torch_pickle", lambda: _torch_pickle_bytes(probe))
    if pickle_bytes is None:  # legacy (pre-1.6) torch serialisation: one plain pickle stream
        try:
            pickle_bytes = probe.path.read_bytes()
        except OSError:
            pickle_bytes = b""
    return "cdvae_recon" if b"input_data_batch" in pickle_bytes else "cdvae_gen"


def _sniffer(kind: str) -> Any:
    def sniff(probe: Probe) -> Match:
        if probe.is_dir:
            return Match.NONE
        if probe.is_zip:
            if probe.memo("torch_pickle", lambda: _torch_pickle_bytes(probe)) is None:
                return Match.NONE  # a zip, but not a torch file
            level = Match.MAGIC
        elif probe.has_suffix(SUFFIXES):
            level = Match.SUFFIX
        elif probe.head[:1] == b"\x80":  # a pickle stream (legacy torch.save)
            level = Match.CONTENT
        else:
            return Match.NONE
        return level if probe.memo("cdvae_kind", lambda: _kind(probe)) == kind else Match.NONE

    return sniff


# ============================================================================ reading
def _field(obj: Any, key: str) -> Any:
    if isinstance(obj, (Mapping, PickledRecord)):
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
        v = plain_value(v)
        if v is None or isinstance(v, (bool, int, float, str)):
            out[str(k)] = v
    return out


def _read(path: Path, kind: str, limit: int | None, batch_idx: int) -> ReadResult:
    import torch

    try:
        data = safeload.load(path)
    except safeload.SafeLoadError as exc:
        raise SampleFileError(path, f"cannot load torch file safely: {exc.problem}") from None
    if not isinstance(data, Mapping):
        raise SampleFileError(path, f"not a CDVAE evaluation file: top-level object is {type(data).__name__}, not a dict")
    missing = [k for k in _KEYS if k not in data]
    if missing:
        raise SampleFileError(path, f"not a CDVAE evaluation file: missing key(s) {', '.join(missing)}")

    arrays: dict[str, Any] = {}
    for k in _KEYS:
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
    if any(int(arrays[k].shape[0]) != num_evals for k in _KEYS):
        raise SampleFileError(path, "arrays disagree on the number of evaluations (leading axis)")
    if not -num_evals <= batch_idx < num_evals:
        raise SampleFileError(path, f"batch_idx {batch_idx} out of range: the file holds {num_evals} evaluation(s)")
    try:
        crystals = crystals_from_arrays(*(arrays[k][batch_idx] for k in ("frac_coords", "atom_types", "lengths", "angles", "num_atoms")))
    except ValueError as exc:
        raise SampleFileError(path, f"inconsistent arrays: {one_line(exc)}") from None

    meta: dict[str, Any] = {"num_evals": num_evals, "batch_idx": batch_idx}
    if "time" in data:
        t = plain_value(data["time"])
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
                raise SampleFileError(path, f"unusable input_data_batch: {exc_text(exc)}") from None
            if len(refs) != len(crystals):
                raise SampleFileError(path, f"input_data_batch holds {len(refs)} crystals but the reconstructions {len(crystals)}")
            references = list(refs)

    entries: list[SampleEntry] = list(crystals)
    if limit is not None:
        entries = entries[:limit]
        if references is not None:
            references = references[:limit]
    return ReadResult(entries, references, meta)


def _format(kind: str, file_name: str, what: str) -> SampleFormat:
    def read(path: Path, limit: int | None, batch_idx: int) -> ReadResult:
        return _read(path, kind, limit, batch_idx)

    return SampleFormat(
        name=kind,
        description=f"CDVAE's {file_name} ({what}), read without running pickled code",
        read=read,
        suffixes=SUFFIXES,
        sniff=_sniffer(kind),
    )


CDVAE_GEN = _format("cdvae_gen", "eval_gen.pt", "generated crystals")
CDVAE_RECON = _format("cdvae_recon", "eval_recon.pt", "reconstructions, with their input_data_batch as references")
CDVAE_OPT = _format("cdvae_opt", "eval_opt.pt", "property-optimisation trajectories, step-major")
