"""GitLab fidelity on real Envoy (docs/fidelity.md): the requests GitLab 18.4 and 19.x Rails
send (duo_e2e.gitlab_requests builds them as Rails does) are served, and the answers and log
records carry what GitLab's own gateway writes."""

from __future__ import annotations

import json
import time

from duo_e2e import Answer
from duo_e2e.gitlab_requests import CLAUDE_BEDROCK, CODESTRAL, GITLAB_18_4, GITLAB_19, GPT_AZURE, VERSIONS

VLLM = "vllm_codestral"
BEDROCK = "bedrock_us_east_1"
AZURE = "azure_eastus"


def _record(st, correlation_id, timeout_s=5.0):
    """duo_logger's record of one request (lines of earlier requests may still be flushing)."""
    deadline = time.monotonic() + timeout_s
    while True:
        recs = [r for r in st.access_log() if isinstance(r, dict) and r.get("correlation_id") == correlation_id]
        if recs or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert len(recs) == 1, recs
    return recs[0]


def test_fidelity_18_4_and_19_requests_are_served(e2e):
    """Completion, chat and a prompt as each version sends them reach the configured model and
    come back in the version's shape; 18.4's generation goes to /v2/code/generations."""
    st = e2e.stack("self_hosted")
    gl = st.gitlab
    for rails in VERSIONS:
        path, body = rails.code_completion(CODESTRAL, "app/car.py", "class Car:\n    def speed(self):\n", "\n")
        st.fake(VLLM).enqueue(Answer(text="return self._speed"))
        r = st.post(path, json_body=body, headers=rails.headers(gl))
        assert r.status == 200, (rails.version, r.body)
        answer = r.json()
        assert answer["choices"][0]["text"] == "return self._speed", answer
        assert st.fake(VLLM).last().header("authorization") == f"Bearer {CODESTRAL.api_key}"

        path, body = rails.prompt(GPT_AZURE, "generate_commit_message", {"diff": "diff --git a/x b/x\n+y\n"})
        st.fake(AZURE).enqueue(Answer(text="Add y to x"))
        r = st.post(path, json_body=body, headers=rails.headers(gl))
        assert (r.status, r.json()) == (200, "Add y to x"), (rails.version, r.body)

    path, body = GITLAB_18_4.code_generation(CLAUDE_BEDROCK, "main.go", "package main\n\n// reverse a string\n", "reverse a string")
    assert path == "/v2/code/generations"
    st.fake(BEDROCK).enqueue(Answer(text="func reverse(s string) string { return s }"))
    r = st.post(path, json_body=body, headers=GITLAB_18_4.headers(gl))
    assert r.status == 200, r.body
    assert r.json()["choices"][0]["text"] == "func reverse(s string) string { return s }"


def test_fidelity_access_log_has_gitlabs_fields(e2e):
    """The record carries the fields GitLab's gateway writes (duration_request from Rails'
    send time, url, client, protocol, content type, feature category, flags)."""
    st = e2e.stack("self_hosted")
    gl = st.gitlab
    path, body = GITLAB_19.code_completion(CODESTRAL, "app/car.py", "def f():\n")
    st.fake(VLLM).enqueue(Answer(text="pass"))
    headers = GITLAB_19.headers(gl, x_gitlab_enabled_feature_flags="expanded_ai_logging,code_flag")
    r = st.post(path, json_body=body, headers=headers)
    assert r.status == 200, r.body
    rec = _record(st, headers["X-Request-ID"])
    assert 0 <= rec["duration_request"] < 30, rec
    assert rec["url"].startswith("http://") and rec["url"].endswith("/v2/code/completions"), rec
    assert rec["client_ip"] == "127.0.0.1" and isinstance(rec["client_port"], int), rec
    assert rec["http_version"] == "1.1", rec
    assert rec["content_type"].startswith("application/json"), rec
    assert (rec["meta.feature_category"], rec["meta.unit_primitive"]) == ("code_suggestions", "complete_code"), rec
    assert rec["gitlab_root_namespace_id"] == "9970", rec
    assert sorted(rec["enabled_feature_flags"].split(",")) == ["code_flag", "expanded_ai_logging"], rec
    assert rec["request_arrived_at"].endswith("+00:00"), rec
    # Without Rails' send time GitLab's gateway writes -1.
    headers = GITLAB_18_4.headers(gl)
    del headers["X-Gitlab-Rails-Send-Start"]
    r = st.get("/nope", headers=headers)
    rec = _record(st, headers["X-Request-ID"])
    assert rec["duration_request"] == -1, rec
    assert json.loads(r.body) == {"detail": "Not Found"}, r.body


