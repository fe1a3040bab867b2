"""Duo Chat `/v2/chat/agent` on real Envoy 1.40 (docs/chat.md): GitLab's ReAct step body in,
the model platform asked for a stream with the agent prompt, GitLab's NDJSON events out
(`action` at the end of a tool step, `final_answer_delta` chunks while the answer streams, an
`error` event when the upstream breaks mid-answer), on vLLM and on Bedrock (Converse, Claude with
the `Thought:` prefill); 422 for a malformed body; 403 for `additional_context` without its
`include_<category>_context` scope."""

from __future__ import annotations

import json
from typing import Any

from duo_e2e import Answer, Reply, eventstream

VLLM = "vllm_codestral"
BEDROCK = "bedrock_us_east_1"
NDJSON = "application/x-ndjson"
API_KEY = "sk-e2e-chat-key"
QUESTION = "Summarize issue #12"


def _vllm_metadata() -> dict[str, Any]:
    return {"provider": "openai", "name": "codestral", "endpoint": "http://vllm.internal:8000/v1",
            "api_key": API_KEY, "identifier": "custom_openai/Codestral-22B-v0.1"}


def _bedrock_metadata() -> dict[str, Any]:
    return {"provider": "openai", "name": "claude_3", "endpoint": "", "api_key": "",
            "identifier": "bedrock/us.anthropic.claude-3-5-sonnet-20240620-v1:0"}


def _step_body(metadata: dict[str, Any], scratchpad: list[dict[str, Any]] | None = None,
               additional_context: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """What GitLab's ReactExecutor sends (docs/fidelity.md)."""
    messages: list[dict[str, Any]] = [
        {"role": "user", "content": "What is a runner?", "additional_context": None, "resource_content": None},
        {"role": "assistant", "content": "A runner executes CI jobs.", "additional_context": None},
        {"role": "user", "content": QUESTION, "context": {"type": "issue", "title": "Login broken"},
         "current_file": None, "additional_context": additional_context},
    ]
    if scratchpad is not None:
        messages.append({"role": "assistant", "agent_scratchpad": scratchpad})
    return {"messages": messages, "model_metadata": metadata, "unavailable_resources": ["Pipelines", "Vulnerabilities"]}


def _events(r) -> list[dict[str, Any]]:
    assert r.status == 200, r
    ctype = r.header("content-type") or ""
    assert ctype.startswith(NDJSON), f"content-type {ctype!r}"
    text = r.body.decode("utf-8")
    assert text.endswith("\n"), f"every event ends its line: {text!r}"
    events = [json.loads(line) for line in text.split("\n") if line]
    for e in events:
        assert set(e) == {"type", "data"}, e
        assert e["type"] in ("action", "final_answer_delta", "unknown", "error"), e
    return events


def _answer(events: list[dict[str, Any]]) -> str:
    return "".join(e["data"]["text"] for e in events if e["type"] == "final_answer_delta")


def _delta_chunks(r) -> int:
    """How many separate network chunks carried final_answer_delta events."""
    return sum(1 for _t, chunk in r.chunks if b'"final_answer_delta"' in chunk)


def test_chat_vllm_action_step(e2e):
    st = e2e.stack("self_hosted")
    gl = st.gitlab
    st.fake(VLLM).enqueue(Answer(text="", pieces=["Thought: I need the", " issue.\nAction: issue", "_reader\nAction Input: #12\n"]))
    r = st.post("/v2/chat/agent", json_body=_step_body(_vllm_metadata()), headers=gl.headers())
    events = _events(r)
    assert events == [{"type": "action", "data": {"tool": "issue_reader", "tool_input": "#12", "thought": "I need the issue."}}], events

    sent = st.fake(VLLM).last()
    assert sent.path == "/v1/chat/completions", sent.path
    body = sent.json()
    assert body["model"] == "Codestral-22B-v0.1" and body["stream"] is True, body
    assert "Observation:" in (body.get("stop") or []), body.get("stop")
    assert sent.header("authorization") == f"Bearer {API_KEY}"
    msgs = body["messages"]
    roles = [m["role"] for m in msgs]
    # The agent's instructions come first: as a system message, or folded into the first user
    # turn for families whose chat template has no system role (Mistral's).
    assert roles in (["system", "user", "assistant", "user"], ["user", "assistant", "user"]), roles
    assert "issue_reader" in msgs[0]["content"] and "Final Answer:" in msgs[0]["content"], msgs[0]
    assert QUESTION in msgs[-1]["content"] and "Login broken" in msgs[-1]["content"], msgs[-1]
    for name in (BEDROCK, "azure_eastus"):
        st.fake(name).assert_nothing_received()


def test_chat_vllm_final_answer_streams_in_deltas(e2e):
    st = e2e.stack("self_hosted")
    gl = st.gitlab
    scratchpad = [{"action": {"thought": "I need the issue.", "tool": "issue_reader", "tool_input": "#12"},
                   "observation": "Issue #12: login fails on Safari 17."}]
    pieces = ["Thought: I know the answer.\nFinal", " Answer: Issue", " #12 reports", " that login", " fails on Safari."]
    st.fake(VLLM).enqueue(Answer(text="", pieces=pieces, delay_s=0.15))
    r = st.post("/v2/chat/agent", json_body=_step_body(_vllm_metadata(), scratchpad), headers=gl.headers())
    events = _events(r)
    assert all(e["type"] == "final_answer_delta" for e in events), events
    assert _answer(events) == "Issue #12 reports that login fails on Safari.", events
    assert len(events) >= 3, f"the answer came as one event: {events}"
    assert _delta_chunks(r) >= 2, f"deltas were not streamed as they came: {r.chunks}"
    # The observation went back to the model with the step.
    last_user = st.fake(VLLM).last().json()["messages"][-1]["content"]
    assert "Observation: Issue #12: login fails on Safari 17." in last_user, last_user


def _sse(obj: Any) -> bytes:
    return b"data: " + json.dumps(obj).encode() + b"\n\n"


def _vllm_chunks(pieces: list[str]) -> list[bytes]:
    """vLLM's chat stream (role chunk, then content deltas), without its end."""
    base = {"id": "chatcmpl-e2e", "object": "chat.completion.chunk", "created": 1, "model": "Codestral-22B-v0.1"}
    out = [_sse({**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]})]
    out += [_sse({**base, "choices": [{"index": 0, "delta": {"content": p}, "finish_reason": None}]}) for p in pieces]
    return out


