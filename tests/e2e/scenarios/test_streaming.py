"""Streaming on real Envoy 1.40 (docs/streaming.md): GitLab asks for a stream (`"stream": true`),
the router asks the platform for one with usage (vLLM/Azure `stream_options.include_usage`, Bedrock
ConverseStream), and GitLab receives the model's text as raw chunks labelled `text/event-stream`,
with no platform framing leaked. A stream the platform breaks (connection cut before `[DONE]`,
a Bedrock exception frame) never looks like a complete answer: the downstream stream is reset.
The access-log record of a stream says `stream: true` and carries the platform's token counts."""

from __future__ import annotations

import json
import time

from duo_e2e import Answer, Reply, eventstream

VLLM = "vllm_codestral"
BEDROCK = "bedrock_us_east_1"
AZURE = "azure_eastus"
VLLM_KEY = "sk-e2e-stream"
AZURE_KEY = "azure-test-key"
SSE = "text/event-stream"
EVENTSTREAM = [("content-type", "application/vnd.amazon.eventstream"), ("x-amzn-requestid", "e2e-stream")]

# Text that must never reach GitLab from a platform's framing.
LEAKS = ("data:", "[DONE]", "chat.completion", "choices", "delta", "contentBlockDelta", ":event-type", "usage")


def _vllm_meta():
    return {"provider": "openai", "name": "codestral", "endpoint": "http://vllm.internal:8000/v1",
            "api_key": VLLM_KEY, "identifier": "custom_openai/Codestral-22B-v0.1"}


def _azure_meta():
    return {"provider": "openai", "name": "gpt", "endpoint": "https://myres.openai.azure.com/",
            "api_key": AZURE_KEY, "identifier": "azure/gpt-4o-deploy"}


def _explain(meta):
    return {"inputs": {"input": "explain this", "selected_text": "x = sorted(y)[::-1]", "file_content": "",
                       "language_info": ""}, "stream": True, "model_metadata": meta}


def _generation_body():
    return {"current_file": {"file_name": "main.go", "content_above_cursor": "package main\n\n// reverse a string\n",
                             "content_below_cursor": ""},
            "stream": True, "model_provider": "litellm", "prompt_version": 2, "prompt_id": "code_suggestions/generations",
            "prompt": "reverse a string", "model_name": "claude_3",
            "model_identifier": "bedrock/us.anthropic.claude-3-5-sonnet-20240620-v1:0"}


def _completion_body():
    return {"current_file": {"file_name": "a.py", "language_identifier": "python",
                             "content_above_cursor": "def add(a, b):\n", "content_below_cursor": "\nprint(add(1, 2))\n"},
            "model_provider": "litellm", "model_name": "codestral", "prompt_version": 2, "stream": True,
            "model_endpoint": "http://vllm.internal:8000/v1", "model_api_key": VLLM_KEY,
            "model_identifier": "custom_openai/Codestral-22B-v0.1"}


def _raw_text_stream(r, expected):
    """GitLab's raw-text framing: 200, text/event-stream, the model's text exactly, complete."""
    assert r.status == 200, r
    ctype = r.header("content-type") or ""
    assert ctype.startswith(SSE), f"content-type {ctype!r}"
    assert r.complete, "a complete platform stream must end cleanly"
    assert r.text == expected, (r.text, expected)
    for leak in LEAKS:
        assert leak not in r.text, f"platform framing leaked: {leak!r} in {r.text!r}"


def _never_complete(r, later_text):
    """A broken platform stream must not end cleanly for GitLab."""
    assert r.status == 200, r
    assert not r.complete, f"a broken stream ended cleanly: {r.text!r}"
    assert later_text not in r.text, r.text


def _asked_openai_stream(sent):
    body = sent.json()
    assert body.get("stream") is True, body
    assert body.get("stream_options", {}).get("include_usage") is True, body.get("stream_options")


def _record(st, headers, path):
    """duo_logger's record of this scenario's request, found by its correlation id (GitLab's
    X-Request-ID): a previous scenario's record may still arrive after the mark."""
    deadline = time.monotonic() + 5
    while True:
        lines = st.access_log(wait_for=1)
        recs = [x for x in lines if isinstance(x, dict) and x.get("correlation_id") == headers["X-Request-ID"]]
        if recs or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert len(recs) == 1, lines
    assert recs[0].get("path") == path, recs[0]
    return recs[0]


