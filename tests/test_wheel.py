"""The project as a user installs it: a wheel, installed into a fresh venv, offline.

How, and why this way:

* The wheel is built from a copy of exactly what the build reads (pyproject.toml,
  README.md, MANIFEST.in, docs/ and the folders named in
  ``[tool.setuptools.package-dir]``) with
  ``pip wheel --no-deps --no-build-isolation --no-index``: this environment's
  setuptools builds it, no index is asked, and no ``build/`` or ``*.egg-info`` is
  left in the repository (a stale ``build/lib`` there could put deleted modules
  into a wheel).
* The wheel goes into a plain venv (no pip, no ``--system-site-packages``), installed
  by this environment's pip (``pip --python VENV/bin/python install --no-deps
  --no-index``), so the venv holds ldw from the wheel and nothing else.
* The dependencies (torch, duckdb, streamlit, ...) cannot be downloaded offline. A
  ``.pth`` file in the venv's site-packages appends this environment's
  site-packages folders to ``sys.path``. A line of a ``.pth`` file that names a
  folder only adds the folder: the ``.pth`` files inside it are not run, so the
  editable install of this checkout (a path finder that such a ``.pth`` file
  installs) stays inactive in the venv, and the venv's own site-packages, holding
  the wheel's ldw, comes first on the path.
* Every command runs outside the repository and without ``PYTHONPATH``, so the
  repository's folders (``app/``, ``pipelines/``, ...) cannot be imported by accident.

``pip install -e .`` is not tested again here: the whole suite runs on an editable
install (the README's test command installs it that way).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
GENERIC_NAMES = ("app", "pipelines", "probe", "warehouse")

pytestmark = pytest.mark.slow


def _setuptools_config() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]


def _run(command: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=600, check=False)


def _checked(command: list[str], cwd: Path) -> str:
    result = _run(command, cwd)
    assert result.returncode == 0, f"{' '.join(command)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result.stdout


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of what a build reads: pyproject.toml, README.md, MANIFEST.in, docs/ and the package folders."""
    root = tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "README.md", "MANIFEST.in"):
        shutil.copy2(REPO / name, root / name)
    for folder in {"docs", *_setuptools_config()["package-dir"].values()}:
        shutil.copytree(REPO / folder, root / folder, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return root


@pytest.fixture(scope="module")
def wheel(source: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel built offline from the copy."""
    dist = tmp_path_factory.mktemp("dist")
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input"]
    _checked([*pip, "wheel", str(source), "--no-deps", "--no-build-isolation", "--no-index", "-w", str(dist)], dist)
    wheels = list(dist.glob("*.whl"))
    assert len(wheels) == 1, f"expected one wheel, got {wheels}"
    return wheels[0]


@pytest.fixture(scope="module")
def venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A plain venv with the wheel installed and this environment's dependencies visible through a .pth file."""
    root = tmp_path_factory.mktemp("venv")
    _checked([sys.executable, "-m", "venv", "--without-pip", str(root)], root)
    python = root / "bin" / "python"
    purelib = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    site = Path(_checked([str(python), "-c", purelib], root).strip())
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input", "--python", str(python)]
    _checked([*pip, "install", "--no-deps", "--no-index", str(wheel)], root)
    dependencies = [p for p in sys.path if p.endswith(("site-packages", "dist-packages")) and Path(p).is_dir()]
    (site / "ldw_test_dependencies.pth").write_text("".join(f"{p}\n" for p in dependencies))
    return root


def _repository_packages() -> dict[str, str]:
    """Every package folder of the repository, as the path of its ``__init__.py`` in a wheel -> its folder."""
    expected = {}
    for package, folder in _setuptools_config()["package-dir"].items():
        for init in (REPO / folder).rglob("__init__.py"):
            in_wheel = [*package.split("."), *init.relative_to(REPO / folder).parts]
            expected["/".join(in_wheel)] = str(init.parent.relative_to(REPO))
    return expected


def test_wheel_installs_only_ldw_with_every_package_folder(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    top = {name.split("/")[0] for name in names}
    dist_info = {t for t in top if t.endswith(".dist-info")}
    assert len(dist_info) == 1 and top - dist_info == {"ldw"}, f"top-level entries of the wheel: {sorted(top)}"
    packages = _repository_packages()
    assert "ldw/cli/__init__.py" in packages and "ldw/probe/__init__.py" in packages  # the walk found the folders
    missing = sorted(folder for path, folder in packages.items() if path not in names)
    assert not missing, f"package folders missing from the wheel (add them to [tool.setuptools] packages): {missing}"
    modules = sorted(
        "/".join([*package.split("."), *p.relative_to(REPO / folder).parts])
        for package, folder in _setuptools_config()["package-dir"].items()
        for p in (REPO / folder).rglob("*.py")
        if "__pycache__" not in p.parts
    )
    assert sorted(n for n in names if n.endswith(".py")) == modules


def test_installed_cli_and_import_name(venv: Path, tmp_path: Path) -> None:
    python, ldw = str(venv / "bin" / "python"), str(venv / "bin" / "ldw")
    top = _checked([ldw, "--help"], tmp_path)
    assert "Usage: ldw [OPTIONS] COMMAND" in top and "demo" in top
    assert "Usage: ldw demo [OPTIONS]" in _checked([ldw, "demo", "--help"], tmp_path)
    assert Path(_checked([python, "-c", "import ldw; print(ldw.__file__)"], tmp_path).strip()).is_relative_to(venv)
    packages = _setuptools_config()["packages"]
    code = "import importlib, sys\nfor name in sys.argv[1:]: print(importlib.import_module(name).__file__)"
    files = _checked([python, "-c", code, *packages], tmp_path).split()
    outside = [f for f in files if not Path(f).is_relative_to(venv)]
    assert len(files) == len(packages) and not outside, f"imported from outside the venv: {outside}"


@pytest.mark.parametrize("name", GENERIC_NAMES)
def test_no_generic_top_level_name_is_importable(venv: Path, tmp_path: Path, name: str) -> None:
    result = _run([str(venv / "bin" / "python"), "-c", f"import {name}"], tmp_path)
    assert result.returncode == 1 and f"No module named '{name}'" in result.stderr, result.stderr[-2000:]


def test_source_distribution_ships_the_user_documents(source: Path, tmp_path: Path) -> None:
    code = "import sys; from setuptools import build_meta; print(build_meta.build_sdist(sys.argv[1]))"
    name = _checked([sys.executable, "-c", code, str(tmp_path)], source).strip().splitlines()[-1]
    with tarfile.open(tmp_path / name) as sdist:
        shipped = {"/".join(n.split("/")[1:]) for n in sdist.getnames()}
    documents = {str(p.relative_to(REPO)) for p in (REPO / "docs").glob("*.md")}
    assert "docs/methods.md" in documents and documents <= shipped, sorted(documents - shipped)