def _sse_events(text: str) -> list[tuple[str, object]]:
    """Parses an SSE body (any of \\n, \\r\\n line ends) into (event, JSON data) pairs."""
    events = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        if not block.strip():
            continue
        fields = dict(line.split(": ", 1) for line in block.split("\n") if ": " in line)
        events.append((fields.get("event", "message"), json.loads(fields["data"])))
    return events


def test_fidelity_19_code_generation_on_v4_streams_sse(e2e):
    """GitLab 19.x posts code generation to /v4/code/suggestions with model_metadata: the model
    GitLab's admin configured for code_generations serves it, with the prompt rendered from
    Rails' prompt enhancer, and the answer is real SSE (stream_start, content_chunk...,
    stream_end) with GitLab's headers."""
    st = e2e.stack("self_hosted")
    gl = st.gitlab
    path, body = GITLAB_19.code_generation(CLAUDE_BEDROCK, "main.go", "package main\n\n// reverse a string\n",
                                           "reverse a string", stream=True)
    assert path == "/v4/code/suggestions"
    pieces = ["func reverse", "(s string) string {\n", "\treturn s\n}\n"]
    st.fake(BEDROCK).enqueue(Answer(text="".join(pieces), pieces=pieces))
    headers = GITLAB_19.headers(gl, x_gitlab_enabled_feature_flags="flag_a")
    r = st.post(path, json_body=body, headers=headers)
    assert r.status == 200, r.body
    assert r.header("content-type") == "text/event-stream; charset=utf-8", r.header("content-type")
    assert r.header("x-streaming-format") == "sse", r
    events = _sse_events(r.text)
    assert [e for e, _ in events][0] == "stream_start" and events[-1] == ("stream_end", None), events
    start = events[0][1]["metadata"]
    assert start["model"] == {"engine": "agent", "name": "Code Generations Agent"}, start
    assert start["enabled_feature_flags"] == ["flag_a"] and isinstance(start["timestamp"], int), start
    chunks = [d["choices"][0]["delta"]["content"] for e, d in events if e == "content_chunk"]
    assert "".join(chunks) == "".join(pieces), chunks
    sent = st.fake(BEDROCK).last()
    assert sent.path.endswith("/converse-stream"), sent.path
    prompt = json.dumps(sent.json()["messages"])
    assert "reverse a string" in prompt and "main.go" in prompt, prompt
    rec = _record(st, headers["X-Request-ID"])
    assert (rec["feature"], rec["code_suggestion_type"]) == ("code_generations", "code_editor_generation"), rec
    assert rec["model_name"] == "claude" and rec["stream"] is True, rec


def test_fidelity_19_code_generation_on_v4_without_stream(e2e):
    """The same request without a stream: GitLab's CompletionResponse JSON."""
    st = e2e.stack("self_hosted")
    gl = st.gitlab
    path, body = GITLAB_19.code_generation(CLAUDE_BEDROCK, "app/car.py", "class Car:\n    # speed up\n", "speed up")
    st.fake(BEDROCK).enqueue(Answer(text="def speed_up(self):\n    self.speed += 1"))
    r = st.post(path, json_body=body, headers=GITLAB_19.headers(gl))
    assert r.status == 200, r.body
    answer = r.json()
    assert answer["choices"] == [{"text": "def speed_up(self):\n    self.speed += 1", "index": 0, "finish_reason": "length"}], answer
    model = {"engine": "agent", "name": "Code Generations Agent", "lang": "python"}
    assert answer["model"] == model and answer["metadata"]["model"] == model, answer
    assert answer["metadata"]["enabled_feature_flags"] == [] and isinstance(answer["metadata"]["timestamp"], int), answer


