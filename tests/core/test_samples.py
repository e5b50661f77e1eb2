"""Sample files: CIF directories / zips / files, extended XYZ, CSV, and CDVAE's eval_*.pt files.

Every file here is made by the test itself in ``tmp_path``: round trips through the writers,
hand-written malformed inputs, and torch.save'd dicts in the published CDVAE layout (with a real
torch_geometric Batch and an argparse.Namespace inside), plus a pickle that would run a shell
command if it were ever unpickled without restriction.
"""

from __future__ import annotations

import argparse
import fractions
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmark.crystal import Crystal, to_pyg_batch
from benchmark.safeload import PickledRecord
from benchmark.samples import (
    SampleFileError,
    SampleSet,
    Unreadable,
    read_samples,
    sniff_format,
    write_cifs,
    write_extxyz,
)

# ----------------------------------------------------------------------------- crystals


def nacl() -> Crystal:
    """Conventional rock-salt NaCl cell (8 atoms)."""
    na = [[0, 0, 0], [0, 0.5, 0.5], [0.5, 0, 0.5], [0.5, 0.5, 0]]
    cl = [[0.5, 0.5, 0.5], [0.5, 0, 0], [0, 0.5, 0], [0, 0, 0.5]]
    return Crystal([11] * 4 + [17] * 4, na + cl, [5.64] * 3, [90.0] * 3, {"heat_ref": -2.125, "n_sites": 8}, label="NaCl")


def srtio3() -> Crystal:
    """5-atom cubic perovskite SrTiO3."""
    frac = [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]]
    return Crystal([38, 22, 8, 8, 8], frac, [3.905] * 3, [90.0] * 3, {"energy": -41.5, "phase": "cubic"}, label="SrTiO3")


def triclinic() -> Crystal:
    """A low-symmetry cell with awkward coordinates (near 1/3, 2/3 and outside [0, 1))."""
    frac = [[0.3333334, 0.66666, 0.1], [0.123456, 0.987654, 0.5], [1.25, -0.1, 0.75]]
    return Crystal([3, 8, 26], frac, [4.1, 5.3, 6.7], [81.5, 95.25, 103.0], {"score": 0.123456789012}, label="tri")


def sample_crystals() -> list[Crystal]:
    return [nacl(), srtio3(), triclinic()]


def assert_same_crystal(got: Crystal, want: Crystal, atol: float, check_properties: bool = True) -> None:
    assert isinstance(got, Crystal), got
    np.testing.assert_array_equal(got.atomic_numbers, want.atomic_numbers)
    diff = (got.frac_coords - want.frac_coords + 0.5) % 1.0 - 0.5  # equal modulo lattice translations
    np.testing.assert_allclose(diff, 0.0, atol=atol)
    np.testing.assert_allclose(got.lengths, want.lengths, atol=atol)
    np.testing.assert_allclose(got.angles, want.angles, atol=atol)
    if check_properties:
        assert set(got.properties) == set(want.properties)
        for key, value in want.properties.items():
            if isinstance(value, float):
                assert got.properties[key] == pytest.approx(value, rel=1e-12, abs=1e-12)
            else:
                assert got.properties[key] == value
                assert type(got.properties[key]) is type(value)


# ----------------------------------------------------------------------------- round trips


def test_extxyz_round_trip(tmp_path: Path) -> None:
    want = sample_crystals()
    out = write_extxyz(want, tmp_path / "samples.extxyz")
    assert out == tmp_path / "samples.extxyz"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["samples.extxyz"]  # no temp file left over
    got = read_samples(out)
    assert isinstance(got, SampleSet)
    assert got.fmt == "extxyz" and got.path == out and got.references is None
    assert len(got.entries) == len(want)
    for g, w in zip(got.entries, want):
        assert_same_crystal(g, w, atol=1e-6)  # energy comes back although ase moves it to a calculator
        assert g.label == w.label


def test_extxyz_overwrite_is_atomic_replacement(tmp_path: Path) -> None:
    target = tmp_path / "s.xyz"
    write_extxyz([nacl(), srtio3()], target)
    write_extxyz([srtio3()], target)
    got = read_samples(target)
    assert len(got.entries) == 1 and got.entries[0].label == "SrTiO3"
    assert [p.name for p in tmp_path.iterdir()] == ["s.xyz"]


