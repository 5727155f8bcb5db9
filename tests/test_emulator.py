"""The emulator speaks NebulaBlock's wire format and fails exactly as scripted.

Everything here is real HTTP on 127.0.0.1 (requests, or a raw socket where requests would hide
what was on the wire); nothing is mocked.
"""

from __future__ import annotations

import math
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from email.utils import formatdate
from typing import Any

import orjson
import pytest
import requests

from nebula_core.models import DEFAULT_MODEL
from nebula_core.testing import CORRUPTIONS, Fault, NebulaEmulator, RecordedRequest

pytest_plugins = ["pytester"]

QWEN = "Qwen/Qwen3-Embedding-8B"
TEXTS = [f"passage {i} about topic {i % 5}" for i in range(20)]


@pytest.fixture
def emu(nebula_emulator: NebulaEmulator) -> NebulaEmulator:
    return nebula_emulator


@pytest.fixture
def http():
    with requests.Session() as session:
        yield session


def post(
    http: requests.Session,
    emu: NebulaEmulator,
    inputs: Any = ("hello",),
    *,
    model: str = DEFAULT_MODEL,
    key: str | None = None,
    body: bytes | None = None,
    **kwargs: Any,
) -> requests.Response:
    headers = {"Authorization": f"Bearer {key or emu.api_key}"}
    if body is None:
        body = orjson.dumps({"model": model, "input": list(inputs)})
    return http.post(f"{emu.base_url}/embeddings", data=body, headers=headers, **kwargs)


def raw_post(emu: NebulaEmulator, inputs: list[str]) -> bytes:
    """Everything the server sends for one request, until it closes the connection."""
    body = orjson.dumps({"model": DEFAULT_MODEL, "input": inputs})
    head = (
        f"POST /v1/embeddings HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: Bearer {emu.api_key}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", emu.port), timeout=5) as sock:
        sock.sendall(head.encode() + body)
        received = []
        while chunk := sock.recv(65536):
            received.append(chunk)
    return b"".join(received)


def cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b)) / math.sqrt(
        sum(x * x for x in a) * sum(y * y for y in b)
    )


def error_message(response: requests.Response) -> str:
    return response.json()["error"]["message"]


# -- the success path ------------------------------------------------------------------------


def test_success_body_has_the_services_wire_format(http, emu):
    inputs = ["hello world", "the second input", "3"]
    response = post(http, emu, inputs)

    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    body = response.json()
    assert list(body) == ["model", "data", "object", "usage"]
    assert body["model"] == DEFAULT_MODEL
    assert body["object"] == "list"
    for item in body["data"]:
        assert list(item) == ["embedding", "index", "object"]
        assert item["object"] == "embedding"
        assert type(item["index"]) is int
        assert len(item["embedding"]) == 1024
        assert all(type(value) is float for value in item["embedding"])
    tokens = sum(emu.count_tokens(text) for text in inputs)
    assert body["usage"] == {
        "prompt_tokens": tokens,
        "total_tokens": tokens,
        "completion_tokens": 0,
        "completion_tokens_details": None,
        "prompt_tokens_details": None,
    }
    assert emu.count_tokens("hello world") == 4  # two words + two special tokens
    assert emu.count_tokens("retries, and rate-limits!") == 9


def test_data_is_shuffled_but_each_index_carries_the_vector_of_its_input(http, emu):
    data = post(http, emu, TEXTS).json()["data"]

    indices = [item["index"] for item in data]
    assert sorted(indices) == list(range(len(TEXTS)))
    assert indices != sorted(indices)
    for item in data:
        assert item["embedding"] == emu.embedding(TEXTS[item["index"]])


def test_no_shuffle_keeps_input_order(http):
    with NebulaEmulator(shuffle=False) as emu:
        data = post(http, emu, TEXTS).json()["data"]
    assert [item["index"] for item in data] == list(range(len(TEXTS)))


def test_responses_are_identical_across_emulator_instances(http):
    bodies = []
    for _ in range(2):
        with NebulaEmulator(seed=7) as emu:
            bodies.append(post(http, emu, TEXTS).content)
    assert bodies[0] == bodies[1]

    with NebulaEmulator(seed=8) as emu:
        other_order = post(http, emu, TEXTS).json()["data"]
    assert [i["index"] for i in other_order] != [
        i["index"] for i in orjson.loads(bodies[0])["data"]
    ]


