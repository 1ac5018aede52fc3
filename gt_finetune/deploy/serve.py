"""`gt-finetune serve`: the tuned model behind an OpenAI-compatible chat endpoint on 127.0.0.1, so
any agent harness that speaks the Chat Completions API can use it before it is deployed anywhere.

    curl http://127.0.0.1:8000/v1/chat/completions -H 'Content-Type: application/json' \\
         -d '{"model": "<name>", "messages": [{"role": "user", "content": "gt status?"}]}'

It runs transformers in this process, one generation at a time (later requests wait their turn):
a place to try the model, not a production server. It serves merged weights (safetensors,
tokenizer, chat template, `generation_config.json`; an export folder's `merged/`) or a training run
(`adapter/` + `manifest.json`, merged into its base on load), and stops where training taught the
model to stop: the EOS ids of `generation_config.json` (a list may add an end-of-turn token), the
tokenizer's EOS and the chat template's end-of-turn token. None of them ever reaches the content.

The same export serves faster elsewhere (flags checked against vLLM's engine-args reference and
llama.cpp's `tools/server` README; `other_runtimes(export_dir)` fills in the real paths):

    # merged weights; `--generation-config auto` reads generation_config.json, hence the stop tokens
    # (the default in current vLLM; older releases ignored the file unless told)
    vllm serve <merged> --served-model-name <name> --generation-config auto --host 127.0.0.1 --port 8000
    # the LoRA adapter on its base; requests name the adapter (`"model": "<name>"`); an adapter of
    # rank above 16 also needs `--max-lora-rank` (32, 64, 128, 256, 320 or 512, at least the rank)
    vllm serve <base> --enable-lora --lora-modules <name>=<adapter> --generation-config auto \\
        --host 127.0.0.1 --port 8000
    # the GGUF file; `--jinja` renders the chat template stored in the file (llama-server's default
    # in recent builds, explicit for older ones)
    llama-server -m <export>/model-f16.gguf --jinja --alias <name> --host 127.0.0.1 --port 8080

Wire format (OpenAI Chat Completions): `GET /v1/models`, `GET /v1/models/<name>`,
`POST /v1/chat/completions` with `model`, `messages` (system, developer (read as system), user,
assistant with `tool_calls`, tool; content a string or text parts), `tools` (handed to the chat
template), `max_tokens`/`max_completion_tokens`, `temperature` (0 or absent: greedy), `top_p`,
`stop` (a string or up to 4, cut from the text), `stream` (server-sent events ending `data: [DONE]`)
and `stream_options.include_usage`. Tool calls come back as the model wrote them, in `content`.

Who may call: it has no authentication and runs any prompt, so unless `--allow-remote` it answers
only requests whose `Host` (and `Origin`, when sent) names this machine — a web page cannot drive it
from the browser, nor read it through DNS rebinding — and reads only `application/json` bodies,
which a page cannot send cross-site without a preflight this server never grants. Each connection
has `request_timeout` seconds to deliver its request, and at most `max_connections` are handled at
once; more get a 503 at once, and a burst waits in a listen backlog of 128.
"""
from __future__ import annotations

import io
import ipaddress
import json
import re
import shlex
import sys
import threading
import time
import traceback
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from ..dataset.template import ChatTemplate
from ..device import pick_device
from ..errors import InputError
from ..workspace import parse_json
from .jsonfile import MAX_DEPTH, json_depth

MAX_BODY = 4 * 1024 * 1024  # bytes; a long agent transcript is well under 1 MB
ROLES = {"system", "developer", "user", "assistant", "tool"}
MAX_STOP = 4  # as OpenAI
VLLM_LORA_RANKS = (16, 32, 64, 128, 256, 320, 512)  # `--max-lora-rank` takes one of these; 16 is the default
REQUEST_TIMEOUT = 30.0  # seconds a connection has to send its whole request (a slowloris socket is dropped)
MAX_CONNECTIONS = 64  # handled at once; generation is one at a time anyway, the rest wait or are told to retry
# `Host` / the authority of `Origin`: a name or an IP literal, and an optional port; nothing else (no `user@`)
_AUTHORITY = re.compile(r"(?:\[(?P<ip6>[0-9A-Fa-f:.]+)\]|(?P<host>[^\[\]:@/\s]+))(?::\d{1,5})?")
_ORIGIN = re.compile(r"https?://(?P<authority>[^/]*)", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Served:
    """A model loaded for serving; `lock` lets one request generate at a time."""
    name: str
    model: object
    template: ChatTemplate
    stop_ids: tuple[int, ...]  # generation ends at any of these; none of them is ever shown
    context: int  # positions the model has: prompt + answer must fit
    created: int  # unix time the folder was written, for /v1/models
    aliases: tuple[str, ...] = ()  # other names clients may send: the job id, the deployed alias
    lock: threading.Lock = field(default_factory=threading.Lock, compare=False, repr=False)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys((self.name, *self.aliases)))


