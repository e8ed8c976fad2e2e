"""Generator backends: the OpenAI-compatible client against a real (fake) server on 127.0.0.1
(conftest.py), llama-cpp-python's wrapper with and without the package, and the factory."""

from __future__ import annotations

import asyncio
import socket
import sys
import threading
import time
from types import SimpleNamespace

import pytest
from fake_openai import FakeOpenAI

from emotional_engine.config import ModelSpec, Settings
from emotional_engine.lm.builtin import BuiltinGenerator
from emotional_engine.lm.generator import BackendError, Generator, ModelInfo
from emotional_engine.lm.llama_cpp import LlamaCppGenerator
from emotional_engine.lm.models import make_generator
from emotional_engine.lm.openai_backend import OpenAIGenerator
from emotional_engine.lm.sampling import SamplingParams
from emotional_engine.text import estimate_tokens


@pytest.fixture
async def gen(fake):
    g = OpenAIGenerator(fake.url, "fake-model", timeout=2.0)
    yield g
    await g.aclose()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------- OpenAIGenerator


def test_openai_generator_is_a_generator():
    g = OpenAIGenerator("http://127.0.0.1:9", "m")
    assert isinstance(g, Generator)
    assert g.supports_logits_processors is False
    assert g.info == ModelInfo("openai", "m", None, None, None)
    text = "Once upon a time, a heron waited."
    assert g.count_tokens(text) == estimate_tokens(text)  # its tokenizer is the server's: an estimate
    assert g.vocabulary() is None and g.emotion_context("joy") is None


async def test_string_prompt_streams_from_completions_endpoint(fake, gen):
    pieces = [p async for p in gen.stream("Tell me a story", SamplingParams(max_tokens=20))]
    assert [p.text for p in pieces[:-1]] == fake.pieces  # in order, one piece per delta
    assert "".join(p.text for p in pieces) == "Once upon a time, é🙂"
    assert all(p.finish_reason is None for p in pieces[:-1])
    last = pieces[-1]
    assert last.text == "" and last.finish_reason == "stop"
    assert len(fake.requests) == 1
    req = fake.requests[0]
    assert req["path"] == "/v1/completions"
    assert req["body"]["prompt"] == "Tell me a story"
    assert "messages" not in req["body"]
    assert req["body"]["model"] == "fake-model"
    assert req["body"]["stream"] is True
    assert req["body"]["stream_options"] == {"include_usage": True}


async def test_message_list_streams_from_chat_endpoint(fake, gen):
    msgs = [{"role": "system", "content": "Be kind."}, {"role": "user", "content": "Hi"}]
    c = await gen.complete(msgs, SamplingParams())
    assert c.text == "Once upon a time, é🙂"
    req = fake.requests[0]
    assert req["path"] == "/v1/chat/completions"
    assert req["body"]["messages"] == msgs
    assert "prompt" not in req["body"]


@pytest.mark.parametrize(
    "control",
    ["<|im_end|>", "<|eot_id|>", "<|start_header_id|>", "</s>", "<s>", "[INST]", "[/INST]", "<end_of_turn>", "<<SYS>>"],
)
async def test_control_token_text_in_messages_reaches_the_server_defused(fake, gen, control):
    """The server's vocabulary is unknown: the common templates' control tokens are broken up, so a
    name such as "<|im_end|>" in a message is text to the server's tokenizer, not the end of a turn."""
    msgs = [{"role": "user", "content": f"Her name is {control}Ana."}, {"role": "assistant", "content": control}]
    await gen.complete(msgs, SamplingParams())
    sent = fake.requests[0]["body"]["messages"]
    assert all(control not in m["content"] for m in sent)
    assert [m["content"].replace("\u200b", "") for m in sent] == [m["content"] for m in msgs]


