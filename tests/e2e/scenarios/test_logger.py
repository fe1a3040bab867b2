"""duo_logger on real Envoy 1.40 (docs/logger.md): one valid JSON record per request (local replies
included) with the right correlation id, status, feature, model and tokens; no secret from the
test in the access log or Envoy's log; content only with GitLab's verbose-logs header under
`when_enabled`; the metrics in /stats/prometheus after a known set of requests."""

from __future__ import annotations

import json
import re
import time
import uuid
from typing import Any

from duo_e2e import ROOT, Answer, Reply, bootstrap

VERBOSE = "x-gitlab-enabled-instance-verbose-ai-logs"
RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
# What docs/logger.md asks every shipped bootstrap to carry (duo_core::metrics::TAGS).
TAGS = ("feature", "model", "outcome", "reason", "result", "provider", "status_class", "grpc_method", "grpc_status",
        "gen_ai_operation_name", "gen_ai_provider_name", "gen_ai_request_model", "gen_ai_token_type", "error_type")
STATS_TAGS = [{"tag_name": t, "regex": rf"^wasmcustom\..*?(\.{t}\.([^.]+))"} for t in TAGS]
INTEGER_FIELDS = ("status_code", "upstream_status", "input_tokens", "output_tokens", "total_tokens", "request_bytes",
                  "response_bytes")
FLOAT_FIELDS = ("duration_s", "first_chunk_duration_s", "response_start_duration_s")


def _rid(tag: str) -> str:
    return f"e2e-logger-{tag}-{uuid.uuid4().hex[:12]}"


def _completion_body(**extra: Any) -> dict[str, Any]:
    body = {
        "prompt_version": 1,
        "project_path": "group/project",
        "current_file": {"file_name": "app/car.py", "language_identifier": "python",
                         "content_above_cursor": "class Car:\n    def speed(self):", "content_below_cursor": ""},
        "model_provider": "litellm",
        "model_name": "codestral",
        "model_identifier": "custom_openai/Codestral-22B-v0.1",
        "stream": False,
    }
    body.update(extra)
    return body


def _check_shape(rec: dict[str, Any]) -> None:
    """Types every record must have (the duo_logger configuration (README))."""
    assert RFC3339.match(rec.get("timestamp", "")), rec
    for k in INTEGER_FIELDS:
        if k in rec:
            assert isinstance(rec[k], int) and not isinstance(rec[k], bool), (k, rec)
    for k in FLOAT_FIELDS:
        if k in rec:
            assert isinstance(rec[k], (int, float)) and rec[k] >= 0, (k, rec)
    if "stream" in rec:
        assert isinstance(rec["stream"], bool), rec
    for k, v in rec.items():
        assert v is not None, f"{k} is null; unknown values are left out: {rec}"


def _records_by_id(stack, ids: list[str]) -> dict[str, dict[str, Any]]:
    lines = stack.access_log(wait_for=len(ids), timeout_s=10.0)
    assert len(lines) == len(ids), f"{len(ids)} requests, {len(lines)} access-log lines: {lines}"
    by_id: dict[str, dict[str, Any]] = {}
    for line in lines:
        assert isinstance(line, dict), f"access-log line is not a JSON object: {line!r}"
        _check_shape(line)
        cid = line.get("correlation_id")
        assert cid in ids, f"record with unknown correlation_id {cid!r}: {line}"
        assert cid not in by_id, f"two records for {cid}: {by_id[cid]} and {line}"
        by_id[cid] = line
    return by_id


