"""Provider codecs on real Envoy (docs/codecs.md): GitLab's request becomes the platform's
request (vLLM fill-in-the-middle on /v1/completions, Azure deployment path with api-key, Bedrock
Converse with the model id encoded once), and the platform's answer or error comes back in
GitLab's shapes (code suggestion object, bare JSON string, 421 "<code>: <reason phrase>" for any
model failure on a prompt endpoint)."""

from __future__ import annotations

import json
from http.client import responses

from duo_e2e.fakes.base import Reply


# The fake Azure resource's key (duo_e2e.fakes.openai.FakeAzure).
AZURE_KEY = "azure-test-key"


def _meta(identifier, endpoint=""):
    return {"provider": "openai", "name": "gpt", "identifier": identifier, "endpoint": endpoint, "api_key": AZURE_KEY}


def test_codecs_fim_completion_on_vllm(e2e):
    st = e2e.stack("self_hosted")
    body = {"current_file": {"file_name": "a.py", "language_identifier": "python",
                             "content_above_cursor": "def add(a, b):\n", "content_below_cursor": "\nprint(add(1, 2))\n"},
            "model_provider": "litellm", "model_name": "codestral", "prompt_version": 2, "stream": False,
            "model_endpoint": "http://vllm.internal:8000/v1", "model_api_key": "sk-e2e-codec",
            "model_identifier": "custom_openai/Codestral-22B-v0.1"}
    r = st.post("/v2/code/completions", json_body=body, headers=st.gitlab.headers())
    sent = st.fake("vllm_codestral").last()
    assert sent.target == "/v1/completions"
    req = sent.json()
    assert req["prompt"] == "[SUFFIX]\nprint(add(1, 2))\n[PREFIX]def add(a, b):\n"
    assert "suffix" not in req
    assert sent.header("authorization") == "Bearer sk-e2e-codec"
    assert r.status == 200, r.body
    answer = json.loads(r.body)
    assert answer["object"] == "text_completion" and answer["choices"][0]["text"]


def test_codecs_azure_prompt_is_a_bare_string(e2e):
    st = e2e.stack("self_hosted")
    body = {"inputs": {"diff": "diff --git a/x b/x\n+y\n"}, "stream": False,
            "model_metadata": _meta("azure/gpt-4o-deploy", "https://myres.openai.azure.com/")}
    r = st.post("/v1/prompts/generate_commit_message", json_body=body, headers=st.gitlab.headers())
    sent = st.fake("azure_eastus").last()
    assert sent.target == "/openai/deployments/gpt-4o-deploy/chat/completions?api-version=2024-10-21"
    assert sent.header("api-key") == AZURE_KEY
    assert AZURE_KEY not in sent.body.decode()
    assert r.status == 200, r.body
    assert isinstance(json.loads(r.body), str)


def test_codecs_model_error_on_a_prompt_is_421_with_its_code(e2e):
    st = e2e.stack("self_hosted")
    st.fake("azure_eastus").enqueue(Reply.json({"error": {"code": "DeploymentNotFound", "message": "The API deployment for this resource does not exist."}}, status=404))
    body = {"inputs": {"diff": "x"}, "stream": False, "model_metadata": _meta("azure/gpt-4o-deploy", "https://myres.openai.azure.com/")}
    r = st.post("/v1/prompts/generate_commit_message", json_body=body, headers=st.gitlab.headers())
    assert r.status == 421, r.body
    # GitLab's gateway: the code and its standard reason phrase (Python's http.client.responses).
    assert json.loads(r.body) == {"detail": f"404: {responses[404]}"}


def test_codecs_missing_inputs_are_422_and_reach_no_model(e2e):
    st = e2e.stack("self_hosted")
    body = {"inputs": {"dif": "x"}, "stream": False, "model_metadata": _meta("azure/gpt-4o-deploy", "https://myres.openai.azure.com/")}
    r = st.post("/v1/prompts/generate_commit_message", json_body=body, headers=st.gitlab.headers())
    assert r.status == 422, r.body
    assert "'diff'" in json.loads(r.body)["detail"]
    st.fake("azure_eastus").assert_nothing_received()