async def test_sampling_params_are_mapped_into_the_request(fake, gen):
    params = SamplingParams(
        max_tokens=33,
        temperature=0.25,
        top_p=0.9,
        top_k=40,
        min_p=0.05,
        repetition_penalty=1.3,
        presence_penalty=0.5,
        frequency_penalty=-0.5,
        stop=["\n\n", "THE END"],
        seed=1234,
    )
    await gen.complete("x", params)
    b = fake.requests[0]["body"]
    assert b["max_tokens"] == 33
    assert b["temperature"] == 0.25
    assert b["top_p"] == 0.9
    assert b["top_k"] == 40
    assert b["min_p"] == 0.05
    assert b["repetition_penalty"] == 1.3
    assert b["presence_penalty"] == 0.5
    assert b["frequency_penalty"] == -0.5
    assert b["stop"] == ["\n\n", "THE END"]
    assert b["seed"] == 1234


async def test_off_extras_are_not_sent(fake, gen):
    await gen.complete("x", SamplingParams(temperature=0.0))
    b = fake.requests[0]["body"]
    assert b["temperature"] == 0.0
    for key in ("top_k", "min_p", "repetition_penalty", "seed", "stop", "ignore_eos"):
        assert key not in b, key


async def test_finish_reason_and_server_usage_come_through(fake, gen):
    fake.finish_reason = "length"
    c = await gen.complete([{"role": "user", "content": "Hi"}], SamplingParams())
    assert c.finish_reason == "length"
    assert (c.prompt_tokens, c.completion_tokens, c.cached_tokens) == (11, 5, 3)
    assert 0 < c.ttft_ms <= c.total_ms


async def test_usage_is_counted_when_the_server_sends_none(fake, gen):
    fake.usage = None
    fake.pieces = ["a", "b", "c"]
    c = await gen.complete("x", SamplingParams())
    assert c.text == "abc"
    assert c.completion_tokens == 3
    assert c.prompt_tokens == 0
    assert 0 < c.ttft_ms <= c.total_ms


async def test_api_key_is_sent_as_bearer_and_trailing_v1_is_accepted(fake):
    g = OpenAIGenerator(fake.url + "/v1/", "m", api_key="sk-test")
    try:
        await g.complete("x", SamplingParams())
    finally:
        await g.aclose()
    req = fake.requests[0]
    assert req["path"] == "/v1/completions"
    assert req["headers"].get("Authorization") == "Bearer sk-test"


@pytest.mark.parametrize("status", [401, 500])
async def test_http_error_names_url_status_and_server_message(fake, gen, status):
    fake.mode = "error"
    fake.error_status = status
    fake.error_body = {"error": {"message": f"boom {status} from server", "type": "x", "code": None}}
    with pytest.raises(BackendError) as ei:
        await gen.complete("x", SamplingParams())
    msg = str(ei.value)
    assert f"{fake.url}/v1/completions" in msg
    assert str(status) in msg
    assert f"boom {status} from server" in msg


async def test_vllm_style_error_body_message_is_extracted(fake, gen):
    fake.mode = "error"
    fake.error_status = 400
    fake.error_body = {"object": "error", "message": "max_tokens is too large", "type": "BadRequestError", "code": 400}
    with pytest.raises(BackendError, match="400.*max_tokens is too large"):
        await gen.complete([{"role": "user", "content": "x"}], SamplingParams())


async def test_refused_connection_raises_backend_error():
    port = _free_port()  # nothing listens there any more
    g = OpenAIGenerator(f"http://127.0.0.1:{port}", "m", timeout=2.0)
    try:
        with pytest.raises(BackendError, match=f"127.0.0.1:{port}/v1/completions"):
            await g.complete("x", SamplingParams())
    finally:
        await g.aclose()


async def test_stalled_server_times_out_with_backend_error(fake):
    fake.mode = "stall"
    g = OpenAIGenerator(fake.url, "m", timeout=0.3)
    got = []
    t0 = time.perf_counter()
    try:
        with pytest.raises(BackendError, match="timed out") as ei:
            async for p in g.stream("x", SamplingParams()):
                got.append(p.text)
    finally:
        await g.aclose()
    assert time.perf_counter() - t0 < 2.0
    assert got == [fake.pieces[0]]  # what came before the stall was delivered
    assert f"{fake.url}/v1/completions" in str(ei.value)


