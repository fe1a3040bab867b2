"""Operator tooling (docs/tooling.md): `./build.sh check`, `./build.sh config`, `./build.sh --help`;
Envoy's native access-log line; the observability examples against what the shipped configs and a
running gateway really expose."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from duo_e2e import ROOT, Answer, Reply, bootstrap, scenario
from duo_e2e.envoy import ENVOY

sys.path.insert(0, str(ROOT / "tools"))
from duoctl import check, values  # noqa: E402

SHIPPED = sorted((ROOT / "envoy").glob("*.yaml"))
VALUES = ROOT / "examples" / "config" / "values.yaml"
OBS = ROOT / "examples" / "observability"


def _run(*args: str, cwd: Path = ROOT, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          timeout=timeout, check=False)


def _duoctl(*args: str) -> subprocess.CompletedProcess:
    return _run(sys.executable, "-m", "duoctl", *args, cwd=ROOT / "tools")


def _problems(text: str) -> list[tuple[str, int]]:
    path = Path(ROOT / "target" / "tooling-check.yaml")
    path.parent.mkdir(exist_ok=True)
    path.write_text(text)
    found, fatal = check.static_problems(path)
    assert fatal is None, fatal
    return [(p.rule, p.line) for p in found]


def _line(text: str, needle: str) -> int:
    for n, l in enumerate(text.splitlines(), 1):
        if needle in l:
            return n
    raise AssertionError(f"{needle!r} not in the text")


# ---- check ---------------------------------------------------------------------------------

def test_tooling_check_accepts_the_shipped_configs(e2e):
    """Every shipped bootstrap, and the rendered production template, passes the static cross-checks."""
    prod = e2e.run_dir / "tooling-production.yaml"
    r = _run(sys.executable, str(ROOT / "examples" / "production" / "render.py"),
             str(ROOT / "examples" / "production" / "hosts.env"))
    assert r.returncode == 0, r.stderr
    prod.write_text(r.stdout)
    for path in SHIPPED + [prod]:
        found, fatal = check.static_problems(path)
        assert fatal is None, (path.name, fatal)
        assert not found, f"{path.name}: {[f'{p.line}: [{p.rule}] {p.message}' for p in found]}"


SELF_HOSTED = (ROOT / "envoy" / "self_hosted.yaml").read_text()

# (what, replace this, with this, expected rule, the line to blame: the text after the change)
MUTATIONS = [
    ("stop-iteration off", "allow_on_headers_stop_iteration: true", "allow_on_headers_stop_iteration: false",
     "stop-iteration", "allow_on_headers_stop_iteration: false"),
    ("FAIL_OPEN", "failure_policy: FAIL_RELOAD", "failure_policy: FAIL_OPEN", "failure-policy", "FAIL_OPEN"),
    ("model names a missing cluster", '"cluster": "azure_eastus"', '"cluster": "azure_east"', "cluster-exists",
     '"cluster": "azure_east"'),
    ("jwks source names a missing cluster", '{"name": "gitlab", "cluster": "gitlab"',
     '{"name": "gitlab", "cluster": "gitlab_x"', "cluster-exists", '"cluster": "gitlab_x"'),
    ("jwt_authn names a missing cluster", "cluster: gitlab, timeout: 5s", "cluster: gitlab_y, timeout: 5s",
     "cluster-exists", "cluster: gitlab_y"),
    ("no cluster_header route", "cluster_header: x-duo-upstream", "cluster_header: x-other",
     "cluster-header", "route_config:"),
    ("SigV4 for the wrong region", "region: us-east-1", "region: us-west-2", "bedrock-sigv4", "region: us-west-2"),
    ("SigV4 for another service", "service_name: bedrock", "service_name: s3", "bedrock-sigv4", "service_name: s3"),
    ("authority port differs from the cluster", '"authority": "vllm.internal:8000"',
     '"authority": "vllm.internal:8001"', "authority", '"authority": "vllm.internal:8001"'),
    ("authority host differs from the cluster", '"authority": "myres.openai.azure.com"',
     '"authority": "other.openai.azure.com"', "authority", '"authority": "other.openai.azure.com"'),
    ("SNI differs from the authority", "sni: myres.openai.azure.com", "sni: wrong.example.com", "authority",
     "sni: wrong.example.com"),
    ("listener buffer below the request limit", "per_connection_buffer_limit_bytes: 4194304",
     "per_connection_buffer_limit_bytes: 65536", "buffer-limit", "per_connection_buffer_limit_bytes: 65536"),
    ("jwt_authn writes another metadata key", "payload_in_metadata: duo_jwt_payload",
     "payload_in_metadata: other_payload", "jwt-authn", "payload_in_metadata: other_payload"),
    ("bad JSON in a filter configuration", '"configuration_type": "self_hosted",', '"configuration_type": "self_hosted",,',
     "filter-config", '"configuration_type": "self_hosted",,'),
]


def test_tooling_check_finds_each_problem_at_its_line(e2e):
    base = set(_problems(SELF_HOSTED))
    for what, old, new, rule, blame in MUTATIONS:
        assert old in SELF_HOSTED, (what, old)
        text = SELF_HOSTED.replace(old, new, 1)
        got = set(_problems(text)) - base
        assert (rule, _line(text, blame)) in got, f"{what}: expected [{rule}] at line {_line(text, blame)}, got {sorted(got)}"


def test_tooling_check_tls_verification(e2e):
    """A generated config verifies every upstream; taking away the CA or the expected name is flagged."""
    text = values.render(VALUES.read_text())
    assert _problems(text) == []
    no_san = re.sub(r"\n\s+match_typed_subject_alt_names:\n(\s+- .*\n\s+matcher:\n\s+exact: gitlab.example.com\n)", "\n", text, 1)
    assert no_san != text
    assert ("tls-verify", _line(no_san, "sni: gitlab.example.com") - 1) in _problems(no_san)
    no_ca = text.replace("trusted_ca:", "trusted_ca_off:", 1)
    assert any(r == "tls-verify" for r, _ in _problems(no_ca))


def test_tooling_check_command(e2e):
    """The real command: Envoy's --mode validate included, problems as FILE:LINE, exit status 1."""
    gen = e2e.run_dir / "tooling-generated.yaml"
    gen.write_text(values.render(VALUES.read_text()))
    bad = e2e.run_dir / "tooling-bad-platform.yaml"
    text = gen.read_text().replace('"platform": "azure_openai"', '"platform": "azure_openaix"')
    bad.write_text(text)
    not_boot = e2e.run_dir / "tooling-not-a-bootstrap.yaml"
    not_boot.write_text("models: {}\n")
    envoy = ["--envoy", str(ENVOY), "--cwd", str(ROOT)]
    ok = _duoctl("check", *envoy, str(gen))
    assert ok.returncode == 0 and ok.stdout.strip() == f"{gen}: ok", (ok.stdout, ok.stderr)
    r = _duoctl("check", *envoy, str(bad), str(not_boot))
    assert r.returncode == 1, r
    lines = r.stdout.strip().splitlines()
    want = f"{bad}:{_line(text, 'azure_openaix')}: [envoy-validate] a filter refused its configuration at `models.gpt4o.platform`"
    assert lines[0].startswith(want), lines
    assert lines[1] == f"{not_boot}: not an Envoy bootstrap (no static_resources or dynamic_resources at the top level)", lines
    assert len(lines) == 2, lines