def test_vectors_are_unit_length_dense_and_differ_between_models(emu):
    for model in (DEFAULT_MODEL, "BAAI/bge-large-en-v1.5", QWEN, "some/unknown-model"):
        vector = emu.embedding("a sentence about vectors", model=model)
        assert math.isclose(math.sqrt(sum(x * x for x in vector)), 1.0, abs_tol=1e-4)
        assert all(vector)  # no coordinate is exactly zero, as in a real embedding
    uae = emu.embedding("same text")
    bge = emu.embedding("same text", model="BAAI/bge-large-en-v1.5")
    assert uae != bge
    assert abs(cosine(uae, bge)) < 0.2
    assert emu.embedding("same text") == uae


def test_lexically_similar_passages_rank_first(emu):
    passages = [
        "The client retries failed requests with exponential backoff and respects rate limits.",
        "Bananas are berries, but strawberries are not, according to botanical classifications.",
        "The Eiffel Tower in Paris was originally intended to be a temporary structure.",
    ]
    query = (
        "Represent this sentence for searching relevant passages: "
        "How are retries and rate limits handled?"
    )
    scores = [cosine(emu.embedding(query), emu.embedding(passage)) for passage in passages]
    assert scores[0] > 0.2
    assert scores[0] > max(scores[1:]) + 0.15
    # Related word forms share a stem feature, unrelated words share nothing.
    assert cosine(emu.embedding("retry"), emu.embedding("retries")) > 0.2
    assert abs(cosine(emu.embedding("retry"), emu.embedding("banana"))) < 0.1


@pytest.mark.parametrize(
    ("model", "dimensions"),
    [(DEFAULT_MODEL, 1024), ("BAAI/bge-large-en-v1.5", 1024), (QWEN, 4096), ("acme/new", 768)],
)
def test_each_model_has_its_dimensions(http, emu, model, dimensions):
    body = post(http, emu, ["a", "b"], model=model).json()
    assert body["model"] == model
    assert [len(item["embedding"]) for item in body["data"]] == [dimensions, dimensions]


@pytest.mark.nebula_emulator(unknown_model_dimensions=32)
def test_unknown_models_get_the_configured_dimensions(http, emu):
    data = post(http, emu, ["a"], model="acme/tiny").json()["data"]
    assert len(data[0]["embedding"]) == 32
    assert data[0]["embedding"] == emu.embedding("a", model="acme/tiny")


def test_a_single_string_input_is_one_item(http, emu):
    response = post(http, emu, body=orjson.dumps({"model": DEFAULT_MODEL, "input": "just one"}))
    data = response.json()["data"]
    assert [(item["index"], item["embedding"]) for item in data] == [(0, emu.embedding("just one"))]


def test_chunked_request_bodies_are_read(http, emu):
    body = orjson.dumps({"model": DEFAULT_MODEL, "input": ["chunked"]})
    response = http.post(
        f"{emu.base_url}/embeddings",
        data=iter([body[:10], body[10:]]),  # a generator makes requests send chunks
        headers={"Authorization": f"Bearer {emu.api_key}"},
    )
    assert response.status_code == 200
    assert response.json()["data"][0]["embedding"] == emu.embedding("chunked")


def test_concurrent_clients_each_get_their_own_vectors(emu):
    failures: list[str] = []

    def worker(n: int) -> None:
        with requests.Session() as session:
            for i in range(5):
                texts = [f"worker {n} request {i} text {j}" for j in range(8)]
                for item in post(session, emu, texts).json()["data"]:
                    if item["embedding"] != emu.embedding(texts[item["index"]]):
                        failures.append(f"{n}/{i}/{item['index']}")

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert len(emu.embeddings_requests) == 40


# -- refusals --------------------------------------------------------------------------------


@pytest.mark.parametrize("authorization", [None, "Bearer ak_wrong", "Basic ak_emulator_key", ""])
def test_a_missing_or_wrong_key_is_401(http, emu, authorization):
    headers = {} if authorization is None else {"Authorization": authorization}
    response = http.post(
        f"{emu.base_url}/embeddings", json={"model": DEFAULT_MODEL, "input": ["x"]}, headers=headers
    )
    assert response.status_code == 401
    assert response.json()["error"]["code"] == 401
    assert "API key" in error_message(response)