@pytest.mark.parametrize("name", ["cifs", "cifs.zip"])
def test_cif_round_trip(tmp_path: Path, name: str) -> None:
    want = sample_crystals()
    out = write_cifs(want, tmp_path / name)
    got = read_samples(out)
    assert got.fmt == ("cif_zip" if name.endswith(".zip") else "cif_dir")
    assert len(got.entries) == len(want)
    for g, w in zip(got.entries, want):
        assert_same_crystal(g, w, atol=1e-5)
    assert [e.label for e in got.entries] == ["0_NaCl.cif", "1_SrTiO3.cif", "2_tri.cif"]


def test_write_cifs_names_by_formula_without_label_and_keeps_order_past_ten(tmp_path: Path) -> None:
    base = srtio3()
    many = [Crystal(base.atomic_numbers, base.frac_coords, base.lengths + 0.01 * i, base.angles, {"i": i}) for i in range(12)]
    out = write_cifs(many, tmp_path / "dir")
    names = sorted(p.name for p in out.iterdir())
    assert names[0] == "00_SrTiO3.cif" and names[-1] == "11_SrTiO3.cif"
    got = read_samples(out)
    assert [e.properties["i"] for e in got.entries] == list(range(12))
    np.testing.assert_allclose([e.lengths[0] for e in got.entries], [3.905 + 0.01 * i for i in range(12)], atol=1e-6)


def test_natural_name_order_in_directory(tmp_path: Path) -> None:
    cif = write_cifs([nacl()], tmp_path / "one")
    text = next(cif.iterdir()).read_text()
    d = tmp_path / "unpadded"
    d.mkdir()
    for i in (10, 2, 1):
        (d / f"{i}_x.cif").write_text(text)
    (d / "notes.txt").write_text("not a cif")
    got = read_samples(d)
    assert [e.label for e in got.entries] == ["1_x.cif", "2_x.cif", "10_x.cif"]


def test_single_cif_file_with_several_blocks(tmp_path: Path) -> None:
    out = write_cifs([nacl(), srtio3()], tmp_path / "d")
    texts = [p.read_text() for p in sorted(out.iterdir())]
    multi = tmp_path / "both.cif"
    multi.write_text(texts[0] + "\n" + texts[1].replace("data_SrTiO3", "data_second"))
    got = read_samples(multi)
    assert got.fmt == "cif"
    assert len(got.entries) == 2
    assert_same_crystal(got.entries[0], nacl(), atol=1e-5)
    assert_same_crystal(got.entries[1], srtio3(), atol=1e-5)
    assert read_samples(multi, limit=1).entries[0].atomic_numbers.tolist() == nacl().atomic_numbers.tolist()
    single = tmp_path / "one.cif"
    single.write_text(texts[1])
    only = read_samples(single)
    assert len(only.entries) == 1 and only.entries[0].label == "one.cif"


# ----------------------------------------------------------------------------- bad entries

BAD_CIF = "data_broken\n_cell_length_a 3.0\nloop_\n_atom_site_label\n"

DISORDERED_CIF = """data_disordered
_symmetry_space_group_name_H-M 'P 1'
_cell_length_a 4.0
_cell_length_b 4.0
_cell_length_c 4.0
_cell_angle_alpha 90
_cell_angle_beta 90
_cell_angle_gamma 90
loop_
 _symmetry_equiv_pos_as_xyz
 'x, y, z'
loop_
 _atom_site_type_symbol
 _atom_site_label
 _atom_site_fract_x
 _atom_site_fract_y
 _atom_site_fract_z
 _atom_site_occupancy
 Fe Fe1 0.0 0.0 0.0 0.5
 O O1 0.5 0.5 0.5 1.0
"""


