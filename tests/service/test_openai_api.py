"""The OpenAI-compatible routes, driven by the official `openai` client against the server on loopback
(real streaming): models, chat (whole and streamed, several turns on one session), completions, n, stop
and max_tokens, the engine's controls in extra fields, a model suffix and a system header, and errors."""

from __future__ import annotations

import openai
import pytest

SYSTEM = "A lighthouse keeper finds a letter from her brother, lost at sea ten years ago."


@pytest.fixture
def server(live_server, make_key):
    """(an OpenAI client with a good key, the app) on a live server over the fake harbour model."""
    key = make_key()
    url, app = live_server()
    client = openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0, timeout=30)
    yield client, app
    client.close()


def live_session(app, session_id: str):
    """The live session with that id, wherever its conversation keeps it."""
    return next(s for s in app.state.service.sessions._live.values() if s.id == session_id)


def test_models_are_listed_in_openais_shape(server):
    client, _ = server
    models = client.models.list().data
    assert [m.id for m in models] == ["embedded"]
    assert models[0].object == "model" and models[0].model_extra["engine"]["loaded"] is True


def test_a_chat_is_a_session_the_last_user_message_its_action(server):
    client, app = server
    messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "I open the letter."}]
    first = client.chat.completions.create(model="embedded", messages=messages, seed=5)
    reply = first.choices[0].message
    assert reply.role == "assistant" and len(reply.content.split()) > 10
    assert first.choices[0].finish_reason == "stop" and first.object == "chat.completion"
    assert first.usage.completion_tokens > 0 and first.usage.total_tokens >= first.usage.completion_tokens
    session_id = first.model_extra["engine"]["session"]
    s = live_session(app, session_id)
    assert s.request.premise == SYSTEM and [b.action for b in s.beats] == ["I open the letter."]
    # the client sends the conversation back with the next action: the same session plays on
    messages += [{"role": "assistant", "content": reply.content}, {"role": "user", "content": "I climb the stairs."}]
    second = client.chat.completions.create(model="embedded", messages=messages, seed=5)
    assert second.model_extra["engine"]["session"] == session_id
    assert live_session(app, session_id) is s  # found, not rebuilt (the same session, its KV cache with it)
    assert [b.action for b in s.beats] == ["I open the letter.", "I climb the stairs."]
    assert s.beats[0].text == reply.content and s.beats[1].text == second.choices[0].message.content


def test_an_edited_conversation_rebuilds_its_session_from_the_messages(server):
    client, app = server
    messages = [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": "I open the letter."},
        {"role": "assistant", "content": "The letter was dry, though the sea had kept it ten years."},
        {"role": "user", "content": "I read it aloud."},
    ]
    done = client.chat.completions.create(model="embedded", messages=messages)
    s = live_session(app, done.model_extra["engine"]["session"])
    assert [(b.action, b.text) for b in s.beats[:1]] == [(messages[1]["content"], messages[2]["content"])]
    assert s.beats[1].action == "I read it aloud." and len(s.beats) == 2


def test_a_streamed_chat_sends_deltas_that_make_the_whole_reply(server):
    client, app = server
    messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "I light the lamp."}]
    chunks = list(
        client.chat.completions.create(
            model="embedded", messages=messages, stream=True, stream_options={"include_usage": True}
        )
    )
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["stop"] and len(text.split()) > 10
    assert chunks[-1].usage.completion_tokens > 0 and not chunks[-1].choices
    sessions = app.state.service.sessions._live
    assert any(s.beats and s.beats[-1].text == text for s in sessions.values())


def test_n_choices_answer_the_same_conversation(server):
    client, app = server
    messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "I wait for the tide."}]
    done = client.chat.completions.create(model="embedded", messages=messages, n=2)
    assert [c.index for c in done.choices] == [0, 1] and all(c.message.content for c in done.choices)
    s = live_session(app, done.model_extra["engine"]["session"])
    assert len(s.beats) == 1  # the second choice answered the conversation, not the first choice


def test_stop_and_max_tokens_cut_the_reply(server):
    client, _ = server
    messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "I go down to the rocks."}]
    whole = client.chat.completions.create(model="embedded", messages=messages, seed=2).choices[0].message.content
    stop = whole.split()[4]
    cut = client.chat.completions.create(model="embedded", messages=messages, seed=2, stop=[stop]).choices[0]
    assert cut.finish_reason == "stop" and cut.message.content == whole[: whole.index(stop)]
    short = client.chat.completions.create(model="embedded", messages=messages, seed=2, max_tokens=6)
    assert short.choices[0].finish_reason == "length"
    assert 0 < short.usage.completion_tokens <= 6 and whole.startswith(short.choices[0].message.content)


