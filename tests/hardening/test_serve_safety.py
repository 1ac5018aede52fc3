"""`gt-finetune serve` against hostile callers: web pages (cross-site and DNS-rebinding requests),
malformed request fields, connection floods and slowloris sockets, and a port it cannot use.

The endpoint has no authentication and runs any prompt, so it answers only requests that name this
machine (`Host`, `Origin`) and send JSON; every bad field is a 400 naming it, never a 500; a burst of
connections is queued or answered 503, and a socket that never finishes its request is dropped.
"""
import _thread
import http.client
import json
import socket
import sys
import threading
import time
from pathlib import Path

import pytest
from hypothesis import given, strategies as st

from gt_finetune.cli import main
from gt_finetune.deploy.serve import load_for_serving, make_server
from gt_finetune.errors import InputError
from gt_finetune.registry import Registry

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fuzz_settings import fuzz  # noqa: E402

NAME = "gt-tiny"
USER = [{"role": "user", "content": "what next?"}]
BODY = {"model": NAME, "messages": USER, "max_tokens": 2}


@pytest.fixture(scope="module")
def served(tiny_model):
    return load_for_serving(tiny_model("llama3"), name=NAME)  # the template with native tool calls


def running(served, **kwargs):
    server = make_server(served, **kwargs)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture(scope="module")
def server(served):
    server = running(served)
    yield server
    server.shutdown()
    server.server_close()


def call(server, method, path, body=None, headers=None, port=None):
    """(status, parsed JSON body) with exactly the headers given (http.client adds Host unless told)."""
    conn = http.client.HTTPConnection("127.0.0.1", port or server.server_address[1], timeout=60)
    data = body if isinstance(body, (bytes, str)) or body is None else json.dumps(body)
    headers = {"Content-Type": "application/json", **(headers or {})}
    conn.putrequest(method, path, skip_host="Host" in headers)
    for key, value in headers.items():
        if value is not None:
            conn.putheader(key, value)
    if data is not None:
        conn.putheader("Content-Length", str(len(data.encode() if isinstance(data, str) else data)))
    conn.endheaders(data.encode() if isinstance(data, str) else data)
    resp = conn.getresponse()
    raw = resp.read().decode()
    conn.close()
    return resp.status, json.loads(raw) if raw and not raw.startswith("data:") else raw


# -- who may call ----------------------------------------------------------------------------------

@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.1:8000", "localhost", "LOCALHOST:1", "[::1]", "[::1]:8000"])
def test_loopback_host_names_are_answered(server, host):
    assert call(server, "GET", "/v1/models", headers={"Host": host})[0] == 200
    assert call(server, "POST", "/v1/chat/completions", BODY, headers={"Host": host})[0] == 200


@pytest.mark.parametrize("host", ["evil.example", "evil.example:8000", "127.0.0.1.evil.example",
                                  "localhost.evil.example", "evil@127.0.0.1", "10.0.0.1", "[::2]", "", None])
def test_a_foreign_host_is_refused_as_dns_rebinding(server, host):
    for method, path, body in (("GET", "/v1/models", None), ("POST", "/v1/chat/completions", BODY)):
        status, doc = call(server, method, path, body, headers={"Host": host})
        assert status == 403, doc
        assert doc["error"]["type"] == "invalid_request_error" and "Host" in doc["error"]["message"]


@pytest.mark.parametrize("origin", ["https://evil.example", "http://127.0.0.1.evil.example", "null",
                                    "file://", "http://10.0.0.1:8000"])
def test_a_foreign_origin_is_refused(server, origin):
    status, doc = call(server, "POST", "/v1/chat/completions", BODY, headers={"Origin": origin})
    assert status == 403 and "Origin" in doc["error"]["message"]


@pytest.mark.parametrize("origin", ["http://localhost:3000", "http://127.0.0.1:8000", "https://[::1]"])
def test_a_loopback_origin_is_answered(server, origin):
    assert call(server, "POST", "/v1/chat/completions", BODY, headers={"Origin": origin})[0] == 200


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data",
                                          "application/jsonx", None])
def test_only_json_bodies_are_read(server, content_type):
    status, doc = call(server, "POST", "/v1/chat/completions", json.dumps(BODY), headers={"Content-Type": content_type})
    assert status == 415 and "application/json" in doc["error"]["message"]


def test_json_with_a_charset_is_answered(server):
    headers = {"Content-Type": "Application/JSON; charset=utf-8"}
    assert call(server, "POST", "/v1/chat/completions", BODY, headers=headers)[0] == 200