def _zip_with(tmp_path: Path, extra: dict[str, str]) -> Path:
    good = write_cifs([nacl(), srtio3()], tmp_path / "good")
    path = tmp_path / "samples.zip"
    with zipfile.ZipFile(path, "w") as zf:
        files = sorted(good.iterdir())
        zf.writestr(files[0].name, files[0].read_text())
        for name, text in extra.items():
            zf.writestr(name, text)
        zf.writestr(files[1].name, files[1].read_text())
        zf.writestr("README.txt", "ignored")
    return path


def test_zip_with_one_malformed_cif(tmp_path: Path) -> None:
    path = _zip_with(tmp_path, {"bad.cif": BAD_CIF})
    got = read_samples(path)
    assert got.fmt == "cif_zip"
    assert [type(e) for e in got.entries] == [Crystal, Unreadable, Crystal]  # archive order kept
    bad = got.entries[1]
    assert bad.source == "samples.zip:bad.cif"
    assert bad.reason.startswith("malformed CIF: ") and len(bad.reason) > len("malformed CIF: ")
    assert "\n" not in bad.reason
    assert_same_crystal(got.entries[0], nacl(), atol=1e-5)
    assert_same_crystal(got.entries[2], srtio3(), atol=1e-5)
    assert len(got.crystals) == 2 and got.unreadable == [bad]


@pytest.mark.parametrize(
    "text, expected",
    [("", "malformed CIF: empty"), ("just some words\n", "malformed CIF: no data_ block"), (DISORDERED_CIF, "disordered")],
)
def test_bad_cif_entries_in_directory(tmp_path: Path, text: str, expected: str) -> None:
    d = write_cifs([nacl()], tmp_path / "cifs")
    (d / "9_bad.cif").write_text(text)
    got = read_samples(d)
    assert isinstance(got.entries[0], Crystal)
    assert isinstance(got.entries[1], Unreadable)
    assert got.entries[1].source == "cifs/9_bad.cif"
    assert expected in got.entries[1].reason


def test_extxyz_frame_without_cell_is_unreadable(tmp_path: Path) -> None:
    path = tmp_path / "mixed.xyz"
    write_extxyz([nacl()], path)
    with open(path, "a") as fh:
        fh.write('2\nProperties=species:S:1:pos:R:3 pbc="F F F"\nH 0.0 0.0 0.0\nH 0.0 0.0 0.74\n')
    got = read_samples(path)
    assert isinstance(got.entries[0], Crystal)
    assert isinstance(got.entries[1], Unreadable)
    assert got.entries[1].source == "mixed.xyz:frame 1"
    assert got.entries[1].reason.startswith("no periodic cell")


# ----------------------------------------------------------------------------- CSV


def test_csv_with_cif_column(tmp_path: Path) -> None:
    import pandas as pd

    out = write_cifs([nacl(), srtio3()], tmp_path / "d")
    texts = [p.read_text() for p in sorted(out.iterdir())]
    df = pd.DataFrame(
        {
            "material_id": ["mp-22862", "mp-bad", "mp-5229"],
            "formation_energy_per_atom": [-2.1, 0.5, -3.5],
            "band_gap": [5.0, np.nan, 1.8],
            "spacegroup.number": [225, 1, 221],
            "pretty_formula": ["NaCl", "X", "SrTiO3"],
            "cif": [texts[0], BAD_CIF, texts[1]],
        }
    )
    path = tmp_path / "samples.csv"
    df.to_csv(path)  # with the unnamed index column, as the published CSVs have
    got = read_samples(path)
    assert got.fmt == "csv"
    first, bad, last = got.entries
    assert_same_crystal(first, nacl(), atol=1e-5, check_properties=False)
    assert_same_crystal(last, srtio3(), atol=1e-5, check_properties=False)
    assert first.label == "mp-22862" and last.label == "mp-5229"
    # numeric columns become properties (the cif's own stored properties too); text columns do not
    assert first.properties["formation_energy_per_atom"] == pytest.approx(-2.1)
    assert first.properties["band_gap"] == pytest.approx(5.0)
    assert first.properties["spacegroup.number"] == 225 and isinstance(first.properties["spacegroup.number"], int)
    assert "pretty_formula" not in first.properties and "material_id" not in first.properties
    assert not any(k.startswith("Unnamed") for k in first.properties)
    assert isinstance(bad, Unreadable) and bad.source == "samples.csv:row 1" and bad.reason.startswith("malformed CIF")
    assert len(read_samples(path, limit=2).entries) == 2