def test_tooling_check_accepts_the_agent_platform_settings(e2e):
    """The Agent Platform's settings as values keys: a flow on GitLab's service (hybrid) brings the
    `agent_platform_vendor` target, `./build.sh check` (the router's own parser in real Envoy)
    accepts them, and a setting the router does not know is refused at its line."""
    text = VALUES.read_text().replace("configuration_type: self_hosted", "configuration_type: hybrid", 1)
    text = text.replace("  duo_agent_platform: self_hosted", "  duo_agent_platform: self_hosted\n"
                        "  sast_vulnerability_fp_detection: vendored\n  secret_vulnerability_fp_detection: disabled", 1)
    assert "sast_vulnerability_fp_detection: vendored" in text
    gen = e2e.run_dir / "tooling-agent-platform-settings.yaml"
    gen.write_text(values.render(text))
    router = bootstrap.plugin_json(yaml.safe_load(gen.read_text()), "duo_router") or {}
    assert router["features"]["sast_vulnerability_fp_detection"] == {"provider": "vendored"}, router["features"]
    assert router["agent_platform"]["cluster"] == "duo_workflow" and router["agent_platform_vendor"]["cluster"] == "duo_workflow_cloud", router
    envoy = ["--envoy", str(ENVOY), "--cwd", str(ROOT)]
    ok = _duoctl("check", *envoy, str(gen))
    assert ok.returncode == 0 and ok.stdout.strip() == f"{gen}: ok", (ok.stdout, ok.stderr)
    unknown = gen.read_text().replace('"secret_vulnerability_fp_detection"', '"secret_vulnerability_fp_detektion"', 1)
    bad = e2e.run_dir / "tooling-agent-platform-unknown.yaml"
    bad.write_text(unknown)
    r = _duoctl("check", *envoy, str(bad))
    assert r.returncode == 1 and "features.secret_vulnerability_fp_detektion" in r.stdout, (r.stdout, r.stderr)