def test_logger_one_record_per_request(e2e):
    st = e2e.stack("self_hosted")
    gl = st.gitlab
    st.fake("vllm_codestral").enqueue(Answer(text="return self.v", input_tokens=11, output_tokens=7, finish_reason="length"))
    st.fake("vllm_codestral").enqueue(Answer(text="return 1", input_tokens=5, output_tokens=2, finish_reason="stop"))
    cases = []  # (request id, response, expectations)

    rid = _rid("health")
    r = st.get("/monitoring/healthz", headers={"X-Request-ID": rid})
    cases.append((rid, r, {"method": "GET", "path": "/monitoring/healthz"}))

    rid = _rid("notfound")
    r = st.post("/v9/nothing/here", json_body={}, headers={**gl.headers(), "X-Request-ID": rid})
    cases.append((rid, r, {"method": "POST", "path": "/v9/nothing/here", "absent": ["feature", "model_name"]}))

    rid = _rid("denied")
    r = st.post("/v2/code/completions", json_body=_completion_body(), headers={"X-Request-ID": rid, "X-Gitlab-Authentication-Type": "oidc"})
    cases.append((rid, r, {"status": 401, "feature": "code_completions", "auth_result": "denied", "absent": ["model_name", "input_tokens"]}))

    rid = _rid("served")
    r = st.post("/v2/code/completions", json_body=_completion_body(), headers={**gl.headers(), "X-Request-ID": rid})
    cases.append((rid, r, {"status": 200, "feature": "code_completions", "auth_result": "ok", "model_name": "codestral",
                           "provider": "self_hosted", "platform": "vllm", "upstream_cluster": "vllm_codestral",
                           "input_tokens": 11, "output_tokens": 7, "total_tokens": 18, "stream": False,
                           "gitlab_instance_id": gl.instance_id, "gitlab_realm": gl.realm, "gitlab_version": "18.4.1",
                           # the platform's model id beside the config key, and how the answer ended
                           "request_model": "Codestral-22B-v0.1", "response_model": "Codestral-22B-v0.1",
                           "operation_name": "text_completion", "finish_reason": "length"}))
    served = (rid, r)

    rid = _rid("streamed")
    r = st.post("/v2/code/completions", json_body=_completion_body(stream=True), headers={**gl.headers(), "X-Request-ID": rid})
    cases.append((rid, r, {"status": 200, "model_name": "codestral", "stream": True, "input_tokens": 5, "output_tokens": 2,
                           "request_model": "Codestral-22B-v0.1", "response_model": "Codestral-22B-v0.1",
                           "operation_name": "text_completion", "finish_reason": "stop"}))

    recs = _records_by_id(st, [c[0] for c in cases])
    for rid, resp, want in cases:
        rec = recs[rid]
        assert rec["status_code"] == resp.status, (rec, resp)
        if "status" in want:
            assert resp.status == want["status"], (resp, rec)
        for k, v in want.items():
            if k in ("status", "absent"):
                continue
            assert rec.get(k) == v, f"{rid}: {k} = {rec.get(k)!r}, want {v!r}: {rec}"
        for k in want.get("absent", []):
            assert k not in rec, f"{rid}: {k} should be unknown: {rec}"
        assert rec["duration_s"] >= rec.get("first_chunk_duration_s", 0), rec
    rec = recs[served[0]]
    assert rec["response_bytes"] == len(served[1].body), (rec, served[1])


def test_logger_generates_correlation_id_when_missing(e2e):
    st = e2e.stack("self_hosted")
    r = st.get("/monitoring/healthz")
    assert r.status == 200
    (rec,) = st.access_log(wait_for=1)
    assert isinstance(rec, dict) and re.fullmatch(r"[0-9a-f-]{36}", rec.get("correlation_id", "")), rec


def test_logger_survives_header_bytes_outside_utf8(e2e):
    """HTTP allows obs-text (bytes 0x80-0xFF) in header values; reading one must not kill the VM
    (the SDK's string header getter unwraps UTF-8 and would panic: every later request 503)."""
    st = e2e.stack("self_hosted")
    rid = _rid("latin1")
    r = st.get("/monitoring/healthz", headers={"User-Agent": "caf\xe9-client", "X-Request-ID": rid})
    assert r.status == 200, r
    r2 = st.get("/monitoring/healthz", headers={"X-Request-ID": rid + "-after"})
    assert r2.status == 200, f"the gateway broke after one non-UTF-8 header: {r2}"
    recs = _records_by_id(st, [rid, rid + "-after"])
    assert recs[rid]["user_agent"] == "caf\ufffd-client", recs[rid]