def load_for_serving(model_dir: Path, *, name: str, aliases: tuple[str, ...] = ()) -> Served:
    """Load merged weights, or a training run's adapter merged into its base, for generation.

    Args:
        model_dir: a model folder (`config.json` + safetensors + tokenizer with a chat template), an
            export folder (its `merged/`), or a training run folder (`adapter/` or `model/` +
            `manifest.json` naming the base).
        name: the model id clients send (`"model": name`).
        aliases: more names clients may send for it (a job id, a deployed alias); `/v1/models` lists all.

    Raises:
        InputError: the folder is missing or neither kind, the run's base is gone, or the tokenizer
            has no chat template that closes assistant turns.
    """
    import torch
    from transformers import AutoModelForCausalLM

    model_dir = Path(model_dir)
    weights, adapter, tokenizer_dir = _locate(model_dir)
    template = ChatTemplate.load(tokenizer_dir)
    device = pick_device()
    dtype, why = (torch.float32, "half precision is slow or missing on CPUs") if device == "cpu" else \
        ("auto", "the checkpoint's own dtype")
    print(f"  dtype: {dtype} ({why})", file=sys.stderr)
    model = AutoModelForCausalLM.from_pretrained(weights, dtype=dtype, local_files_only=True)
    eos = model.generation_config.eos_token_id
    if adapter is not None:
        from peft import PeftModel

        print(f"  adapter: {adapter} merged into {weights} for serving", file=sys.stderr)
        model = PeftModel.from_pretrained(model, adapter, local_files_only=True).merge_and_unload()
    model = model.to(device).eval()
    tokenizer = template.tokenizer
    stop = {*(eos if isinstance(eos, list) else [eos]), tokenizer.eos_token_id, template.end_of_turn} - {None}
    print(f"  stops at: {', '.join(f'`{tokenizer.convert_ids_to_tokens(i)}`' for i in sorted(stop))}",
          file=sys.stderr)
    context = getattr(model.config, "max_position_embeddings", None) or tokenizer.model_max_length
    return Served(name=name, model=model, template=template, stop_ids=tuple(sorted(stop)), context=int(context),
                  created=int(model_dir.stat().st_mtime), aliases=tuple(aliases))