def test_the_engines_controls_ride_in_fields_a_model_suffix_or_a_system_header(server):
    client, app = server
    user = {"role": "user", "content": "I open the letter."}

    def request_of(done):
        return live_session(app, done.model_extra["engine"]["session"]).request

    by_fields = client.chat.completions.create(
        model="embedded", messages=[{"role": "system", "content": SYSTEM}, user],
        extra_body={"culture": "ja-JP", "arc": "icarus", "audience": "children"},
    )  # fmt: skip
    r = request_of(by_fields)
    assert (r.culture, r.arc, r.audience) == ("ja-JP", "icarus", "children")
    by_suffix = client.chat.completions.create(
        model="embedded:culture=fr-FR,arc=cinderella", messages=[{"role": "system", "content": SYSTEM}, user]
    )
    assert (request_of(by_suffix).culture, request_of(by_suffix).arc) == ("fr-FR", "cinderella")
    header = {"role": "system", "content": f"[engine: culture=de-DE, audience=teen]\n{SYSTEM}"}
    by_header = client.chat.completions.create(model="embedded", messages=[header, user])
    r = request_of(by_header)
    assert (r.culture, r.audience, r.premise) == ("de-DE", "teen", SYSTEM)  # the header is not story material


def test_a_text_completion_is_the_opening_beat_of_its_prompt(server):
    client, _ = server
    done = client.completions.create(model="embedded", prompt=SYSTEM)
    assert done.object == "text_completion" and len(done.choices[0].text.split()) > 10
    chunks = client.completions.create(model="embedded", prompt=SYSTEM, stream=True)
    streamed = "".join(c.choices[0].text for c in chunks)
    assert len(streamed.split()) > 10


def test_errors_come_in_openais_shape_with_what_to_fix(server, live_server):
    client, _ = server
    bad = openai.OpenAI(base_url=str(client.base_url), api_key="not-a-key", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as e:
        bad.models.list()
    assert e.value.body["type"] == "unauthorized" and e.value.body["code"] == "unauthorized"
    with pytest.raises(openai.BadRequestError) as e:  # the story answers the player: the last message is theirs
        client.chat.completions.create(
            model="embedded", messages=[{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
        )
    assert "last message must be the player's" in e.value.message and e.value.body["param"] == "messages"
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(
            model="embedded", messages=[{"role": "user", "content": "hi"}], extra_body={"culture": "xx-XX"}
        )
    assert e.value.body["param"] == "culture"
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="embedded:mood=grim", messages=[{"role": "user", "content": "hi"}])
    assert "'mood=grim' is not a control" in e.value.message
    with pytest.raises(openai.UnprocessableEntityError) as e:
        client.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "hi"}])
    assert "no-such-model" in e.value.message


def test_an_authors_note_and_a_sampler_preset_ride_in_extra_fields(server):
    client, app = server
    messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "I open the letter."}]
    done = client.chat.completions.create(
        model="embedded", messages=messages, extra_body={"author_note": "Keep it quiet.", "preset": "creative"}
    )
    request = live_session(app, done.model_extra["engine"]["session"]).request
    assert request.author_note == "Keep it quiet." and request.sampling.temperature == 1.0
    messages += [{"role": "assistant", "content": done.choices[0].message.content},
                 {"role": "user", "content": "I read it aloud."}]  # fmt: skip
    again = client.chat.completions.create(model="embedded", messages=messages, temperature=0.3)
    assert again.model_extra["engine"]["session"] == done.model_extra["engine"]["session"]  # the same story
    request = live_session(app, done.model_extra["engine"]["session"]).request
    assert request.sampling.temperature == 0.3 and request.author_note is None  # this call's own settings


def test_two_clients_with_the_same_conversation_each_play_their_own(server):
    """The same system message and first action from two clients: neither takes over the other's story."""
    import threading

    client, app = server
    opening = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "I open the letter."}]
    first = client.chat.completions.create(model="embedded", messages=opening, seed=1)
    replies = {}

    def go_on(name: str, action: str) -> None:
        messages = [*opening, {"role": "assistant", "content": first.choices[0].message.content},
                    {"role": "user", "content": action}]  # fmt: skip
        replies[name] = client.chat.completions.create(model="embedded", messages=messages, seed=1)

    threads = [threading.Thread(target=go_on, args=(n, a)) for n, a in (("a", "I burn it."), ("b", "I keep it."))]
    [t.start() for t in threads]
    [t.join(60) for t in threads]
    sessions = {replies[n].model_extra["engine"]["session"] for n in "ab"}
    assert len(sessions) == 2  # one went on with the first's session, the other was rebuilt beside it
    for name, action in (("a", "I burn it."), ("b", "I keep it.")):
        s = live_session(app, replies[name].model_extra["engine"]["session"])
        assert [b.action for b in s.beats] == ["I open the letter.", action]


def test_the_metrics_count_chat_turns_by_whether_their_session_was_found(server):
    client, app = server
    messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "I open the letter."}]
    done = client.chat.completions.create(model="embedded", messages=messages)
    messages += [
        {"role": "assistant", "content": done.choices[0].message.content},
        {"role": "user", "content": "I run."},
    ]
    client.chat.completions.create(model="embedded", messages=messages)
    client.chat.completions.create(model="embedded", messages=messages[:2])  # re-sent: a regenerate elsewhere
    counts = {s.labels["how"]: s.value for m in app.state.service.metrics.chat_sessions.collect() for s in m.samples
              if s.name.endswith("_total")}  # fmt: skip
    assert counts == {"found": 1.0, "made": 2.0}  # a new conversation, and the re-sent one