def test_allow_remote_answers_any_host(served):
    server = running(served, allow_remote=True)
    try:
        assert call(server, "GET", "/v1/models", headers={"Host": "gpu-box.lan:8000"})[0] == 200
        headers = {"Host": "gpu-box.lan:8000", "Content-Type": "text/plain"}
        assert call(server, "POST", "/v1/chat/completions", BODY, headers=headers)[0] == 415  # JSON all the same
    finally:
        server.shutdown()
        server.server_close()


# -- malformed fields: a 400 naming the field, never a 500 ----------------------------------------

@pytest.mark.parametrize(("field", "value"), [
    ("response_format", "json"), ("response_format", ["text"]), ("response_format", {"type": "json_object"}),
    ("stop", 5), ("stop", {"a": 1}), ("stop", [1]), ("stop", ["a"] * 5),
    ("tools", [1, 2]), ("tools", "gt"), ("tools", [{"type": "function"}]), ("tools", [{"function": "gt"}]),
    ("stream", "yes"), ("stream_options", "usage"), ("stream_options", {"include_usage": "yes"}),
    ("n", True), ("n", "1"), ("n", 2), ("logprobs", "x"), ("max_tokens", 1.5), ("max_tokens", True),
    ("max_completion_tokens", "2"), ("temperature", "hot"), ("top_p", [1]),
    ("messages", {"role": "user"}), ("messages", ["hi"]),
    ("messages", [{"role": "user", "content": 5}]), ("messages", [{"role": "user", "content": [1]}]),
    ("messages", [{"role": "assistant", "tool_calls": "gt"}]),
    ("messages", [{"role": "assistant", "tool_calls": [1]}]),
    ("messages", [{"role": "assistant", "tool_calls": [{"function": "gt"}]}]),
    ("messages", [{"role": "assistant", "tool_calls": [{"function": {"name": 5}}]}]),
    ("messages", [{"role": "assistant", "tool_calls": [{"function": {"name": "gt", "arguments": 5}}]}]),
    ("messages", [{"role": "tool", "content": "x", "name": ["gt"]}]),
    ("model", 5), ("model", ""),
])
def test_a_malformed_field_is_a_400_naming_it(server, field, value):
    status, doc = call(server, "POST", "/v1/chat/completions", {**BODY, field: value})
    assert status == 400, doc
    error = doc["error"]
    assert error["type"] == "invalid_request_error" and (error["param"] or "").startswith(field), error


json_values = st.recursive(st.none() | st.booleans() | st.integers(-3, 10 ** 20) | st.floats() | st.text(max_size=8),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner,
                                                                                       max_size=3), max_leaves=8)
FIELDS = ("model", "messages", "tools", "tool_choice", "n", "logprobs", "response_format", "max_tokens",
          "max_completion_tokens", "temperature", "top_p", "stop", "stream", "stream_options", "seed")
message = st.fixed_dictionaries({"role": st.sampled_from(["system", "developer", "user", "assistant", "tool", "x"])},
                                optional={"content": json_values, "tool_calls": json_values, "name": json_values,
                                          "tool_call_id": json_values})


@given(fields=st.dictionaries(st.sampled_from(FIELDS), json_values, max_size=4),
       messages=st.none() | st.lists(message, min_size=1, max_size=3))
@fuzz(60)
def test_fuzzed_request_bodies_get_an_answer_or_a_4xx(server, fields, messages):
    body = {**BODY, **({"messages": messages} if messages else {}), **fields}
    if all(body.get(key) is None or type(body.get(key)) is int for key in ("max_tokens", "max_completion_tokens")):
        body["max_tokens"] = body["max_completion_tokens"] = 2  # a bounded answer; other types are refused anyway
    status, doc = call(server, "POST", "/v1/chat/completions", body)
    assert status < 500, (body, doc)
    assert status == 200 or doc["error"]["type"] == "invalid_request_error"


# -- floods and slow sockets -----------------------------------------------------------------------

def test_a_burst_of_connections_is_queued_not_reset(server):
    assert server.request_queue_size >= 128  # the listen backlog; socketserver's default is 5
    results = []

    def get():
        try:
            results.append(call(server, "GET", "/v1/models")[0])
        except OSError as e:
            results.append(repr(e))
    clients = [threading.Thread(target=get) for _ in range(200)]
    for t in clients:
        t.start()
    for t in clients:
        t.join(120)
    assert len(results) == 200 and set(results) <= {200, 503}, [r for r in results if r not in (200, 503)][:5]


def read_until_closed(sock, limit_s):
    """What the server sent before it closed `sock`; fails when it is still open after `limit_s`."""
    sock.settimeout(0.5)
    got, give_up = b"", time.monotonic() + limit_s
    while time.monotonic() < give_up:
        try:
            piece = sock.recv(4096)
        except TimeoutError:
            sock.sendall(b"X")  # a slowloris trickle: one byte of a header every half second
            continue
        except ConnectionResetError:
            return got
        if not piece:
            return got
        got += piece
    raise AssertionError(f"the server still holds the socket after {limit_s}s")