def test_streaming_vllm_sse_into_a_prompt(e2e):
    st = e2e.stack("self_hosted")
    pieces = ["This reverses", " a sorted", " copy of y."]
    st.fake(VLLM).enqueue(Answer(text="", pieces=pieces, delay_s=0.1, input_tokens=40, output_tokens=6))
    r = st.post("/v1/prompts/chat/explain_code", json_body=_explain(_vllm_meta()), headers=(h := st.gitlab.headers()))
    _raw_text_stream(r, "".join(pieces))
    assert sum(1 for _t, c in r.chunks if c) >= 2, f"the answer was not streamed as it came: {r.chunks}"
    sent = st.fake(VLLM).last()
    assert sent.path == "/v1/chat/completions", sent.path
    _asked_openai_stream(sent)
    assert sent.header("authorization") == f"Bearer {VLLM_KEY}"
    st.fake(BEDROCK).assert_nothing_received()
    st.fake(AZURE).assert_nothing_received()
    rec = _record(st, h, "/v1/prompts/chat/explain_code")
    assert rec.get("stream") is True, rec
    assert "error" not in rec, rec
    assert rec.get("input_tokens") == 40 and rec.get("output_tokens") == 6, rec
    assert rec.get("status_code") == 200, rec


def test_streaming_bedrock_converse_stream_into_generations(e2e):
    st = e2e.stack("self_hosted")
    pieces = ["func reverse(s string) string {", "\n\treturn s", "\n}"]
    st.fake(BEDROCK).enqueue(Answer(text="", pieces=pieces, delay_s=0.1, input_tokens=30, output_tokens=9))
    r = st.post("/v2/code/generations", json_body=_generation_body(), headers=(h := st.gitlab.headers()))
    _raw_text_stream(r, "".join(pieces))
    sent = st.fake(BEDROCK).last()
    assert sent.path == "/model/us.anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse-stream", sent.path
    st.fake(VLLM).assert_nothing_received()
    rec = _record(st, h, "/v2/code/generations")
    assert rec.get("stream") is True, rec
    assert rec.get("input_tokens") == 30 and rec.get("output_tokens") == 9, rec


def test_streaming_azure_sse_into_a_prompt(e2e):
    st = e2e.stack("self_hosted")
    pieces = ["Fix the", " sort order", " in reverse()"]
    st.fake(AZURE).enqueue(Answer(text="", pieces=pieces, delay_s=0.05))
    body = {"inputs": {"diff": "diff --git a/x b/x\n+y\n"}, "stream": True, "model_metadata": _azure_meta()}
    r = st.post("/v1/prompts/generate_commit_message", json_body=body, headers=(h := st.gitlab.headers()))
    _raw_text_stream(r, "".join(pieces))
    sent = st.fake(AZURE).last()
    assert sent.target == "/openai/deployments/gpt-4o-deploy/chat/completions?api-version=2024-10-21", sent.target
    _asked_openai_stream(sent)
    assert sent.header("api-key") == AZURE_KEY
    rec = _record(st, h, "/v1/prompts/generate_commit_message")
    assert rec.get("stream") is True and "error" not in rec, rec


def test_streaming_code_completions_on_vllm(e2e):
    st = e2e.stack("self_hosted")
    pieces = ["    return", " a + b"]
    st.fake(VLLM).enqueue(Answer(text="", pieces=pieces, delay_s=0.05))
    r = st.post("/v2/code/completions", json_body=_completion_body(), headers=(h := st.gitlab.headers()))
    _raw_text_stream(r, "".join(pieces))
    sent = st.fake(VLLM).last()
    assert sent.path == "/v1/completions", sent.path
    _asked_openai_stream(sent)
    assert "suffix" not in sent.json()


def test_streaming_vllm_cut_mid_stream_never_looks_complete(e2e):
    st = e2e.stack("self_hosted")
    pieces = ["The first", " part", " and more", " never arrives"]
    st.fake(VLLM).enqueue(Answer(text="", pieces=pieces, abort_after=2, delay_s=0.05))
    r = st.post("/v1/prompts/chat/explain_code", json_body=_explain(_vllm_meta()), headers=(h := st.gitlab.headers()))
    _never_complete(r, "never arrives")
    rec = _record(st, h, "/v1/prompts/chat/explain_code")
    assert rec.get("stream") is True and rec.get("error") == "stream_truncated", rec