def test_csv_without_material_id_uses_row_index(tmp_path: Path) -> None:
    import pandas as pd

    text = next(write_cifs([nacl()], tmp_path / "d").iterdir()).read_text()
    path = tmp_path / "plain.csv"
    pd.DataFrame({"cif": [text, text], "e": [1, 2]}).to_csv(path, index=False)
    got = read_samples(path)
    assert [e.label for e in got.entries] == ["0", "1"]
    assert [e.properties["e"] for e in got.entries] == [1, 2]


# ----------------------------------------------------------------------------- whole-file errors


def _assert_names_file(exc: SampleFileError, path: Path) -> None:
    message = str(exc)
    assert str(path) in message
    assert "\n" not in message


@pytest.mark.parametrize("name", ["empty.xyz", "empty.cif", "empty.csv", "eval_gen.pt", "empty.zip"])
def test_empty_file(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_bytes(b"")
    with pytest.raises(SampleFileError, match="empty") as info:
        read_samples(path)
    _assert_names_file(info.value, path)


def test_empty_directory_and_zip(tmp_path: Path) -> None:
    d = tmp_path / "nothing"
    d.mkdir()
    (d / "notes.txt").write_text("no cifs here")
    with pytest.raises(SampleFileError, match="empty") as info:
        read_samples(d)
    _assert_names_file(info.value, d)
    z = tmp_path / "nothing.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("notes.txt", "no cifs here")
    with pytest.raises(SampleFileError, match="empty") as info:
        read_samples(z)
    _assert_names_file(info.value, z)


PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x02\x00\x00\x00\x90wS\xde"


@pytest.mark.parametrize(
    "name, content",
    [
        ("picture.xyz", PNG),
        ("random.xyz", bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8))),
        ("text.xyz", b"this is not\nan xyz file at all\n"),
        ("picture.cif", PNG),
        ("nodata.cif", b"# just a comment\n_cell_length_a 3\n"),
        ("picture.csv", PNG),
        ("notzip.zip", b"plain text, not a zip archive\n"),
        ("picture.pt", PNG),
        ("eval_gen.pt", b"not a torch file"),
        ("mystery.dat", b"hello world\n"),
    ],
)
def test_wrong_kind_of_file(tmp_path: Path, name: str, content: bytes) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(SampleFileError) as info:
        read_samples(path)
    _assert_names_file(info.value, path)


def test_csv_without_cif_column(tmp_path: Path) -> None:
    path = tmp_path / "table.csv"
    path.write_text("material_id,band_gap\nmp-1,1.0\n")
    with pytest.raises(SampleFileError, match="cif") as info:
        read_samples(path)
    _assert_names_file(info.value, path)


def test_missing_path(tmp_path: Path) -> None:
    path = tmp_path / "does_not_exist.xyz"
    with pytest.raises(SampleFileError) as info:
        read_samples(path)
    _assert_names_file(info.value, path)
    with pytest.raises(SampleFileError):
        sniff_format(path)


def test_invalid_arguments(tmp_path: Path) -> None:
    path = write_extxyz([nacl()], tmp_path / "a.xyz")
    with pytest.raises(ValueError, match="unknown sample format"):
        read_samples(path, fmt="pdb")
    with pytest.raises(ValueError, match="limit"):
        read_samples(path, limit=-1)


# ----------------------------------------------------------------------------- sniffing, limit, fmt


def test_sniff_format(tmp_path: Path) -> None:
    xyz = write_extxyz([nacl()], tmp_path / "a.xyz")
    d = write_cifs([nacl()], tmp_path / "dir")
    z = write_cifs([nacl()], tmp_path / "a.zip")
    cif = tmp_path / "a.cif"
    cif.write_text(next(d.iterdir()).read_text())
    assert sniff_format(xyz) == "extxyz"
    assert sniff_format(d) == "cif_dir"
    assert sniff_format(z) == "cif_zip"
    assert sniff_format(cif) == "cif"
    # content decides when the suffix says nothing
    for src, want in ((xyz, "extxyz"), (cif, "cif"), (z, "cif_zip")):
        blind = tmp_path / f"blind_{want}"
        blind.write_bytes(src.read_bytes())
        assert sniff_format(blind) == want
        assert read_samples(blind).fmt == want


