"""duo_router's routing on real Envoy with the shipped configs (docs/router.md): each target kind
reaches the right fake upstream (or none), GitLab's request stays untouched for vendored/aigw,
a disallowed identifier or a moved endpoint reaches nothing, a client cannot pick the cluster,
and a missing `allow_on_headers_stop_iteration` is answered (500) instead of hanging.

Self-hosted checks assert where the request went, not what the model answered (the codec's
scenarios do that): a model fake that refuses the body is taken, not failed."""

from __future__ import annotations

import time

from duo_e2e import bootstrap, scenario

MODEL_CLUSTERS = ("vllm_codestral", "bedrock_us_east_1", "azure_eastus")


def _only(st, cluster, *, allow_refusal=False):
    """Exactly one request reached `cluster`, nothing reached any other upstream but GitLab."""
    got = st.fake(cluster).received()
    assert len(got) == 1, f"{cluster} got {len(got)} requests"
    if allow_refusal:
        st.fake(cluster).take_refusals()
    for name, fake in st.fakes.items():
        if name != cluster and fake.kind != "gitlab":
            fake.assert_nothing_received()
    return got[0]


def _nothing(st):
    for name, fake in st.fakes.items():
        if fake.kind != "gitlab":
            fake.assert_nothing_received()


def _meta(identifier, endpoint=""):
    return {"provider": "openai", "name": "mistral", "identifier": identifier, "endpoint": endpoint, "api_key": "sk-e2e"}


def test_router_vendored_gets_gitlabs_request_under_the_prefix(e2e):
    st = e2e.stack("hybrid")
    gl = st.gitlab
    headers = gl.headers(X_Duo_Upstream="python_aigw")  # a client-sent cluster header is ignored
    body = {"inputs": {"diff": "diff --git a/x b/x"}, "stream": False}
    r = st.post("/v1/prompts/generate_commit_message?from=e2e", json_body=body, headers=headers)
    assert r.status == 200, r
    sent = _only(st, "cloud_gitlab")
    assert sent.target == "/ai/v1/prompts/generate_commit_message?from=e2e", sent.target
    assert sent.header("authorization") == headers["Authorization"], "vendored needs GitLab's token"
    assert sent.header("host") == "cloud.gitlab.com"
    assert sent.json() == body, "vendored bodies pass unchanged"
    assert sent.header("x-duo-upstream") is None


def test_router_default_follows_to_the_vendor(e2e):
    st = e2e.stack("hybrid")
    r = st.post("/v1/prompts/resolve_vulnerability", json_body={"inputs": {"name": "x"}}, headers=st.gitlab.headers())
    assert r.status == 200, r
    assert _only(st, "cloud_gitlab").path == "/ai/v1/prompts/resolve_vulnerability"


def test_router_aigw_gets_the_request_unchanged(e2e):
    st = e2e.stack("hybrid")
    headers = st.gitlab.headers()
    body = {"inputs": {"formatted_mr_input": "diff"}, "stream": False}
    r = st.post("/v1/prompts/review_merge_request", json_body=body, headers=headers)
    assert r.status == 200, r
    sent = _only(st, "python_aigw")
    assert sent.target == "/v1/prompts/review_merge_request"
    assert sent.header("authorization") == headers["Authorization"]
    assert sent.header("host") == "aigw.internal:5052"
    assert sent.json() == body


def test_router_disabled_reaches_nothing(e2e):
    st = e2e.stack("hybrid")
    r = st.post("/v1/prompts/summarize_review", json_body={"inputs": {"draft_notes_content": "x"}},
                headers=st.gitlab.headers(X_Duo_Upstream="vllm_codestral"))
    assert r.status == 403, r
    assert r.json() == {"detail": "Unauthorized to access summarize_review"}, r.text
    _nothing(st)


def test_router_unknown_prompt_and_path_reach_nothing(e2e):
    st = e2e.stack("hybrid")
    r = st.post("/v1/prompts/chat%2Fno_such_prompt", json_body={}, headers=st.gitlab.headers())
    assert r.status == 404 and r.json() == {"detail": "Prompt 'chat/no_such_prompt' not found"}, r
    r = st.post("/v1/no/such/path", json_body={}, headers=st.gitlab.headers())
    assert r.status == 404 and r.json() == {"detail": "Not Found"}, r
    _nothing(st)


