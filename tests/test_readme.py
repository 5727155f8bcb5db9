"""Every Python block of README.md and docs/*.md runs after only the install line it declares.

The convention (docs/development.md): a ```python block opens with the install line a user
types before running it, as a comment:

    # pip install 'nebulablock-embeddings[langchain]' langchain-text-splitters

The block then runs as a script in a fresh virtual environment holding the built wheel with
that extra and the packages the line names, nothing else (one venv per distinct line, see
wheelhouse.py), with NEBULA_API_KEY / NEBULA_BASE_URL pointing at an emulator. A block that
defines `test_*` functions (an example of a user's own tests) is run with pytest in that venv,
so the line must name pytest; the `nebula_env` / `nebula_emulator` fixtures then come from the
installed plugin. A fragment that cannot run on its own (it continues an earlier block, or needs
a cluster) opens with `# not run: <why>` instead; it must still compile. Keep those rare.
"""

from __future__ import annotations

import ast
import inspect
import re
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

from nebula_core.testing import NebulaEmulator
from tests.wheelhouse import ROOT, InstallLine, InstallLineError, Wheelhouse, clean_env

FENCE = re.compile(
    r"^(?P<indent>[ \t]*)```(?:python|py|python3)[ \t]*\n(?P<code>.*?)^(?P=indent)```[ \t]*$",
    re.M | re.S,
)
INSTALL = re.compile(r"^#\s*(?P<line>pip install .*?)\s*$")
NOT_RUN = re.compile(r"^#\s*not run:\s*(?P<why>\S.*)$")
CONVENTION = (
    "a Python block must open with the install line it needs, as a comment "
    "(`# pip install 'nebulablock-embeddings[langchain]' other-package`), or with "
    "`# not run: <why>` for a fragment; see docs/development.md"
)
# Runs a block that uses top-level `await` (as notebooks allow) like a script.
AWAIT_RUNNER = (
    "import ast, asyncio, sys; path = sys.argv[1]; "
    "code = compile(open(path).read(), path, 'exec', flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT); "
    "asyncio.run(eval(code, {'__name__': '__main__', '__file__': path}))"
)


def pages() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


@dataclass(frozen=True)
class Block:
    where: str  # "docs/errors.md:49", the line of the code's first line
    code: str
    install: InstallLine | None
    not_run: str | None

    @property
    def tests(self) -> list[str]:
        """Names of the top-level `test_*` functions the block defines."""
        tree = ast.parse(self.code)
        return [
            node.name
            for node in tree.body
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
            and node.name.startswith("test_")
        ]


def collect() -> tuple[list[Block], list[str]]:
    """All Python blocks, and one problem message per block that breaks the convention."""
    blocks, problems = [], []
    for page in pages():
        text = page.read_text("utf-8")
        for match in FENCE.finditer(text):
            line = text.count("\n", 0, match.start("code")) + 1
            where = f"{page.relative_to(ROOT).as_posix()}:{line}"
            code = textwrap.dedent(match.group("code"))
            first = code.split("\n", 1)[0]
            if skip := NOT_RUN.match(first):
                blocks.append(Block(where, code, None, skip.group("why")))
            elif install := INSTALL.match(first):
                try:
                    parsed = InstallLine.parse(install.group("line"))
                except InstallLineError as error:
                    problems.append(f"{where}: {error}; {CONVENTION}")
                else:
                    blocks.append(Block(where, code, parsed, None))
            else:
                problems.append(f"{where}: opens with {first!r}; {CONVENTION}")
    return blocks, problems


BLOCKS, PROBLEMS = collect()
RUNNABLE = [block for block in BLOCKS if block.install is not None]


def test_every_python_block_declares_its_install_line() -> None:
    assert not PROBLEMS, "\n".join(PROBLEMS)


def test_the_pages_have_code_to_check() -> None:
    assert {block.where.split(":")[0] for block in RUNNABLE} >= {
        "README.md",
        "docs/configuration.md",
        "docs/errors.md",
        "docs/emulator.md",
    }
    assert len(RUNNABLE) >= 12
    assert len(RUNNABLE) >= 4 * (len(BLOCKS) - len(RUNNABLE)), "too many `# not run:` blocks"


@pytest.mark.parametrize("block", [b for b in BLOCKS if b.not_run], ids=lambda b: b.where)
def test_fragments_not_run_still_compile(block: Block) -> None:
    compile(block.code, block.where, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)


def _marks(block: Block) -> list[pytest.MarkDecorator]:
    assert block.install is not None
    return [pytest.mark.wheel] + ([pytest.mark.ray] if "ray" in block.install.extras else [])


@pytest.mark.parametrize("block", [pytest.param(b, id=b.where, marks=_marks(b)) for b in RUNNABLE])
def test_block_runs_after_only_its_install_line(
    block: Block, wheelhouse: Wheelhouse, nebula_emulator: NebulaEmulator, tmp_path: Path
) -> None:
    assert block.install is not None
    venv = wheelhouse.venv(block.install)
    env = clean_env(**nebula_emulator.env())
    if names := block.tests:
        (tmp_path / "test_example.py").write_text(block.code, "utf-8")
        done = venv.run("-m", "pytest", "-q", "-p", "no:cacheprovider", cwd=tmp_path, env=env)
        passed = f"{len(names)} passed"
    else:
        script = tmp_path / "example.py"
        script.write_text(block.code, "utf-8")
        compiled = compile(block.code, block.where, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
        awaits = bool(compiled.co_flags & inspect.CO_COROUTINE)
        args = ("-c", AWAIT_RUNNER, str(script)) if awaits else (str(script),)
        done = venv.run(*args, cwd=tmp_path, env=env)
        passed = ""
    assert done.returncode == 0, (
        f"{block.where} failed after `{block.install.text}`:\n{done.stdout}\n{done.stderr}"
    )
    assert passed in done.stdout