def _ndjson(r) -> list[dict]:
    assert r.status == 200, r.body
    assert (r.header("content-type") or "").startswith("application/x-ndjson"), r.header("content-type")
    return [json.loads(line) for line in r.body.decode().split("\n") if line]


def test_fidelity_chat_finish_reason_and_usage_only_for_19(e2e):
    """19.x: every final_answer_delta has finish_reason (null until the last, which carries the
    model's stop reason), then one usage event keyed by the model; 18.4 gets neither."""
    st = e2e.stack("self_hosted")
    gl = st.gitlab
    model = CLAUDE_BEDROCK.identifier.removeprefix("bedrock/")
    for rails in VERSIONS:
        path, body = rails.chat(CLAUDE_BEDROCK, "What is a runner?")
        st.fake(BEDROCK).enqueue(Answer(text="", pieces=[" I know.\nFinal Answer:", " Runners", " run jobs."],
                                        finish_reason="length", input_tokens=321, output_tokens=9))
        events = _ndjson(st.post(path, json_body=body, headers=rails.headers(gl)))
        deltas = [e for e in events if e["type"] == "final_answer_delta"]
        assert "".join(d["data"]["text"] for d in deltas) == "Runners run jobs.", events
        if rails.major >= 19:
            assert all(d["data"]["finish_reason"] is None for d in deltas[:-1]), events
            assert deltas[-1] == {"type": "final_answer_delta", "data": {"text": "", "finish_reason": "length"}}, events
            assert events[-1] == {"type": "usage", "data": {"usage": {model: {"input_tokens": 321, "output_tokens": 9}}}}, events
            assert len(events) == len(deltas) + 1, events
        else:
            assert events == deltas and all(set(d["data"]) == {"text"} for d in deltas), events


def test_fidelity_chat_unit_primitives(e2e):
    """The ReAct chat takes duo_classic_chat (GitLab's current name, 19.x tokens) or duo_chat
    (18.x tokens); the record names the one held; neither is GitLab's 403."""
    st = e2e.stack("self_hosted")
    gl = st.gitlab
    for rails, scopes, held in [(GITLAB_19, ["duo_classic_chat"], "duo_classic_chat"),
                                (GITLAB_19, ["duo_chat", "duo_classic_chat"], "duo_classic_chat"),
                                (GITLAB_18_4, ["duo_chat"], "duo_chat")]:
        path, body = rails.chat(CLAUDE_BEDROCK, "What is a runner?")
        st.fake(BEDROCK).enqueue(Answer(text="", pieces=[" I know.\nFinal Answer: Runners run jobs."]))
        headers = rails.headers(gl, Authorization=f"Bearer {gl.mint(scopes=scopes)}")
        events = _ndjson(st.post(path, json_body=body, headers=headers))
        assert "".join(e["data"]["text"] for e in events if e["type"] == "final_answer_delta") == "Runners run jobs.", (scopes, events)
        assert _record(st, headers["X-Request-ID"])["meta.unit_primitive"] == held, scopes
    path, body = GITLAB_19.chat(CLAUDE_BEDROCK, "What is a runner?")
    headers = GITLAB_19.headers(gl, Authorization=f"Bearer {gl.mint(scopes=['complete_code'])}")
    before = len(st.fake(BEDROCK).requests)
    r = st.post(path, json_body=body, headers=headers)
    assert (r.status, r.json()) == (403, {"detail": "Unauthorized to access duo chat"}), r.body
    assert len(st.fake(BEDROCK).requests) == before, "refused before the model"