def test_router_explicit_model_goes_to_its_cluster_without_gitlabs_token(e2e):
    st = e2e.stack("hybrid")
    body = {"current_file": {"file_name": "a.py", "language_identifier": "python",
                             "content_above_cursor": "def add(a, b):\n    ", "content_below_cursor": ""},
            "model_provider": "litellm", "model_name": "codestral", "prompt_version": 2, "stream": False,
            "model_endpoint": "http://vllm.internal:8000/v1", "model_api_key": "sk-e2e",
            "model_identifier": "custom_openai/Codestral-22B-v0.1"}
    st.post("/v2/code/completions", json_body=body, headers=st.gitlab.headers())
    sent = _only(st, "vllm_codestral", allow_refusal=True)
    assert sent.header("host") == "vllm.internal:8000"
    auth = sent.header("authorization") or ""
    assert "eyJ" not in auth, "GitLab's JWT must never reach a model platform"
    assert sent.header("x-duo-upstream") is None


def test_router_identifier_picks_the_model(e2e):
    st = e2e.stack("self_hosted")
    body = {"inputs": {"input": "explain", "selected_text": "x = 1", "file_content": "", "language_info": ""},
            "stream": False, "model_metadata": _meta("azure/gpt-4o-deploy", "https://myres.openai.azure.com/")}
    st.post("/v1/prompts/chat/explain_code", json_body=body, headers=st.gitlab.headers())
    sent = _only(st, "azure_eastus", allow_refusal=True)
    assert sent.header("host") == "myres.openai.azure.com"
    assert "eyJ" not in (sent.header("authorization") or "") + (sent.header("api-key") or "")


def test_router_disallowed_identifier_reaches_nothing(e2e):
    st = e2e.stack("self_hosted")
    body = {"inputs": {"input": "explain"}, "stream": False,
            "model_metadata": _meta("custom_openai/Not-Listed-7B", "http://vllm.internal:8000/v1")}
    r = st.post("/v1/prompts/chat/explain_code", json_body=body, headers=st.gitlab.headers())
    assert r.status == 403, r
    assert r.json() == {"detail": "Unauthorized to access model 'custom_openai/Not-Listed-7B': not configured in this AI gateway"}, r.text
    _nothing(st)


def test_router_listed_identifier_at_another_address_reaches_nothing(e2e):
    st = e2e.stack("self_hosted")
    body = {"inputs": {"input": "explain"}, "stream": False,
            "model_metadata": _meta("custom_openai/Codestral-22B-v0.1", "http://127.0.0.1:9/v1")}
    r = st.post("/v1/prompts/chat/write_tests", json_body=body, headers=st.gitlab.headers())
    assert r.status == 403, r
    assert "serves it elsewhere" in r.json()["detail"], r.text
    _nothing(st)


def test_router_gitlab_com_sends_everything_to_the_vendor(e2e):
    st = e2e.stack("gitlab_com")
    cases = [("/v2/code/completions", {"current_file": {"file_name": "a.py", "content_above_cursor": "x", "content_below_cursor": ""}}),
             ("/v1/prompts/chat/explain_code", {"inputs": {"input": "x"}, "stream": False}),
             ("/v1/prompts/generate_description", {"inputs": {"content": "x", "template": ""}, "stream": False})]
    for path, body in cases:
        r = st.post(path, json_body=body, headers=st.gitlab.headers())
        assert r.status == 200, (path, r)
        assert st.fake("cloud_gitlab").last().path == "/ai" + path
    assert len(st.fake("cloud_gitlab").received()) == len(cases)


def _no_stop_iteration(boot):
    cfg = bootstrap.wasm_filter(boot, "duo_router")
    cfg["allow_on_headers_stop_iteration"] = False
    bootstrap.patch_plugin(boot, "duo_router", lambda c: c.update(body_wait_ms=1000))


@scenario(timeout_s=60)
def test_router_missing_allow_on_headers_stop_iteration_is_loud(e2e):
    st = e2e.stack("self_hosted", name="router_no_stop_iteration", patch=_no_stop_iteration)
    body = {"inputs": {"input": "explain"}, "stream": False,
            "model_metadata": _meta("azure/gpt-4o-deploy", "https://myres.openai.azure.com")}
    t0 = time.monotonic()
    r = st.request("POST", "/v1/prompts/chat/explain_code", json_body=body, headers=st.gitlab.headers(), timeout_s=15)
    took = time.monotonic() - t0
    assert r.status == 500, r
    assert "allow_on_headers_stop_iteration" in r.json()["detail"], r.text
    assert took < 10, f"answered after {took:.1f}s"
    _nothing(st)
    deadline = time.monotonic() + 5
    while "allow_on_headers_stop_iteration" not in st.envoy.log() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert "never delivered the body: set `allow_on_headers_stop_iteration: true`" in st.envoy.log(), "the error must be logged"
