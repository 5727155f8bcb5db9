"""The shipped package, as a user installs it: built sdist and wheel, their metadata, and the
wheel installed into fresh venvs with one extra each (see wheelhouse.py).

These fail if the wheel lacks a module, an extra lacks a dependency its adapter needs, an
adapter imports the other framework, the metadata would not render on PyPI, or the pytest
plugin is not registered for users.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile
import textwrap
import zipfile
from pathlib import Path

import pytest

from nebula_core import __version__
from nebula_core._transport import USER_AGENT
from tests.wheelhouse import ROOT, Wheelhouse, clean_env

pytestmark = pytest.mark.wheel

PACKAGES = [
    "nebula_core",
    "langchain_nebula",
    "llama_index_nebula",
    "llama_index/embeddings/nebula",
]
SMOKE = Path(__file__).with_name("installed_smoke.py")


def _tracked_modules() -> set[str]:
    """Every file of the import packages that git tracks (what the wheel must carry): modules,
    py.typed markers and data files such as the tokenizer vocabulary."""
    listed = subprocess.run(
        ["git", "ls-files", *PACKAGES], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    return set(listed)


def _metadata(wheel: Path) -> str:
    with zipfile.ZipFile(wheel) as archive:
        return archive.read(f"nebulablock_embeddings-{__version__}.dist-info/METADATA").decode()


def test_one_version_everywhere(wheelhouse: Wheelhouse) -> None:
    """nebula_core/_version.py is the only place the version is written."""
    pyproject = (ROOT / "pyproject.toml").read_text("utf-8")
    assert '[tool.hatch.version]\npath = "nebula_core/_version.py"' in pyproject
    assert 'dynamic = ["version"]' in pyproject
    repeats = [
        path
        for path in _tracked_modules() | {"pyproject.toml"}
        if path.endswith((".py", ".toml"))
        and path != "nebula_core/_version.py"
        and __version__ in (ROOT / path).read_text("utf-8")
    ]
    assert not repeats, f"the version is written by hand in {repeats}"
    assert f"\nVersion: {__version__}\n" in _metadata(wheelhouse.wheel)
    assert f"nebulablock-embeddings/{__version__} (python-requests)" == USER_AGENT
    assert wheelhouse.wheel.name == f"nebulablock_embeddings-{__version__}-py3-none-any.whl"
    changelog = (ROOT / "CHANGELOG.md").read_text("utf-8")
    assert "## [Unreleased]" in changelog
    assert f"## [{__version__}]" in changelog


def test_metadata_renders_and_classifiers_are_known(wheelhouse: Wheelhouse) -> None:
    sdist, wheel = wheelhouse.dists()
    done = subprocess.run(
        [sys.executable, "-m", "twine", "check", "--strict", str(sdist), str(wheel)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    from trove_classifiers import classifiers  # noqa: PLC0415 - a dev dependency

    metadata = _metadata(wheel).splitlines()
    declared = {line.removeprefix("Classifier: ") for line in metadata if "Classifier: " in line}
    assert declared <= classifiers, declared - classifiers
    assert {f"Programming Language :: Python :: 3.{minor}" for minor in range(10, 14)} <= declared
    assert "Project-URL: Homepage, https://www.nebulablock.com" in metadata


def test_wheel_holds_every_module_the_license_and_the_plugin(wheelhouse: Wheelhouse) -> None:
    with zipfile.ZipFile(wheelhouse.wheel) as wheel:
        names = set(wheel.namelist())
        info = f"nebulablock_embeddings-{__version__}.dist-info"
        entry_points = wheel.read(f"{info}/entry_points.txt").decode()
        metadata = wheel.read(f"{info}/METADATA").decode()
        shipped_license = wheel.read(f"{info}/licenses/LICENSE").decode()
    missing = _tracked_modules() - names
    assert not missing, f"the wheel lacks {sorted(missing)}"
    assert shipped_license == (ROOT / "LICENSE").read_text("utf-8")
    assert shipped_license.startswith("MIT License")
    assert "License-Expression: MIT" in metadata
    assert "[pytest11]\nnebula_emulator = nebula_core.testing.pytest_plugin" in entry_points
    assert not [name for name in names if name.startswith(("tests/", "benchmarks/"))]
    # llama_index/ and llama_index/embeddings/ are namespace packages owned by nobody
    assert "llama_index/__init__.py" not in names
    assert "llama_index/embeddings/__init__.py" not in names


def test_sdist_holds_the_sources_license_and_tests_but_no_junk(wheelhouse: Wheelhouse) -> None:
    sdist, _ = wheelhouse.dists()
    with tarfile.open(sdist) as archive:
        top = f"nebulablock_embeddings-{__version__}/"
        names = {name.removeprefix(top) for name in archive.getnames()}
    assert _tracked_modules() <= names
    assert {"LICENSE", "CHANGELOG.md", "README.md", "pyproject.toml", "tests/conftest.py"} <= names
    junk = [n for n in names if n.startswith((".venv", ".git/", "dist/")) or "__pycache__" in n]
    assert not junk


@pytest.mark.parametrize(
    ("extra", "line"),
    [
        ("core", "pip install nebulablock-embeddings"),
        ("langchain", "pip install 'nebulablock-embeddings[langchain]'"),
        ("llama-index", "pip install 'nebulablock-embeddings[llama-index]'"),
    ],
)
def test_installed_wheel_embeds_with_only_its_extra(
    wheelhouse: Wheelhouse, tmp_path: Path, extra: str, line: str
) -> None:
    venv = wheelhouse.venv(line)
    done = venv.run(str(SMOKE), extra, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[-1]) == {
        "extra": extra,
        "documents": 2,
        "width": 1024,
        "query_width": 1024,
        "requests": 2 if extra != "core" else 1,
    }


USER_TESTS = textwrap.dedent(
    """
    import pytest
    from nebula_core import NebulaClient


    def test_the_client_reads_the_emulator_from_the_environment(nebula_env):
        result = NebulaClient().embed(["first chunk", "second chunk"])
        assert result.embeddings == [
            nebula_env.embedding("first chunk"), nebula_env.embedding("second chunk")
        ]


    @pytest.mark.nebula_emulator(max_inputs_per_request=2)
    def test_the_marker_configures_the_emulator(nebula_env):
        texts = ["one", "two", "three"]
        result = NebulaClient().embed(texts, batch_size=3)  # 413: over the cap of 2
        assert result.embeddings == [nebula_env.embedding(text) for text in texts]
        statuses = [request.status for request in nebula_env.embeddings_requests]
        assert statuses == [413, 200, 200]  # the 413, then the batch in two halves
    """
)


def test_pytest_plugin_works_in_a_users_project(wheelhouse: Wheelhouse, tmp_path: Path) -> None:
    """A throwaway project with only the wheel and pytest: the fixtures and the marker come
    from the installed entry point (`--strict-markers` fails on an unregistered marker)."""
    venv = wheelhouse.venv("pip install nebulablock-embeddings pytest")
    (tmp_path / "test_users_code.py").write_text(USER_TESTS, "utf-8")
    done = venv.run(
        "-m", "pytest", "-q", "-p", "no:cacheprovider", "--strict-markers", cwd=tmp_path
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 passed" in done.stdout
    assert clean_env().get("PYTHONPATH") is None
