"""The wheel a newcomer installs: built from the repository's files with setuptools, then
read as a zip. It must carry what SKR loads that is not Python (the MiniLM tokenizer and
its licence, the web templates and static files, py.typed) and an ``skr`` command that
points at code inside it."""

from __future__ import annotations

import ast
import configparser
import hashlib
import re
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
SRC = ROOT / "src"
TOKENIZER_DIR = "skr/adapters/minilm_tokenizer"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[zipfile.ZipFile]:
    """A wheel built from a copy of what the Dockerfile copies (pyproject, README, src), so
    the build leaves no build/ or egg-info in the checkout."""
    project = tmp_path_factory.mktemp("project")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, project / name)
    shutil.copytree(
        SRC, project / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info")
    )
    out = tmp_path_factory.mktemp("wheel")
    # the venv's own setuptools, offline: no isolated build environment to download
    build = ["wheel", "--quiet", "--no-deps", "--no-build-isolation", "--wheel-dir", str(out)]
    subprocess.run([sys.executable, "-m", "pip", *build, str(project)], check=True, timeout=120)
    [built] = out.glob("skr-*.whl")
    with zipfile.ZipFile(built) as archive:
        yield archive


def source_files(folder: str) -> set[str]:
    """Wheel names of the files under ``src/<folder>``."""
    return {
        path.relative_to(SRC).as_posix()
        for path in (SRC / folder).rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    }


def test_the_wheel_holds_the_tokenizer_its_licence_and_notice(wheel: zipfile.ZipFile) -> None:
    names = set(wheel.namelist())
    assert {f"{TOKENIZER_DIR}/{n}" for n in ("tokenizer.json", "LICENSE", "NOTICE")} <= names
    shipped = wheel.read(f"{TOKENIZER_DIR}/tokenizer.json")
    assert shipped == (SRC / TOKENIZER_DIR / "tokenizer.json").read_bytes()
    notice = wheel.read(f"{TOKENIZER_DIR}/NOTICE").decode()
    # the NOTICE's checksum is the file's: where it came from stays verifiable
    recorded = re.search(r"sha256 ([0-9a-f]{64})\s+tokenizer\.json", notice)
    assert recorded is not None
    assert recorded.group(1) == hashlib.sha256(shipped).hexdigest()
    licence = wheel.read(f"{TOKENIZER_DIR}/LICENSE").decode()
    assert "Apache License" in licence and "Version 2.0, January 2004" in licence


def test_the_wheel_holds_the_web_ui_and_py_typed(wheel: zipfile.ZipFile) -> None:
    names = set(wheel.namelist())
    templates = source_files("skr/entrypoints/web/templates")
    static = source_files("skr/entrypoints/web/static")
    assert templates and static
    assert templates <= names
    assert static <= names
    assert "skr/py.typed" in names


def test_the_skr_command_points_at_a_function_in_the_wheel(wheel: zipfile.ZipFile) -> None:
    [entry_points] = [n for n in wheel.namelist() if n.endswith(".dist-info/entry_points.txt")]
    parser = configparser.ConfigParser()
    parser.read_string(wheel.read(entry_points).decode())
    module, _, function = parser["console_scripts"]["skr"].partition(":")
    module_file = module.replace(".", "/") + ".py"
    assert module_file in wheel.namelist()
    tree = ast.parse(wheel.read(module_file))
    defined = {node.name for node in tree.body if isinstance(node, ast.FunctionDef)}
    assert function in defined