def test_streaming_vllm_body_without_done_never_looks_complete(e2e):
    st = e2e.stack("self_hosted")
    # The platform ends its body cleanly but without `data: [DONE]`.
    base = {"id": "cmpl-e2e", "object": "chat.completion.chunk", "created": 1, "model": "Codestral-22B-v0.1"}
    chunks = [b"data: " + json.dumps({**base, "choices": [{"index": 0, "delta": {"content": p}, "finish_reason": None}]}).encode() + b"\n\n"
              for p in ("Half", " an answer")]
    st.fake(VLLM).enqueue(Reply(200, [("content-type", "text/event-stream; charset=utf-8")], chunks=chunks, delay_s=0.05))
    r = st.post("/v1/prompts/chat/explain_code", json_body=_explain(_vllm_meta()), headers=(h := st.gitlab.headers()))
    _never_complete(r, "[DONE]")
    assert r.text == "Half an answer", r.text
    rec = _record(st, h, "/v1/prompts/chat/explain_code")
    assert rec.get("stream") is True and rec.get("error") == "stream_truncated", rec


def test_streaming_bedrock_exception_frame_never_looks_complete(e2e):
    st = e2e.stack("self_hosted")
    frames = [
        eventstream.event("messageStart", {"role": "assistant"}),
        eventstream.event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "func reverse"}}),
        eventstream.event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "(s string)"}}),
        eventstream.exception("throttlingException", "Too many tokens, please wait before trying again."),
    ]
    st.fake(BEDROCK).enqueue(Reply(200, EVENTSTREAM, chunks=frames, delay_s=0.05))
    r = st.post("/v2/code/generations", json_body=_generation_body(), headers=(h := st.gitlab.headers()))
    _never_complete(r, "Too many tokens")
    assert "throttlingException" not in r.text, r.text
    rec = _record(st, h, "/v2/code/generations")
    assert rec.get("stream") is True and rec.get("error") == "stream_exception:throttlingException", rec


def test_streaming_error_before_the_first_byte_is_mapped_as_without_stream(e2e):
    """A platform error status before the stream starts is GitLab's ordinary error answer (here
    a prompt endpoint's 421 "429: Too Many Requests"), not an empty or broken event stream."""
    st = e2e.stack("self_hosted")
    st.fake(VLLM).enqueue(Reply.json({"object": "error", "message": "server busy", "type": "TooManyRequests", "code": 429},
                                     status=429, headers=[("Retry-After", "7")]))
    r = st.post("/v1/prompts/chat/explain_code", json_body=_explain(_vllm_meta()), headers=(h := st.gitlab.headers()))
    assert (r.status, r.json()) == (421, {"detail": "429: Too Many Requests"}), (r.status, r.text)
    assert not (r.header("content-type") or "").startswith(SSE), r.header("content-type")
    _asked_openai_stream(st.fake(VLLM).last())


def test_streaming_bedrock_bad_crc_never_looks_complete(e2e):
    """A corrupted event-stream message (message CRC wrong) after some text: the text already
    decoded reaches GitLab, the corrupted event's text never does, and the stream is reset."""
    st = e2e.stack("self_hosted")
    bad = eventstream.frame([(":event-type", "contentBlockDelta"), (":content-type", "application/json"),
                             (":message-type", "event")],
                            json.dumps({"contentBlockIndex": 0, "delta": {"text": "CORRUPTED"}}).encode(), corrupt_crc=True)
    frames = [
        eventstream.event("messageStart", {"role": "assistant"}),
        eventstream.event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "func reverse"}}),
        bad,  # the rest of a good stream would follow; the gateway stops reading at the bad CRC
    ]
    st.fake(BEDROCK).enqueue(Reply(200, EVENTSTREAM, chunks=frames, delay_s=0.05))
    r = st.post("/v2/code/generations", json_body=_generation_body(), headers=(h := st.gitlab.headers()))
    _never_complete(r, "CORRUPTED")
    assert r.text == "func reverse", r.text
    rec = _record(st, h, "/v2/code/generations")
    assert rec.get("error") == "stream_bad_message_crc", rec
