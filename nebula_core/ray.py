"""Embed a Ray Data dataset with NebulaBlock: one client per actor, one rate budget per job.

    >>> import ray                                                          # doctest: +SKIP
    >>> from nebula_core.ray import embed_dataset                          # doctest: +SKIP
    >>> ds = ray.data.read_parquet("s3://bucket/passages/")                 # doctest: +SKIP
    >>> ds = embed_dataset(ds, "text", actors=4, requests_per_minute=3000)  # doctest: +SKIP
    >>> ds.write_parquet("s3://bucket/passages-embedded/")                  # doctest: +SKIP

The embedding work is network-bound, so each actor is one `NebulaClient` keeping up to
`max_concurrency` requests in flight; `actors` scales that out across the cluster. The
account's requests/tokens-per-minute budget is a property of the *job*, so `embed_dataset` splits
it evenly: every actor paces itself at `budget / actors`, and together they stay inside it.

Vectors land in `output_column` as `list<double>` (the exact floats the service returned) or, with
`dtype="float32"`, `list<float>` (half the memory; what most vector databases store anyway).
The column is built from one flat numpy buffer and computed offsets; with float32 the client's
`output="numpy"` fills that buffer straight from the service's base64 bytes.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, Literal

try:
    import numpy as np
    import pyarrow as pa
    import ray
    import ray.data
except ImportError as error:
    raise ImportError(
        "nebula_core.ray needs Ray Data, which is not installed: "
        "pip install 'nebulablock-embeddings[ray]'"
    ) from error

from nebula_core._config import API_KEY_ENV, BASE_URL_ENV, Secret
from nebula_core.client import NebulaClient
from nebula_core.models import DEFAULT_MODEL, model_info

__all__ = ["NebulaEmbedder", "VectorDType", "embed_dataset"]

VectorDType = Literal["float64", "float32"]

_ARROW_TYPES: dict[str, Any] = {"float64": pa.float64(), "float32": pa.float32()}


def _check_positive_int(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}.")


def _check_column(name: str, value: object) -> None:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{name} must be a non-empty column name, got {value!r}.")


def _check_model(model: object) -> None:
    if not isinstance(model, str) or not model.strip():
        raise ValueError(f"model must be a non-empty model id, got {model!r}.")


def _check_dtype(dtype: object) -> None:
    if dtype not in _ARROW_TYPES:
        raise ValueError(f"dtype must be 'float64' or 'float32', got {dtype!r}.")


class NebulaEmbedder:
    """A callable class for `Dataset.map_batches` that adds a vector column to every batch.

    Ray builds one instance per actor, so each actor keeps one `NebulaClient` (one connection
    pool, one pacer) for its whole life. Use it directly when `embed_dataset` is too little::

        ds.map_batches(
            NebulaEmbedder,
            fn_constructor_kwargs={"column": "text", "actors": 4, "requests_per_minute": 3000,
                                   "api_key": Secret(key)},
            compute=ray.data.ActorPoolStrategy(size=4),   # must equal `actors`
            batch_size=256,        # rows per call; the client splits them into requests
            batch_format="pyarrow",
            num_cpus=0.5,
        )

    Args:
        column: the text column to embed; every value must be a non-blank `str`.
        model: the model id.
        output_column: the new column; it must not exist yet (nothing is overwritten).
        batch_size: inputs per HTTP request.
        max_concurrency: requests one actor keeps in flight within a call.
        requests_per_minute / tokens_per_minute: the budget of the whole job, shared by
            `actors` embedders; this one paces itself at its even share.
        actors: how many embedders share the budget (the size of the actor pool).
        api_key: a `str` or, better, a `nebula_core.Secret`, whose repr never shows the key;
            `None` reads `NEBULA_API_KEY` in the actor's own environment.
        base_url: the API root; `None` reads `NEBULA_BASE_URL` in the actor, else the default.
        dtype: "float64" keeps the service's floats exactly; "float32" halves the memory.
        client_options: any other `NebulaClient` argument (timeout, max_retries, deadline...).

    With `batch_format="pyarrow"` the column is `list<double>` (or `list<float>`); with
    `batch_format="numpy"` it is a 2-D array, which Ray stores as a tensor column.
    """

    def __init__(
        self,
        column: str = "text",
        *,
        model: str = DEFAULT_MODEL,
        output_column: str = "embedding",
        batch_size: int = 64,
        max_concurrency: int = 4,
        requests_per_minute: float | None = None,
        tokens_per_minute: float | None = None,
        actors: int = 1,
        api_key: str | Secret | None = None,
        base_url: str | None = None,
        dtype: VectorDType = "float64",
        **client_options: Any,
    ) -> None:
        _check_column("column", column)
        _check_column("output_column", output_column)
        _check_positive_int("batch_size", batch_size)
        _check_positive_int("actors", actors)
        _check_dtype(dtype)
        _check_model(model)
        self.column = column
        self.output_column = output_column
        self.model = model
        self.batch_size = batch_size
        self.dtype: VectorDType = dtype
        key = api_key.reveal() if isinstance(api_key, Secret) else api_key
        # `rate_limit_share` splits the explicit budget and also what the pacer learns from
        # the service's x-ratelimit-* headers, so the actors together stay inside both.
        share = float(client_options.pop("rate_limit_share", 1.0)) / actors
        self._client = NebulaClient(
            api_key=key,
            base_url=base_url,
            max_concurrency=max_concurrency,
            requests_per_minute=requests_per_minute,
            tokens_per_minute=tokens_per_minute,
            rate_limit_share=share,
            **client_options,
        )

    @property
    def client(self) -> NebulaClient:
        """This actor's client (its `rate_limit_share` is its part of the rate budget)."""
        return self._client

    def __repr__(self) -> str:
        return (
            f"NebulaEmbedder(column={self.column!r}, model={self.model!r}, "
            f"output_column={self.output_column!r}, client={self._client!r})"
        )

    def __call__(self, batch: Any) -> Any:
        """Embed one batch (a `pyarrow.Table` or a dict of numpy arrays) and add the vectors."""
        if isinstance(batch, pa.Table):
            return self._embed_table(batch)
        if isinstance(batch, Mapping):
            return self._embed_numpy(batch)
        raise TypeError(
            f"NebulaEmbedder takes pyarrow or numpy batches, got {type(batch).__name__}; "
            "pass batch_format='pyarrow' (or 'numpy') to map_batches."
        )

    def _columns_ok(self, names: list[str]) -> None:
        # Checked before any request, so a typo costs nothing.
        if self.column not in names:
            raise ValueError(
                f"The dataset has no column {self.column!r} to embed; its columns are {names}."
            )
        if self.output_column in names:
            raise ValueError(
                f"The dataset already has a column {self.output_column!r}; pass another "
                "output_column=... (or drop the old column first)."
            )

    def _vectors(self, texts: list[Any]) -> np.ndarray[Any, Any]:
        """The (N, D) vectors as `self.dtype`: float32 straight from the wire's buffers
        (`output="numpy"`, no Python floats for base64 answers); float64 from the service's
        own floats, which a float32 step would round."""
        try:
            if self.dtype == "float32":
                result = self._client.embed(texts, self.model, self.batch_size, output="numpy")
                return result.embeddings
            vectors = self._client.embed(texts, self.model, self.batch_size).embeddings
        except (TypeError, ValueError) as error:
            # Positions are within this Ray batch; say so, and which column it was.
            raise type(error)(
                f"Column {self.column!r}, in a batch of {len(texts)} rows: {error}"
            ) from None
        if vectors:
            return np.asarray(vectors, dtype=np.float64)
        info = model_info(self.model)
        return np.empty((0, info.dimensions if info else 0), np.float64)

    def _embed_table(self, table: pa.Table) -> pa.Table:
        self._columns_ok(list(table.column_names))
        vectors = self._vectors(table.column(self.column).to_pylist())
        return table.append_column(self.output_column, _list_array(vectors))

    def _embed_numpy(self, batch: Mapping[str, Any]) -> dict[str, Any]:
        self._columns_ok(list(batch))
        vectors = self._vectors(list(batch[self.column].tolist()))
        out = dict(batch)
        out[self.output_column] = vectors
        return out


