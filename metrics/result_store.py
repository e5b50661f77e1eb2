"""Per-sample results of a large sample file in compact columns, fingerprints on disk.

A :class:`~benchmark.metrics.crystal_eval.CrystalResult` holds two fingerprints (61 + 132
float64, 1.5 KB) and a dozen Python objects: about 3 KB a sample, 300 MB for FTCP's 100,000
draws. :class:`CompactResults` keeps the small fields as typed arrays (a few dozen bytes a sample;
repeated strings such as formulas and reasons are stored once) and appends the fingerprints to an
anonymous temporary file, read back a block at a time. It is a ``Sequence[CrystalResult]``: the
metrics index and iterate it as they do a list, and each item is rebuilt with exactly the values
that were stored (float64 both ways), so every number is the one the list would give.
"""

from __future__ import annotations

import tempfile
from array import array
from collections.abc import Iterator, Sequence
from typing import Any, overload

import numpy as np

from benchmark.metrics.crystal_eval import CrystalResult

N_STRUCT_FP = 61
N_COMP_FP = 132
_ROW = N_STRUCT_FP + N_COMP_FP  # float64 values per sample in the fingerprint file
_FLOATS = ("density", "n_elems", "min_dist", "volume")  # optional numbers: value + present flag
_STRINGS = ("label", "formula", "fp_backend", "fp_fallback")  # repeated ones stored once (None allowed)
ITER_BLOCK = 1024  # samples whose fingerprints one read brings in while iterating (1.5 MB)


