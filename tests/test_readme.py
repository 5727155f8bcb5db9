"""Every ```python block of README.md and docs/*.md runs as written, against the emulator.

Each block runs in a fresh namespace (as `__main__`, like a script), with NEBULA_* cleared by
the autouse fixture in conftest.py, so a block that silently needs a real key fails. Top-level
`await` is allowed, as in a notebook. Functions named `test_*` that a block defines (examples
of users' own pytest tests) are then called with the `nebula_emulator` / `nebula_env`
fixtures they ask for, so those examples are proven too.
"""

from __future__ import annotations

import ast
import asyncio
import inspect
import logging
import os
import re
import textwrap
from pathlib import Path

import pytest

from nebula_core.testing import NebulaEmulator

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(
    r"^(?P<indent>[ \t]*)```python[ \t]*\n(?P<code>.*?)^(?P=indent)```[ \t]*$", re.M | re.S
)


def python_blocks() -> list[tuple[str, int, str]]:
    """(page, first line of the code, code) for every ```python fence, in page order."""
    blocks = []
    for page in PAGES:
        text = page.read_text("utf-8")
        for match in FENCE.finditer(text):
            line = text.count("\n", 0, match.start("code")) + 1
            code = textwrap.dedent(match.group("code"))
            blocks.append((page.relative_to(ROOT).as_posix(), line, code))
    return blocks


BLOCKS = python_blocks()


def test_the_pages_have_code_to_check() -> None:
    pages = {page for page, _, _ in BLOCKS}
    assert "README.md" in pages
    assert {"docs/configuration.md", "docs/errors.md", "docs/emulator.md"} <= pages
    assert len(BLOCKS) >= 12


def _call_example_tests(namespace: dict[str, object], where: str) -> list[str]:
    """Run the `test_*` functions a block defined, giving them the emulator fixtures."""
    called = []
    for name, function in list(namespace.items()):
        if not (name.startswith("test_") and inspect.isfunction(function)):
            continue
        with NebulaEmulator() as emu, pytest.MonkeyPatch.context() as patch:
            arguments: dict[str, object] = {}
            for parameter in inspect.signature(function).parameters:
                if parameter == "nebula_env":
                    for variable, value in emu.env().items():
                        patch.setenv(variable, value)
                elif parameter != "nebula_emulator":
                    pytest.fail(
                        f"{where}: {name} asks for fixture {parameter!r}; only "
                        "nebula_emulator and nebula_env are provided here"
                    )
                arguments[parameter] = emu
            function(**arguments)
        called.append(name)
    return called


@pytest.mark.parametrize(
    ("page", "line", "code"), BLOCKS, ids=[f"{page}:{line}" for page, line, _ in BLOCKS]
)
def test_code_block_runs_as_written(page: str, line: int, code: str) -> None:
    where = f"{page}:{line}"
    compiled = compile(code, where, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT, dont_inherit=True)
    namespace: dict[str, object] = {"__name__": "__main__"}
    environment = dict(os.environ)
    levels = {name: logging.getLogger(name).level for name in ("", "nebula_core")}
    try:
        if compiled.co_flags & inspect.CO_COROUTINE:
            asyncio.run(eval(compiled, namespace))
        else:
            exec(compiled, namespace)
        _call_example_tests(namespace, where)
    finally:
        # A block may set variables or logger levels; the next test must not inherit them.
        os.environ.clear()
        os.environ.update(environment)
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)


def test_example_pytest_tests_in_the_docs_are_called() -> None:
    """The emulator page's pytest example is executed, not merely defined."""
    [(page, line, code)] = [
        block for block in BLOCKS if "def test_" in block[2] and block[0] == "docs/emulator.md"
    ]
    namespace: dict[str, object] = {"__name__": "__main__"}
    exec(compile(code, f"{page}:{line}", "exec"), namespace)
    called = _call_example_tests(namespace, f"{page}:{line}")
    assert called == [
        "test_the_faq_answers_the_token_question",
        "test_ingestion_survives_a_throttled_request",
    ]