async def test_stream_cut_short_raises_backend_error(fake, gen):
    fake.mode = "truncated"
    with pytest.raises(BackendError, match="before the response was complete"):
        await gen.complete("x", SamplingParams())


async def test_error_event_mid_stream_raises_backend_error(fake, gen):
    fake.mode = "midstream_error"
    with pytest.raises(BackendError, match="CUDA out of memory"):
        await gen.complete("x", SamplingParams())


async def test_processors_raise_value_error(gen):
    def proc(ids, logits):
        return logits

    with pytest.raises(ValueError, match="cannot apply"):
        gen.stream("x", SamplingParams(), processors=[proc])
    with pytest.raises(ValueError, match="cannot apply"):
        await gen.complete("x", SamplingParams(), processors=[proc])


async def test_cache_key_is_accepted_and_ignored(fake, gen):
    c = await gen.complete("x", SamplingParams(), kv_key="story-1")
    assert c.text == "".join(fake.pieces)
    assert "kv_key" not in fake.requests[0]["body"]


async def _wait_disconnected(state: FakeOpenAI, timeout: float = 2.0) -> bool:
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        if state.disconnected.is_set():
            return True
        await asyncio.sleep(0.02)
    return False


async def test_closing_the_stream_early_closes_the_http_stream(fake, gen):
    fake.mode = "slow"
    agen = gen.stream("x", SamplingParams())
    got = []
    async with asyncio.timeout(2):
        async for p in agen:
            got.append(p.text)
            if len(got) == 2:
                break
        await agen.aclose()
    assert got == ["w0 ", "w1 "]
    # Wait *blocking* the event loop: aclose() itself must have closed the connection, not some
    # finaliser the loop would run later.
    assert fake.disconnected.wait(2), "aclose() left the HTTP stream open"
    assert fake.slow_chunks_sent < 500


async def test_breaking_out_of_async_for_closes_the_http_stream(fake, gen):
    fake.mode = "slow"
    async with asyncio.timeout(2):
        async for p in gen.stream([{"role": "user", "content": "x"}], SamplingParams()):
            assert p.text == "w0 "
            break
    # the dropped async generator is finalised by the event loop, which closes the response
    assert await _wait_disconnected(fake), "the server kept streaming to a consumer that left"
    assert fake.slow_chunks_sent < 500


# --------------------------------------------------------------------------- LlamaCppGenerator


def test_llama_cpp_missing_gives_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "llama_cpp", None)  # makes `import llama_cpp` fail
    with pytest.raises(BackendError, match=r"llama-cpp-python is not installed; pip install llama-cpp-python"):
        LlamaCppGenerator.load("whatever.gguf")


class FakeLlama:
    """Stands in for llama_cpp.Llama: yields chunks in its formats, blocking like the real one."""

    def __init__(self, pieces, finish="stop", delay=0.0):
        self.pieces, self.finish, self.delay = pieces, finish, delay
        self.calls: list[tuple[str, dict]] = []
        self.closed_iters = 0
        self.yielded = 0
        self.threads: set[str] = set()

    def _gen(self, chat):
        try:
            self.threads.add(threading.current_thread().name)
            if chat:
                yield {"choices": [{"index": 0, "delta": {"role": "assistant"}, "finish_reason": None}]}
            for p in self.pieces:
                time.sleep(self.delay)
                self.yielded += 1
                if chat:
                    yield {"choices": [{"index": 0, "delta": {"content": p}, "finish_reason": None}]}
                else:
                    yield {"choices": [{"index": 0, "text": p, "finish_reason": None}]}
            if chat:
                yield {"choices": [{"index": 0, "delta": {}, "finish_reason": self.finish}]}
            else:
                yield {"choices": [{"index": 0, "text": "", "finish_reason": self.finish}]}
        finally:
            self.closed_iters += 1

    def create_completion(self, prompt, **kw):
        self.calls.append(("completion", {"prompt": prompt, **kw}))
        return self._gen(False)

    def create_chat_completion(self, messages, **kw):
        self.calls.append(("chat", {"messages": messages, **kw}))
        return self._gen(True)

    def tokenize(self, b: bytes):
        return list(b.split())