# ---- config ---------------------------------------------------------------------------------

def test_tooling_config_refuses_bad_values_in_one_line(e2e):
    cases = {
        "gitlab_url: https://gitlab.example.com\nmodles: {}\n": ":2: unknown key 'modles'",
        ("gitlab_url: https://gitlab.example.com\nmodels:\n  m:\n    platform: vllm\n    url: http://v:8000/v1\n"
         "    model: x\n    family: mistral\n    temprature: 1\n"): ":8: unknown key 'models.m.temprature'",
        "gitlab_url: https://gitlab.example.com\nfeatures:\n  duo_chat: nope\n": ":3: features.duo_chat: 'nope' is neither",
        (ROOT / "envoy" / "local.yaml").read_text(): "an Envoy bootstrap, not a values file",
        "- a\n": ":1: a values file is a YAML mapping",
    }
    for n, (text, want) in enumerate(cases.items()):
        path = e2e.run_dir / f"tooling-values-{n}.yaml"
        path.write_text(text)
        r = _run(str(ROOT / "build.sh"), "config", path.name, cwd=e2e.run_dir)
        assert r.returncode == 1 and r.stdout == "", (want, r)
        err = [l for l in r.stderr.splitlines() if l.strip() and not l.startswith("==>")]
        assert len(err) == 1 and err[0].startswith(f"{path.name}") and want in err[0], (want, r.stderr)


def test_tooling_help_lists_every_command(e2e):
    r = _run(str(ROOT / "build.sh"), "--help")
    assert r.returncode == 0, r
    script = (ROOT / "build.sh").read_text()
    case = script[script.rindex('case "${1:-build}" in'):]
    commands = [c for c in re.findall(r"^  ([a-z|-]+)\)", case, re.M)]
    assert {"build", "test", "up", "bench", "check", "explain", "config"} <= {c.split("|")[0] for c in commands}, commands
    for c in commands:
        assert re.search(rf"^  {re.escape(c.split('|')[0])}\b", r.stdout, re.M), f"--help does not list {c}"
    bad = _run(str(ROOT / "build.sh"), "frobnicate")
    assert bad.returncode != 0 and "unknown command 'frobnicate'" in bad.stderr


def _headers(gl, request_id: str) -> dict[str, str]:
    h = {k: v for k, v in gl.headers().items() if k.lower() != "x-request-id"}
    h["X-Request-ID"] = request_id
    return h


def _generated_stack(e2e):
    path = e2e.run_dir / "generated.yaml"
    r = _run(str(ROOT / "build.sh"), "config", str(VALUES.relative_to(ROOT)), "-o", str(path))
    assert r.returncode == 0, r.stderr
    return e2e.stack(str(path), name="generated")