def test_logger_keeps_secrets_out(e2e):
    st = e2e.stack("self_hosted")
    gl = st.gitlab
    token = gl.mint()
    secrets = {
        "jwt": token,
        "jwt_signature": token.rsplit(".", 1)[1],
        "jwt_payload": token.split(".")[1],
        "model_api_key": "sk-e2e-model-key-0123456789abcdef",
        "query_key": "QUERYSECRET0123456789",
        "aws_token": "IQoJb3JpZ2luX2VjE2e2eSessionToken",
        "azure_key": "azure-header-key-0123456789",
        "aws_sig": "a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90",
    }
    auth_header = {**gl.headers(token), VERBOSE: "true"}
    st.post(f"/v2/code/completions?api_key={secrets['query_key']}",
            json_body=_completion_body(model_api_key=secrets["model_api_key"]),
            headers={**auth_header, "X-Request-ID": _rid("s1"), "x-amz-security-token": secrets["aws_token"],
                     "api-key": secrets["azure_key"]})
    # generate_commit_message goes to Azure with GitLab's key: the fake must expect this one.
    azure = st.fake("azure_eastus")
    usual_key, azure.api_key = azure.api_key, secrets["model_api_key"]
    try:
        r = st.post("/v1/prompts/generate_commit_message",
                    json_body={"inputs": {"diff": f"Authorization: AWS4-HMAC-SHA256 Credential=AKIAE2E/x, Signature={secrets['aws_sig']}"},
                               "model_metadata": {"api_key": secrets["model_api_key"]}},
                    headers={**auth_header, "X-Request-ID": _rid("s2")})
    finally:
        azure.api_key = usual_key
    assert r.status == 200, r
    # A refused token is logged as a denial, never as text.
    st.post("/v2/code/completions", json_body=_completion_body(),
            headers={**gl.headers(gl.mint_bad_signature()), "X-Request-ID": _rid("s3")})
    lines = st.access_log(wait_for=3, timeout_s=10.0)
    assert len(lines) == 3 and all(isinstance(l, dict) for l in lines), lines
    time.sleep(0.2)  # Envoy's own log is flushed every 50 ms in the e2e runs
    with open(st.access_log_path, encoding="utf-8", errors="replace") as f:
        access_text = f.read()
    envoy_text = st.envoy.log()
    for name, secret in secrets.items():
        assert secret not in access_text, f"{name} leaked into the access log"
        assert secret not in envoy_text, f"{name} leaked into Envoy's log"
    assert "eyJ" not in access_text, "a JWT-looking string is in the access log"


def test_logger_content_only_with_verbose_header(e2e):
    st = e2e.stack("self_hosted")
    plugin = bootstrap.plugin_json(st.boot, "duo_logger") or {}
    assert plugin.get("log_content") == "when_enabled", f"self_hosted.yaml's duo_logger config changed: {plugin}"
    gl = st.gitlab
    quiet, verbose, off = _rid("quiet"), _rid("verbose"), _rid("off")
    st.fake("vllm_codestral").enqueue(Answer(text="quiet answer"))
    st.fake("vllm_codestral").enqueue(Answer(text="verbose answer"))
    st.fake("vllm_codestral").enqueue(Answer(text="off answer"))
    body = _completion_body()
    r1 = st.post("/v2/code/completions", json_body=body, headers={**gl.headers(), "X-Request-ID": quiet})
    r2 = st.post("/v2/code/completions", json_body=body, headers={**gl.headers(), "X-Request-ID": verbose, VERBOSE: "true"})
    r3 = st.post("/v2/code/completions", json_body=body, headers={**gl.headers(), "X-Request-ID": off, VERBOSE: "false"})
    assert (r1.status, r2.status, r3.status) == (200, 200, 200), (r1, r2, r3)
    recs = _records_by_id(st, [quiet, verbose, off])
    assert "content" not in recs[quiet], recs[quiet]
    assert "content" not in recs[off], recs[off]
    content = recs[verbose].get("content")
    assert isinstance(content, dict), f"no content with the verbose header under when_enabled: {recs[verbose]}"
    assert "def speed" in content.get("prompt", ""), content
    assert "verbose answer" in content.get("response", ""), content
    limit = plugin.get("max_content_bytes", 8192)
    assert all(len(v.encode()) <= limit for v in content.values() if isinstance(v, str)), content