def _list_array(vectors: np.ndarray[Any, Any]) -> pa.Array:
    """A `list<float>`/`list<double>` Arrow column over the matrix's own buffer: one flat
    values array and computed offsets, never a Python float per value."""
    rows, width = vectors.shape
    values = pa.array(np.ascontiguousarray(vectors).reshape(-1))
    if rows * width < 2**31:
        offsets = pa.array(np.arange(rows + 1, dtype=np.int32) * np.int32(width))
        return pa.ListArray.from_arrays(offsets, values)
    offsets = pa.array(np.arange(rows + 1, dtype=np.int64) * width)  # pragma: no cover
    return pa.LargeListArray.from_arrays(offsets, values)  # pragma: no cover


def embed_dataset(
    ds: ray.data.Dataset,
    column: str = "text",
    *,
    model: str = DEFAULT_MODEL,
    output_column: str = "embedding",
    actors: int = 2,
    batch_size: int = 64,
    max_concurrency: int = 4,
    requests_per_minute: float | None = None,
    tokens_per_minute: float | None = None,
    api_key: str | None = None,
    base_url: str | None = None,
    dtype: VectorDType = "float64",
    num_cpus: float = 0.5,
    ray_remote_args: Mapping[str, Any] | None = None,
    **client_options: Any,
) -> ray.data.Dataset:
    """Return `ds` with `output_column` holding the vector of each row's `column` (lazily).

    `actors` fixed actors each run one client with up to `max_concurrency` requests of at most
    `batch_size` inputs in flight; each map call gets `batch_size * max_concurrency` rows.
    `requests_per_minute` / `tokens_per_minute` are the job's whole budget, split evenly.

    The key and URL are resolved here, on the driver (argument, then `NEBULA_API_KEY` /
    `NEBULA_BASE_URL`), and reach the actors inside a `Secret`, which no repr or log line can
    show. With no key on the driver, actors read `NEBULA_API_KEY` from their own environment
    (the node's, or a `runtime_env={"env_vars": {...}}` for the job or in `ray_remote_args`).

    Ray restarts an actor that dies and reruns its unfinished batches (`max_restarts=-1`,
    `max_task_retries=-1` by default; override through `ray_remote_args`), so a crash costs
    some repeated requests, never a missing or duplicated row. Row order is Ray's: set
    `DataContext.get_current().execution_options.preserve_order = True` to keep the input's.
    `num_cpus` is per actor and small because the work is waiting on the network.

    Args:
        ds: the dataset to embed; it is not read until the result is consumed.
        column: the text column; every value must be a non-blank `str`.
        model: the model id.
        output_column: the new column; it must not exist yet (nothing is overwritten).
        actors: the size of the actor pool, each actor one client.
        batch_size: inputs per HTTP request.
        max_concurrency: requests one actor keeps in flight.
        requests_per_minute / tokens_per_minute: the whole job's budget, split evenly.
        api_key: the key; None reads `NEBULA_API_KEY` on the driver, then on the actors.
        base_url: the API root; None reads `NEBULA_BASE_URL` on the driver.
        dtype: "float64" keeps the service's floats exactly; "float32" halves the memory.
        num_cpus: CPUs Ray reserves per actor.
        ray_remote_args: more `map_batches` arguments (`runtime_env`, `max_restarts`, ...).
        **client_options: any other `NebulaClient` argument (timeout, max_retries, ...).

    Returns:
        A lazy `ray.data.Dataset` with `output_column` added.

    Raises:
        TypeError: `ds` is not a Ray dataset.
        ValueError: a bad column name, model, count or dtype, before anything runs.
        ConfigurationError: a client option or the key is unusable, raised on the driver.
    """
    if not isinstance(ds, ray.data.Dataset):
        raise TypeError(f"ds must be a ray.data.Dataset, got {type(ds).__name__}.")
    _check_column("column", column)
    _check_column("output_column", output_column)
    _check_model(model)
    _check_positive_int("actors", actors)
    _check_positive_int("batch_size", batch_size)
    _check_positive_int("max_concurrency", max_concurrency)
    _check_dtype(dtype)
    key = api_key if api_key is not None else os.environ.get(API_KEY_ENV)
    url = base_url if base_url is not None else os.environ.get(BASE_URL_ENV)
    # Build one client here so a bad option or key fails now, on the driver, with our message,
    # not later inside every actor. Without a driver-side key the actors must bring their own.
    NebulaClient(
        api_key=key if key is not None else "validated-on-the-actors",
        base_url=url,
        max_concurrency=max_concurrency,
        requests_per_minute=requests_per_minute,
        tokens_per_minute=tokens_per_minute,
        **client_options,
    )
    constructor_kwargs: dict[str, Any] = {
        "column": column,
        "model": model,
        "output_column": output_column,
        "batch_size": batch_size,
        "max_concurrency": max_concurrency,
        "requests_per_minute": requests_per_minute,
        "tokens_per_minute": tokens_per_minute,
        "actors": actors,
        "api_key": None if key is None else Secret(key),
        "base_url": url,
        "dtype": dtype,
        **client_options,
    }
    remote_args: dict[str, Any] = {"num_cpus": num_cpus, **(ray_remote_args or {})}
    return ds.map_batches(
        NebulaEmbedder,
        fn_constructor_kwargs=constructor_kwargs,
        compute=ray.data.ActorPoolStrategy(size=actors),
        batch_size=batch_size * max_concurrency,
        batch_format="pyarrow",
        **remote_args,
    )
