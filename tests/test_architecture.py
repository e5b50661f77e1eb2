"""The architecture of docs/architecture.md, checked: the import-linter contracts of pyproject.toml
(data flows one way, a layer imports only those below it, models and metrics are independent,
the core imports no plugin folder), and no module reaching into another package's private names.

The plugin folders (models/, tasks/, metrics/, datasets/) are installed under ``benchmark.`` by
setuptools' package-dir mapping, which an editable install resolves at import time but
import-linter cannot see on disk; so the checks run on a tree of symbolic links laid out as the
installed package is.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

PACKAGE_DIRS: dict[str, str] = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]


def _installed_layout(root: Path) -> Path:
    """``root/benchmark`` with the core's files and the plugin folders linked in where the
    package-dir mapping installs them."""
    pkg = root / "benchmark"
    pkg.mkdir(parents=True)
    for item in (REPO / "benchmark").iterdir():
        if item.name != "__pycache__":
            (pkg / item.name).symlink_to(item)
    for name, folder in PACKAGE_DIRS.items():
        if name != "benchmark":
            (pkg / name.split(".", 1)[1]).symlink_to(REPO / folder)
    return root


def _lint(root: Path) -> subprocess.CompletedProcess[str]:
    script = Path(sys.executable).with_name("lint-imports")
    assert script.is_file(), "import-linter is a test dependency (pip install -e '.[test]')"
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run([str(script), str(REPO / "pyproject.toml"), "--no-cache"], cwd=root, env=env,
                          capture_output=True, text=True, timeout=300)


def test_import_contracts_are_kept(tmp_path: Path) -> None:
    proc = _lint(_installed_layout(tmp_path))
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "0 broken" in proc.stdout


def test_a_back_edge_breaks_the_contracts(tmp_path: Path) -> None:
    """The contracts are not vacuous: a model importing a metric is reported."""
    root = _installed_layout(tmp_path / "tree")
    models = tmp_path / "models"  # a copy of models/ with one planted back-edge
    subprocess.run(["cp", "-r", str(REPO / "models"), str(models)], check=True)
    (models / "planted_back_edge.py").write_text("import benchmark.metrics.generation  # noqa: F401\n")
    (root / "benchmark" / "models").unlink()
    (root / "benchmark" / "models").symlink_to(models)
    proc = _lint(root)
    assert proc.returncode != 0
    assert "benchmark.models.planted_back_edge -> benchmark.metrics.generation" in proc.stdout


# ---------------------------------------------------------------------------- private names
def _module_of(path: Path) -> str:
    """The installed module name of a source file."""
    rel = path.relative_to(REPO)
    for name, folder in sorted(PACKAGE_DIRS.items(), key=lambda kv: -len(kv[1])):
        if rel.parts[: len(Path(folder).parts)] == Path(folder).parts:
            parts = [*name.split("."), *rel.parts[len(Path(folder).parts):]]
            break
    else:  # pragma: no cover
        raise ValueError(path)
    parts[-1] = parts[-1][:-3]
    return ".".join(p for p in parts if p != "__init__")


def _path_of(module: str) -> Path | None:
    """Where a ``benchmark.*`` module or package lives in the checkout (None: not found)."""
    for name, folder in sorted(PACKAGE_DIRS.items(), key=lambda kv: -len(kv[0])):
        if module == name or module.startswith(name + "."):
            rest = module[len(name):].lstrip(".").split(".") if module != name else []
            base = REPO / folder / Path(*rest) if rest else REPO / folder
            for candidate in (base, base.with_suffix(".py")):
                if candidate.exists():
                    return candidate
            return None
    return None


def _owner(module: str) -> str:
    """The unit that owns a module's private names: a model's folder (``benchmark.models.cdvae``),
    else the package itself (for a package) or the package the module is in."""
    parts = module.split(".")
    if parts[:2] == ["benchmark", "models"] and len(parts) >= 3 and (REPO / "models" / parts[2]).is_dir():
        return ".".join(parts[:3])
    path = _path_of(module)
    if path is not None and path.is_dir():
        return module
    return ".".join(parts[:-1]) if len(parts) > 1 else module


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _sources() -> list[Path]:
    out = []
    for folder in set(PACKAGE_DIRS.values()):
        out.extend(p for p in (REPO / folder).rglob("*.py") if "__pycache__" not in p.parts)
    return sorted(out)


def private_imports(path: Path, source: str | None = None) -> list[str]:
    """``from X import _y`` and ``X._y`` in ``path`` (or in ``source``, as if it were that file)
    where X belongs to another unit than the file (see :func:`_owner`)."""
    me = _module_of(path)
    mine = _owner(me)
    package = me if path.name == "__init__.py" else me.rsplit(".", 1)[0]
    tree = ast.parse(source if source is not None else path.read_text(encoding="utf-8"))
    found: list[str] = []
    aliases: dict[str, str] = {}  # local name -> the benchmark module it is
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative import
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            if not base.startswith("benchmark"):
                continue
            for alias in node.names:
                if _is_private(alias.name) and _owner(base) != mine:
                    found.append(f"{me}:{node.lineno} imports {alias.name} from {base}")
                if _path_of(f"{base}.{alias.name}") is not None:  # a module imported by name
                    aliases[alias.asname or alias.name] = f"{base}.{alias.name}"
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("benchmark") and alias.asname:
                    aliases[alias.asname] = alias.name
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and _is_private(node.attr) and isinstance(node.value, ast.Name) and node.value.id in aliases:
            if _owner(aliases[node.value.id]) != mine:
                found.append(f"{me}:{node.lineno} uses {node.value.id}.{node.attr}")
    return found


def test_no_module_reaches_into_another_packages_private_names() -> None:
    problems = [p for path in _sources() for p in private_imports(path)]
    assert not problems, "\n".join(problems)


def test_the_private_name_check_finds_one() -> None:
    """The check is not vacuous: planted reaches into another model folder and another package
    are found; a package's own private names are not."""
    planted = REPO / "models" / "dp_cdvae" / "planted.py"  # read from the source below, never written
    source = ("from benchmark.models.cdvae.plugin import _secret\nfrom benchmark.tasks import runner\nrunner._hidden()\n"
              "from benchmark.models.dp_cdvae.network import _own_helper\n")
    found = private_imports(planted, source)
    assert any("imports _secret from benchmark.models.cdvae.plugin" in f for f in found), found
    assert any("uses runner._hidden" in f for f in found), found
    assert not any("_own_helper" in f for f in found), found