def test_fidelity_422_body_by_version_and_ai_logs(e2e):
    """A body-validation 422: "Validation error" unless the admin enabled AI logs; then the
    list for 18.x and the list's Python text for 19.x (GitLab's newer gateway)."""
    st = e2e.stack("self_hosted")
    gl = st.gitlab
    expected = {
        (GITLAB_18_4.version, "false"): {"detail": "Validation error"},
        (GITLAB_19.version, "false"): {"detail": "Validation error"},
        (GITLAB_18_4.version, "true"): {"detail": [{"loc": ["body", "messages", 0, "role"],
                                                    "msg": "Input should be 'user' or 'assistant'", "type": "literal_error"}]},
        (GITLAB_19.version, "true"): {"detail": "[{'type': 'literal_error', 'loc': ('body', 'messages', 0, 'role'), "
                                                "'msg': \"Input should be 'user' or 'assistant'\"}]"},
    }
    for rails in VERSIONS:
        path, body = rails.chat(CLAUDE_BEDROCK, "hi")
        body["messages"][0]["role"] = "system"
        for verbose in ("false", "true"):
            r = st.post(path, json_body=body,
                        headers=rails.headers(gl, x_gitlab_enabled_instance_verbose_ai_logs=verbose))
            assert (r.status, r.json()) == (422, expected[(rails.version, verbose)]), (rails.version, verbose, r.body)


def test_fidelity_chat_tool_outside_the_offered_set_is_not_available(e2e):
    """A model that names a tool the token may not use (or no tool GitLab has) gets GitLab's
    `tool not available` error event instead of an action."""
    st = e2e.stack("self_hosted")
    gl = st.gitlab
    headers = GITLAB_19.headers(gl, Authorization=f"Bearer {gl.mint(scopes=['duo_classic_chat', 'ask_issue'])}")
    for tool, expected in [("issue_reader", "action"), ("build_reader", "error"), ("pipeline_reader", "error")]:
        path, body = GITLAB_19.chat(CLAUDE_BEDROCK, "Why did job 7 fail?")
        st.fake(BEDROCK).enqueue(Answer(text="", pieces=[" I need it.\nAction: ", tool, "\nAction Input: job 7\n"]))
        events = _ndjson(st.post(path, json_body=body, headers=headers))
        kinds = [e["type"] for e in events if e["type"] != "usage"]
        assert kinds == [expected], (tool, events)
        if expected == "error":
            assert events[0]["data"] == {"message": "tool not available", "retryable": False}, events
        else:
            assert events[0]["data"]["tool"] == tool, events


def test_fidelity_generated_code_is_post_processed_as_gitlab_does(e2e):
    """Whole generations get GitLab's post-processing (fences out, a newline after an unfinished
    line, a repeated comment line dropped, whitespace-only → empty); 19.x generation streams
    come line by line without fence lines; 18.4's streams are the model's text."""
    st = e2e.stack("self_hosted")
    gl = st.gitlab
    for rails in VERSIONS:
        path, body = rails.code_generation(CLAUDE_BEDROCK, "app/car.py", "class Car:\n    # speed up\n    def speed_up(self):",
                                           "speed up")
        st.fake(BEDROCK).enqueue(Answer(text="```python\n    # speed up\n        self.speed += 1\n```"))
        r = st.post(path, json_body=body, headers=rails.headers(gl))
        assert r.status == 200, (rails.version, r.body)
        # (the dropped comment line's break stays: GitLab joins the lines that way)
        assert [c["text"] for c in r.json()["choices"]] == ["\n\n        self.speed += 1\n"], (rails.version, r.json())

        path, body = rails.code_generation(CLAUDE_BEDROCK, "main.go", "package main\n", "hello", stream=True)
        pieces = ["```", "go\nfunc hel", "lo() {}\n", "```"]
        st.fake(BEDROCK).enqueue(Answer(text="".join(pieces), pieces=pieces))
        r = st.post(path, json_body=body, headers=rails.headers(gl))
        assert r.status == 200, (rails.version, r.body)
        if rails.major >= 19:
            chunks = [d["choices"][0]["delta"]["content"] for e, d in _sse_events(r.text) if e == "content_chunk"]
            assert chunks == ["func hello() {}\n"], chunks
        else:
            assert r.text == "".join(pieces), r.text
