"""The OpenAI-compatible model ingress on real Envoy (README "Model ingress"), driven by the real
clients: the official `openai` package and LiteLLM (`custom_openai/<model>` with `api_base` = the
gateway, as the Duo Workflow Service calls a self-hosted model). Plain and streamed answers, tool
round trips on vLLM, Bedrock (Converse, validated against botocore's model and SigV4-checked by
the fake) and Azure; OpenAI-shaped errors; the access-log record names the key, never holds it."""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any

from duo_e2e import bootstrap
from duo_e2e.hostile import RawConn
from duo_e2e.fakes.base import Answer, Reply
from duo_e2e.fakes.openai import FakeAzure

KEY = "sk-e2e-ingress-dws"
TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Current weather",
                                           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]


def _patch(boot: dict[str, Any]) -> None:
    def auth(conf: dict[str, Any]) -> None:
        conf["ingress_keys"] = [{"name": "dws", "sha256": hashlib.sha256(KEY.encode()).hexdigest()}]

    def router(conf: dict[str, Any]) -> None:
        conf["model_ingress"] = {"enabled": True}
        # The platform credential comes from Envoy for ingress calls (never the caller's key).
        conf["models"]["gpt4o"]["credentials"] = "envoy"

    bootstrap.patch_plugin(boot, "duo_auth", auth)
    bootstrap.patch_plugin(boot, "duo_router", router)


def _stack(e2e):
    # This Azure resource takes no key: with `credentials: envoy` Envoy would add it.
    return e2e.stack("self_hosted", name="ingress", patch=_patch,
                     fakes={"azure_eastus": FakeAzure("azure_eastus", deployments=["gpt-4o-deploy"], api_key=None)})


def _client(st, key: str = KEY):
    import openai

    return openai.OpenAI(base_url=f"http://127.0.0.1:{st.port}/v1", api_key=key, max_retries=0, timeout=20)


def _models(st) -> dict[str, Any]:
    return {name: st.fakes[name] for name in ("vllm_codestral", "bedrock_us_east_1", "azure_eastus")}


def test_ingress_lists_models_and_answers_plain_and_streamed_on_every_platform(e2e):
    st = _stack(e2e)
    client = _client(st)
    ids = sorted(m.id for m in client.models.list())
    assert ids == ["claude", "codestral", "gpt4o"], ids
    for model, cluster in (("codestral", "vllm_codestral"), ("claude", "bedrock_us_east_1"), ("gpt4o", "azure_eastus")):
        fake = st.fakes[cluster]
        fake.enqueue(Answer(text="plain answer"), Answer(text="streamed answer here"))
        r = client.chat.completions.create(model=model, messages=[{"role": "system", "content": "Be brief."},
                                                                  {"role": "user", "content": "hi"}], max_tokens=32)
        assert r.choices[0].message.content == "plain answer", (model, r)
        assert r.choices[0].finish_reason == "stop", (model, r)
        assert r.usage and r.usage.prompt_tokens > 0, (model, r)
        got = fake.last()
        assert got.header("authorization") is None or KEY not in got.header("authorization"), "the ingress key never goes upstream"
        text, finish, usage = "", None, None
        for chunk in client.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}], stream=True,
                                                    stream_options={"include_usage": True}):
            if chunk.choices:
                text += chunk.choices[0].delta.content or ""
                finish = chunk.choices[0].finish_reason or finish
            if chunk.usage:
                usage = chunk.usage
        assert (text, finish) == ("streamed answer here", "stop"), (model, text, finish)
        assert usage is not None and usage.completion_tokens > 0, (model, usage)
    # Bedrock got Converse (the fake validated it against botocore's model and checked SigV4).
    paths = [r.path for r in st.fakes["bedrock_us_east_1"].received()]
    assert any(p.endswith("/converse") for p in paths) and any(p.endswith("/converse-stream") for p in paths), paths
    # vLLM got the served model name.
    assert st.fakes["vllm_codestral"].last().json()["model"] == "Codestral-22B-v0.1"


