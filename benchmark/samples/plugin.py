"""Built-in sample formats, registered through the same hook a third-party format uses.

The format modules import their heavy libraries (pymatgen, ASE, pandas, torch) only when a file is
read or written, so importing them here keeps ``python -m benchmark list`` cheap.
"""

from __future__ import annotations

from benchmark.hookspecs import hookimpl
from benchmark.registry import Entry
from benchmark.samples.base import SampleFormat
from benchmark.samples.cdvae_pt import CDVAE_GEN, CDVAE_OPT, CDVAE_RECON
from benchmark.samples.cif import CIF_DIR, CIF_FILE, CIF_ZIP
from benchmark.samples.csv import CSV
from benchmark.samples.extxyz import EXTXYZ

BUILTIN_FORMATS: tuple[SampleFormat, ...] = (CIF_DIR, CIF_ZIP, CIF_FILE, EXTXYZ, CSV, CDVAE_GEN, CDVAE_RECON, CDVAE_OPT)


def _entry(fmt: SampleFormat) -> Entry:
    return Entry(fmt.name, fmt.description, lambda: fmt)


@hookimpl
def benchmark_sample_formats() -> list[Entry]:
    """The built-in formats: CIF file / directory / zip, extended XYZ, CSV, CDVAE's eval_*.pt."""
    return [_entry(fmt) for fmt in BUILTIN_FORMATS]
