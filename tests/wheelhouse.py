"""The package as users get it: the wheel built once per test session, installed into fresh
virtual environments, one per install line, holding only what that line names.

An install line is what the docs tell a user to type, e.g.
`pip install 'nebulablock-embeddings[langchain]' langchain-text-splitters`: the distribution
(with its extras) is replaced by the freshly built wheel, the other requirements are installed
as written. Virtual environments are memoized per line for the session, so the README blocks,
the smoke scripts and the notebooks that share a line share one environment. pip's own cache
(and this machine's local package index, if pip is configured with one) makes repeated
installs cheap; nothing is installed into the test runner's own environment.

The work directory is under /dev/shm when it is writable (venvs are many small files), else the
system temp directory; it is removed at the end of the session.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DISTRIBUTION = "nebulablock-embeddings"
_REQUIREMENT_OF_US = re.compile(rf"^{re.escape(DISTRIBUTION)}(?P<extras>\[[a-z0-9,\- ]+\])?$")
_ENV_LEAKS = ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV", "PYTHONSAFEPATH")


class InstallLineError(ValueError):
    """An install line that is not `pip install` of this distribution plus requirements."""


@dataclass(frozen=True)
class InstallLine:
    """`pip install <this distribution>[extras] <requirements...>`, parsed."""

    text: str
    extras: str  # "" or "[langchain]"
    requirements: tuple[str, ...]

    @classmethod
    def parse(cls, text: str) -> InstallLine:
        words = shlex.split(text.strip())
        if words[:2] != ["pip", "install"]:
            raise InstallLineError(f"{text!r} does not start with `pip install`")
        ours = [word for word in words[2:] if _REQUIREMENT_OF_US.match(word)]
        if len(ours) != 1:
            raise InstallLineError(f"{text!r} must name {DISTRIBUTION} (with its extras) once")
        extras = _REQUIREMENT_OF_US.match(ours[0]).group("extras") or ""  # type: ignore[union-attr]
        others = tuple(word for word in words[2:] if word != ours[0])
        if any(word.startswith("-") for word in others):
            raise InstallLineError(f"{text!r}: pip options are not part of an install line")
        return cls(text=shlex.join(words), extras=extras, requirements=others)


def clean_env(**extra: str) -> dict[str, str]:
    """The environment for a process in a test venv: nothing that would put the repository
    (or the runner's own environment) on its sys.path, no ambient NEBULA_* settings."""
    env = {
        name: value
        for name, value in os.environ.items()
        if name not in _ENV_LEAKS and not name.startswith("NEBULA_")
    }
    env["PYTHONNOUSERSITE"] = "1"
    env.update(extra)
    return env


@dataclass(frozen=True)
class Venv:
    """A virtual environment holding the wheel and what one install line names."""

    path: Path
    line: InstallLine

    @property
    def python(self) -> Path:
        return self.path / "bin" / "python"

    def run(
        self, *args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 600
    ) -> subprocess.CompletedProcess[str]:
        """Run the venv's Python with `args` in `cwd`; never raises on a non-zero exit."""
        return subprocess.run(
            [str(self.python), *args],
            cwd=cwd,
            env=env if env is not None else clean_env(),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )


def _pip(*args: str) -> None:
    """pip of the runner's own environment, driving another interpreter (`--python`), so the
    test venvs need no pip of their own (creating them skips ensurepip)."""
    command = [sys.executable, "-m", "pip", *args]
    done = subprocess.run(command, capture_output=True, text=True, env=clean_env(), check=False)
    if done.returncode != 0:
        raise RuntimeError(
            f"{shlex.join(command)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
        )


class Wheelhouse:
    """The session's wheel and sdist, and its virtual environments, one per install line."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self._lock = threading.RLock()  # venv() calls dists() under it
        self._dists: tuple[Path, Path] | None = None
        self._venvs: dict[str, Venv] = {}

    @classmethod
    def create(cls) -> Wheelhouse:
        shm = Path("/dev/shm")
        base = shm if shm.is_dir() and os.access(shm, os.W_OK) else None
        return cls(Path(tempfile.mkdtemp(prefix="nebula-wheelhouse-", dir=base)))

    def remove(self) -> None:
        shutil.rmtree(self.workdir, ignore_errors=True)

    def dists(self) -> tuple[Path, Path]:
        """(sdist, wheel), built from the working tree with `python -m build`, once."""
        with self._lock:
            if self._dists is None:
                out = self.workdir / "dist"
                command = [sys.executable, "-m", "build", "--outdir", str(out), str(ROOT)]
                done = subprocess.run(
                    command, capture_output=True, text=True, env=clean_env(), check=False
                )
                if done.returncode != 0:
                    raise RuntimeError(f"python -m build failed:\n{done.stdout}\n{done.stderr}")
                [sdist] = out.glob("*.tar.gz")
                [wheel] = out.glob("*.whl")
                self._dists = (sdist, wheel)
            return self._dists

    @property
    def wheel(self) -> Path:
        return self.dists()[1]

    def venv(self, line: str | InstallLine, *, harness: tuple[str, ...] = ()) -> Venv:
        """A fresh venv for `line` (memoized per line and harness). `harness` names packages
        the test machinery itself needs in the venv (ipykernel for notebooks), not the user."""
        parsed = InstallLine.parse(line) if isinstance(line, str) else line
        key = parsed.text + "".join(f" +{name}" for name in harness)
        with self._lock:
            if key not in self._venvs:
                path = self.workdir / f"venv-{len(self._venvs)}"
                subprocess.run(
                    [sys.executable, "-m", "venv", "--without-pip", str(path)],
                    check=True,
                    env=clean_env(),
                )
                _pip(
                    "--python",
                    str(path / "bin" / "python"),
                    "install",
                    "--quiet",
                    "--no-compile",  # bytecode is written on import, for what runs
                    f"{self.wheel}{parsed.extras}",
                    *parsed.requirements,
                    *harness,
                )
                self._venvs[key] = Venv(path, parsed)
            return self._venvs[key]