class _Server(ThreadingHTTPServer):
    """One thread per connection, at most `max_connections` of them; the rest get a 503 at once."""

    request_queue_size = 128  # the listen backlog (socketserver's 5 resets a burst of clients)
    block_on_close = False  # closing the server does not wait for clients that never finish

    def __init__(self, address, served: Served | None, *, allow_remote: bool, request_timeout: float,
                 max_connections: int):
        super().__init__(address, _Handler, bind_and_activate=False)
        self.served, self.allow_remote, self.request_timeout = served, allow_remote, request_timeout
        self.max_connections, self.slots = max_connections, threading.BoundedSemaphore(max_connections)

    def process_request(self, request, client_address):
        if not self.slots.acquire(blocking=False):
            self._busy(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self.slots.release()
            raise

    def process_request_thread(self, request, client_address):
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.slots.release()

    def _busy(self, request) -> None:
        """Answer 503 without reading the request, from the accepting thread (the answer fits any socket buffer)."""
        body = json.dumps(_Refused(503, f"the server is busy: {self.max_connections} connections are open; "
                                        "retry in a moment", kind="server_error").body()).encode()
        head = (f"{_Handler.protocol_version} 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\nRetry-After: 1\r\nConnection: close\r\n\r\n").encode()
        try:
            request.settimeout(1)
            request.sendall(head + body)
        except OSError:
            pass
        self.shutdown_request(request)


def make_server(served: Served | None, *, host: str = "127.0.0.1", port: int = 0, allow_remote: bool = False,
                request_timeout: float = REQUEST_TIMEOUT, max_connections: int = MAX_CONNECTIONS) -> _Server:
    """A listening (not yet serving) HTTP server for `served`; `port=0` takes any free port.

    Args:
        served: the model; None only binds (a bad or taken port fails before a long model load, and
            nobody can connect yet): set `server.served`, then `server.server_activate()` listens.
        allow_remote: listen beyond loopback, and answer any `Host` and `Origin`.
        request_timeout: seconds a connection has to send a whole request (and an idle one stays open).
        max_connections: connections handled at once; one more gets a 503 straight away.

    Raises:
        InputError: `host` is not a loopback address and `allow_remote` is false, the port is not
            0-65535, or it cannot be bound (taken, not allowed).
    """
    _check_host(host, allow_remote=allow_remote)
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise InputError(f"port {port!r} is not a TCP port (0-65535)",
                         hint="pass 1-65535 (or 0 for any free port), e.g. `--port 8000`")
    try:
        server = _Server((host, port), served, allow_remote=allow_remote, request_timeout=request_timeout,
                         max_connections=max_connections)
    except OSError as e:  # the socket itself (a bad address family)
        raise _cannot_listen(host, port, e) from e
    try:
        server.server_bind()
        if served is not None:
            server.server_activate()
    except OSError as e:
        server.server_close()
        raise _cannot_listen(host, port, e) from e
    return server


def _cannot_listen(host: str, port: int, e: OSError) -> InputError:
    return InputError(f"cannot listen on {host}:{port}: {e.strerror or e}",
                      hint=f"pick another port, e.g. `--port {port + 1 if port else 8001}`")


def serve(model_dir: Path, *, host: str = "127.0.0.1", port: int = 8000, name: str, aliases: tuple[str, ...] = (),
          allow_remote: bool = False) -> None:
    """Bind, load `model_dir`, print the base URL on stdout and serve until Ctrl-C.

    Raises:
        InputError: as `make_server` (checked before the model load, which takes a while) and `load_for_serving`.
    """
    server = make_server(None, host=host, port=port, allow_remote=allow_remote)
    try:
        server.served = load_for_serving(model_dir, name=name, aliases=aliases)
        server.server_activate()
        url = f"http://{host}:{server.server_address[1]}/v1"
        print(f"serving `{name}` from {model_dir} at {url} (OpenAI Chat Completions; Ctrl-C stops)"
              + (f"; also answers to {', '.join(f'`{a}`' for a in server.served.names[1:])}"
                 if server.served.names[1:] else ""), file=sys.stderr)
        print(url, flush=True)
        server.serve_forever()
    except KeyboardInterrupt:
        print("stopped", file=sys.stderr)
    finally:
        server.server_close()


def other_runtimes(export_dir: Path, *, name: str | None = None) -> str:
    """The commands that serve what `export_dir` holds with vLLM and llama.cpp, one per artifact.

    Looks for merged weights (the folder itself, `merged/` or `model/`), a LoRA adapter (`adapter/`,
    its base from `manifest.json` or `adapter_config.json`) and `*.gguf` files (also one level down).

    Raises:
        InputError: `export_dir` does not exist.
    """
    export_dir = Path(export_dir)
    if not export_dir.is_dir():
        raise InputError(f"export folder {export_dir} does not exist", hint="pass the folder `gt-finetune` exported")
    name = name or export_dir.name
    q = shlex.quote
    lines = []
    merged = next((p for p in (export_dir, export_dir / "merged", export_dir / "model") if _is_model(p)), None)
    if merged:
        lines += ["# vLLM, merged weights (generation_config.json carries the stop tokens)",
                  f"vllm serve {q(str(merged))} --served-model-name {q(name)} --generation-config auto "
                  "--host 127.0.0.1 --port 8000"]
    adapter = next((p for p in (export_dir / "adapter", export_dir) if (p / "adapter_config.json").is_file()), None)
    if adapter:
        config = json.loads((adapter / "adapter_config.json").read_text())
        base = _run_base(export_dir) or config.get("base_model_name_or_path") or "<base>"
        rank = max([int(config.get("r") or 8), *map(int, (config.get("rank_pattern") or {}).values())])
        cap = next((r for r in VLLM_LORA_RANKS if r >= rank), VLLM_LORA_RANKS[-1])
        lines += ["# vLLM, the LoRA adapter on its base (requests name the adapter)",
                  f"vllm serve {q(str(base))} --enable-lora --lora-modules {q(f'{name}={adapter}')}"
                  + (f" --max-lora-rank {cap}" if cap > VLLM_LORA_RANKS[0] else "")
                  + " --generation-config auto --host 127.0.0.1 --port 8000"]
    for gguf in sorted({*export_dir.glob("*.gguf"), *export_dir.glob("*/*.gguf")}):
        lines += [f"# llama.cpp, {gguf.name}",
                  f"llama-server -m {q(str(gguf))} --jinja --alias {q(name)} --host 127.0.0.1 --port 8080"]
    return "\n".join(lines) if lines else f"# {export_dir} holds no merged weights, adapter or GGUF file"


# -- loading -------------------------------------------------------------------------------


def _locate(model_dir: Path) -> tuple[Path, Path | None, Path]:
    """(weights folder, adapter folder or None, tokenizer folder) for a model, an export or a training run."""
    if not model_dir.is_dir():
        raise InputError(f"model folder {model_dir} does not exist",
                         hint="pass a merged export or a training run folder (`<home>/train/<id>`)")
    for weights in (model_dir, model_dir / "merged"):
        if _is_model(weights):
            return weights, None, weights
    run_weights = next((p for p in (model_dir / "adapter", model_dir / "model") if p.is_dir()), None)
    if run_weights is not None and (model_dir / "manifest.json").is_file():
        base = _run_base(model_dir)
        if base is None or not Path(base).is_dir():
            raise InputError(f"training run {model_dir} names base model {base!r}, which is not a folder here",
                             hint="serve a merged export instead, or restore the base model folder")
        if run_weights.name == "model":  # a full fine-tune: the tuned weights are a model of their own
            return run_weights, None, Path(base)
        return Path(base), run_weights, Path(base)
    raise InputError(f"{model_dir} is neither a model folder (config.json + *.safetensors) nor a training run "
                     "(adapter/ + manifest.json)", hint="pass the merged export folder or the training run folder")


def _run_base(folder: Path) -> str | None:
    manifest = folder / "manifest.json"
    return json.loads(manifest.read_text()).get("model_dir") if manifest.is_file() else None


def _is_model(folder: Path) -> bool:
    return (folder / "config.json").is_file() and any(folder.glob("*.safetensors"))


def _loopback(host: str) -> bool:
    """`localhost` or a loopback IP literal (127.0.0.0/8, ::1)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _local_authority(authority: str) -> bool:
    """A `Host` header (or an `Origin`'s authority) that names this machine: `127.0.0.1:8000`, `[::1]`, `localhost`."""
    m = _AUTHORITY.fullmatch(authority)
    return bool(m) and _loopback(m["ip6"] or m["host"])


def _check_host(host: str, *, allow_remote: bool) -> None:
    if not (allow_remote or _loopback(host)):
        raise InputError(f"refusing to listen on `{host}`: the endpoint has no authentication and runs any prompt "
                         "sent to it, so it listens on this machine only",
                         hint="keep `--host 127.0.0.1` and tunnel from elsewhere (`ssh -L 8000:127.0.0.1:8000 "
                              "<this host>`), or pass `--allow-remote` on a network you trust")


# -- one request ---------------------------------------------------------------------------


class _Refused(Exception):
    """A request answered with an OpenAI-shaped error instead of a completion."""

    def __init__(self, status: int, message: str, *, param: str | None = None, code: str | None = None,
                 kind: str = "invalid_request_error"):
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.kind = status, message, param, code, kind

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}}