@pytest.mark.nebula_emulator(max_inputs_per_request=4)
def test_more_inputs_than_the_cap_is_413_naming_the_cap(http, emu):
    assert post(http, emu, ["a"] * 4).status_code == 200
    response = post(http, emu, ["a"] * 5)
    assert response.status_code == 413
    assert "at most 4 inputs" in error_message(response)
    assert "5" in error_message(response)


def test_an_input_longer_than_the_context_is_400_naming_its_index(http, emu):
    too_long = "word " * 511  # 511 words + 2 special tokens > 512
    fits = "word " * 510
    assert post(http, emu, [fits]).status_code == 200
    response = post(http, emu, ["short", too_long])
    assert response.status_code == 400
    assert "index 1" in error_message(response)
    assert "512" in error_message(response)
    assert post(http, emu, [too_long], model=QWEN).status_code == 200  # 32k context


@pytest.mark.parametrize("blank", ["", "   \n"])
def test_an_empty_input_is_400_naming_its_index(http, emu, blank):
    response = post(http, emu, ["fine", "also fine", blank])
    assert response.status_code == 400
    assert "index 2" in error_message(response)
    assert "empty" in error_message(response)


@pytest.mark.parametrize(
    ("body", "named"),
    [
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "JSON object"),
        (b'{"input": ["x"]}', '"model"'),
        (b'{"model": 5, "input": ["x"]}', '"model"'),
        (b'{"model": "m"}', '"input"'),
        (b'{"model": "m", "input": 5}', "list of strings"),
        (b'{"model": "m", "input": ["ok", 7, null]}', "indices 1, 2"),
        (b'{"model": "m", "input": []}', "must not be empty"),
    ],
)
def test_a_malformed_request_is_400_naming_the_problem(http, emu, body, named):
    response = post(http, emu, body=body)
    assert response.status_code == 400
    assert named in error_message(response)


def test_wrong_method_and_unknown_paths(http, emu):
    headers = {"Authorization": f"Bearer {emu.api_key}"}
    response = http.get(f"{emu.base_url}/embeddings", headers=headers)
    assert (response.status_code, response.headers["Allow"]) == (405, "POST")
    assert http.get(f"{emu.base_url}/nothing", headers=headers).status_code == 404


# -- catalogue endpoints ---------------------------------------------------------------------


def test_catalogue_endpoints(http, emu):
    root = emu.base_url.removesuffix("/v1")
    assert http.get(f"{root}/health").status_code == 200
    assert http.get(f"{emu.base_url}/models").status_code == 401

    listing = http.get(
        f"{emu.base_url}/models", headers={"Authorization": f"Bearer {emu.api_key}"}
    ).json()
    assert listing["object"] == "list"
    assert [model["id"] for model in listing["data"]] == [
        DEFAULT_MODEL,
        "BAAI/bge-large-en-v1.5",
        QWEN,
    ]

    platform = http.get(f"{root}/api/v1/serverless/models").json()
    assert platform["status"] == "success"
    assert isinstance(platform["message"], str)
    models = {m["model_name"]: m for m in platform["data"]["models"]}
    assert models[DEFAULT_MODEL]["model_type"] == "Embedding"
    assert models[DEFAULT_MODEL]["context_length"] == 512
    assert models[QWEN]["context_length"] == 32768
    assert {m["model_type"] for m in models.values()} == {"Embedding", "Text"}


# -- faults ----------------------------------------------------------------------------------


def test_status_fault_sends_a_json_error_with_retry_after(http, emu):
    date = formatdate(time.time() + 30, usegmt=True)
    emu.enqueue(
        Fault.status(429, retry_after="2"),
        Fault.status(503, retry_after=date, headers={"X-Request-Id": "r-1"}),
        Fault.status(500, message="the server's own words", retry_after=1.5),
    )

    first = post(http, emu)
    assert first.status_code == 429
    assert first.headers["Retry-After"] == "2"
    assert first.json()["error"]["code"] == 429
    assert first.json()["error"]["type"] == "rate_limit_error"
    assert "Rate limit" in error_message(first)

    second = post(http, emu)
    assert second.status_code == 503
    assert second.headers["Retry-After"] == date
    assert second.headers["X-Request-Id"] == "r-1"

    third = post(http, emu)
    assert (third.status_code, third.headers["Retry-After"]) == (500, "1.5")
    assert error_message(third) == "the server's own words"
    assert "Retry-After" not in post(http, emu).headers