def _with_stats_tags(boot: dict[str, Any]) -> None:
    boot.setdefault("stats_config", {}).setdefault("stats_tags", list(STATS_TAGS))


def test_logger_shipped_configs_extract_metric_tags(e2e):
    missing = []
    for path in sorted((ROOT / "envoy").glob("*.yaml")):
        tags = (bootstrap.load(path).get("stats_config") or {}).get("stats_tags") or []
        names = {t.get("tag_name") for t in tags}
        if not {"feature", "model", "outcome", "reason"} <= names:
            missing.append(path.name)
    assert not missing, f"no stats_config.stats_tags for duo_logger's metrics (docs/logger.md) in {missing}"


def test_logger_metrics_in_prometheus(e2e):
    st = e2e.stack("self_hosted", name="logger_metrics", fresh=True, patch=_with_stats_tags)
    gl = st.gitlab
    vllm = st.fake("vllm_codestral")
    for n in (3, 4):
        vllm.enqueue(Answer(text="x", input_tokens=10 * n, output_tokens=n))
    vllm.enqueue(Answer(text="streamed answer", input_tokens=5, output_tokens=2))
    vllm.enqueue(Reply.json({"error": {"message": "overloaded", "code": 503}}, status=503))
    for _ in range(2):
        r = st.post("/v2/code/completions", json_body=_completion_body(), headers=gl.headers())
        assert r.status == 200, r
    r = st.post("/v2/code/completions", json_body=_completion_body(stream=True), headers=gl.headers())
    assert r.status == 200, r
    r = st.post("/v2/code/completions", json_body=_completion_body(), headers=gl.headers())
    assert r.status >= 400, r
    r = st.post("/v2/code/completions", json_body=_completion_body(), headers=gl.headers(gl.mint_expired()))
    assert r.status == 401, r
    r = st.get("/monitoring/healthz")
    assert r.status == 200, r
    recs = st.access_log(wait_for=6)
    assert len(recs) == 6, recs
    env = st.envoy
    assert env.metric("duo_requests_total", feature="code_completions", outcome="ok") == 3, env.admin("/stats/prometheus")
    assert env.metric("duo_requests_total", feature="code_completions", outcome="auth_denied") == 1
    assert env.metric("duo_requests_total", feature="none", outcome="ok") == 1
    denied = recs[4].get("auth_error", "none") if isinstance(recs[4], dict) else "none"
    reason = re.sub(r"[^a-z0-9_-]", "_", denied.lower())[:64] or "none"
    assert env.metric("duo_auth_denials_total", reason=reason) == 1, (reason, recs[4])
    # Histograms reach /stats/prometheus at the next stats flush (5 s by default).
    deadline = time.monotonic() + 12
    while time.monotonic() < deadline:
        count = env.metric("duo_request_duration_ms_count", feature="code_completions", model="codestral")
        if count == 4:
            break
        time.sleep(0.5)
    assert count == 4, env.admin("/stats/prometheus")
    assert env.metric("duo_request_duration_ms_count", feature="none", model="none") == 1
    # The OpenTelemetry GenAI histograms (docs/logger.md): the model call's attributes as labels.
    call = {"feature": "code_completions", "model": "codestral", "gen_ai_operation_name": "text_completion",
            "gen_ai_provider_name": "openai", "gen_ai_request_model": "codestral-22b-v0_1"}
    # Exact token totals in the counters; the histograms' sums are Envoy's approximation (its bins
    # keep about two significant digits), their counts exact.
    assert env.metric("duo_input_tokens_total", feature="code_completions", model="codestral") == 30 + 40 + 5
    assert env.metric("duo_output_tokens_total", feature="code_completions", model="codestral") == 3 + 4 + 2
    got = env.metric("gen_ai_client_token_usage_sum", gen_ai_token_type="input", **call)
    assert got is not None and abs(got - 75) <= 75 * 0.1, got
    assert env.metric("gen_ai_client_token_usage_count", gen_ai_token_type="input", **call) == 3
    assert env.metric("gen_ai_client_token_usage_count", gen_ai_token_type="output", **call) == 3
    assert env.metric("gen_ai_client_operation_duration_ms_count", **call) == 4  # the failed call included
    assert env.metric("gen_ai_client_operation_duration_ms_count", error_type="503", **call) == 1
    assert env.metric("gen_ai_server_time_to_first_token_ms_count", **call) == 1, "streamed successful answers only"
    text = env.admin("/stats/prometheus")
    assert json.dumps(text).count("wasmcustom") == 0, "the wasmcustom namespace should be stripped"
    # The shipped buckets: milliseconds up to 327 680 / 60 000, tokens in powers of 4.
    for name, top in (("gen_ai_client_operation_duration_ms", "327680"), ("gen_ai_server_time_to_first_token_ms", "60000"),
                      ("gen_ai_client_token_usage", "67108864")):
        assert re.search(rf'^{name}_bucket{{[^}}]*le="{top}"', text, re.M), (name, text[-3000:])
    for rec in recs[:4]:
        assert rec.get("request_model") == "Codestral-22B-v0.1", rec