def test_codecs_generation_on_bedrock_converse(e2e):
    st = e2e.stack("self_hosted")
    body = {"current_file": {"file_name": "main.go", "content_above_cursor": "package main\n\n// reverse a string\n", "content_below_cursor": ""},
            "stream": False, "model_provider": "litellm", "prompt_version": 2, "prompt_id": "code_suggestions/generations",
            "prompt": "reverse a string", "model_name": "claude_3",
            "model_identifier": "bedrock/us.anthropic.claude-3-5-sonnet-20240620-v1:0"}
    r = st.post("/v2/code/generations", json_body=body, headers=st.gitlab.headers())
    sent = st.fake("bedrock_us_east_1").last()
    assert sent.target == "/model/us.anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse"
    req = sent.json()
    assert req["messages"][-1] == {"role": "assistant", "content": [{"text": "<new_code>"}]}
    assert req["inferenceConfig"]["stopSequences"] == ["</new_code>"]
    assert r.status == 200, r.body
    answer = json.loads(r.body)
    # GitLab's gateway names its prompt agent (claude_3 has no definition of its own: base).
    assert (answer["model"]["engine"], answer["model"]["name"]) == ("agent", "Code Generations Agent"), answer
    assert answer["choices"][0]["text"]


def test_codecs_golden_bedrock_bodies_pass_botocore(e2e):
    """Every golden Bedrock request of the codec tests is valid for botocore's bedrock-runtime
    model, and botocore serializes the same path (filters/router/tests/golden/check_bedrock.py)."""
    import pathlib
    import subprocess
    import sys

    script = pathlib.Path(__file__).resolve().parents[3] / "filters/router/tests/golden/check_bedrock.py"
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert " 0 failed" in out.stdout, out.stdout


def test_codecs_600_kb_prompt_body_reaches_the_model(e2e):
    """GitLab sends request bodies up to 600 KB (a large diff): the whole payload is rendered
    into the prompt the model receives, and the answer comes back."""
    import random
    import string

    st = e2e.stack("self_hosted")
    rng = random.Random(600)
    lines = []
    size = 0
    while size < 590_000:
        line = "+" + "".join(rng.choice(string.ascii_letters + " ") for _ in range(79))
        lines.append(line)
        size += len(line) + 1
    diff = "diff --git a/big.txt b/big.txt\n" + "\n".join(lines) + "\n+END-OF-BIG-DIFF\n"
    body = {"inputs": {"diff": diff}, "stream": False,
            "model_metadata": _meta("azure/gpt-4o-deploy", "https://myres.openai.azure.com/")}
    raw = json.dumps(body).encode()
    assert 580_000 < len(raw) <= 600 * 1024, len(raw)
    r = st.request("POST", "/v1/prompts/generate_commit_message", body=raw,
                   headers={**st.gitlab.headers(), "content-type": "application/json"}, timeout_s=60)
    assert r.status == 200, r.body[:300]
    assert json.loads(r.body), r.body
    sent = st.fake("azure_eastus").last()
    prompt = "\n".join(m["content"] if isinstance(m["content"], str) else "".join(p.get("text", "") for p in m["content"])
                       for m in sent.json()["messages"])
    assert diff.strip() in prompt, "the rendered prompt does not contain the whole 600 KB payload"
    assert len(sent.body) > len(diff), len(sent.body)