def _llama_gen(llm) -> LlamaCppGenerator:
    return LlamaCppGenerator(llm, ModelInfo("llama-cpp", "fake", None, 2048, None))


def test_llama_cpp_generator_is_a_generator_that_counts_with_its_own_tokenizer():
    g = _llama_gen(FakeLlama([]))
    assert isinstance(g, Generator) and g.supports_logits_processors is False
    assert g.count_tokens("a b c d") == 4  # FakeLlama's tokenizer splits on spaces
    assert g.vocabulary() is None and g.emotion_context("joy") is None


async def test_llama_cpp_streams_from_worker_thread_with_mapped_params():
    llm = FakeLlama(["It", " was", " dark"], finish="length")
    g = _llama_gen(llm)
    params = SamplingParams(
        max_tokens=7,
        temperature=0.3,
        top_p=0.8,
        top_k=20,
        min_p=0.1,
        repetition_penalty=1.2,
        presence_penalty=0.4,
        frequency_penalty=0.2,
        stop=["."],
        seed=9,
    )
    pieces = [p async for p in g.stream("a b c", params)]
    assert [p.text for p in pieces] == ["It", " was", " dark", ""]
    assert pieces[-1].finish_reason == "length"
    assert pieces[-1].usage["completion_tokens"] == 3
    assert pieces[-1].usage["prompt_tokens"] == 3
    kind, kw = llm.calls[0]
    assert kind == "completion" and kw["prompt"] == "a b c"
    assert kw == {
        "prompt": "a b c",
        "max_tokens": 7,
        "temperature": 0.3,
        "top_p": 0.8,
        "top_k": 20,
        "min_p": 0.1,
        "repeat_penalty": 1.2,
        "presence_penalty": 0.4,
        "frequency_penalty": 0.2,
        "stop": ["."],
        "seed": 9,
        "stream": True,
    }
    assert threading.current_thread().name not in llm.threads  # not run on the event loop's thread

    msgs = [{"role": "user", "content": "hi"}]
    c = await g.complete(msgs, SamplingParams())
    assert c.text == "It was dark"
    assert llm.calls[1][0] == "chat" and llm.calls[1][1]["messages"] == msgs


async def test_llama_cpp_does_not_block_the_event_loop():
    g = _llama_gen(FakeLlama(["a"] * 5, delay=0.04))
    ticks = 0

    async def ticker():
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    t = asyncio.create_task(ticker())
    try:
        c = await g.complete("x", SamplingParams())
    finally:
        t.cancel()
    assert c.text == "aaaaa"
    assert ticks >= 5  # the loop kept running during ~0.2 s of generation


async def test_llama_cpp_early_exit_stops_the_worker():
    llm = FakeLlama(["t"] * 200, delay=0.005)
    g = _llama_gen(llm)
    agen = g.stream("x", SamplingParams())
    async for _ in agen:
        break
    await agen.aclose()
    deadline = time.perf_counter() + 2
    while llm.closed_iters == 0 and time.perf_counter() < deadline:
        await asyncio.sleep(0.01)
    assert llm.closed_iters == 1
    assert llm.yielded < 200


async def test_llama_cpp_processors_raise_value_error():
    g = _llama_gen(FakeLlama(["a"]))
    with pytest.raises(ValueError, match="cannot apply"):
        g.stream("x", SamplingParams(), processors=[lambda ids, logits: logits])


async def test_llama_cpp_errors_become_backend_error():
    class Broken(FakeLlama):
        def create_completion(self, prompt, **kw):
            raise RuntimeError("kv cache full")

    g = _llama_gen(Broken([]))
    with pytest.raises(BackendError, match="kv cache full"):
        await g.complete("x", SamplingParams())