SSE_HEADERS = [("content-type", "text/event-stream; charset=utf-8")]


def test_chat_vllm_error_in_the_stream_is_an_error_event(e2e):
    st = e2e.stack("self_hosted")
    gl = st.gitlab
    chunks = _vllm_chunks(["Final Answer: The first", " part"])
    chunks.append(_sse({"error": {"object": "error", "message": "engine died", "type": "InternalServerError", "code": 500}}))
    st.fake(VLLM).enqueue(Reply(200, SSE_HEADERS, chunks=chunks, delay_s=0.05))
    r = st.post("/v2/chat/agent", json_body=_step_body(_vllm_metadata()), headers=gl.headers())
    events = _events(r)
    assert _answer(events) == "The first part", events
    assert events[-1] == {"type": "error", "data": {"message": "The model server reported an error in its stream (500)",
                                                    "retryable": True}}, events
    assert "engine died" not in r.text, "upstream text is not repeated"


def test_chat_vllm_stream_cut_short_is_an_error_event(e2e):
    st = e2e.stack("self_hosted")
    gl = st.gitlab
    # The body ends cleanly but without vLLM's `data: [DONE]`: the answer is not complete.
    st.fake(VLLM).enqueue(Reply(200, SSE_HEADERS, chunks=_vllm_chunks(["Final Answer: Half", " an answer"])))
    r = st.post("/v2/chat/agent", json_body=_step_body(_vllm_metadata()), headers=gl.headers())
    events = _events(r)
    assert _answer(events) == "Half an answer", events
    assert events[-1] == {"type": "error", "data": {"message": "The model server's answer stopped before it was complete",
                                                    "retryable": True}}, events


def test_chat_vllm_connection_lost_never_looks_complete(e2e):
    st = e2e.stack("self_hosted")
    gl = st.gitlab
    pieces = ["Final Answer: The first", " part", " and more", " never arrives"]
    st.fake(VLLM).enqueue(Answer(text="", pieces=pieces, abort_after=2, delay_s=0.05))
    r = st.post("/v2/chat/agent", json_body=_step_body(_vllm_metadata()), headers=gl.headers())
    assert r.status == 200, r
    lines = [json.loads(line) for line in r.body.decode("utf-8").split("\n") if line.strip()]
    assert "never arrives" not in _answer(lines)
    # Either the downstream stream was reset (Envoy got no end of the upstream body), or the
    # answer ends with an error event: never a clean end that GitLab would take as complete.
    assert not r.complete or (lines and lines[-1]["type"] == "error"), (r.complete, lines)