@dataclass(frozen=True, slots=True)
class _Request:
    model: str  # the name the client used, echoed in the answer
    messages: list
    tools: list | None
    max_tokens: int | None
    temperature: float
    top_p: float | None
    stop: tuple[str, ...]
    stream: bool
    include_usage: bool


def _parse(body: bytes, served: Served) -> _Request:
    """The request's generation settings, or `_Refused` saying which field is wrong (never a crash:
    every field is checked for its type before it is used)."""
    try:
        doc = parse_json(body.decode("utf-8"))
    except ValueError as e:  # bad bytes, bad JSON, an integer past 4300 digits, nesting past the stack
        raise _Refused(400, f"the request body is not valid JSON ({str(e)[:200]})") from None
    if json_depth(doc) > MAX_DEPTH:
        raise _Refused(400, f"the request body nests JSON more than {MAX_DEPTH} levels deep")
    if not isinstance(doc, dict):
        raise _Refused(400, "the request body must be a JSON object")
    model = doc.get("model")
    if not isinstance(model, str) or not model:
        raise _Refused(400, "you must provide a model parameter", param="model")
    if model not in served.names:
        raise _Refused(404, f"The model `{model[:100]}` does not exist; this server serves "
                            + ", ".join(f"`{n}`" for n in served.names), param="model", code="model_not_found")
    messages = doc.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _Refused(400, "`messages` must be a non-empty array", param="messages")
    messages = [_message(m, i) for i, m in enumerate(messages)]
    tools = doc.get("tools")
    if tools is not None and not (isinstance(tools, list)
                                  and all(_function(t) and t.get("type", "function") == "function" for t in tools)):
        raise _Refused(400, '`tools` must be an array of `{"type": "function", "function": {"name": …}}`',
                       param="tools")
    n = doc.get("n")
    if n is not None and (isinstance(n, bool) or n != 1):
        raise _Refused(400, "only `n: 1` is supported", param="n")
    if doc.get("logprobs") not in (None, False):
        raise _Refused(400, "`logprobs` is not supported", param="logprobs")
    response_format = doc.get("response_format")
    if response_format is not None and not (isinstance(response_format, dict)
                                            and response_format.get("type", "text") == "text"):
        raise _Refused(400, 'only `response_format: {"type": "text"}` is supported', param="response_format")
    for key in ("max_tokens", "max_completion_tokens"):
        value = doc.get(key)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            raise _Refused(400, f"`{key}` must be a positive integer, not {json.dumps(value)[:100]}", param=key)
    max_tokens = doc.get("max_completion_tokens") or doc.get("max_tokens")
    temperature = _number(doc, "temperature", 0.0, 0.0, 2.0)
    top_p = _number(doc, "top_p", None, 0.0, 1.0)
    if top_p == 0.0:
        raise _Refused(400, "`top_p` must be above 0", param="top_p")
    stop = doc.get("stop")
    stop = () if stop is None else (stop,) if isinstance(stop, str) else tuple(stop) if isinstance(stop, list) else None
    if stop is None or len(stop) > MAX_STOP or not all(isinstance(s, str) and s for s in stop):
        raise _Refused(400, f"`stop` must be a string or an array of at most {MAX_STOP} non-empty strings",
                       param="stop")
    stream = doc.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise _Refused(400, "`stream` must be true or false", param="stream")
    options = doc.get("stream_options")
    if options is not None and not (isinstance(options, dict) and options.get("include_usage") in (None, True, False)):
        raise _Refused(400, '`stream_options` must be an object like `{"include_usage": true}`', param="stream_options")
    return _Request(model=model, messages=messages, tools=tools, max_tokens=max_tokens, temperature=temperature,
                    top_p=top_p, stop=stop, stream=bool(stream),
                    include_usage=bool((options or {}).get("include_usage")))