def test_ingress_tool_round_trips_on_every_platform(e2e):
    st = _stack(e2e)
    client = _client(st)
    for model, cluster in (("codestral", "vllm_codestral"), ("claude", "bedrock_us_east_1"), ("gpt4o", "azure_eastus")):
        fake = st.fakes[cluster]
        for stream in (False, True):
            fake.enqueue(Answer(text="", tool_calls=[("call_w1", "get_weather", {"city": "Oslo"})]), Answer(text="12 degrees in Oslo."))
            messages: list[dict[str, Any]] = [{"role": "user", "content": "Weather in Oslo?"}]
            if stream:
                calls: dict[int, dict[str, str]] = {}
                finish = None
                for chunk in client.chat.completions.create(model=model, messages=messages, tools=TOOLS, stream=True):
                    for c in (chunk.choices[0].delta.tool_calls or []) if chunk.choices else []:
                        slot = calls.setdefault(c.index, {"id": "", "name": "", "arguments": ""})
                        slot["id"] = c.id or slot["id"]
                        slot["name"] = (c.function.name or slot["name"]) if c.function else slot["name"]
                        slot["arguments"] += (c.function.arguments or "") if c.function else ""
                    if chunk.choices and chunk.choices[0].finish_reason:
                        finish = chunk.choices[0].finish_reason
                assert finish == "tool_calls", (model, finish)
                call = calls[0]
            else:
                r = client.chat.completions.create(model=model, messages=messages, tools=TOOLS, tool_choice="auto")
                assert r.choices[0].finish_reason == "tool_calls", (model, r)
                tc = r.choices[0].message.tool_calls[0]
                call = {"id": tc.id, "name": tc.function.name, "arguments": tc.function.arguments}
            assert call["id"] == "call_w1" and call["name"] == "get_weather", (model, call)
            assert json.loads(call["arguments"]) == {"city": "Oslo"}, (model, call)
            messages += [{"role": "assistant", "content": None, "tool_calls": [
                {"id": call["id"], "type": "function", "function": {"name": call["name"], "arguments": call["arguments"]}}]},
                {"role": "tool", "tool_call_id": call["id"], "content": "12 degrees"}]
            r = client.chat.completions.create(model=model, messages=messages, tools=TOOLS)
            assert r.choices[0].message.content == "12 degrees in Oslo.", (model, r)
            sent = fake.last().json()
            if cluster == "bedrock_us_east_1":
                blocks = [b for m in sent["messages"] for b in m["content"]]
                assert {"toolUse": {"toolUseId": "call_w1", "name": "get_weather", "input": {"city": "Oslo"}}} in blocks, sent
                assert any(b.get("toolResult", {}).get("toolUseId") == "call_w1" for b in blocks), sent
                assert sent["toolConfig"]["tools"][0]["toolSpec"]["inputSchema"]["json"]["required"] == ["city"]
            else:
                assert sent["messages"][-1] == {"role": "tool", "tool_call_id": "call_w1", "content": "12 degrees"}, sent