@scenario(timeout_s=600)  # the first `./build.sh explain` may compile tools/explain
def test_tooling_generated_config_serves_in_real_envoy(e2e):
    """examples/config/values.yaml -> ./build.sh config -> real Envoy: a completion on vLLM, a commit
    message on Azure, a disabled feature refused, and both access-log lines for each; gRPC health
    through the generated Agent Platform listener."""
    st = _generated_stack(e2e)
    gl = st.gitlab
    body = {"current_file": {"file_name": "a.py", "language_identifier": "python",
                             "content_above_cursor": "def add(a, b):\n", "content_below_cursor": ""},
            "model_provider": "litellm", "model_name": "codestral", "prompt_version": 2, "stream": False,
            "model_endpoint": "http://vllm.internal:8000/v1", "model_api_key": "sk-e2e-tooling",
            "model_identifier": "custom_openai/Codestral-22B-v0.1"}
    st.fake("model_codestral").enqueue(Answer(text="return a + b"))
    r = st.post("/v2/code/completions", json_body=body, headers=_headers(gl, "tooling-1"))
    assert r.status == 200, r
    sent = st.fake("model_codestral").last()
    assert sent.header("authorization") == "Bearer sk-e2e-tooling"
    # `./build.sh explain` predicts exactly what vLLM received, from the same bootstrap and body.
    body_file = e2e.run_dir / "tooling-completion.json"
    body_file.write_text(json.dumps(body))
    x = _run(str(ROOT / "build.sh"), "explain", "--config", str(e2e.run_dir / "generated.yaml"), "--path",
             "/v2/code/completions", "--header", "Authorization: Bearer gitlab-jwt", "--body", str(body_file), "--json",
             timeout=900)
    assert x.returncode == 0, x.stderr[-2000:]
    told = json.loads(x.stdout)
    assert (told["feature"], told["unit_primitive"], told["provider"], told["model_name"]) == (
        "code_completions", "complete_code", "self_hosted", "codestral"), told
    up = told["upstream"]
    assert up["cluster"] == "model_codestral" and up["authority"] == "vllm.internal:8000", up
    assert (up["method"], up["path"]) == (sent.method, sent.target), (up, sent.target)
    assert up["body"] == sent.json(), (up["body"], sent.json())
    assert up["headers"]["authorization"] == "Bearer ****" and "sk-e2e-tooling" not in x.stdout
    commit = {"inputs": {"diff": "diff --git a/x b/x\n+y\n"}, "stream": False,
              "model_metadata": {"provider": "openai", "name": "gpt", "identifier": "azure/gpt-4o-deploy",
                                 "endpoint": "https://myres.openai.azure.com/", "api_key": "azure-test-key"}}
    r = st.post("/v1/prompts/generate_commit_message", json_body=commit, headers=_headers(gl, "tooling-2"))
    assert r.status == 200 and isinstance(json.loads(r.body), str), r
    assert st.fake("model_gpt4o").last().target.startswith("/openai/deployments/gpt-4o-deploy/chat/completions")
    r = st.post("/v1/prompts/summarize_review", json_body={"inputs": {"draft_notes_content": "x"}},
                headers=_headers(gl, "tooling-3"))
    assert r.status == 403, r
    recs = {x["correlation_id"]: x for x in st.access_log(wait_for=3) if isinstance(x, dict)}
    assert recs["tooling-1"]["model_name"] == "codestral" and recs["tooling-1"]["upstream_cluster"] == "model_codestral"
    assert recs["tooling-2"]["model_name"] == "gpt4o"
    native = {x["correlation_id"]: x for x in st.native_log(wait_for=3)}
    assert set(native) == {"tooling-1", "tooling-2", "tooling-3"}, native
    one = native["tooling-1"]
    assert one["log_type"] == "envoy" and int(one["status_code"]) == 200 and one["response_flags"] == "-", one
    assert one["upstream_cluster"] == "model_codestral", one
    assert one["upstream_host"] == f"127.0.0.1:{st.fake('model_codestral').port}", one
    three = native["tooling-3"]
    assert int(three["status_code"]) == 403 and three["upstream_host"] in (None, "-"), three
    assert three["response_code_details"] not in (None, "-"), three
    # The values name a Duo Workflow Service: the Agent Platform's gRPC listener reaches it.
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(f"127.0.0.1:{st.grpc_port}") as ch:
        h = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(service="DuoWorkflow"), timeout=20)
    assert h.status == health_pb2.HealthCheckResponse.SERVING, h