def _message(m, i: int) -> dict:
    """One message as chat templates expect it: string content, `developer` read as `system`."""
    where = f"messages[{i}]"
    if not isinstance(m, dict) or not isinstance(m.get("role"), str) or m["role"] not in ROLES:
        raise _Refused(400, f"{where} must be an object whose `role` is one of {', '.join(sorted(ROLES))}", param=where)
    content = m.get("content")
    if isinstance(content, list):
        if not all(isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str) for p in content):
            raise _Refused(400, f"{where}.content: only text parts are supported", param=f"{where}.content")
        content = "\n".join(p["text"] for p in content)
    elif content is not None and not isinstance(content, str):
        raise _Refused(400, f"{where}.content must be a string or an array of text parts", param=f"{where}.content")
    for key in ("name", "tool_call_id"):
        if m.get(key) is not None and not isinstance(m[key], str):
            raise _Refused(400, f"{where}.{key} must be a string", param=f"{where}.{key}")
    calls = m.get("tool_calls")
    if calls is not None and not (isinstance(calls, list) and all(
            (f := _function(c)) is not None and isinstance(f.get("arguments"), (str, dict, type(None)))
            for c in calls)):
        raise _Refused(400, f'{where}.tool_calls must be an array of `{{"function": {{"name": …, "arguments": …}}}}`',
                       param=f"{where}.tool_calls")
    role = "system" if m["role"] == "developer" else m["role"]
    return {**m, "role": role, "content": content or ""}