def test_chat_bedrock_final_answer_with_prefill(e2e):
    st = e2e.stack("self_hosted")
    gl = st.gitlab
    pieces = [" I can answer.\nFinal Answer:", " Runners", " execute", " jobs."]
    st.fake(BEDROCK).enqueue(Answer(text="", pieces=pieces, delay_s=0.1))
    r = st.post("/v2/chat/agent", json_body=_step_body(_bedrock_metadata()), headers=gl.headers())
    events = _events(r)
    assert _answer(events) == "Runners execute jobs.", events
    assert all(e["type"] == "final_answer_delta" for e in events), events
    assert _delta_chunks(r) >= 2, r.chunks
    sent = st.fake(BEDROCK).last()
    assert sent.path.endswith("/converse-stream"), sent.path
    body = sent.json()
    assert "GitLab Duo Chat" in body["system"][0]["text"], body.get("system")
    assert body["messages"][-1]["role"] == "assistant", body["messages"][-1]
    assert body["messages"][-1]["content"][0]["text"] == "Thought:", body["messages"][-1]
    assert "Observation:" in body["inferenceConfig"]["stopSequences"], body.get("inferenceConfig")
    st.fake(VLLM).assert_nothing_received()


def test_chat_bedrock_exception_mid_answer_is_an_error_event(e2e):
    st = e2e.stack("self_hosted")
    gl = st.gitlab
    frames = [
        eventstream.event("messageStart", {"role": "assistant"}),
        eventstream.event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": " ok\nFinal Answer: Part"}}),
        eventstream.event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": " one"}}),
        eventstream.exception("throttlingException", "Too many tokens, please wait before trying again."),
    ]
    headers = [("content-type", "application/vnd.amazon.eventstream"), ("x-amzn-requestid", "e2e-chat")]
    st.fake(BEDROCK).enqueue(Reply(200, headers, chunks=frames, delay_s=0.05))
    r = st.post("/v2/chat/agent", json_body=_step_body(_bedrock_metadata()), headers=gl.headers())
    events = _events(r)
    assert _answer(events) == "Part one", events
    assert events[-1] == {"type": "error", "data": {
        "message": "overloaded_error: the model platform is busy (throttlingException)", "retryable": True}}, events


def test_chat_malformed_body_is_422(e2e):
    st = e2e.stack("self_hosted")
    gl = st.gitlab
    body = _step_body(_vllm_metadata())
    body["messages"][2]["role"] = "system"
    # The admin enabled AI logs: the details, in FastAPI's list (GitLab 18.x).
    r = st.post("/v2/chat/agent", json_body=body, headers=gl.headers(x_gitlab_enabled_instance_verbose_ai_logs="true"))
    assert r.status == 422, r
    assert r.json() == {"detail": [{"loc": ["body", "messages", 2, "role"],
                                    "msg": "Input should be 'user' or 'assistant'", "type": "literal_error"}]}, r.json()
    # Otherwise GitLab's gateway hides them.
    r = st.post("/v2/chat/agent", json_body=body, headers=gl.headers())
    assert (r.status, r.json()) == (422, {"detail": "Validation error"}), r.body
    st.fake(VLLM).assert_nothing_received()


def test_chat_additional_context_needs_its_scope(e2e):
    st = e2e.stack("self_hosted")
    gl = st.gitlab
    ctx = [{"category": "file", "id": "app/x.rb", "content": "puts 1", "metadata": {}}]
    token = gl.mint(scopes=["duo_chat", "ask_issue"])
    r = st.post("/v2/chat/agent", json_body=_step_body(_vllm_metadata(), additional_context=ctx), headers=gl.headers(token))
    assert r.status == 403, r
    assert r.json() == {"detail": "Unauthorized to access include_file_context"}, r.json()
    st.fake(VLLM).assert_nothing_received()
    # With the scope, the same request reaches the model.
    st.fake(VLLM).enqueue(Answer(text="Final Answer: ok"))
    token = gl.mint(scopes=["duo_chat", "ask_issue", "include_file_context"])
    r = st.post("/v2/chat/agent", json_body=_step_body(_vllm_metadata(), additional_context=ctx), headers=gl.headers(token))
    assert _answer(_events(r)) == "ok"
    assert "puts 1" in st.fake(VLLM).last().json()["messages"][-1]["content"]