@scenario(timeout_s=600)
def test_tooling_explain_answers_for_paths_and_configs_gitlab_never_sends(e2e):
    """Bad input to explain: a path GitLab never calls is the answer GitLab would get (one line,
    exit 1); a file that is not an Envoy bootstrap is one line (exit 2)."""
    not_boot = e2e.run_dir / "tooling-explain-values.yaml"
    not_boot.write_text(VALUES.read_text())
    shipped = str(ROOT / "envoy" / "self_hosted.yaml")
    r = _run(str(ROOT / "build.sh"), "explain", "--config", shipped, "--path", "/v3/nothing", timeout=900)
    assert r.returncode == 1, r
    assert r.stdout == 'POST /v3/nothing answer: 404 {"detail":"Not Found"}  (not_found: not a path GitLab calls)\n', r.stdout
    r = _run(str(ROOT / "build.sh"), "explain", "--config", str(not_boot), "--path", "/v2/code/completions")
    assert r.returncode == 2 and r.stdout == "", r
    assert r.stderr.strip().splitlines()[-1] == f"{not_boot}: not an Envoy bootstrap (no static_resources or dynamic_resources at the top level)", r.stderr
    r = _run(str(ROOT / "build.sh"), "explain", "--config", shipped, "--path", "/v1/prompts/summarize_review")
    assert r.returncode == 1 and 'answer:          403 {"detail":"Unauthorized to access summarize_review"}' in r.stdout, r.stdout


# ---- observability examples -----------------------------------------------------------------

def test_tooling_observability_examples_match_the_shipped_configs(e2e):
    """Prometheus scrapes the admin port the production configs listen on; Vector reads where the
    shipped configs write both access-log lines, and tells the two kinds apart."""
    prom = yaml.safe_load((OBS / "prometheus.yml").read_text())
    [job] = [j for j in prom["scrape_configs"] if j["job_name"] == "duo_gateway"]
    assert job["metrics_path"] == "/stats/prometheus"
    targets = {t for sc in job["static_configs"] for t in sc["targets"]}
    vector = yaml.safe_load((OBS / "vector.yaml").read_text())
    sources = vector["sources"]
    for path in SHIPPED:
        boot = bootstrap.load(path)
        assert boot["stats_config"] == values.STATS_CONFIG, f"{path.name}: stats_config differs from the generated one"
        sa = boot["admin"]["address"]["socket_address"]
        if path.name != "local.yaml":  # ./build.sh up's admin port is 9902, not for scraping
            assert f"{sa['address']}:{sa['port_value']}" in targets, (path.name, targets)
        for hcm in bootstrap.hcms(boot):
            logs = [l["typed_config"] for l in hcm.get("access_log", [])]
            native = [l for l in logs if "json_format" in l.get("log_format", {})]
            assert len(native) == 1 and native[0]["log_format"]["json_format"] == values.NATIVE_LOG_FORMAT, path.name
            for log in logs:
                where = log["path"]
                ok = any((s["type"] == "stdin" and where == "/dev/stdout") or
                         (s["type"] == "file" and where in s.get("include", [])) for s in sources.values())
                assert ok, f"{path.name} writes {where}, which no source of vector.yaml reads"
    # The recording rules load, and the scrape restores the dots of every provider name a stat name
    # segment loses (duo_logger's provider_name: aws.bedrock, azure.ai.openai).
    assert [(OBS / f).is_file() for f in prom["rule_files"]] == [True], prom["rule_files"]
    relabels = {(r["regex"], r["replacement"]) for r in job["metric_relabel_configs"]
                if r["source_labels"] == ["gen_ai_provider_name"] and r["target_label"] == "gen_ai_provider_name"}
    logger_src = (ROOT / "filters" / "logger" / "src" / "metrics.rs").read_text()
    dotted = set(re.findall(r'=> "([a-z]+(?:\.[a-z]+)+)"', logger_src))
    assert dotted == {"aws.bedrock", "azure.ai.openai"}, dotted
    assert relabels == {(d.replace(".", "_"), d) for d in dotted}, relabels
    remaps = {n: t["source"] for n, t in vector["transforms"].items() if t["type"] == "remap"}
    assert any('log_type != "envoy"' in src for src in remaps.values()), "vector.yaml keeps no native lines"
    assert any('log_type == "envoy"' in src and "abort" in src for src in remaps.values())


def _dashboard_exprs() -> list[str]:
    dash = json.loads((OBS / "grafana-dashboard.json").read_text())
    out: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                if k in ("expr", "definition") and isinstance(v, str):
                    out.append(v)
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)
    walk(dash)
    return out


def _defined_on_first_use() -> set[str]:
    """Counters the filters define only when they first count (no series before that), as Prometheus names."""
    names = set()
    for src in (ROOT / "filters").glob("*/src/**/*.rs"):
        for name in re.findall(r'"(duo_(?:auth|router|logger)\.[a-z_.]+)"', src.read_text()):
            names.add(name.replace(".", "_"))
    return names