def test_ingress_refusals_are_openai_shaped_and_reach_no_platform(e2e):
    import openai

    st = _stack(e2e)
    for fake in _models(st).values():
        fake.reset()
    try:
        _client(st, "sk-wrong").chat.completions.create(model="codestral", messages=[{"role": "user", "content": "x"}])
        raise AssertionError("a wrong key passed")
    except openai.AuthenticationError as e:
        assert e.status_code == 401 and e.body["code"] == "invalid_api_key", e.body
    # GitLab's own JWT is not an ingress key
    r = st.post("/v1/chat/completions", json_body={"model": "codestral", "messages": [{"role": "user", "content": "x"}]},
                headers=st.gitlab.headers())
    assert r.status == 401 and r.json()["error"]["type"] == "authentication_error", r
    client = _client(st)
    try:
        client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "x"}])
        raise AssertionError("an unknown model passed")
    except openai.NotFoundError as e:
        assert e.body["code"] == "model_not_found", e.body
    bad = [
        ({"model": "codestral", "messages": []}, "messages"),
        ({"model": "claude", "messages": [{"role": "wizard", "content": "x"}]}, "messages[0].role"),
        ({"model": "claude", "messages": [{"role": "assistant", "content": None, "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{not json"}}]}]},
         "messages[0].tool_calls[0].function.arguments"),
        ({"model": "claude", "n": 2, "messages": [{"role": "user", "content": "x"}]}, "n"),
    ]
    auth = {"Authorization": f"Bearer {KEY}"}
    for body, param in bad:
        r = st.post("/v1/chat/completions", json_body=body, headers=auth)
        assert r.status == 400 and r.json()["error"]["param"] == param, (body, r)
    # 2 MiB: over the router's 1 MiB limit, under the listener's buffer: the router's 413, in OpenAI's shape.
    big = json.dumps({"model": "codestral", "messages": [{"role": "user", "content": "x" * (2 * 1024 * 1024)}]}).encode()
    head = (f"POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer {KEY}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(big)}\r\n\r\n").encode()
    conn = RawConn(st.port, timeout_s=30)
    try:
        for i in range(0, len(head + big), 256 * 1024):
            try:
                conn.send((head + big)[i:i + 256 * 1024])
            except (BrokenPipeError, ConnectionResetError):
                break  # answered and closed while the body was still coming: expected
        resp = conn.response()
    finally:
        conn.close()
    assert resp is not None and resp.status == 413, resp
    assert json.loads(resp.body)["error"]["type"] == "invalid_request_error", resp.body
    for fake in _models(st).values():
        fake.assert_nothing_received()
    # the platform's 429 comes back as OpenAI's, with its Retry-After
    st.fakes["vllm_codestral"].enqueue(Reply.json({"error": {"message": "busy", "type": "RateLimitError", "code": 429}}, 429,
                                                  headers=[("retry-after", "4")]))
    r = st.post("/v1/chat/completions", json_body={"model": "codestral", "messages": [{"role": "user", "content": "x"}]}, headers=auth)
    assert r.status == 429 and r.header("retry-after") == "4" and r.json()["error"]["type"] == "rate_limit_error", r


def test_ingress_with_litellm_as_the_duo_workflow_service_calls_it(e2e):
    import litellm

    st = _stack(e2e)
    base = f"http://127.0.0.1:{st.port}/v1"
    st.fakes["bedrock_us_east_1"].enqueue(Answer(text="from claude via litellm"), Answer(text="streamed via litellm"))
    r = litellm.completion(model="custom_openai/claude", api_base=base, api_key=KEY,
                           messages=[{"role": "user", "content": "hi"}], max_tokens=16)
    assert r.choices[0].message.content == "from claude via litellm", r
    text = "".join(c.choices[0].delta.content or "" for c in litellm.completion(
        model="custom_openai/claude", api_base=base, api_key=KEY, messages=[{"role": "user", "content": "hi"}], stream=True)
        if c.choices)
    assert text == "streamed via litellm", text


def test_ingress_records_name_the_key_never_hold_it(e2e):
    st = _stack(e2e)
    st.fakes["vllm_codestral"].enqueue(Answer(text="logged"))
    _client(st).chat.completions.create(model="codestral", messages=[{"role": "user", "content": "hi"}])
    deadline = time.monotonic() + 5
    while True:  # records of earlier scenarios may still be arriving: wait for this one, bounded
        lines = [l for l in st.access_log() if isinstance(l, dict) and l.get("feature") == "model_ingress" and l.get("model_name") == "codestral"]
        if lines or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert lines, st.access_log()
    rec = lines[-1]
    assert rec.get("ingress_key_name") == "dws", rec
    assert rec.get("model_name") == "codestral", rec
    assert KEY not in json.dumps(rec), rec