def test_limit_and_fmt_override(tmp_path: Path) -> None:
    xyz = write_extxyz(sample_crystals(), tmp_path / "a.xyz")
    assert [e.label for e in read_samples(xyz, limit=2).entries] == ["NaCl", "SrTiO3"]
    assert read_samples(xyz, limit=0).entries == []
    d = write_cifs(sample_crystals(), tmp_path / "dir")
    assert len(read_samples(d, limit=1).entries) == 1
    renamed = tmp_path / "frames.txt"
    renamed.write_bytes(xyz.read_bytes())
    assert len(read_samples(renamed, fmt="extxyz").entries) == 3


# ----------------------------------------------------------------------------- CDVAE .pt files


def _cdvae_arrays(evals: list[list[Crystal]]) -> dict[str, torch.Tensor]:
    """The published layout: a leading num_evals axis, atoms concatenated within an evaluation."""

    def stack(fn, dtype):
        return torch.stack([torch.as_tensor(np.concatenate([fn(c) for c in cs]), dtype=dtype) for cs in evals])

    return {
        "frac_coords": stack(lambda c: c.frac_coords, torch.float32),
        "atom_types": stack(lambda c: c.atomic_numbers, torch.long),
        "num_atoms": stack(lambda c: [c.num_atoms], torch.long),
        "lengths": stack(lambda c: c.lengths[None], torch.float32),
        "angles": stack(lambda c: c.angles[None], torch.float32),
    }


def _setting() -> argparse.Namespace:
    return argparse.Namespace(model_path="/runs/perov", tasks=["gen"], n_step_each=100, step_lr=np.float64(1e-4), label="")


def test_eval_gen_pt(tmp_path: Path) -> None:
    first = [nacl(), srtio3()]
    second = [srtio3(), nacl()]
    data = _cdvae_arrays([first, first])  # two evaluations of the same batch (torch.stack needs equal shapes)
    data.update(
        eval_setting=_setting(),
        time=12.5,
        all_frac_coords_stack=torch.zeros(2, 4, 13, 3),
        all_atom_types_stack=torch.zeros(2, 4, 13, dtype=torch.long),
    )
    path = tmp_path / "eval_gen.pt"
    torch.save(data, path)
    assert sniff_format(path) == "cdvae_gen"
    got = read_samples(path)
    assert got.fmt == "cdvae_gen" and got.references is None
    assert got.meta["num_evals"] == 2 and got.meta["batch_idx"] == 0 and got.meta["time"] == 12.5
    assert got.meta["eval_setting"]["n_step_each"] == 100 and got.meta["eval_setting"]["step_lr"] == pytest.approx(1e-4)
    assert len(got.entries) == 2
    for g, w in zip(got.entries, first):
        assert_same_crystal(g, w, atol=1e-5, check_properties=False)

    other = tmp_path / "eval_gen_two.pt"
    torch.save({**_cdvae_arrays([first, second]), "eval_setting": _setting()}, other)
    assert [c.num_atoms for c in read_samples(other, batch_idx=1).entries] == [5, 8]
    assert [c.num_atoms for c in read_samples(other, batch_idx=-1).entries] == [5, 8]
    with pytest.raises(SampleFileError, match="batch_idx"):
        read_samples(other, batch_idx=2)


def test_plain_tensor_file_loads_with_weights_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from benchmark import safeload

    def no(*args, **kwargs):
        raise AssertionError("the restricted unpickler was used")

    monkeypatch.setattr(safeload, "load_foreign", no)  # safe-loading path (a) reads it alone
    path = tmp_path / "generated.pt"  # no telling name, no input_data_batch -> gen
    torch.save(_cdvae_arrays([[nacl()]]), path)
    got = read_samples(path)
    assert got.fmt == "cdvae_gen"
    assert_same_crystal(got.entries[0], nacl(), atol=1e-5, check_properties=False)