@pytest.mark.model
@pytest.mark.llama_cpp
async def test_llama_cpp_real_package():
    from emotional_engine.lm.gguf import embedded_model_path

    g = LlamaCppGenerator.load(embedded_model_path(), n_ctx=512)
    try:
        c = await g.complete("Once upon a time", SamplingParams(max_tokens=8, temperature=0.0))
    finally:
        await g.aclose()
    assert c.finish_reason in ("stop", "length")
    assert c.completion_tokens >= 1 and c.text


@pytest.mark.model
async def test_llama_cpp_text_in_messages_never_becomes_a_special_token_of_the_embedded_model(
    embedded_path, monkeypatch
):
    """llama-cpp-python tokenizes every prompt with special=True, chat template and message contents
    alike. The stand-in Llama does the same with the embedded model's tokenizer (its special tokens'
    texts encode to their single ids): every special token of the file, spelled in a message (a name,
    a premise), stays text in a chat and in a begun reply; the prompt holds the template's own only."""
    from emotional_engine.lm.gguf import read_metadata
    from emotional_engine.lm.tokenizer import BPETokenizer, render_chat

    tok = BPETokenizer(read_metadata(embedded_path)[1])

    class SpecialParsingLlama(FakeLlama):
        def __init__(self, model_path, **kw):
            super().__init__(["It"])
            self.metadata = {"general.name": "smollm", "tokenizer.chat_template": tok.chat_template}
            self.prompts: list[str] = []

        def n_ctx(self):
            return 512

        def create_completion(self, prompt, **kw):
            self.prompts.append(prompt)
            return super().create_completion(prompt, **kw)

        def create_chat_completion(self, messages, **kw):  # renders with the file's template, as the real one
            self.prompts.append(render_chat(tok.chat_template, messages, bos="", eos="", add_generation_prompt=True))
            return super().create_chat_completion(messages, **kw)

    monkeypatch.setitem(sys.modules, "llama_cpp", SimpleNamespace(Llama=SpecialParsingLlama))
    g = LlamaCppGenerator.load(embedded_path)

    async def specials(content: str, begun: bool) -> list[int]:
        msgs = [{"role": "system", "content": "s"}, {"role": "user", "content": content}]
        await g.complete(msgs + [{"role": "assistant", "content": content}] * begun, SamplingParams())
        return [i for i in tok.encode(g.llm.prompts[-1]) if i in tok.special_ids]

    assert len(tok.special_ids) > 10
    for begun in (False, True):
        plain = await specials("Anna and Ben", begun)
        assert plain  # the template's own markers are there
        for i in sorted(tok.special_ids):
            word = tok.token_text(i)
            assert await specials(f"Anna {word} and{word}Ben", begun) == plain, (word, begun)
            assert f"Anna {word} and{word}Ben" in g.llm.prompts[-1].replace("\u200b", "")  # still there to read


# --------------------------------------------------------------------------- factory


async def test_make_generator_picks_openai_for_an_openai_model(monkeypatch):
    monkeypatch.setenv("TEST_OPENAI_KEY", "k")
    spec = ModelSpec(name="remote", openai={"base_url": "http://127.0.0.1:9", "api_key_env": "TEST_OPENAI_KEY"})
    g = make_generator(spec, Settings(_env_file=None))
    try:
        assert isinstance(g, OpenAIGenerator)
        assert g.info.name == "default"
        assert g._client.headers["Authorization"] == "Bearer k"
    finally:
        await g.aclose()
    g = make_generator(
        Settings(openai_base_url="http://127.0.0.1:9", openai_model="llama3", _env_file=None).model_catalog().models[0],
        Settings(_env_file=None),
    )
    try:
        assert g.info.name == "llama3" and "Authorization" not in g._client.headers
    finally:
        await g.aclose()