def _function(item) -> dict | None:
    """`item["function"]` when it is `{"name": str, …}`, the shape tools and tool calls share; else None."""
    function = item.get("function") if isinstance(item, dict) else None
    return function if isinstance(function, dict) and isinstance(function.get("name"), str) else None


def _number(doc: dict, key: str, default, low: float, high: float):
    value = doc.get(key)
    if value is None:
        return default
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not low <= value <= high:
        raise _Refused(400, f"`{key}` must be a number from {low:g} to {high:g}, not {value!r}", param=key)
    return float(value)


class _Turn:
    """Sees each token the moment `generate` picks it (as a stopping criterion, so it can also halt
    generation at once): counts it, turns the tokens so far into text, cuts at a `stop` string, and
    hands `emit` the text that can no longer change. `emit` returns False when the client has gone.
    """

    def __init__(self, served: Served, *, max_tokens: int, stop: tuple[str, ...], emit=None):
        self.tokenizer, self.stop_ids, self.stop = served.template.tokenizer, set(served.stop_ids), stop
        self.max_tokens, self.emit = max_tokens, emit
        self.ids: list[int] = []  # the answer's tokens, the stop token left out
        self.count = 0  # tokens generated, the stop token included
        self.text, self.sent = "", 0
        self.finish: str | None = None
        self.gone = False

    def __call__(self, input_ids, scores, **kwargs):
        import torch

        token = int(input_ids[0, -1])
        self.count += 1
        if token in self.stop_ids:
            self.finish = "stop"
        else:
            self.ids.append(token)
            self.text = self.tokenizer.decode(self.ids, skip_special_tokens=True)
            cut = min((i for i in (self.text.find(s) for s in self.stop) if i >= 0), default=None)
            if cut is not None:
                self.text, self.finish = self.text[:cut], "stop"
        if self.finish is None and self.count >= self.max_tokens:
            self.finish = "length"
        self._send()
        return torch.full((input_ids.shape[0],), self.finish is not None or self.gone, dtype=torch.bool,
                          device=input_ids.device)

    def _send(self) -> None:
        ready = len(self.text) if self.finish else self._settled()
        if self.emit is None or self.gone or ready <= self.sent:
            return
        self.gone = not self.emit(self.text[self.sent:ready])
        self.sent = ready

    def _settled(self) -> int:
        """How much of the text is final: not a possible start of a stop string, nor half a character."""
        end = len(self.text)
        held = max((k for s in self.stop for k in range(1, len(s)) if self.text.endswith(s[:k])), default=0)
        end -= held
        while end and self.text[end - 1] == "\ufffd":  # a multi-byte character still arriving
            end -= 1
        return end


def _generate(served: Served, prompt_ids: list[int], req: _Request, *, max_tokens: int, emit=None) -> _Turn:
    import torch
    from transformers import StoppingCriteriaList

    turn = _Turn(served, max_tokens=max_tokens, stop=req.stop, emit=emit)
    ids = torch.tensor([prompt_ids], device=served.model.device)
    tokenizer = served.template.tokenizer
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else served.stop_ids[0]
    sampling = {"do_sample": True, "temperature": req.temperature, "top_p": req.top_p} if req.temperature > 0 \
        else {"do_sample": False}
    with torch.no_grad():
        served.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_tokens,
                              eos_token_id=list(served.stop_ids), pad_token_id=pad,
                              stopping_criteria=StoppingCriteriaList([turn]), **sampling)
    return turn


