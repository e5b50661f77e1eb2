"""benchmark.safeload: (a) torch's weights_only loader with allow-listed numpy globals, (b) the one
restricted unpickler for other projects' pickles, and the fallback from (a) to (b). Every file is
made here with torch.save / pickle; the published checkpoints are covered by the oracle tests."""

from __future__ import annotations

import argparse
import fractions
import io
import os
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmark import safeload
from benchmark.crystal import Crystal, to_pyg_batch
from benchmark.safeload import PickledRecord, RestrictedUnpickler, SafeLoadError


class _Pwn:
    """Unpickling this runs a shell command (if nothing stops it)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _nacl() -> Crystal:
    na = [[0, 0, 0], [0, 0.5, 0.5], [0.5, 0, 0.5], [0.5, 0.5, 0]]
    cl = [[0.5, 0.5, 0.5], [0.5, 0, 0], [0, 0.5, 0], [0, 0, 0.5]]
    return Crystal([11] * 4 + [17] * 4, na + cl, [5.64] * 3, [90.0] * 3)


def _forbid_foreign(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make path (b) fail loudly, to show that a load went through path (a)."""

    def no(*args: object, **kwargs: object) -> None:
        raise AssertionError("the restricted unpickler was used")

    monkeypatch.setattr(safeload, "load_foreign", no)


# ----------------------------------------------------------------------------- (a) weights_only


def test_weights_only_reads_tensors_and_numpy_values(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "ckpt.pt"
    data = {"state_dict": {"w": torch.arange(6.0).reshape(2, 3)}, "best": np.float64(0.25), "table": np.arange(4, dtype=np.int32),
            "hparams": {"sizes": [1, 2], "name": "x"}}
    torch.save(data, path)
    got = safeload.load_weights(path)
    assert torch.equal(got["state_dict"]["w"], data["state_dict"]["w"])
    assert got["best"] == 0.25 and isinstance(got["best"], np.float64)  # numpy scalars are allow-listed
    np.testing.assert_array_equal(got["table"], data["table"])
    assert got["hparams"] == data["hparams"]
    _forbid_foreign(monkeypatch)
    assert safeload.load(path)["hparams"] == data["hparams"]  # the policy takes path (a) when it can


def test_weights_only_refuses_other_globals_by_name(tmp_path: Path) -> None:
    path = tmp_path / "ns.pt"
    torch.save({"args": argparse.Namespace(lr=0.1)}, path)
    with pytest.raises(SafeLoadError, match="unsupported global argparse.Namespace") as info:
        safeload.load_weights(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)
    safeload.load_weights(path, extra_globals=[argparse.Namespace])  # a caller may allow more


def test_missing_file_is_an_os_error(tmp_path: Path) -> None:
    for load in (safeload.load_weights, safeload.load_foreign, safeload.load):
        with pytest.raises(FileNotFoundError):
            load(tmp_path / "nope.pt")


def test_not_a_torch_file(tmp_path: Path) -> None:
    path = tmp_path / "junk.pt"
    path.write_bytes(b"\x89PNG\r\n\x1a\n not a torch file")
    for load in (safeload.load_weights, safeload.load_foreign, safeload.load):
        with pytest.raises(SafeLoadError):
            load(path)


# ----------------------------------------------------------------------------- (b) restricted unpickler


@pytest.mark.parametrize("zip_format", [True, False], ids=["zip", "legacy"])
def test_foreign_classes_become_inert_records(tmp_path: Path, zip_format: bool) -> None:
    batch = to_pyg_batch([_nacl(), _nacl()])
    path = tmp_path / "eval_recon.pt"
    torch.save({"input_data_batch": batch, "eval_setting": argparse.Namespace(n_step_each=100, label="x"), "t": torch.ones(2)},
               path, _use_new_zipfile_serialization=zip_format)
    got = safeload.load(path)  # (a) refuses the Namespace, (b) reads it
    setting, rec = got["eval_setting"], got["input_data_batch"]
    assert isinstance(setting, PickledRecord) and setting.n_step_each == 100 and setting.to_dict()["label"] == "x"
    assert (setting._pickled_module, setting._pickled_name) == ("argparse", "Namespace")
    assert isinstance(rec, PickledRecord) and rec._pickled_module.startswith("torch_geometric")
    assert torch.equal(rec.num_atoms, batch.num_atoms) and torch.equal(rec["frac_coords"], batch.frac_coords)
    assert rec.get("no_such_field", "default") == "default"
    assert torch.equal(got["t"], torch.ones(2))


def test_python2_names_are_mapped_and_still_restricted() -> None:
    long_five = b"\x80\x02c__builtin__\nlong\nK\x05\x85R."  # __builtin__.long(5), as Python 2 pickles it
    assert RestrictedUnpickler(io.BytesIO(long_five)).load() == 5
    evil = b"\x80\x02c__builtin__\neval\nX\x04\x00\x00\x001+1\x85R."
    with pytest.raises(pickle.UnpicklingError, match="refusing to load builtins.eval from <pickle>"):
        RestrictedUnpickler(io.BytesIO(evil)).load()


def test_build_cannot_touch_an_allowed_function() -> None:
    # GLOBAL torch._utils._rebuild_tensor_v2; BUILD with slot state {"__defaults__": (1,)}
    name = b"__defaults__"
    data = (b"\x80\x02ctorch._utils\n_rebuild_tensor_v2\nN}X" + struct.pack("<I", len(name)) + name
            + b"(K\x01ts\x86b.")
    before = torch._utils._rebuild_tensor_v2.__defaults__
    RestrictedUnpickler(io.BytesIO(data)).load()
    assert torch._utils._rebuild_tensor_v2.__defaults__ == before


def test_calling_a_record_runs_nothing() -> None:
    # a pickle may call a record class or record instance with any arguments: only records result
    rec_cls = safeload._record_class("omegaconf.nodes", "AnyNode")
    rec = rec_cls("rm -rf /", flags=1)
    assert isinstance(rec, PickledRecord) and rec.pickled_args == ("rm -rf /",) and rec.flags == 1
    again = rec("anything")
    assert type(again) is rec_cls and again is not rec


# ----------------------------------------------------------------------------- refusing code


@pytest.mark.parametrize("zip_format", [True, False], ids=["zip", "legacy"])
def test_pickle_that_would_run_code_is_refused_on_every_path(tmp_path: Path, zip_format: bool) -> None:
    marker = tmp_path / "PWNED"
    path = tmp_path / "evil.pt"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "payload": _Pwn(marker)}, path, _use_new_zipfile_serialization=zip_format)
    with pytest.raises(SafeLoadError, match="unsupported global"):
        safeload.load_weights(path)
    for load in (safeload.load_foreign, safeload.load):
        with pytest.raises(SafeLoadError, match=r"refusing to load (posix|os|nt)\.system from evil\.pt"):
            load(path)
    with pytest.raises(pickle.UnpicklingError, match="refusing to load"):
        RestrictedUnpickler(io.BytesIO(pickle.dumps(_Pwn(marker)))).load()
    assert not marker.exists()


def test_unlisted_harmless_global_is_refused_too(tmp_path: Path) -> None:
    path = tmp_path / "f.pt"
    torch.save({"ratio": fractions.Fraction(1, 3)}, path)
    with pytest.raises(SafeLoadError, match="refusing to load fractions.Fraction"):
        safeload.load(path)