def test_quota_exhausted_is_a_429_saying_the_balance_is_used_up(http, emu):
    emu.enqueue(Fault.quota_exhausted())
    response = post(http, emu)
    assert response.status_code == 429
    assert "Retry-After" not in response.headers
    assert "balance" in error_message(response).lower()
    assert "quota" in error_message(response).lower()


def test_html_error_is_an_nginx_page(http, emu):
    emu.enqueue(Fault.html_error(), Fault.html_error(504))
    response = post(http, emu)
    assert response.status_code == 502
    assert response.headers["Content-Type"] == "text/html"
    assert "<h1>502 Bad Gateway</h1>" in response.text
    assert "nginx" in response.text
    assert post(http, emu).status_code == 504


def test_delay_fault_holds_the_answer_and_stop_cuts_it_short(http):
    with NebulaEmulator() as emu:
        emu.enqueue(Fault.delay(0.3))
        started = time.monotonic()
        assert post(http, emu).status_code == 200
        assert time.monotonic() - started >= 0.3

        emu.enqueue(Fault.delay(0.5))
        with pytest.raises(requests.exceptions.ReadTimeout):
            post(http, emu, timeout=0.1)

        emu.enqueue(Fault.delay(60))
        outcome: list[object] = []

        def call() -> None:
            try:
                outcome.append(post(requests.Session(), emu, timeout=10).status_code)
            except requests.RequestException as exc:  # the connection may close first
                outcome.append(exc)

        caller = threading.Thread(target=call)
        caller.start()
        time.sleep(0.1)
        started = time.monotonic()
    assert time.monotonic() - started < 10  # not the 60 s of the delay
    caller.join(5)
    assert not caller.is_alive()
    assert outcome  # answered early or cut off, but not left hanging


def test_drop_fault_closes_the_connection_without_a_byte(http, emu):
    emu.enqueue(Fault.drop())
    assert raw_post(emu, ["x"]) == b""

    emu.enqueue(Fault.drop())
    with pytest.raises(requests.exceptions.ConnectionError):
        post(http, emu)
    assert post(http, emu).status_code == 200
    assert [r.status for r in emu.embeddings_requests] == [0, 0, 200]


def test_truncate_fault_sends_half_the_announced_body(http, emu):
    emu.enqueue(Fault.truncate())
    raw = raw_post(emu, ["x", "y"])
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK")
    length = int(next(h for h in head.split(b"\r\n") if h.startswith(b"Content-Length")).split()[1])
    assert length > 2 * 1024 * 5  # the whole body of two vectors was announced
    assert len(body) == length // 2

    emu.enqueue(Fault.truncate())
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        post(http, emu)


def test_malformed_json_fault_is_a_200_that_does_not_parse(http, emu):
    emu.enqueue(Fault.malformed_json())
    response = post(http, emu)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(response.content)


def test_redirect_fault_points_elsewhere(http, emu):
    emu.enqueue(Fault.redirect("http://elsewhere.example/v1/embeddings"), Fault.redirect("/x", 308))
    response = post(http, emu, allow_redirects=False)
    assert response.status_code == 307
    assert response.headers["Location"] == "http://elsewhere.example/v1/embeddings"
    assert post(http, emu, allow_redirects=False).status_code == 308


def _check_corruption(kind: str, data: Any, body: dict[str, Any], n: int) -> None:
    """What each corruption promises, for a request of n inputs."""
    if kind == "no_data":
        assert "data" not in body
        return
    if kind == "empty_data":
        assert data == []
        return
    if kind == "not_a_list":
        assert isinstance(data, dict)
        assert "embedding" in data
        return
    indices = [item.get("index") for item in data]
    lengths = {len(item["embedding"]) for item in data}
    expected = {
        "missing_index": (n, lambda: indices.count(None) == 1),
        "duplicate_index": (n, lambda: len(set(indices)) == n - 1),
        "out_of_range_index": (n, lambda: n in indices),
        "non_int_index": (n, lambda: sum(isinstance(i, str) for i in indices) == 1),
        "missing_item": (n - 1, lambda: len(set(indices)) == n - 1),
        "extra_item": (n + 1, lambda: n in indices),
        "mixed_dimensions": (n, lambda: lengths == {1024, 1023}),
        "non_numeric": (
            n,
            lambda: any(
                v is None or isinstance(v, str) for item in data for v in item["embedding"]
            ),
        ),
    }
    count, holds = expected[kind]
    assert len(data) == count
    assert holds()
    if kind != "mixed_dimensions":
        assert lengths == {1024}


