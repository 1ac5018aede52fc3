"""`gt-finetune serve` over real HTTP: OpenAI's wire format, the trained stop tokens, errors, one
generation at a time. The model is a tiny Llama rewired to answer every prompt with one phrase and
then `<|im_end|>`, so what the server must return is known token by token."""
import _thread
import http.client
import json
import shutil
import signal
import socket
import threading
import time

import pytest

from gt_finetune.deploy.serve import load_for_serving, make_server, other_runtimes, serve
from gt_finetune.errors import InputError

PHRASE = "gt mail send mayor/"
NAME = "gt-tiny"
USER = [{"role": "user", "content": "what next?"}]


def chain_model(src, out):
    """A copy of `src` whose next token depends only on the current one (attention and MLP outputs
    zeroed, so the last hidden state is the current token's embedding) and whose untied head maps
    the generation prompt's last token → PHRASE's tokens → `<|im_end|>`."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(src)
    model = AutoModelForCausalLM.from_pretrained(src, tie_word_embeddings=False)
    start = tok.apply_chat_template(USER, add_generation_prompt=True, tokenize=False)
    answer = tok(PHRASE, add_special_tokens=False)["input_ids"]
    chain = [tok(start, add_special_tokens=False)["input_ids"][-1], *answer, tok.convert_tokens_to_ids("<|im_end|>")]
    assert len(set(chain)) == len(chain), "the phrase must not repeat a token (each token has one successor)"
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        model.lm_head.weight.zero_()
        for cur, nxt in zip(chain, chain[1:]):
            model.lm_head.weight[nxt] = model.model.embed_tokens.weight[cur] * 100
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out, answer


@pytest.fixture(scope="module")
def chain(tiny_model, tmp_path_factory):
    return chain_model(tiny_model("chatml"), tmp_path_factory.mktemp("chain"))


def running(served, **kwargs):
    server = make_server(served, **kwargs)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture(scope="module")
def server(chain):
    server = running(load_for_serving(chain[0], name=NAME))
    yield server
    server.shutdown()
    server.server_close()


def call(server, method, path, body=None, headers=None):
    conn = http.client.HTTPConnection("127.0.0.1", server.server_address[1], timeout=60)
    data = body if isinstance(body, (bytes, str)) or body is None else json.dumps(body)
    conn.request(method, path, data, {"Content-Type": "application/json", **(headers or {})})
    resp = conn.getresponse()
    raw = resp.read().decode()
    conn.close()
    return resp, raw


def complete(server, **fields):
    resp, raw = call(server, "POST", "/v1/chat/completions", {"model": NAME, "messages": USER, **fields})
    assert resp.status == 200, raw
    return json.loads(raw)


def stream(server, **fields):
    resp, raw = call(server, "POST", "/v1/chat/completions", {"model": NAME, "messages": USER, "stream": True,
                                                              **fields})
    assert resp.status == 200 and resp.getheader("Content-Type").startswith("text/event-stream"), raw
    events = [line[len("data: "):] for line in raw.split("\n\n") if line]
    assert events[-1] == "[DONE]"
    return [json.loads(e) for e in events[:-1]]


def prompt_ids(model_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    return tok(tok.apply_chat_template(USER, add_generation_prompt=True, tokenize=False),
               add_special_tokens=False)["input_ids"]


def test_models_lists_the_served_name(server):
    resp, raw = call(server, "GET", "/v1/models")
    doc = json.loads(raw)
    assert resp.status == 200 and doc["object"] == "list"
    assert [(m["id"], m["object"], m["owned_by"]) for m in doc["data"]] == [(NAME, "model", "gt-finetune")]
    assert isinstance(doc["data"][0]["created"], int)
    assert json.loads(call(server, "GET", f"/v1/models/{NAME}")[1])["id"] == NAME


def test_completion_stops_at_the_end_of_turn_token_and_counts_real_tokens(server, chain):
    doc = complete(server)
    assert doc["object"] == "chat.completion" and doc["model"] == NAME and doc["id"].startswith("chatcmpl-")
    (choice,) = doc["choices"]
    assert choice["index"] == 0 and choice["finish_reason"] == "stop"
    assert choice["message"] == {"role": "assistant", "content": PHRASE}  # no `<|im_end|>` text
    prompt = len(prompt_ids(chain[0]))
    completion = len(chain[1]) + 1  # the phrase and the end-of-turn token the model generated
    assert doc["usage"] == {"prompt_tokens": prompt, "completion_tokens": completion,
                            "total_tokens": prompt + completion}


def test_max_tokens_cuts_the_answer_with_finish_reason_length(server, chain):
    from transformers import AutoTokenizer

    doc = complete(server, max_tokens=2)
    assert doc["choices"][0]["finish_reason"] == "length"
    assert doc["choices"][0]["message"]["content"] == AutoTokenizer.from_pretrained(chain[0]).decode(chain[1][:2])
    assert doc["usage"]["completion_tokens"] == 2
    assert complete(server, max_completion_tokens=1)["usage"]["completion_tokens"] == 1


def test_greedy_answer_equals_model_generate(server, chain):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model_dir = chain[0]
    model, tok = AutoModelForCausalLM.from_pretrained(model_dir), AutoTokenizer.from_pretrained(model_dir)
    ids = torch.tensor([prompt_ids(model_dir)])
    out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=20, do_sample=False,
                         eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)[0, ids.shape[1]:].tolist()
    assert out[-1] == tok.eos_token_id
    assert complete(server, max_tokens=20, temperature=0)["choices"][0]["message"]["content"] == tok.decode(out[:-1])


def test_stream_deltas_add_up_to_the_non_streamed_answer(server):
    for fields in ({}, {"stop": "send"}, {"stop": "mailbox"}, {"max_tokens": 3}):  # "mail" is held back, then sent
        chunks = stream(server, **fields)
        whole = complete(server, **fields)["choices"][0]
        assert all(c["object"] == "chat.completion.chunk" and c["model"] == NAME for c in chunks)
        assert len({c["id"] for c in chunks}) == 1
        assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
        finishes = [c["choices"][0]["finish_reason"] for c in chunks]
        assert finishes == [None] * (len(chunks) - 1) + [whole["finish_reason"]]
        assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks) == whole["message"]["content"]
        assert len(chunks) > 3  # pieces arrive as tokens are generated, not in one block


def test_stream_usage_comes_last_when_asked(server):
    chunks = stream(server, stream_options={"include_usage": True})
    assert all(c["usage"] is None for c in chunks[:-1])
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"] == complete(server)["usage"]


def test_stop_strings_cut_the_text(server):
    assert complete(server, stop="send")["choices"][0] == {
        "index": 0, "message": {"role": "assistant", "content": "gt mail "}, "logprobs": None, "finish_reason": "stop"}
    assert complete(server, stop=["zzz", "mail"])["choices"][0]["message"]["content"] == "gt "


def test_an_eos_list_in_generation_config_adds_stop_tokens(chain, tmp_path):
    from transformers import AutoTokenizer

    model_dir = shutil.copytree(chain[0], tmp_path / "m")
    tok = AutoTokenizer.from_pretrained(model_dir)
    config = json.loads((model_dir / "generation_config.json").read_text())
    config["eos_token_id"] = [tok.eos_token_id, chain[1][2]]  # the phrase's third token ends the turn
    (model_dir / "generation_config.json").write_text(json.dumps(config))
    served = load_for_serving(model_dir, name=NAME)
    assert set(served.stop_ids) == {tok.eos_token_id, chain[1][2]}
    server = running(served)
    try:
        doc = complete(server)
    finally:
        server.shutdown()
        server.server_close()
    assert doc["choices"][0]["message"]["content"] == tok.decode(chain[1][:2])
    assert doc["choices"][0]["finish_reason"] == "stop" and doc["usage"]["completion_tokens"] == 3


def test_the_templates_end_of_turn_stops_even_when_generation_config_omits_it(tiny_model):
    served = load_for_serving(tiny_model("llama3"), name=NAME)
    tok = served.template.tokenizer
    assert {tok.convert_tokens_to_ids("<|eot_id|>"), tok.eos_token_id} <= set(served.stop_ids)


@pytest.mark.parametrize(("method", "path", "body", "status", "code", "allow"), [
    ("POST", "/v1/chat/completions", b"{not json", 400, None, None),
    ("POST", "/v1/chat/completions", {"model": NAME, "messages": []}, 400, None, None),
    ("POST", "/v1/chat/completions", {"model": NAME}, 400, None, None),
    ("POST", "/v1/chat/completions", {"model": NAME, "messages": [{"role": "robot", "content": "x"}]}, 400, None,
     None),
    ("POST", "/v1/chat/completions", {"model": NAME, "messages": USER, "temperature": 5}, 400, None, None),
    ("POST", "/v1/chat/completions", {"model": NAME, "messages": USER, "max_tokens": 0}, 400, None, None),
    ("POST", "/v1/chat/completions", {"model": NAME, "messages": USER, "max_tokens": 10 ** 6}, 400,
     "context_length_exceeded", None),
    ("POST", "/v1/chat/completions", {"model": "gpt-4o", "messages": USER}, 404, "model_not_found", None),
    ("POST", "/v1/completions", {"model": NAME, "prompt": "x"}, 404, None, None),
    ("GET", "/nope", None, 404, None, None),
    ("GET", "/v1/chat/completions", None, 405, None, "POST"),
    ("POST", "/v1/models", {}, 405, None, "GET"),
])
def test_errors_use_openais_shape(server, method, path, body, status, code, allow):
    resp, raw = call(server, method, path, body)
    assert resp.status == status
    error = json.loads(raw)["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"]
    assert error["type"] == "invalid_request_error" and error["code"] == code
    assert resp.getheader("Allow") == allow


def test_a_body_over_the_limit_is_refused_unread(server):
    resp, raw = call(server, "POST", "/v1/chat/completions", b"{}", {"Content-Length": str(5 * 1024 * 1024)})
    assert resp.status == 413 and "limit" in json.loads(raw)["error"]["message"]


def test_tool_turns_and_text_parts_are_accepted(server):
    messages = [{"role": "developer", "content": [{"type": "text", "text": "You are the mayor."}]},
                {"role": "user", "content": "check mail"},
                {"role": "assistant", "content": None, "tool_calls": [
                    {"id": "c1", "type": "function", "function": {"name": "gt", "arguments": "{\"args\": \"mail\"}"}}]},
                {"role": "tool", "tool_call_id": "c1", "content": "2 unread"}]
    tools = [{"type": "function", "function": {"name": "gt", "parameters": {"type": "object"}}}]
    resp, raw = call(server, "POST", "/v1/chat/completions", {"model": NAME, "messages": messages, "tools": tools,
                                                              "max_tokens": 4})
    assert resp.status == 200, raw


def test_concurrent_requests_wait_their_turn_and_both_succeed(server):
    results = []
    threads = [threading.Thread(target=lambda: results.append(complete(server))) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert [r["choices"][0]["message"]["content"] for r in results] == [PHRASE, PHRASE]


def test_sampling_answers_within_max_tokens(server):
    doc = complete(server, temperature=0.7, top_p=0.9, max_tokens=5)
    assert doc["usage"]["completion_tokens"] <= 5 and doc["choices"][0]["finish_reason"] in ("stop", "length")


def test_refuses_to_listen_beyond_this_machine_unless_allowed(server):
    served = server.served
    with pytest.raises(InputError, match="refusing to listen on `0.0.0.0`") as info:
        make_server(served, host="0.0.0.0")
    assert "--allow-remote" in info.value.hint and "127.0.0.1" in info.value.hint
    remote = make_server(served, host="0.0.0.0", allow_remote=True)
    remote.server_close()
    make_server(served, host="localhost").server_close()


def test_serve_prints_the_url_and_stops_cleanly_on_ctrl_c(chain, capsys):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]

    def interrupt_when_up():  # the port is bound at once and listens once the model is loaded
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            try:
                http.client.HTTPConnection("127.0.0.1", port, timeout=1).request("GET", "/v1/models")
                break
            except OSError:
                time.sleep(0.05)
        _thread.interrupt_main()

    def hung(*_):
        raise TimeoutError("serve did not stop on Ctrl-C")
    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(360)  # a lost Ctrl-C fails the test instead of hanging the suite
    threading.Thread(target=interrupt_when_up, daemon=True).start()
    try:
        serve(chain[0], port=port, name=NAME)  # returns (no KeyboardInterrupt escapes) once Ctrl-C arrives
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    out = capsys.readouterr()
    assert out.out == f"http://127.0.0.1:{port}/v1\n"
    assert "stopped" in out.err
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1)


def test_serves_a_training_run_through_its_adapter(tiny_model, tmp_path):
    import torch
    from peft import LoraConfig, PeftModel, get_peft_model
    from transformers import AutoModelForCausalLM

    base = tiny_model("chatml")
    torch.manual_seed(0)
    lora = get_peft_model(AutoModelForCausalLM.from_pretrained(base),
                          LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    run = tmp_path / "train-1"
    lora.save_pretrained(run / "adapter")
    (run / "manifest.json").write_text(json.dumps({"stage": "train", "model_dir": str(base)}))
    server = running(load_for_serving(run, name=NAME))
    try:
        got = complete(server, max_tokens=6)
    finally:
        server.shutdown()
        server.server_close()
    tuned = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), run / "adapter").eval()
    ids = torch.tensor([prompt_ids(base)])
    out = tuned.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=6, do_sample=False,
                         eos_token_id=2, pad_token_id=3)[0, ids.shape[1]:].tolist()
    tok = load_for_serving(base, name=NAME).template.tokenizer
    assert got["choices"][0]["message"]["content"] == tok.decode([t for t in out if t != 2], skip_special_tokens=True)


def test_a_folder_that_is_neither_model_nor_run_is_refused(tmp_path):
    with pytest.raises(InputError, match="neither a model folder"):
        load_for_serving(tmp_path, name=NAME)
    (tmp_path / "adapter").mkdir()
    (tmp_path / "manifest.json").write_text(json.dumps({"model_dir": str(tmp_path / "gone")}))
    with pytest.raises(InputError, match="names base model"):
        load_for_serving(tmp_path, name=NAME)


def test_an_export_folder_serves_its_merged_model(chain, tmp_path):
    shutil.copytree(chain[0], tmp_path / "export" / "merged")
    (tmp_path / "export" / "adapter").mkdir()  # an export keeps the adapter too, and its manifest names no base
    (tmp_path / "export" / "manifest.json").write_text(json.dumps({"stage": "export"}))
    assert load_for_serving(tmp_path / "export", name=NAME).model.config.tie_word_embeddings is False


def test_other_runtimes_names_each_exported_artifact(chain, tmp_path):
    export = tmp_path / "export"
    shutil.copytree(chain[0], export / "merged")
    (export / "adapter").mkdir()
    (export / "adapter" / "adapter_config.json").write_text(json.dumps({"r": 20, "base_model_name_or_path": "/m/base"}))
    (export / "model-f16.gguf").write_bytes(b"")
    text = other_runtimes(export, name="mayor")
    assert f"vllm serve {export / 'merged'} --served-model-name mayor --generation-config auto" in text
    assert f"vllm serve /m/base --enable-lora --lora-modules mayor={export / 'adapter'} --max-lora-rank 32" in text
    (export / "adapter" / "adapter_config.json").write_text(json.dumps({"r": 8, "base_model_name_or_path": "/m/base"}))
    assert "--max-lora-rank" not in other_runtimes(export, name="mayor")  # vLLM's default (16) covers rank 8
    assert f"llama-server -m {export / 'model-f16.gguf'} --jinja --alias mayor" in text
    (tmp_path / "empty").mkdir()
    assert "holds no merged weights, adapter or GGUF file" in other_runtimes(tmp_path / "empty")