def test_codecs_upstream_429(e2e):
    """A throttled model: 421 "429: Too Many Requests" on a prompt endpoint (GitLab's gateway),
    429 with the platform's Retry-After on code suggestions; never retried by the gateway."""
    st = e2e.stack("self_hosted")
    throttled = {"error": {"code": "429", "message": "Requests to the ChatCompletions_Create Operation have exceeded the rate limit."}}
    st.fake("azure_eastus").enqueue(Reply.json(throttled, status=429, headers=[("Retry-After", "7")]))
    body = {"inputs": {"diff": "x"}, "stream": False, "model_metadata": _meta("azure/gpt-4o-deploy", "https://myres.openai.azure.com/")}
    r = st.post("/v1/prompts/generate_commit_message", json_body=body, headers=st.gitlab.headers())
    assert (r.status, r.json()) == (421, {"detail": "429: Too Many Requests"}), (r.status, r.body)
    assert len(st.fake("azure_eastus").received()) == 1, "a 429 must not be retried by the gateway"
    st.fake("vllm_codestral").enqueue(Reply.json({"object": "error", "message": "busy", "type": "TooManyRequests", "code": 429},
                                                 status=429, headers=[("Retry-After", "7")]))
    completion = {"current_file": {"file_name": "a.py", "content_above_cursor": "def f():\n", "content_below_cursor": ""},
                  "model_provider": "litellm", "model_name": "codestral", "prompt_version": 2, "stream": False,
                  "model_endpoint": "http://vllm.internal:8000/v1", "model_api_key": "sk-e2e-codec",
                  "model_identifier": "custom_openai/Codestral-22B-v0.1"}
    r = st.post("/v2/code/completions", json_body=completion, headers=st.gitlab.headers())
    assert r.status == 429, (r.status, r.body)
    assert r.header("retry-after") == "7", r
    assert len(st.fake("vllm_codestral").received()) == 1, "a 429 must not be retried by the gateway"


def test_codecs_unreachable_model_on_a_prompt_is_421_500(e2e):
    """The model's cluster answers nothing (its fake is stopped: connection refused) → on a prompt
    endpoint 421 `{"detail": "500: Internal Server Error"}`, what GitLab's gateway answers for
    LiteLLM's connection error. A variant stack, so the shared one keeps its fakes."""
    st = e2e.stack("self_hosted", name="self_hosted_unreachable")
    try:
        st.fake("azure_eastus").stop()
        body = {"inputs": {"diff": "x"}, "stream": False,
                "model_metadata": _meta("azure/gpt-4o-deploy", "https://myres.openai.azure.com/")}
        r = st.request("POST", "/v1/prompts/generate_commit_message", json_body=body, headers=st.gitlab.headers(), timeout_s=30)
        assert r.status == 421, (r.status, r.body)
        assert json.loads(r.body) == {"detail": "500: Internal Server Error"}, r.body
        assert (r.header("content-type") or "").startswith("application/json"), r.header("content-type")
    finally:
        st.stop()


def _vllm_completion_body():
    return {"current_file": {"file_name": "a.py", "language_identifier": "python",
                             "content_above_cursor": "def add(a, b):\n", "content_below_cursor": "\n"},
            "model_provider": "litellm", "model_name": "codestral", "prompt_version": 2, "stream": False,
            "model_endpoint": "http://vllm.internal:8000/v1", "model_api_key": "sk-e2e-codec",
            "model_identifier": "custom_openai/Codestral-22B-v0.1"}


def test_codecs_upstream_answer_without_a_body_gets_a_gitlab_answer(e2e):
    """Regression: a 200 with `content-length: 0` or an empty 503 (load balancers send those)
    ended at its headers and crashed the router's VM. GitLab gets a GitLab-shaped error and the
    next request is served."""
    st = e2e.stack("self_hosted")
    for status in (200, 503):
        st.fake("vllm_codestral").enqueue(Reply(status=status))
        r = st.post("/v2/code/completions", json_body=_vllm_completion_body(), headers=st.gitlab.headers())
        assert r.status == 503, (status, r.status, r.body)
        assert json.loads(r.body) == {"detail": "Inference failed"}, r.body
        assert (r.header("content-type") or "").startswith("application/json"), r.header("content-type")
    r = st.post("/v2/code/completions", json_body=_vllm_completion_body(), headers=st.gitlab.headers())
    assert r.status == 200, r.body
    assert json.loads(r.body)["choices"][0]["text"]


def test_codecs_headers_describing_gitlabs_body_are_not_forwarded(e2e):
    """Regression: the router rebuilds the body, so GitLab's `content-encoding` (and digests)
    must not reach the model with it; the fake vLLM refuses a body its encoding does not match."""
    st = e2e.stack("self_hosted")
    headers = {**st.gitlab.headers(), "content-encoding": "gzip", "digest": "sha-256=X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE="}
    r = st.post("/v2/code/completions", json_body=_vllm_completion_body(), headers=headers)
    sent = st.fake("vllm_codestral").last()
    assert sent.header("content-encoding") is None and sent.header("digest") is None, sent.header_list
    assert r.status == 200, r.body