@pytest.mark.parametrize("kind", CORRUPTIONS)
def test_corrupt_fault_breaks_exactly_one_thing(http, emu, kind):
    emu.enqueue(Fault.corrupt(kind))
    response = post(http, emu, ["a", "b", "c"])
    assert response.status_code == 200
    body = response.json()
    assert body["model"] == DEFAULT_MODEL
    assert body["usage"]["prompt_tokens"] == 9
    _check_corruption(kind, body.get("data"), body, 3)
    assert emu.embeddings_requests[0].fault == f"corrupt:{kind}"
    # The next answer is whole again.
    assert len(post(http, emu, ["a", "b", "c"]).json()["data"]) == 3


def test_faults_are_consumed_first_in_first_out_by_embeddings_requests_only(http, emu):
    emu.enqueue(Fault.status(503), Fault.status(429), Fault.malformed_json())
    auth = {"Authorization": f"Bearer {emu.api_key}"}
    assert http.get(f"{emu.base_url}/models", headers=auth).status_code == 200  # no fault used
    statuses = [post(http, emu).status_code for _ in range(4)]
    assert statuses == [503, 429, 200, 200]
    assert [r.fault for r in emu.embeddings_requests] == [
        "status:503",
        "status:429",
        "malformed_json",
        None,
    ]


def test_a_fault_replaces_the_answer_before_the_key_is_checked(http, emu):
    emu.enqueue(Fault.status(503), Fault.corrupt("empty_data"))
    assert post(http, emu, key="ak_wrong").status_code == 503
    # Corruption only mangles a success; a refused request is refused as usual.
    refused = post(http, emu, key="ak_wrong")
    assert refused.status_code == 401
    assert emu.embeddings_requests[1].fault == "corrupt:empty_data"


def test_fault_rate_hits_roughly_the_rate_and_is_reproducible(http, emu):
    def run() -> list[int]:
        emu.reset()
        emu.set_fault_rate(0.25, [Fault.status(503), Fault.status(500)], seed=1)
        return [post(http, emu, ["x"]).status_code for _ in range(200)]

    first = run()
    faulted = sum(status != 200 for status in first)
    assert 30 <= faulted <= 70
    assert {500, 503} <= set(first)
    assert run() == first

    emu.set_fault_rate(0)
    assert {post(http, emu, ["x"]).status_code for _ in range(20)} == {200}


def test_latency_is_added_to_every_embeddings_request(http, emu):
    emu.latency = 0.15
    started = time.monotonic()
    post(http, emu)
    post(http, emu)
    assert time.monotonic() - started >= 0.3
    with pytest.raises(ValueError, match="latency"):
        emu.latency = -1


def test_fault_constructors_refuse_nonsense():
    with pytest.raises(ValueError, match="unknown corruption"):
        Fault.corrupt("bad_kind")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        Fault.status(200)
    with pytest.raises(ValueError):
        Fault.redirect("/x", code=200)
    with pytest.raises(ValueError):
        Fault.delay(-1)
    assert str(Fault.status(429)) == Fault.status(429).name == "status:429"
    assert Fault.delay(1.5).name == "delay:1.5"
    assert Fault.status(429) == Fault.status(429)  # frozen and comparable


# -- recording -------------------------------------------------------------------------------


