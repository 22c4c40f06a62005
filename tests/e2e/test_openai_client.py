"""The official `openai` package, unmodified, against the server: completions and chat,
plain and streaming, with usage counts that match the server's own tokenizer."""
import openai
import pytest
import requests


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0, timeout=120)


def count_tokens(server, text, add_special=True):
    r = requests.post(server.url + "/tokenize", json={"content": text, "add_special": add_special}, timeout=30)
    r.raise_for_status()
    return len(r.json()["tokens"])


def chat_prompt_tokens(server, messages):
    r = requests.post(server.url + "/apply-template", json={"messages": messages}, timeout=30)
    r.raise_for_status()
    return count_tokens(server, r.json()["prompt"])


def test_models_list(client, model_name):
    models = client.models.list()
    assert [m.id for m in models.data] == [model_name]
    assert client.models.retrieve(model_name).id == model_name


def test_completion(client, server, model_name):
    prompt = "The capital of France is"
    r = client.completions.create(model=model_name, prompt=prompt, max_tokens=8, temperature=0)
    assert r.object == "text_completion"
    assert r.model == model_name
    assert r.id.startswith("cmpl-")
    assert len(r.choices) == 1
    choice = r.choices[0]
    assert choice.index == 0
    assert isinstance(choice.text, str) and choice.text
    assert choice.finish_reason in ("stop", "length")
    assert r.usage.prompt_tokens == count_tokens(server, prompt)
    if choice.finish_reason == "length":
        assert r.usage.completion_tokens == 8
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens


def test_completion_logprobs_and_token_counts(client, model_name):
    r = client.completions.create(model=model_name, prompt="Once upon a time", max_tokens=6, temperature=0,
                                  logprobs=2, extra_body={"ignore_eos": True})
    lp = r.choices[0].logprobs
    assert r.choices[0].finish_reason == "length"
    assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs) == len(lp.text_offset) == 6
    assert r.usage.completion_tokens == 6
    assert "".join(lp.tokens) == r.choices[0].text
    assert lp.text_offset[0] == 0
    for tok, logprob, top in zip(lp.tokens, lp.token_logprobs, lp.top_logprobs):
        assert logprob <= 0
        assert 1 <= len(top) <= 2
        # Greedy: the chosen token is the most likely one.
        assert abs(max(top.values()) - logprob) < 1e-4


def test_completion_stream(client, server, model_name):
    prompt = "Write a list of fruits:"
    plain = client.completions.create(model=model_name, prompt=prompt, max_tokens=12, temperature=0)
    stream = client.completions.create(model=model_name, prompt=prompt, max_tokens=12, temperature=0, stream=True,
                                       stream_options={"include_usage": True})
    text, finish, usage, n_chunks = "", None, None, 0
    for chunk in stream:
        n_chunks += 1
        if chunk.usage is not None:
            usage = chunk.usage
            assert chunk.choices == []
            continue
        assert len(chunk.choices) == 1
        text += chunk.choices[0].text
        if chunk.choices[0].finish_reason is not None:
            finish = chunk.choices[0].finish_reason
    assert n_chunks > 2
    assert text == plain.choices[0].text
    assert finish == plain.choices[0].finish_reason
    assert usage is not None
    assert usage.prompt_tokens == count_tokens(server, prompt)
    assert usage.completion_tokens == plain.usage.completion_tokens


def test_chat(client, server, model_name):
    messages = [{"role": "user", "content": "What is the capital of France? Answer in one word."}]
    r = client.chat.completions.create(model=model_name, messages=messages, max_tokens=16, temperature=0)
    assert r.object == "chat.completion"
    assert r.id.startswith("chatcmpl-")
    msg = r.choices[0].message
    assert msg.role == "assistant"
    assert "Paris" in msg.content
    assert r.choices[0].finish_reason in ("stop", "length")
    assert r.usage.prompt_tokens == chat_prompt_tokens(server, messages)
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens


def test_chat_stream_with_logprobs(client, server, model_name):
    messages = [{"role": "system", "content": "You are terse."},
                {"role": "user", "content": "Name three colors."}]
    plain = client.chat.completions.create(model=model_name, messages=messages, max_tokens=10, temperature=0)
    stream = client.chat.completions.create(model=model_name, messages=messages, max_tokens=10, temperature=0,
                                            stream=True, logprobs=True, top_logprobs=1,
                                            stream_options={"include_usage": True})
    content, roles, finish, usage, logprobs = "", [], None, None, []
    for chunk in stream:
        assert chunk.object == "chat.completion.chunk"
        if chunk.usage is not None:
            usage = chunk.usage
            continue
        delta = chunk.choices[0].delta
        if delta.role:
            roles.append(delta.role)
        content += delta.content or ""
        if chunk.choices[0].logprobs and chunk.choices[0].logprobs.content:
            logprobs.extend(chunk.choices[0].logprobs.content)
        finish = chunk.choices[0].finish_reason or finish
    assert roles == ["assistant"]
    assert content == plain.choices[0].message.content
    assert finish == plain.choices[0].finish_reason
    assert usage.prompt_tokens == chat_prompt_tokens(server, messages)
    assert usage.completion_tokens == plain.usage.completion_tokens == len(logprobs)
    for lp in logprobs:
        assert lp.logprob <= 0 and len(lp.top_logprobs) == 1
        assert bytes(lp.bytes).decode("utf-8", errors="replace") == lp.token or "\ufffd" in lp.token


def test_n_choices_with_seed(client, model_name):
    r = client.completions.create(model=model_name, prompt="Pick a random animal:", max_tokens=8, n=3, seed=42,
                                  temperature=1.0)
    assert sorted(c.index for c in r.choices) == [0, 1, 2]
    single = client.completions.create(model=model_name, prompt="Pick a random animal:", max_tokens=8, seed=42,
                                       temperature=1.0)
    # Choice 0 samples with the seed itself, so it equals the request with n = 1.
    assert r.choices[0].text == single.choices[0].text
    assert 3 <= r.usage.completion_tokens <= 24


def test_prompt_arrays_and_stop(client, server, model_name):
    r = client.completions.create(model=model_name, prompt=["One, two,", "Red, green,"], max_tokens=6,
                                  temperature=0)
    assert len(r.choices) == 2
    assert r.usage.prompt_tokens == count_tokens(server, "One, two,") + count_tokens(server, "Red, green,")
    ids = requests.post(server.url + "/tokenize", json={"content": "One, two,"}, timeout=30).json()["tokens"]
    by_ids = client.completions.create(model=model_name, prompt=ids, max_tokens=6, temperature=0)
    assert by_ids.choices[0].text == r.choices[0].text
    # A stop string never shows, in whole or in part.
    full = r.choices[0].text
    if len(full.strip()) > 2:
        stop = full.strip()[1:3]
        s = client.completions.create(model=model_name, prompt="One, two,", max_tokens=6, temperature=0, stop=[stop])
        assert stop not in s.choices[0].text
        assert s.choices[0].finish_reason == "stop"
        assert full.startswith(s.choices[0].text)


def test_openai_errors_surface(client, model_name):
    with pytest.raises(openai.BadRequestError) as e:
        client.completions.create(model=model_name, prompt="x", max_tokens=8, temperature=5)
    assert "temperature" in str(e.value)
    with pytest.raises(openai.NotFoundError):
        client.completions.create(model="no-such-model", prompt="x", max_tokens=2)
