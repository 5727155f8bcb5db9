"""Input checks that run before any request, so a bad item never costs a half-finished job."""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["validate_texts"]

_MAX_LISTED = 10


def _inputs_at(positions: list[int], singular: str, plural: str) -> str:
    """'the input at position 3 is' / 'inputs at positions 1, 4 are', listing at most ten."""
    if len(positions) == 1:
        return f"the input at position {positions[0]} {singular}"
    shown = ", ".join(str(p) for p in positions[:_MAX_LISTED])
    more = len(positions) - _MAX_LISTED
    if more > 0:
        shown += f" (and {more} more)"
    return f"inputs at positions {shown} {plural}"


def _capital(text: str) -> str:
    return text[:1].upper() + text[1:]


def validate_texts(texts: object, offset: int = 0) -> list[str]:
    """Return `texts` as a list of non-blank strings or raise, naming every offending position.

    A bare `str` is refused rather than embedded character by character. Positions count from
    `offset` (a stream's batch names positions in the whole stream).
    """
    if isinstance(texts, (str, bytes)) or not isinstance(texts, Sequence):
        raise TypeError(
            f"texts must be a list of strings, got {type(texts).__name__}; "
            "wrap a single text in a list: embed([text])."
        )
    items = list(texts)
    not_str = [i for i, item in enumerate(items, offset) if type(item) is not str]
    if not_str:
        kinds = sorted({type(items[i - offset]).__name__ for i in not_str})
        raise TypeError(
            f"Every input must be a str; {_inputs_at(not_str, 'is', 'are')} "
            f"{', '.join(kinds)}. Convert or drop them before embedding."
        )
    blank = [i for i, item in enumerate(items, offset) if not item or item.isspace()]
    if blank:
        raise ValueError(
            f"{_capital(_inputs_at(blank, 'is', 'are'))} empty or whitespace-only, which the "
            "service cannot embed. Drop such inputs or replace them with a placeholder text."
        )
    unencodable = []
    for i, item in enumerate(items, offset):
        try:
            item.encode("utf-8")
        except UnicodeEncodeError:
            unencodable.append(i)
    if unencodable:
        raise ValueError(
            f"{_capital(_inputs_at(unencodable, 'contains', 'contain'))} lone surrogate characters "
            "that cannot be sent as UTF-8; clean them, e.g. "
            "text.encode('utf-8', 'replace').decode('utf-8')."
        )
    return items