@pytest.mark.parametrize("start", [b"", b"GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ",
                                   b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                                   b"Content-Type: application/json\r\nContent-Length: 500\r\n\r\n{"])
def test_a_request_that_never_finishes_is_dropped(served, start):
    server = running(served, request_timeout=1)
    try:
        with socket.create_connection(server.server_address) as sock:
            sock.sendall(start)
            got = read_until_closed(sock, limit_s=30)
        assert got == b"" or got.split(b" ", 2)[1] == b"408", got[:200]
        assert call(server, "GET", "/v1/models")[0] == 200  # and the server still answers others
    finally:
        server.shutdown()
        server.server_close()


def test_connections_over_the_cap_get_a_quick_503_and_slots_come_back(served):
    server = running(served, max_connections=3, request_timeout=60)
    idle = [socket.create_connection(server.server_address) for _ in range(3)]
    try:
        with socket.create_connection(server.server_address) as extra:
            extra.settimeout(30)
            answer = extra.recv(4096)
        assert answer.split(b" ", 2)[1] == b"503", answer
        assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["error"]["type"] == "server_error"
        for sock in idle:
            sock.close()
        for _ in range(100):  # the handler threads see the close and give their slots back
            if call(server, "GET", "/v1/models")[0] == 200:
                break
            time.sleep(0.1)
        else:
            raise AssertionError("no slot came back after the idle connections closed")
    finally:
        for sock in idle:
            sock.close()
        server.shutdown()
        server.server_close()


# -- the port and the names ------------------------------------------------------------------------

def refuse_loading(monkeypatch):
    import gt_finetune.deploy.serve as serve_module

    def loaded(*args, **kwargs):
        raise AssertionError("the model was loaded before the port was checked")
    monkeypatch.setattr(serve_module, "load_for_serving", loaded)


@pytest.mark.parametrize("port", ["70000", "-1"])
def test_a_port_out_of_range_fails_before_the_model_loads(tiny_model, capsys, monkeypatch, port):
    refuse_loading(monkeypatch)
    code = main(["serve", str(tiny_model("llama3")), "--port", port])
    err = capsys.readouterr().err
    assert code in (1, 2) and "Traceback" not in err and "65535" in err, err


def test_a_taken_port_fails_before_the_model_loads(tiny_model, capsys, monkeypatch):
    refuse_loading(monkeypatch)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        code = main(["serve", str(tiny_model("llama3")), "--port", str(taken.getsockname()[1])])
    err = capsys.readouterr().err
    assert code == 1 and "\nerror: cannot listen on 127.0.0.1:" in err and "Traceback" not in err, err


def test_make_server_refuses_a_port_out_of_range(served):
    with pytest.raises(InputError, match="65535"):
        make_server(served, port=70000)


def test_a_registered_model_answers_to_its_job_id_full_id_and_deployed_alias(tiny_model, isolated, capsys):
    registry = Registry(isolated)
    registry.register(model_id="ft-1h6l-92eadf464e05", job_id="ft-1h6l", corpus_id="corpus-1", dataset_id="d",
                      train_dir=str(tiny_model("llama3")), base_model="tiny")
    registry.deployed("ft-1h6l-92eadf464e05", alias="finetune", deployment="dep-1")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    seen = {}

    def ask_then_stop():
        try:
            for _ in range(600):
                try:
                    seen["models"] = call(None, "GET", "/v1/models", port=port)[1]
                    break
                except OSError:
                    time.sleep(0.05)
            for name in ("ft-1h6l", "ft-1h6l-92eadf464e05", "finetune", "gpt-4o"):
                status, doc = call(None, "POST", "/v1/chat/completions", {**BODY, "model": name}, port=port)
                seen[name] = (status, doc.get("model") if status == 200 else doc["error"]["code"])
            seen["card"] = call(None, "GET", "/v1/models/finetune", port=port)[0]
        finally:
            _thread.interrupt_main()

    threading.Thread(target=ask_then_stop, daemon=True).start()
    assert main(["serve", "ft-1h6l", "--port", str(port)]) == 0, capsys.readouterr().err
    assert {m["id"] for m in seen["models"]["data"]} == {"ft-1h6l", "ft-1h6l-92eadf464e05", "finetune"}
    assert seen["ft-1h6l"] == (200, "ft-1h6l") and seen["ft-1h6l-92eadf464e05"] == (200, "ft-1h6l-92eadf464e05")
    assert seen["finetune"] == (200, "finetune") and seen["gpt-4o"] == (404, "model_not_found")
    assert seen["card"] == 200
