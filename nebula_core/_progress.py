"""One progress bar implementation for both adapters (SPEC §4 item 7)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from nebula_core._job import ProgressCallback

__all__ = ["progress_bar"]


@contextmanager
def progress_bar(
    total: int, enabled: bool, description: str = "Embedding"
) -> Iterator[ProgressCallback | None]:
    """A tqdm bar over inputs, advanced as each request finishes; `None` when disabled."""
    if not enabled or total == 0:
        yield None
        return
    try:
        from tqdm.auto import tqdm  # noqa: PLC0415 - optional, only when a bar is asked for
    except ImportError as error:
        raise ImportError(
            "show_progress=True needs tqdm: pip install tqdm "
            "(or pip install 'nebulablock-embeddings[langchain]')."
        ) from error
    with tqdm(total=total, desc=description, unit="text") as bar:

        def advance(done: int) -> None:
            bar.update(done)

        yield advance