def _prompt(served: Served, req: _Request) -> tuple[list[int], int]:
    """The rendered prompt's token ids and the answer's token budget."""
    from jinja2 import TemplateError

    template = served.template
    try:
        text = template.text(template.prepare(req.messages), tools=req.tools, generation_prompt=True)
    except (TemplateError, KeyError, TypeError) as e:
        raise _Refused(400, f"the model's chat template cannot render these messages: {e}", param="messages") from None
    ids = template.tokenizer(text, add_special_tokens=False)["input_ids"]
    room = served.context - len(ids)
    if room < 1 or (req.max_tokens or 0) > room:
        raise _Refused(400, f"this model's context is {served.context} tokens; the messages take {len(ids)} and "
                            f"{req.max_tokens or 1} more were asked for", param="messages",
                       code="context_length_exceeded")
    return ids, req.max_tokens or room


class _Deadline(io.RawIOBase):
    """The socket as `rfile` reads it, with one deadline for the whole request rather than one per
    read: a client trickling a byte at a time cannot hold its thread forever."""

    def __init__(self, handler: "_Handler"):
        super().__init__()
        self.handler = handler

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        sock, timeout = self.handler.connection, self.handler.server.request_timeout
        left = self.handler.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"the request took over {timeout:g}s")
        sock.settimeout(left)
        try:
            return sock.recv_into(buffer)
        finally:
            sock.settimeout(timeout)  # each write (a stream to a slow reader) gets the whole timeout


