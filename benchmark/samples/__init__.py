"""Reading and writing sample files: the crystals a generative model produced.

One module per format, each registered through the ``benchmark_sample_formats`` hook (built-in ones
by :mod:`benchmark.samples.plugin`); :func:`read_samples` sniffs a path against every registered
format (:mod:`benchmark.samples.base` says how) and :func:`write_samples` writes in any format with
a writer. Built-in formats (``python -m benchmark list formats``):

``cif_dir`` / ``cif_zip`` / ``cif`` (:mod:`~benchmark.samples.cif`)
    A directory of CIFs (natural name order), a zip of CIFs (archive order), one CIF file.
``extxyz`` (:mod:`~benchmark.samples.extxyz`)
    Extended XYZ, one frame per crystal; scalar ``info`` entries become properties.
``csv`` (:mod:`~benchmark.samples.csv`)
    A table with a ``cif`` column, as the published MP-20 / Perov-5 / Carbon-24 CSVs.
``cdvae_gen`` / ``cdvae_recon`` / ``cdvae_opt`` (:mod:`~benchmark.samples.cdvae_pt`)
    CDVAE's ``eval_gen.pt`` / ``eval_recon.pt`` / ``eval_opt.pt``, read without running pickled
    code (:mod:`benchmark.safeload`).

A whole file that cannot be read raises :class:`SampleFileError` (one line naming the file); one
entry that cannot be turned into a :class:`~benchmark.crystal.Crystal` becomes an
:class:`Unreadable` entry in its place, so that the metrics count it as invalid.

:func:`open_samples` gives the same entries as a :class:`SampleStream`, read chunk by chunk on
each pass (extended XYZ and CSV; other formats are read whole), so that scoring 100,000 samples
does not hold 100,000 crystals in memory.
"""

from __future__ import annotations

from benchmark.samples.base import (
    Match,
    Probe,
    ReadResult,
    SampleEntry,
    SampleFileError,
    SampleFormat,
    SampleSet,
    SampleStream,
    Unreadable,
    available_formats,
    open_samples,
    read_samples,
    sniff_format,
    take_entries,
    write_samples,
)
from benchmark.samples.cif import write_cifs
from benchmark.samples.extxyz import write_extxyz

__all__ = [
    "Match",
    "Probe",
    "ReadResult",
    "SampleEntry",
    "SampleFileError",
    "SampleFormat",
    "SampleSet",
    "SampleStream",
    "Unreadable",
    "available_formats",
    "open_samples",
    "read_samples",
    "take_entries",
    "sniff_format",
    "write_cifs",
    "write_extxyz",
    "write_samples",
]