@scenario(timeout_s=120)
def test_tooling_dashboard_queries_series_a_gateway_exports(e2e):
    """Every metric and label the dashboard queries is in a real gateway's /stats/prometheus (or is
    a counter a filter defines on first use); the error ratio counts 5xx only."""
    st = _generated_stack(e2e)
    gl = st.gitlab
    body = {"current_file": {"file_name": "a.py", "content_above_cursor": "x", "content_below_cursor": ""},
            "model_provider": "litellm", "model_name": "codestral", "prompt_version": 2, "stream": False,
            "model_identifier": "custom_openai/Codestral-22B-v0.1", "model_endpoint": "http://vllm.internal:8000/v1"}
    assert st.post("/v2/code/completions", json_body=body, headers=gl.headers()).status == 200
    assert st.post("/v2/code/completions", json_body={**body, "stream": True}, headers=gl.headers()).status == 200
    # a failed model call: the GenAI duration gets its error_type label
    st.fake("model_codestral").enqueue(Reply.json({"error": {"message": "overloaded", "code": 503}}, status=503))
    assert st.post("/v2/code/completions", json_body=body, headers=gl.headers()).status >= 400
    assert st.post("/v2/code/completions", json_body=body, headers=gl.headers(gl.mint_expired())).status == 401
    # Histograms reach /stats/prometheus at the next stats flush (5 s by default).
    deadline = time.monotonic() + 12
    while True:
        text = st.envoy.admin("/stats/prometheus")
        if "gen_ai_server_time_to_first_token_ms_bucket" in text or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    # The LLM-fitting buckets of the shipped stats_config (milliseconds up to 327 680 / 60 000).
    assert re.search(r'^duo_request_duration_ms_bucket\{[^}]*le="327680"', text, re.M), text[-3000:]
    assert re.search(r'^gen_ai_server_time_to_first_token_ms_bucket\{[^}]*le="60000"', text, re.M)
    assert re.search(r'^gen_ai_client_token_usage_bucket\{[^}]*le="67108864"', text, re.M)
    assert not re.search(r'^duo_request_duration_ms_bucket\{[^}]*le="3600000"', text, re.M), "Envoy's default buckets"
    series: dict[str, set[str]] = {}
    for line in text.splitlines():
        m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? ", line)
        if m:
            series.setdefault(m.group(1), set()).update(re.findall(r"([a-zA-Z_]+)=\"", m.group(2) or ""))
    lazy = _defined_on_first_use()
    exprs = _dashboard_exprs()
    rules = yaml.safe_load((OBS / "prometheus-rules.yml").read_text())
    rule_exprs = [r["expr"] for g in rules["groups"] for r in g["rules"]]
    assert len(rule_exprs) >= 5, rule_exprs
    for expr in exprs + rule_exprs:
        bare = re.sub(r"by \([^)]*\)", "", expr)
        for sel in re.finditer(r"\b((?:duo|envoy|gen_ai)_[a-z0-9_]+)(\{[^}]*\})?", bare):
            name, labels = sel.group(1), sel.group(2) or ""
            if bare[:sel.start()].rstrip().endswith(("{", ",")) or name in lazy:  # a label name, or lazy
                continue
            assert name in series, f"dashboard queries {name}, which a running gateway does not export: {expr}"
            for label in re.findall(r"([a-z_]+)\s*(?:=~|!=|=)", labels):
                assert label in series[name], f"{name} has no label {label} (has {sorted(series[name])}): {expr}"
        for group in re.findall(r"by \(([^)]*)\)", expr):
            for label in re.split(r",\s*", group):
                owners = [n for n in re.findall(r"\b((?:duo|envoy|gen_ai)_[a-z0-9_]+)", expr) if n in series]
                assert label == "le" or any(label in series[n] for n in owners), f"no series has label {label}: {expr}"
    [ratio] = [e for e in exprs if "outcome=\"server_error\"" in e]
    assert "outcome!=" not in ratio
    for needle in ("envoy_cluster_membership_healthy", "jwks_fetch_failed", "body_never_arrived", "vm_reload"):
        assert any(needle in e for e in exprs), f"the dashboard does not show {needle}"