class _Handler(BaseHTTPRequestHandler):
    """Routes the three endpoints; every answer is JSON or server-sent events."""

    server_version = "gt-finetune-serve"
    allow = ""  # the method a 405 answer names

    def setup(self):
        super().setup()
        self.connection.settimeout(self.server.request_timeout)
        self.rfile.close()
        self.rfile = io.BufferedReader(_Deadline(self))

    def handle_one_request(self):
        self.deadline = time.monotonic() + self.server.request_timeout  # idle keep-alive time counts too
        super().handle_one_request()

    def do_GET(self):
        self._route("GET")

    def do_POST(self):
        self._route("POST")

    def do_PUT(self):
        self._route("PUT")

    def do_DELETE(self):
        self._route("DELETE")

    def do_PATCH(self):
        self._route("PATCH")

    def _route(self, method: str) -> None:
        started = time.monotonic()
        self.status, self.wrote_headers, self.usage = 0, False, None
        served: Served = self.server.served
        path = self.path.split("?", 1)[0].rstrip("/")
        allowed = {"/v1/models": "GET", **{f"/v1/models/{n}": "GET" for n in served.names},
                   "/v1/chat/completions": "POST"}
        try:
            if not self.server.allow_remote:
                self._check_caller()
            if path not in allowed:
                raise _Refused(404, f"Invalid URL ({method} {path}): this server answers GET /v1/models and "
                                    "POST /v1/chat/completions")
            if method != allowed[path]:
                self.allow = allowed[path]
                raise _Refused(405, f"{method} is not allowed on {path}; use {allowed[path]}")
            if path == "/v1/chat/completions":
                self._complete(served)
            elif path == "/v1/models":
                self._json(200, {"object": "list", "data": [_model_card(served, n) for n in served.names]})
            else:
                self._json(200, _model_card(served, path.rsplit("/", 1)[1]))
        except _Refused as e:
            self._json(e.status, e.body())
        except TimeoutError:  # the body did not arrive in time (writes that time out mean the client is gone)
            self._json(408, _Refused(408, f"the request did not arrive within {self.server.request_timeout:g}s").body())
        except Exception:  # a bug: say so in OpenAI's shape, keep serving, put the traceback in the log
            traceback.print_exc(file=sys.stderr)
            if not self.wrote_headers:
                self._json(500, _Refused(500, "internal error in gt-finetune serve; the traceback is in its log",
                                         kind="server_error").body())
        tokens = f" prompt={self.usage[0]} completion={self.usage[1]}" if self.usage else ""
        print(f"serve: {method} {path} {self.status}{tokens} {time.monotonic() - started:.2f}s", file=sys.stderr)

    def _check_caller(self) -> None:
        """Refuse what only a web page elsewhere would send: another site's name in `Host` (DNS
        rebinding: the page's own name resolving to 127.0.0.1) or in `Origin` (a cross-site request)."""
        host = self.headers.get("Host")
        if host is None or not _local_authority(host):
            raise _Refused(403, f"`Host: {(host or '')[:100]}` does not name this machine; this server answers "
                                "requests to 127.0.0.1, [::1] or localhost only (`--allow-remote` lifts this)")
        origin = self.headers.get("Origin")
        found = None if origin is None else _ORIGIN.fullmatch(origin)
        if origin is not None and not (found and _local_authority(found["authority"])):
            raise _Refused(403, f"`Origin: {origin[:100]}` is not this machine; requests from web pages elsewhere "
                                "are refused (`--allow-remote` lifts this)")

    def _complete(self, served: Served) -> None:
        if self.headers.get_content_type() != "application/json":  # lower-cased, parameters (charset) dropped
            raise _Refused(415, "send the request as `Content-Type: application/json`, not "
                                f"`{(self.headers.get('Content-Type') or 'nothing')[:100]}`")
        length = self.headers.get("Content-Length")
        if length is None or not length.isdigit():
            raise _Refused(411, "send the body with a Content-Length header")
        if int(length) > MAX_BODY:
            raise _Refused(413, f"the request body is {int(length)} bytes; the limit is {MAX_BODY}")
        req = _parse(self.rfile.read(int(length)), served)
        cid, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
        with served.lock:  # one generation at a time; the tokenizer is not safe to share across threads either
            prompt_ids, max_tokens = _prompt(served, req)
            if not req.stream:
                turn = _generate(served, prompt_ids, req, max_tokens=max_tokens)
                self.usage = (len(prompt_ids), turn.count)
                self._json(200, {"id": cid, "object": "chat.completion", "created": created, "model": req.model,
                                 "choices": [{"index": 0, "message": {"role": "assistant", "content": turn.text},
                                              "logprobs": None, "finish_reason": turn.finish}],
                                 "usage": _usage(*self.usage)})
                return
            self._start(200, "text/event-stream; charset=utf-8", None)
            chunk = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": req.model}
            if req.include_usage:
                chunk["usage"] = None

            def event(delta: dict, finish: str | None = None) -> bool:
                choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
                return self._event({**chunk, "choices": [choice]})

            if not event({"role": "assistant", "content": ""}):
                self.status = "client gone"
                return
            turn = _generate(served, prompt_ids, req, max_tokens=max_tokens,
                             emit=lambda piece: event({"content": piece}))
            self.usage = (len(prompt_ids), turn.count)
            if turn.gone:
                self.status = "client gone"
                return
            event({}, turn.finish)
            if req.include_usage:
                self._event({**chunk, "choices": [], "usage": _usage(*self.usage)})
            self._event("[DONE]")

    def _event(self, data) -> bool:
        payload = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)
        try:
            self.wfile.write(f"data: {payload}\n\n".encode())
            self.wfile.flush()
            return True
        except OSError:  # gone, or not reading for `request_timeout` seconds
            return False

    def _json(self, status: int, doc: dict) -> None:
        body = json.dumps(doc, ensure_ascii=False).encode()
        try:
            self._start(status, "application/json", len(body))
            self.wfile.write(body)
        except OSError:
            self.status = f"{status} client gone"

    def _start(self, status: int, content_type: str, length: int | None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        if length is not None:
            self.send_header("Content-Length", str(length))
        else:
            self.send_header("Cache-Control", "no-cache")
        if status == 405:
            self.send_header("Allow", self.allow)
        if status >= 400:  # a refused body may be unread: never parse it as the next request
            self.send_header("Connection", "close")
        self.end_headers()
        self.status, self.wrote_headers = status, True

    def log_request(self, code="-", size="-"):
        """Silenced: `_route` logs one line per request, without any message content."""

    def log_message(self, format, *args):
        print(f"serve: {format % args}", file=sys.stderr)


def _model_card(served: Served, name: str) -> dict:
    return {"id": name, "object": "model", "created": served.created, "owned_by": "gt-finetune"}


def _usage(prompt: int, completion: int) -> dict:
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
