"""nebula_core.ray on a real local Ray cluster, against the emulator over real HTTP.

The cluster is started once for the module (5-7 s) with two CPUs, no dashboard and no
usage stats; Ray workers are separate processes on this machine and reach the emulator on
127.0.0.1 like any other client. Deselect with `-m "not ray"`.
"""

from __future__ import annotations

import importlib
import math
import os
import secrets
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
import ray
import ray.cloudpickle
import ray.data

from nebula_core import ConfigurationError, Secret
from nebula_core.ray import NebulaEmbedder, embed_dataset
from nebula_core.testing import NebulaEmulator

ROWS = 10_000
BLOCKS = 25  # 400 rows a block: see test_every_row_gets_exactly_its_own_vector for why


def _texts(count: int) -> list[str]:
    return [f"passage {i} about topic {i % 7} and retrieval detail {i % 13}" for i in range(count)]


def _dataset(count: int, blocks: int) -> ray.data.Dataset:
    rows = [{"id": i, "text": text} for i, text in enumerate(_texts(count))]
    return ray.data.from_items(rows, override_num_blocks=blocks)


def _assert_each_row_once_with_its_own_vector(
    emu: NebulaEmulator, ds: ray.data.Dataset, count: int
) -> None:
    """Every row of `_dataset(count, ...)` comes out exactly once, carrying exactly the vector
    the emulator serves for its text. Checked batch by batch, so 10,000 vectors of 1,024
    floats never sit in the test process at once."""
    texts = _texts(count)
    seen: set[int] = set()
    repeated: list[int] = []
    wrong: list[int] = []
    for batch in ds.iter_batches(batch_format="pyarrow", batch_size=None):
        for row_id, text, vector in zip(
            batch.column("id").to_pylist(),
            batch.column("text").to_pylist(),
            batch.column("embedding").to_pylist(),
            strict=True,
        ):
            if row_id in seen:
                repeated.append(row_id)
            seen.add(row_id)
            if text != texts[row_id] or vector != emu.embedding(text):
                wrong.append(row_id)
    assert repeated == []
    assert wrong == []
    assert seen == set(range(count))


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[dict[str, Any]]:
    """A fresh local cluster for this module; the environment is set before Ray starts."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RAY_USAGE_STATS_ENABLED", "0")
        # Workers inherit the environment of the raylet started here: a developer's real key
        # or URL must never reach them (the autouse fixture only clears it per test).
        mp.delenv("NEBULA_API_KEY", raising=False)
        mp.delenv("NEBULA_BASE_URL", raising=False)
        context = ray.init(
            address="local",  # never join a cluster named by RAY_ADDRESS
            num_cpus=2,
            include_dashboard=False,
            log_to_driver=False,
            object_store_memory=512 * 1024**2,
        )
        ray.data.DataContext.get_current().enable_progress_bars = False
        try:
            yield dict(context.address_info)
        finally:
            ray.shutdown()


# -- in-process: the callable class and the import guard ---------------------------------------


def test_import_without_ray_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # what `import ray` sees when it is absent
    monkeypatch.delitem(sys.modules, "nebula_core.ray")
    with pytest.raises(ImportError) as caught:
        importlib.import_module("nebula_core.ray")
    assert "pip install 'nebulablock-embeddings[ray]'" in str(caught.value)


def test_embedder_appends_exact_float64_vectors_to_an_arrow_batch(emu: NebulaEmulator) -> None:
    embedder = NebulaEmbedder(api_key=Secret(emu.api_key), base_url=emu.base_url, batch_size=4)
    texts = _texts(10)
    table = pa.table({"id": list(range(10)), "text": texts})

    out = embedder(table)

    assert out.column_names == ["id", "text", "embedding"]
    assert out.schema.field("embedding").type == pa.list_(pa.float64())
    assert out.column("id").to_pylist() == list(range(10))
    assert out.column("embedding").to_pylist() == [emu.embedding(t) for t in texts]
    assert sorted(len(r.inputs or []) for r in emu.embeddings_requests) == [2, 4, 4]


@pytest.mark.nebula_emulator(honour_encoding_format=True)
def test_float32_arrow_column_holds_the_exact_vectors_from_base64(emu: NebulaEmulator) -> None:
    embedder = NebulaEmbedder(
        api_key=emu.api_key, base_url=emu.base_url, batch_size=3, dtype="float32"
    )
    texts = _texts(7)

    out = embedder(pa.table({"text": texts}))

    column = out.column("embedding")
    assert column.type == pa.list_(pa.float32())
    expected = np.array([emu.embedding(t) for t in texts], dtype=np.float32)
    flat = column.combine_chunks().flatten().to_numpy()
    assert flat.dtype == np.float32
    assert np.array_equal(flat.reshape(7, 1024), expected)
    assert column.to_pylist() == expected.tolist()
    assert all(b'"encoding_format":"base64"' in r.body for r in emu.embeddings_requests)


def test_an_empty_batch_gets_an_empty_vector_column(emu: NebulaEmulator) -> None:
    for dtype, arrow_type in (("float32", pa.float32()), ("float64", pa.float64())):
        embedder = NebulaEmbedder(api_key=emu.api_key, base_url=emu.base_url, dtype=dtype)
        out = embedder(pa.table({"text": pa.array([], pa.string())}))
        assert out.column("embedding").type == pa.list_(arrow_type)
        assert out.num_rows == 0
    assert emu.embeddings_requests == []


def test_embedder_gives_numpy_batches_a_2d_float32_array(emu: NebulaEmulator) -> None:
    model = "BAAI/bge-large-en-v1.5"
    embedder = NebulaEmbedder(
        column="body",
        output_column="vec",
        model=model,
        dtype="float32",
        api_key=emu.api_key,
        base_url=emu.base_url,
    )
    texts = _texts(3)
    out = embedder({"body": np.array(texts, dtype=object), "n": np.arange(3)})

    expected = np.array([emu.embedding(t, model=model) for t in texts], dtype=np.float32)
    assert out["vec"].dtype == np.float32
    assert out["vec"].shape == (3, 1024)
    assert np.array_equal(out["vec"], expected)
    assert out["n"].tolist() == [0, 1, 2]
    assert [r.model for r in emu.embeddings_requests] == [model]


def test_each_embedder_paces_itself_at_its_share_of_the_job_budget(emu: NebulaEmulator) -> None:
    embedder = NebulaEmbedder(
        api_key=emu.api_key,
        base_url=emu.base_url,
        actors=4,
        requests_per_minute=3000,
        tokens_per_minute=800_000,
    )
    # The whole budget, of which this actor takes a quarter; the share also splits what the
    # pacer learns from the service's headers.
    assert embedder.client.config.requests_per_minute == 3000
    assert embedder.client.config.tokens_per_minute == 800_000
    assert embedder.client.config.rate_limit_share == 0.25
    alone = NebulaEmbedder(api_key=emu.api_key, base_url=emu.base_url, requests_per_minute=60)
    assert alone.client.config.requests_per_minute == 60
    assert alone.client.config.tokens_per_minute is None


def test_column_mistakes_fail_before_any_request(emu: NebulaEmulator) -> None:
    table = pa.table({"body": ["a text"], "embedding": [[0.0]]})
    with pytest.raises(ValueError, match=r"no column 'text' to embed; its columns are \['body'"):
        NebulaEmbedder(api_key=emu.api_key, base_url=emu.base_url)(table)
    with pytest.raises(ValueError, match="already has a column 'embedding'; pass another"):
        NebulaEmbedder("body", api_key=emu.api_key, base_url=emu.base_url)(table)
    with pytest.raises(TypeError, match="takes pyarrow or numpy batches, got list"):
        NebulaEmbedder(api_key=emu.api_key, base_url=emu.base_url)([{"text": "a"}])
    assert emu.requests == []


def test_blank_text_error_names_the_column_and_position(emu: NebulaEmulator) -> None:
    embedder = NebulaEmbedder(api_key=emu.api_key, base_url=emu.base_url)
    with pytest.raises(ValueError) as caught:
        embedder(pa.table({"text": ["fine", " ", "also fine"]}))
    # After our prefix comes the core's own message (its wording is test_client's business).
    message = str(caught.value)
    assert message.startswith("Column 'text', in a batch of 3 rows: ")
    assert " position 1 " in message
    with pytest.raises(TypeError, match=r"^Column 'text', in a batch of 2 rows: .* position 0 "):
        embedder(pa.table({"text": [None, "fine"]}))
    assert emu.requests == []


def test_embedder_repr_and_kwargs_never_show_the_key(emu: NebulaEmulator) -> None:
    key = "ak_" + secrets.token_hex(16)
    secret = Secret(key)
    embedder = NebulaEmbedder(api_key=secret, base_url=emu.base_url)
    assert key not in repr(embedder)
    assert key not in repr({"api_key": secret})  # how Ray would print fn_constructor_kwargs
    assert embedder.client.config.api_key.reveal() == key


# -- on the cluster -----------------------------------------------------------------------------


@pytest.mark.ray
def test_every_row_gets_exactly_its_own_vector(
    ray_cluster: dict[str, Any], emu: NebulaEmulator
) -> None:
    ds = embed_dataset(_dataset(ROWS, BLOCKS), api_key=emu.api_key, base_url=emu.base_url, actors=2)

    _assert_each_row_once_with_its_own_vector(emu, ds, ROWS)

    requests = emu.embeddings_requests
    # Every text was sent exactly once, in requests of at most batch_size=64 inputs.
    assert Counter(t for r in requests for t in r.inputs or []) == Counter(_texts(ROWS))
    assert {r.status for r in requests} == {200}
    # Each 400-row block is one map call split into Ray batches of 64 * 4 = 256 and 144 rows,
    # which the client sends as 4 and 3 requests: 25 * 7 = 175, not one request per row.
    sizes = Counter(len(r.inputs or []) for r in requests)
    assert sizes == {64: BLOCKS * 6, 16: BLOCKS}
    assert len(requests) == BLOCKS * (math.ceil(256 / 64) + math.ceil(144 / 64)) == 175


class _PidRecordingEmbedder(NebulaEmbedder):
    """NebulaEmbedder that leaves its process id in a directory, so a test can kill it."""

    def __init__(self, *, pid_dir: str, **kwargs: Any) -> None:
        Path(pid_dir, str(os.getpid())).touch()
        super().__init__(**kwargs)


@pytest.mark.ray
@pytest.mark.nebula_emulator(latency=0.02)  # keep requests in flight when the kill lands
def test_a_killed_actor_is_restarted_and_every_row_still_comes_out_once(
    ray_cluster: dict[str, Any], emu: NebulaEmulator, tmp_path: Path
) -> None:
    # Workers cannot import this test module: ship the subclass by value.
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    killed: list[int] = []

    def kill_one_actor_mid_run() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            pids = sorted(int(p.name) for p in tmp_path.iterdir())
            if len(emu.embeddings_requests) >= 40 and pids:
                os.kill(pids[0], signal.SIGKILL)  # what the OOM killer or a preemption does
                killed.append(pids[0])
                return
            time.sleep(0.005)

    killer = threading.Thread(target=kill_one_actor_mid_run, daemon=True)
    killer.start()
    try:
        ds = _dataset(ROWS, BLOCKS).map_batches(
            _PidRecordingEmbedder,
            fn_constructor_kwargs={
                "pid_dir": str(tmp_path),
                "api_key": Secret(emu.api_key),
                "base_url": emu.base_url,
                "actors": 2,
            },
            compute=ray.data.ActorPoolStrategy(size=2),
            batch_size=256,
            batch_format="pyarrow",
            num_cpus=0.5,
        )
        _assert_each_row_once_with_its_own_vector(emu, ds, ROWS)
    finally:
        killer.join(timeout=60)
        ray.cloudpickle.unregister_pickle_by_value(sys.modules[__name__])

    assert len(killed) == 1
    pids = {int(p.name) for p in tmp_path.iterdir()}
    assert len(pids) >= 3, "Ray should have started a replacement process for the dead actor"
    sent = Counter(t for r in emu.embeddings_requests for t in r.inputs or [])
    assert set(sent) == set(_texts(ROWS))
    # Each text was sent once, or twice if it was in the killed actor's unfinished batch
    # (whether the kill caught a batch in flight depends on timing).
    assert set(sent.values()) <= {1, 2}


@pytest.mark.ray
def test_the_job_budget_is_split_so_all_actors_together_stay_inside_it(
    ray_cluster: dict[str, Any], nebula_env: NebulaEmulator
) -> None:
    # 32 requests at 480/min for the job: each of the 2 actors paces itself at 4 req/s. Its
    # pacer lets a one-second burst through (4, plus one taken on credit), so by t seconds
    # after the first request at most 2 * (5 + 4t) have gone: the 32nd needs t >= 2.75 s.
    # Had each actor been given the whole budget, 2 * (9 + 8t) >= 32 would allow t = 0.875 s.
    emu = nebula_env  # key and URL come from the driver's environment
    arrivals: list[float] = []
    stop = threading.Event()

    def watch() -> None:
        seen = 0
        while not stop.is_set():
            now = len(emu.embeddings_requests)
            arrivals.extend([time.monotonic()] * (now - seen))
            seen = now
            time.sleep(0.002)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        ds = embed_dataset(_dataset(2000, 8), actors=2, requests_per_minute=480)
        _assert_each_row_once_with_its_own_vector(emu, ds, 2000)
    finally:
        stop.set()
        watcher.join()

    assert len(emu.embeddings_requests) == 32  # 8 blocks of 250 rows: 64 + 64 + 64 + 58
    assert len(arrivals) == 32
    assert arrivals[-1] - arrivals[0] >= 2.5


@pytest.mark.ray
def test_float32_output_through_ray(ray_cluster: dict[str, Any], emu: NebulaEmulator) -> None:
    ds = embed_dataset(
        _dataset(300, 2), api_key=emu.api_key, base_url=emu.base_url, dtype="float32", actors=1
    )
    batches = list(ds.iter_batches(batch_format="pyarrow", batch_size=None))
    assert {b.schema.field("embedding").type for b in batches} == {pa.list_(pa.float32())}
    by_text = {
        text: vector
        for b in batches
        for text, vector in zip(
            b.column("text").to_pylist(), b.column("embedding").to_pylist(), strict=True
        )
    }
    assert sorted(by_text) == sorted(_texts(300))
    for text, vector in by_text.items():
        assert vector == np.array(emu.embedding(text), dtype=np.float32).tolist()


@pytest.mark.ray
@pytest.mark.nebula_emulator(api_key="ak_" + secrets.token_hex(16))
def test_the_key_reaches_actors_but_no_repr_stat_or_log_file(
    ray_cluster: dict[str, Any], emu: NebulaEmulator
) -> None:
    ds = embed_dataset(_dataset(500, 2), api_key=emu.api_key, base_url=emu.base_url)
    _assert_each_row_once_with_its_own_vector(emu, ds, 500)

    key = emu.api_key
    assert key not in repr(ds)
    assert key not in str(ds)
    assert key not in ds.stats()
    logs = Path(ray_cluster["session_dir"], "logs")
    leaked = [
        path.name
        for path in logs.rglob("*")
        if path.is_file() and key.encode() in path.read_bytes()
    ]
    assert leaked == []


@pytest.mark.ray
def test_a_wrong_key_fails_the_job_with_the_services_answer(
    ray_cluster: dict[str, Any], emu: NebulaEmulator
) -> None:
    wrong = "ak_" + secrets.token_hex(16)
    ds = embed_dataset(_dataset(1000, 4), api_key=wrong, base_url=emu.base_url)

    with pytest.raises(Exception) as caught:  # Ray wraps the actor's AuthenticationError
        ds.materialize()

    message = str(caught.value)
    assert "nebula_core.errors.AuthenticationError" in message
    assert wrong not in message
    requests = emu.embeddings_requests
    assert requests, "the actors should have tried"
    # 401 is never retried, and Ray does not rerun a task that raised: a few requests, not 16.
    assert {r.status for r in requests} == {401}
    assert len(requests) <= 2 * 2 * 4  # actors * tasks in flight each * max_concurrency


@pytest.mark.ray
def test_bad_options_fail_on_the_driver_before_ray_runs_anything(
    ray_cluster: dict[str, Any], emu: NebulaEmulator
) -> None:
    ds = _dataset(10, 1)
    with pytest.raises(ValueError, match="actors must be an integer >= 1, got 0"):
        embed_dataset(ds, api_key=emu.api_key, base_url=emu.base_url, actors=0)
    with pytest.raises(ValueError, match="dtype must be 'float64' or 'float32', got 'int8'"):
        embed_dataset(ds, api_key=emu.api_key, base_url=emu.base_url, dtype="int8")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="model must be a non-empty model id, got ' '"):
        embed_dataset(ds, api_key=emu.api_key, base_url=emu.base_url, model=" ")
    with pytest.raises(ConfigurationError, match="timeout must be a positive number"):
        embed_dataset(ds, api_key=emu.api_key, base_url=emu.base_url, timeout=0)
    with pytest.raises(ConfigurationError, match="No NebulaBlock API key"):
        embed_dataset(ds, api_key="  ", base_url=emu.base_url)
    with pytest.raises(ConfigurationError, match="not an http"):
        embed_dataset(ds, api_key=emu.api_key, base_url="ftp://example.com")
    with pytest.raises(TypeError, match=r"ds must be a ray\.data\.Dataset, got list"):
        embed_dataset([{"text": "a"}], api_key=emu.api_key)  # type: ignore[arg-type]
    assert emu.requests == []


@pytest.mark.ray
def test_actors_can_take_the_key_from_their_own_environment(
    ray_cluster: dict[str, Any], emu: NebulaEmulator
) -> None:
    # No key on the driver: the step's runtime_env gives the actors their NEBULA_API_KEY.
    assert "NEBULA_API_KEY" not in os.environ
    ds = embed_dataset(
        _dataset(300, 2),
        base_url=emu.base_url,
        actors=1,
        ray_remote_args={"runtime_env": {"env_vars": {"NEBULA_API_KEY": emu.api_key}}},
    )
    _assert_each_row_once_with_its_own_vector(emu, ds, 300)
    assert {r.status for r in emu.embeddings_requests} == {200}


@pytest.mark.ray
def test_without_a_key_anywhere_the_actors_fail_with_our_message(
    ray_cluster: dict[str, Any], emu: NebulaEmulator
) -> None:
    ds = embed_dataset(_dataset(100, 1), base_url=emu.base_url, actors=1)

    with pytest.raises(Exception) as caught:  # Ray's ActorDiedError, wrapping ours
        ds.materialize()

    assert "nebula_core.errors.ConfigurationError: No NebulaBlock API key" in str(caught.value)
    assert emu.requests == []