def test_make_generator_otherwise_loads_the_builtin_with_the_settings(monkeypatch, tmp_path):
    seen = {}

    def fake_load(path=None, **kw):
        seen["path"], seen["kw"] = path, kw
        return "builtin"

    monkeypatch.setattr(BuiltinGenerator, "load", staticmethod(fake_load))
    (tmp_path / "m.gguf").write_bytes(b"")
    s = Settings(
        weight_format="fp32",
        max_batch=3,
        kv_cache_budget_mb=64,
        context_overflow="error",
        cache_dir=tmp_path,
        emotion_adapter=True,
        register_lora=tmp_path / "register.pt",
        _env_file=None,
    )
    assert make_generator(ModelSpec(name="m", gguf=tmp_path / "m.gguf"), s) == "builtin"
    assert seen == {
        "path": tmp_path / "m.gguf",
        "kw": {
            "weight_format": "fp32",
            "max_batch": 3,
            "cache_budget_mb": 64,
            "overflow": "error",
            "cache_dir": tmp_path,
            "emotion_adapter": True,
            "lora_path": tmp_path / "register.pt",
        },
    }
    assert Settings(_env_file=None).emotion_adapter is False  # off unless asked for (docs/benchmarks.md)
    assert make_generator(ModelSpec(name="e", builtin=True), s) == "builtin" and seen["path"] is None


def test_make_generator_runs_a_gguf_file_with_llama_cpp_when_asked(monkeypatch, tmp_path):
    monkeypatch.setattr(LlamaCppGenerator, "load", classmethod(lambda cls, path: ("llama-cpp", path)))
    (tmp_path / "m.gguf").write_bytes(b"")
    spec = ModelSpec(name="m", gguf=tmp_path / "m.gguf", runtime="llama-cpp")
    assert make_generator(spec, Settings(_env_file=None)) == ("llama-cpp", tmp_path / "m.gguf")


# --------------------------------------------------------------------------- prompt styles: a reply begun


CONTINUED = [{"role": "user", "content": "Write a story."}, {"role": "assistant", "content": "Mei, a potter, had"}]


async def test_openai_asks_the_server_to_continue_a_begun_reply(fake, gen):
    await gen.complete(CONTINUED, SamplingParams())
    body = fake.requests[0]["body"]
    assert body["messages"] == CONTINUED  # vLLM's extension: go on with the last assistant message
    assert body["continue_final_message"] is True and body["add_generation_prompt"] is False
    await gen.complete(CONTINUED[:1], SamplingParams())
    assert "continue_final_message" not in fake.requests[1]["body"]  # an ordinary chat sends no extension


async def test_llama_cpp_continues_a_begun_reply_as_text_through_the_chat_template():
    llm = FakeLlama([" made", " bowls."])
    pieces = [p.text async for p in _llama_gen(llm).stream(CONTINUED, SamplingParams())]
    kind, kw = llm.calls[0]
    assert kind == "completion" and "".join(pieces) == " made bowls."
    assert kw["prompt"] == "<|im_start|>user\nWrite a story.<|im_end|>\n<|im_start|>assistant\nMei, a potter, had"


def test_builtin_renders_a_begun_reply_unclosed(tokenizer):
    text = tokenizer.apply_chat_template(CONTINUED)
    assert text.endswith("<|im_start|>assistant\nMei, a potter, had")  # no end-of-turn after it
    assert text == tokenizer.apply_chat_template(CONTINUED[:1]) + "Mei, a potter, had"


def test_each_backend_has_its_prompt_style_and_a_model_entry_can_set_another(tmp_path):
    assert OpenAIGenerator("http://127.0.0.1:9", "m").info.prompt_style == "task"  # instruction-following servers
    assert _llama_gen(FakeLlama([])).info.prompt_style == "task"  # as constructed; load() sets continuation
    server = {"base_url": "http://127.0.0.1:9/v1", "model": "m"}
    settings = Settings()
    assert make_generator(ModelSpec(name="a", openai=server), settings).info.prompt_style == "task"
    spec = ModelSpec(name="b", openai=server, prompt_style="continuation")
    assert make_generator(spec, settings).info.prompt_style == "continuation"
    with pytest.raises(ValueError, match="prompt_style"):
        ModelSpec(name="c", openai=server, prompt_style="chat")