@pytest.mark.parametrize("as_dict", [False, True])
def test_eval_recon_pt(tmp_path: Path, as_dict: bool) -> None:
    truth = [nacl(), srtio3(), triclinic()]
    recon = [srtio3(), srtio3(), nacl()]
    batch = to_pyg_batch(truth)
    if as_dict:
        batch = {k: batch[k] for k in ("frac_coords", "atom_types", "lengths", "angles", "num_atoms")}
    path = tmp_path / ("eval_recon.pt" if as_dict else "my_run.pt")  # the second is told by its input_data_batch
    torch.save({**_cdvae_arrays([recon]), "input_data_batch": batch, "eval_setting": _setting(), "time": 3.0}, path)
    got = read_samples(path)
    assert got.fmt == "cdvae_recon"
    assert got.references is not None and len(got.references) == len(got.entries) == 3
    for g, w in zip(got.entries, recon):
        assert_same_crystal(g, w, atol=1e-5, check_properties=False)
    for g, w in zip(got.references, truth):
        assert_same_crystal(g, w, atol=1e-5, check_properties=False)
    limited = read_samples(path, limit=2)
    assert len(limited.entries) == 2 and len(limited.references) == 2
    assert_same_crystal(limited.references[1], srtio3(), atol=1e-5, check_properties=False)
    # fmt override: read as generation, references ignored
    assert read_samples(path, fmt="cdvae_gen").references is None


def test_eval_opt_pt_keeps_step_major_order(tmp_path: Path) -> None:
    steps = [[nacl(), srtio3()], [srtio3(), nacl()], [nacl(), nacl()]]  # 3 saved steps x 2 starting points
    flat = [c for step in steps for c in step]
    path = tmp_path / "eval_opt.pt"
    torch.save({**_cdvae_arrays([flat]), "eval_setting": _setting()}, path)
    got = read_samples(path)
    assert got.fmt == "cdvae_opt"
    assert got.meta["num_crystals"] == 6
    assert [c.num_atoms for c in got.entries] == [c.num_atoms for c in flat]
    assert read_samples(path, limit=2).meta["num_crystals"] == 6


class _Pwn:
    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self):
        return (os.system, (f"echo pwned > {self.target}",))


def test_malicious_pickle_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "PWNED"
    path = tmp_path / "eval_gen.pt"
    torch.save({**_cdvae_arrays([[nacl()]]), "eval_setting": _setting(), "payload": _Pwn(marker)}, path)
    with pytest.raises(SampleFileError, match="refusing to load") as info:
        read_samples(path)
    _assert_names_file(info.value, path)
    assert not marker.exists()


def test_unlisted_harmless_global_is_refused_too(tmp_path: Path) -> None:
    path = tmp_path / "eval_gen.pt"
    torch.save({**_cdvae_arrays([[nacl()]]), "ratio": fractions.Fraction(1, 3)}, path)
    with pytest.raises(SampleFileError, match="refusing to load fractions.Fraction"):
        read_samples(path)


def test_pt_without_arrays_or_not_a_dict(tmp_path: Path) -> None:
    missing = tmp_path / "eval_gen.pt"
    torch.save({"frac_coords": torch.zeros(1, 1, 3)}, missing)
    with pytest.raises(SampleFileError, match="missing key"):
        read_samples(missing)
    listed = tmp_path / "list.pt"
    torch.save([torch.zeros(3)], listed)
    with pytest.raises(SampleFileError, match="not a dict"):
        read_samples(listed)


def test_pickled_record_falls_through_to_pyg_store() -> None:
    store = PickledRecord()
    store.__setstate__({"_mapping": {"frac_coords": 1, "num_atoms": 2}})
    rec = PickledRecord()
    rec.__setstate__(({"_store": store, "other": 3}, {"slot": 4}))
    assert rec.frac_coords == 1 and rec["num_atoms"] == 2 and rec.other == 3 and rec.slot == 4
    assert "frac_coords" in rec and "missing" not in rec
    with pytest.raises(AttributeError):
        rec.missing  # noqa: B018
    with pytest.raises(AttributeError):
        rec.__wrapped__  # noqa: B018