def test_requests_are_recorded_with_the_key_masked(http, emu):
    emu.enqueue(Fault.status(503))
    post(http, emu, ["one", "two"], model=QWEN)
    post(http, emu, ["three"])
    http.get(f"{emu.base_url.removesuffix('/v1')}/health")

    first, second, health = emu.requests
    assert first == RecordedRequest(
        model=QWEN,
        inputs=["one", "two"],
        status=503,
        fault="status:503",
        headers=first.headers,
        path="/v1/embeddings",
        method="POST",
    )
    assert (second.model, second.inputs, second.status, second.fault) == (
        DEFAULT_MODEL,
        ["three"],
        200,
        None,
    )
    assert first.headers["Authorization"] == first.headers["authorization"] == "Bearer ***"
    assert all(emu.api_key not in repr(record) for record in emu.requests)
    assert (health.method, health.path, health.model) == ("GET", "/health", None)
    assert emu.embeddings_requests == [first, second]


def test_reset_forgets_requests_and_faults(http, emu):
    emu.enqueue(Fault.status(500))
    emu.set_fault_rate(1.0, [Fault.status(503)])
    emu.reset()
    assert emu.requests == []
    assert post(http, emu).status_code == 200


# -- lifecycle, CLI and fixtures -------------------------------------------------------------


def test_stop_ends_keepalive_connections_and_releases_the_port(http):
    emu = NebulaEmulator().start()
    port = emu.port
    assert post(http, emu).status_code == 200  # the session now holds a keep-alive socket
    started = time.monotonic()
    emu.stop()
    emu.stop()
    assert time.monotonic() - started < 2
    with pytest.raises(RuntimeError, match="not running"):
        emu.base_url
    assert [t for t in threading.enumerate() if t.name.startswith(f"nebula-emulator:{port}")] == []
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
    with emu:  # and it starts again
        assert post(http, emu).status_code == 200


def test_the_cli_serves_until_sigterm():
    process = subprocess.Popen(
        [sys.executable, "-m", "nebula_core.testing", "--port", "0", "--api-key", "ak_cli"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        line = process.stdout.readline()
        settings = dict(pair.split("=", 1) for pair in line.split())
        assert settings["NEBULA_API_KEY"] == "ak_cli"
        assert settings["NEBULA_BASE_URL"].startswith("http://127.0.0.1:")
        response = requests.post(
            f"{settings['NEBULA_BASE_URL']}/embeddings",
            json={"model": DEFAULT_MODEL, "input": ["from the shell"]},
            headers={"Authorization": "Bearer ak_cli"},
            timeout=10,
        )
        assert response.status_code == 200
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    finally:
        process.kill()
        process.stdout.close()


def test_nebula_env_points_the_environment_at_the_emulator(nebula_env, http):
    assert os.environ["NEBULA_API_KEY"] == nebula_env.api_key
    assert os.environ["NEBULA_BASE_URL"] == nebula_env.base_url
    assert nebula_env.env() == {
        "NEBULA_API_KEY": nebula_env.api_key,
        "NEBULA_BASE_URL": nebula_env.base_url,
    }
    response = http.post(
        f"{os.environ['NEBULA_BASE_URL']}/embeddings",
        json={"model": DEFAULT_MODEL, "input": ["env"]},
        headers={"Authorization": f"Bearer {os.environ['NEBULA_API_KEY']}"},
    )
    assert response.status_code == 200


@pytest.mark.nebula_emulator(api_key="ak_marked", max_inputs_per_request=2)
def test_the_marker_configures_the_fixture(http, nebula_emulator):
    assert nebula_emulator.api_key == "ak_marked"
    assert post(http, nebula_emulator, ["a", "b", "c"]).status_code == 413


def test_the_fixtures_reach_a_users_suite_through_the_entry_point(pytester):
    pytester.makepyfile(
        """
        import os
        import requests

        def test_uses_it(nebula_env):
            url = os.environ["NEBULA_BASE_URL"] + "/embeddings"
            key = os.environ["NEBULA_API_KEY"]
            response = requests.post(url, json={"model": "m", "input": ["x"]},
                                     headers={"Authorization": "Bearer " + key})
            assert response.status_code == 200
            assert nebula_env.embeddings_requests[0].inputs == ["x"]
        """
    )
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)


def test_small_sequential_requests_are_not_held_back_by_nagle(http, emu):
    # Headers and body leave in one write on a TCP_NODELAY socket; otherwise Nagle's
    # algorithm and delayed ACKs cost ~40 ms per request (12 s here, whatever the CPU load).
    started = time.monotonic()
    for _ in range(300):
        assert post(http, emu, ["x"]).status_code == 200
    assert time.monotonic() - started < 6