def test_logger_dashboard_uses_only_exported_metrics(e2e):
    """The Grafana dashboard queries only metrics and labels docs/logger.md documents."""
    doc = (ROOT / "docs" / "logger.md").read_text()
    documented = set(re.findall(r"^\| `((?:duo|gen_ai)_[a-z_]+)` \|", doc, re.M))
    assert {"duo_requests_total", "duo_auth_denials_total", "duo_input_tokens_total", "duo_output_tokens_total",
            "duo_request_duration_ms", "gen_ai_client_token_usage",
            "gen_ai_client_operation_duration_ms", "gen_ai_server_time_to_first_token_ms"} <= documented, documented
    dash = json.loads((ROOT / "examples" / "observability" / "grafana-dashboard.json").read_text())
    exprs = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                if k in ("expr", "definition") and isinstance(v, str):
                    exprs.append(v)
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(dash)
    assert len(exprs) >= 10, exprs
    for expr in exprs:
        if re.search(r"\benvoy_", expr):
            continue  # Envoy's own series: test_tooling checks them against a live /stats/prometheus
        for name in re.findall(r"\b((?:duo|gen_ai)_[a-z_]+)", expr):
            base = re.sub(r"_(bucket|count|sum)$", "", name)
            assert base in documented, f"dashboard uses {name}, not a documented metric: {expr}"
        for label in re.findall(r"\b([a-z_]+)\s*(?:=~|!=|=)\s*\"", expr) + re.findall(r"by \(([^)]*)\)", expr):
            for one in re.split(r",\s*", label):
                assert one in TAGS + ("le",), f"unknown label {one!r} in {expr}"


def check_access_logs(stacks) -> list[str]:
    """Problems in the whole access logs of `stacks` (not only since the last mark): every line
    must be one JSON object with the request's identity and timing. Usable by any scenario or by
    the runner at the end of a run."""
    problems: list[str] = []
    for st in stacks:
        try:
            text = st.access_log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            continue
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                problems.append(f"{st.name}:{n}: not JSON: {line[:200]!r}")
                continue
            if not isinstance(rec, dict):
                problems.append(f"{st.name}:{n}: not an object: {line[:200]!r}")
                continue
            # A request Envoy could not parse (400/431/426 from its codec, test_deployment.py) has
            # no headers at all: no method, path or X-Request-ID to log.
            unparsed = rec.get("response_code_details", "").startswith(("http1.", "http2.", "low_version"))
            want = ("timestamp", "duration_s") if unparsed else ("timestamp", "correlation_id", "method", "path", "duration_s")
            missing = [k for k in want if k not in rec]
            if missing:
                problems.append(f"{st.name}:{n}: missing {missing}: {line[:300]}")
            try:
                _check_shape(rec)
            except AssertionError as e:
                problems.append(f"{st.name}:{n}: {e}")
    return problems


def test_logger_every_line_so_far_is_a_record(e2e):
    """Runs after the scenarios sorted before it: every line any of their stacks logged."""
    stacks = e2e.stacks()
    if not stacks:
        st = e2e.stack("self_hosted")
        st.get("/monitoring/healthz")
        st.access_log(wait_for=1)
        stacks = [st]
    problems = check_access_logs(stacks)
    assert not problems, "\n".join(problems[:20])