class CompactResults(Sequence[CrystalResult]):
    """An append-only sequence of CrystalResults (see the module doc).

    Args:
        spill_dir: where the fingerprint file lives (None: the system's temporary directory); it
            has no name and disappears when this object is closed or collected.
    """

    def __init__(self, spill_dir: str | None = None) -> None:
        self._n = 0
        self._index = array("q")
        self._n_atoms = array("q")
        self._flags = array("b")  # constructed, comp_valid, struct_valid, valid, has struct_fp, has comp_fp per sample
        self._floats = {name: array("d") for name in _FLOATS}
        self._present = {name: array("b") for name in _FLOATS}
        self._strings: dict[str, list[Any]] = {name: [] for name in _STRINGS}
        self._reasons: list[tuple[str, ...]] = []
        self._interned: dict[Any, Any] = {}
        self._fp = tempfile.TemporaryFile(dir=spill_dir)

    def _intern(self, value: Any) -> Any:
        return self._interned.setdefault(value, value)

    # ------------------------------------------------------------------ writing
    def extend(self, results: Sequence[CrystalResult]) -> None:
        """Append results (in sample order)."""
        if not results:
            return
        block = np.full((len(results), _ROW), np.nan, dtype=np.float64)
        for j, r in enumerate(results):
            self._index.append(int(r.index))
            self._n_atoms.append(int(r.n_atoms))
            has_s, has_c = r.struct_fp is not None, r.comp_fp is not None
            self._flags.extend((bool(r.constructed), bool(r.comp_valid), bool(r.struct_valid), bool(r.valid), has_s, has_c))
            if has_s:
                block[j, :N_STRUCT_FP] = r.struct_fp
            if has_c:
                block[j, N_STRUCT_FP:] = r.comp_fp
            for name in _FLOATS:
                v = getattr(r, name)
                self._present[name].append(v is not None)
                self._floats[name].append(np.nan if v is None else float(v))
            label = r.label
            self._strings["label"].append(label)  # nearly always unique: not interned
            for name in _STRINGS[1:]:
                self._strings[name].append(self._intern(getattr(r, name)))
            self._reasons.append(self._intern(tuple(r.reasons)))
        self._fp.seek(0, 2)
        self._fp.write(block.tobytes())
        self._n += len(results)

    def close(self) -> None:
        """Delete the fingerprint file (the object is unusable afterwards)."""
        self._fp.close()

    # ------------------------------------------------------------------ reading
    def _read_rows(self, start: int, stop: int) -> np.ndarray:
        """Fingerprint rows [start, stop) as an (m, 193) float64 array."""
        m = max(0, stop - start)
        if m == 0:
            return np.zeros((0, _ROW))
        self._fp.seek(start * _ROW * 8)
        buf = self._fp.read(m * _ROW * 8)
        return np.frombuffer(buf, dtype=np.float64).reshape(m, _ROW).copy()

    def _item(self, k: int, row: np.ndarray) -> CrystalResult:
        f = self._flags[6 * k : 6 * k + 6]

        def opt(name: str) -> float | None:
            return self._floats[name][k] if self._present[name][k] else None

        n_elems = opt("n_elems")
        return CrystalResult(
            index=self._index[k],
            label=self._strings["label"][k],
            n_atoms=self._n_atoms[k],
            formula=self._strings["formula"][k],
            constructed=bool(f[0]),
            comp_valid=bool(f[1]),
            struct_valid=bool(f[2]),
            valid=bool(f[3]),
            reasons=list(self._reasons[k]),
            struct_fp=row[:N_STRUCT_FP].copy() if f[4] else None,
            comp_fp=row[N_STRUCT_FP:].copy() if f[5] else None,
            density=opt("density"),
            n_elems=None if n_elems is None else int(n_elems),
            min_dist=opt("min_dist"),
            volume=opt("volume"),
            fp_backend=self._strings["fp_backend"][k],
            fp_fallback=self._strings["fp_fallback"][k],
        )

    def __len__(self) -> int:
        return self._n

    @overload
    def __getitem__(self, k: int) -> CrystalResult: ...

    @overload
    def __getitem__(self, k: slice) -> list[CrystalResult]: ...

    def __getitem__(self, k: Any) -> Any:
        if isinstance(k, slice):
            return [self[i] for i in range(*k.indices(self._n))]
        k = int(k)
        if k < 0:
            k += self._n
        if not 0 <= k < self._n:
            raise IndexError(f"result {k} of {self._n}")
        return self._item(k, self._read_rows(k, k + 1)[0])

    def __iter__(self) -> Iterator[CrystalResult]:
        for start in range(0, self._n, ITER_BLOCK):
            rows = self._read_rows(start, min(self._n, start + ITER_BLOCK))
            for j in range(len(rows)):
                yield self._item(start + j, rows[j])

    def column(self, name: str) -> list[Any]:
        """One field of every result, without rebuilding the results (``reason`` is the joined
        reasons, as :attr:`CrystalResult.reason`)."""
        flags = ("constructed", "comp_valid", "struct_valid", "valid")
        if name == "index":
            return list(self._index)
        if name == "n_atoms":
            return list(self._n_atoms)
        if name in flags:
            i = flags.index(name)
            return [bool(x) for x in self._flags[i::6]]
        if name == "reason":
            return ["; ".join(r) for r in self._reasons]
        if name in _STRINGS:
            return list(self._strings[name])
        if name in _FLOATS:
            vals, present = self._floats[name], self._present[name]
            if name == "n_elems":
                return [int(v) if p else None for v, p in zip(vals, present)]
            return [v if p else None for v, p in zip(vals, present)]
        raise KeyError(name)

    def fingerprint_blocks(self, size: int) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """The samples with both fingerprints, ``size`` file rows at a time: (their indices into
        this sequence, structure fps (m, 61), raw composition fps (m, 132))."""
        has = np.frombuffer(self._flags, dtype=np.int8).reshape(-1, 6)[:, 4:6].all(axis=1) if self._n else np.zeros(0, dtype=bool)
        for start in range(0, self._n, size):
            stop = min(self._n, start + size)
            keep = np.flatnonzero(has[start:stop])
            if len(keep) == 0:
                continue
            rows = self._read_rows(start, stop)[keep]
            yield keep + start, np.ascontiguousarray(rows[:, :N_STRUCT_FP]), np.ascontiguousarray(rows[:, N_STRUCT_FP:])
