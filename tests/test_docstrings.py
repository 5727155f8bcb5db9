"""The docstrings are the API reference: every public name of nebula_core has one with its args.

Walks the public names (each module's `__all__`, the pytest fixtures, and the public methods and
properties of public classes, including those inherited from nebula_core's private bases) and
lists every offender at once: a missing docstring, or a parameter without its own entry in the
Google-style `Args:` section (for a class, the one in the class docstring documents `__init__`;
a dataclass may use `Attributes:` for its fields).
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import re
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any

import pytest

MODULES = [
    "nebula_core",
    "nebula_core.client",
    "nebula_core.errors",
    "nebula_core.models",
    "nebula_core.testing",
    "nebula_core.testing.pytest_plugin",
    "nebula_core.ray",
]

#: Parameters callers never pass by name.
IMPLICIT = {"self", "cls"}
SECTIONS = "Args|Arguments|Attributes|Returns|Raises|Yields|Example|Examples|Note"
SECTION = re.compile(rf"^(\s*)({SECTIONS}):\s*$")
#: `name:`, `name (type):` or `a / b:` (several names sharing one explanation).
ENTRY = re.compile(r"^\s*(\**[A-Za-z_][\w\s/,*]*?)\s*(\([^)]*\))?:(\s|$)")


def documented_args(doc: str) -> set[str]:
    """The names that have an entry in the docstring's `Args:` / `Attributes:` sections."""
    names: set[str] = set()
    section: str | None = None
    section_indent = 0
    entry_indent: int | None = None
    for line in inspect.cleandoc(doc).splitlines():
        heading = SECTION.match(line)
        if heading:
            section, section_indent, entry_indent = heading[2], len(heading[1]), None
            continue
        if section is None or not line.strip():
            continue
        indent = len(line) - len(line.lstrip())
        if indent <= section_indent:
            section = None  # prose after the section
            continue
        if section not in ("Args", "Arguments", "Attributes"):
            continue
        if entry_indent is None:
            entry_indent = indent
        if indent != entry_indent:
            continue  # continuation line of an entry
        entry = ENTRY.match(line)
        if entry:
            names.update(n.strip().lstrip("*") for n in re.split(r"[/,]", entry[1]) if n.strip())
    return names


def own_doc(obj: Any) -> str | None:
    """`obj`'s docstring, not one a dataclass or a base class made up for it."""
    # Not inspect.getdoc: it would lend an overriding method its base's docstring.
    doc = obj.__dict__.get("__doc__") if inspect.isclass(obj) else obj.__doc__
    if not doc or not doc.strip():
        return None
    if (
        inspect.isclass(obj)
        and dataclasses.is_dataclass(obj)
        and doc.startswith(f"{obj.__name__}(")
    ):
        return None  # the signature dataclasses writes when there is no docstring
    return str(doc)


def named_params(func: Callable[..., Any]) -> list[str]:
    """The parameters a caller may name (not self/cls, *args or **kwargs)."""
    try:
        signature = inspect.signature(func)
    except (TypeError, ValueError):
        return []
    return [
        p.name
        for p in signature.parameters.values()
        if p.name not in IMPLICIT and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    ]


def ours(cls: type) -> bool:
    return cls.__module__.split(".")[0] == "nebula_core"


def public_members(cls: type) -> Iterator[tuple[str, Any, type]]:
    """Public methods and properties of `cls`, own or from nebula_core bases (not dunders)."""
    seen: set[str] = set()
    for base in cls.__mro__:
        if not ours(base):
            continue
        for name, attribute in vars(base).items():
            if name.startswith("_") or name in seen:
                continue
            member = attribute
            if isinstance(attribute, (staticmethod, classmethod)):
                member = attribute.__func__
            if inspect.isfunction(member) or isinstance(member, property):
                seen.add(name)
                yield name, member, base


def check(label: str, obj: Any, params: list[str], offenders: list[str]) -> None:
    doc = own_doc(obj)
    if doc is None:
        offenders.append(f"{label}: no docstring")
        return
    missing = [p for p in params if p not in documented_args(doc)]
    if missing:
        offenders.append(f"{label}: no Args entry for {', '.join(missing)}")


def public_names(module: ModuleType) -> list[str]:
    if hasattr(module, "__all__"):
        return list(module.__all__)
    # The pytest plugin: its fixtures (not pytest's own hooks).
    return [
        name
        for name, value in vars(module).items()
        if not name.startswith(("_", "pytest_")) and hasattr(value, "_get_wrapped_function")
    ]


def offenders_in(module: ModuleType) -> list[str]:
    offenders: list[str] = []
    if not (module.__doc__ or "").strip():
        offenders.append(f"{module.__name__}: no module docstring")
    for name in public_names(module):
        obj = getattr(module, name)
        label = f"{module.__name__}.{name}"
        if hasattr(obj, "_get_wrapped_function"):  # a pytest fixture
            obj = obj._get_wrapped_function()
        if inspect.isclass(obj):
            if not ours(obj):
                continue
            # A constructor is documented by the class that defines it (dataclasses' too).
            init = obj.__dict__.get("__init__")
            init_params = named_params(init) if init is not None else []
            check(label, obj, init_params, offenders)
            for member_name, member, base in public_members(obj):
                member_label = f"{base.__module__}.{base.__qualname__}.{member_name}"
                if isinstance(member, property):
                    check(member_label, member.fget, [], offenders)
                else:
                    check(member_label, member, named_params(member), offenders)
        elif inspect.isfunction(obj):
            check(label, obj, named_params(obj), offenders)
    # A class re-exported by several modules is reported once.
    return list(dict.fromkeys(offenders))


@pytest.mark.parametrize("module_name", MODULES)
def test_every_public_name_documents_its_arguments(module_name: str) -> None:
    if module_name == "nebula_core.ray":
        pytest.importorskip("ray.data")
    module = importlib.import_module(module_name)
    offenders = offenders_in(module)
    assert not offenders, "Public names lacking docs:\n" + "\n".join(offenders)


def test_the_checker_sees_a_missing_args_entry() -> None:
    def documented(model: str, texts: list[str]) -> None:
        """Embed.

        Args:
            model: which one.
            texts: what to embed; a long
                explanation that mentions model: on a continuation line.
        """

    def undocumented(model: str, texts: list[str]) -> None:
        """Embed `texts` with `model` (named in prose, but no Args entry for texts).

        Args:
            model: which one; texts are mentioned here only.
        """

    found: list[str] = []
    check("documented", documented, named_params(documented), found)
    check("undocumented", undocumented, named_params(undocumented), found)
    check("bare", lambda x: x, ["x"], found)
    assert found == ["undocumented: no Args entry for texts", "bare: no docstring"]


def test_the_checker_reads_shared_and_typed_entries() -> None:
    doc = """Summary.

    Args:
        requests_per_minute / tokens_per_minute: the job's budget.
        name (str): a typed entry.
        **options: passed on.

    Returns:
        not_an_arg: lines of other sections do not count.
    """
    assert documented_args(doc) == {"requests_per_minute", "tokens_per_minute", "name", "options"}


def test_the_emulators_public_attributes_are_documented() -> None:
    from nebula_core.testing import NebulaEmulator  # noqa: PLC0415 - one test needs it

    emulator = NebulaEmulator()  # not started: the constructor binds no port
    public = {name for name in vars(emulator) if not name.startswith("_")}
    assert public == {"compute", "rate_limits", "long_inputs", "endpoint"}
    missing = public - documented_args(NebulaEmulator.__doc__ or "")
    assert not missing, f"NebulaEmulator attributes without an Attributes entry: {missing}"
