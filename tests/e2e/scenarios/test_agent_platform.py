"""The Duo Agent Platform (gRPC) through the gateway's HTTP/2 listener (docs/agent-platform.md),
with a real grpcio client and the fake Duo Workflow Service (duo_e2e/fakes/duo_workflow.py), on
both verifiers: `envoy_jwt_authn` (the shipped self_hosted.yaml) and `builtin`.

Bidirectional ExecuteWorkflow with several messages each way, unchanged and in order; a stream
held open with heartbeats; GenerateToken and the self-signed token it returns (accepted on the
Agent Platform, refused on GenerateToken; a rotation's old key still accepted); ListTools; gRPC
health without a token; every auth refusal gRPC-shaped (16 UNAUTHENTICATED, 7 PERMISSION_DENIED,
plain-text grpc-message) with nothing reaching the service; the service down (14 UNAVAILABLE);
one access-log record per call with its method, status and message counts, never a key; and
duo_router's part: unknown method 12, residency and endpoint guards 7, malformed metadata 3,
HTTP/1.1 a clear error, `disabled` 7, `vendored` to GitLab's service."""

from __future__ import annotations

import hashlib
import json
import queue
import subprocess
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import unquote, urlsplit

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from duo_e2e import ROOT, Answer, bootstrap, dws_proto, scenario
from duo_e2e.client import request
from duo_e2e.fakes.duo_workflow import AUDIENCE, FakeDuoWorkflow
from duo_e2e.fakes.gitlab import SigningKey

DWS = "duo_workflow"
USER_ID = "Df0Jhs9xkUVnUjEMx0vUi1p3CkVbZIMj1Dn06ZQjI0E="
API_KEY = "sk-agent-platform-e2e-secret"
METADATA = {"provider": "custom_openai", "name": "codestral", "endpoint": "vllm.internal:8000",
            "api_key": API_KEY, "identifier": "custom_openai/Codestral-22B-v0.1",
            "feature_setting": "duo_agent_platform"}
# The service's self-signing keys: the current one and the one a rotation is retiring.
_KEY, _OLD_KEY = SigningKey(), SigningKey()
TIMEOUT_S = 10.0


def _patch(verifier: str):
    def patch(boot: dict[str, Any]) -> None:
        def auth(conf: dict[str, Any]) -> None:
            conf["verifier"] = verifier
            conf["workflow_token_keys"] = [_OLD_KEY.public_pem().decode(), _KEY.public_pem().decode()]

        bootstrap.patch_plugin(boot, "duo_auth", auth)
        if verifier == "builtin":
            for hcm in bootstrap.hcms(boot):
                hcm["http_filters"] = [f for f in hcm["http_filters"] if f["name"] != "envoy.filters.http.jwt_authn"]
    return patch


def _stack(e2e, verifier: str):
    return e2e.stack("self_hosted", name=f"agent_platform_{verifier}", patch=_patch(verifier),
                     fakes={DWS: FakeDuoWorkflow(DWS, key=_KEY, rotated_from=_OLD_KEY)})


def _stacks(e2e):
    return [(v, _stack(e2e, v)) for v in ("envoy_jwt_authn", "builtin")]


def _metadata(st, token: str | None = None, **extra: str) -> list[tuple[str, str]]:
    """What GitLab (Workhorse) sends with every call; `extra` replaces or adds ('_' for '-'),
    an empty value removes."""
    gl = st.gitlab
    md = {
        "authorization": f"Bearer {token if token is not None else gl.mint(aud=[AUDIENCE])}",
        "x-gitlab-authentication-type": "oidc",
        "x-gitlab-realm": gl.realm,
        "x-gitlab-instance-id": gl.instance_id,
        "x-gitlab-global-user-id": USER_ID,
        "x-gitlab-host-name": gl.authority,
        "x-gitlab-version": "18.8.0",
        "x-request-id": str(uuid.uuid4()),
        "x-gitlab-correlation-id": str(uuid.uuid4()),
        "x-gitlab-agent-platform-model-metadata": json.dumps(METADATA),
    }
    for k, v in extra.items():
        name = k.replace("_", "-").lower()
        if v == "":
            md.pop(name, None)
        else:
            md[name] = v
    return list(md.items())


class _Client:
    def __init__(self, st):
        self.channel = grpc.insecure_channel(f"127.0.0.1:{st.grpc_port}")
        self.pb2, pb2_grpc = dws_proto.load()
        self.stub = pb2_grpc.DuoWorkflowStub(self.channel)
        self.health = health_pb2_grpc.HealthStub(self.channel)

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> "_Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _wait_ready(st, verifier: str) -> None:
    """Bounded wait until the builtin verifier holds GitLab's keys (503 → UNAVAILABLE before)."""
    deadline = time.time() + 15
    with _Client(st) as c:
        while True:
            try:
                c.stub.ListTools(c.pb2.ListToolsRequest(), metadata=_metadata(st), timeout=TIMEOUT_S)
                return
            except grpc.RpcError as e:
                if e.code() != grpc.StatusCode.UNAVAILABLE or time.time() > deadline:
                    raise AssertionError(f"{verifier}: Agent Platform not ready: {e.code()} {e.details()}") from e
            time.sleep(0.2)


def _records(st, request_id: str, timeout_s: float = 10.0) -> list[dict[str, Any]]:
    deadline = time.time() + timeout_s
    while True:
        recs = [r for r in st.access_log() if isinstance(r, dict) and r.get("correlation_id") == request_id]
        if recs or time.time() > deadline:
            return recs
        time.sleep(0.1)


def _rpc_error(call) -> grpc.RpcError:
    try:
        call()
    except grpc.RpcError as e:
        return e
    raise AssertionError("the call succeeded")


def test_agent_platform_health_needs_no_token(e2e):
    for verifier, st in _stacks(e2e):
        with _Client(st) as c:
            for service in ("", "DuoWorkflow"):
                r = c.health.Check(health_pb2.HealthCheckRequest(service=service), timeout=TIMEOUT_S)
                assert r.status == health_pb2.HealthCheckResponse.SERVING, (verifier, service, r)


def test_agent_platform_bidirectional_workflow_in_order(e2e):
    for verifier, st in _stacks(e2e):
        _wait_ready(st, verifier)
        fake: FakeDuoWorkflow = st.fake(DWS)
        fake.reset()
        pb = dws_proto.load()[0]
        outbox: queue.Queue = queue.Queue()
        sent: list[Any] = []

        def requests() -> Iterator[Any]:
            while True:
                event = outbox.get(timeout=TIMEOUT_S)
                if event is None:
                    return
                sent.append(event)
                yield event

        md = _metadata(st)
        request_id = dict(md)["x-request-id"]
        with _Client(st) as c:
            responses = c.stub.ExecuteWorkflow(requests(), metadata=md, timeout=30)
            outbox.put(pb.ClientEvent(startRequest=pb.StartWorkflowRequest(
                clientVersion="1.0", workflowID="wf-1", goal="fix the bug ✓", workflowMetadata='{"a": 1}')))
            got = []
            for n in range(1, 4):
                action = next(responses)
                got.append(action)
                assert action.requestID == str(n) and action.runReadFile.filepath == f"step-{n}.txt", (verifier, n, action)
                if n == 2:
                    outbox.put(pb.ClientEvent(heartbeat=pb.HeartbeatRequest(timestamp=int(time.time() * 1000))))
                outbox.put(pb.ClientEvent(actionResponse=pb.ActionResponse(
                    requestID=str(n), plainTextResponse=pb.PlainTextResponse(response=f"contents {n} " + "x" * 5000 * n))))
            action = next(responses)
            assert action.requestID == "4", (verifier, action)
            outbox.put(pb.ClientEvent(stopWorkflow=pb.StopWorkflowRequest(reason="done")))
            outbox.put(None)
            last = next(responses)
            assert last.newCheckpoint.status == "FINISHED" and last.newCheckpoint.goal == "done", (verifier, last)
            assert list(responses) == [], verifier
            assert responses.code() == grpc.StatusCode.OK, verifier

        calls = fake.received("/DuoWorkflow/ExecuteWorkflow")
        assert len(calls) == 1, (verifier, calls)
        call = calls[0]
        # Every client message arrived, byte for byte and in order.
        assert [e.SerializeToString() for e in call.events] == [e.SerializeToString() for e in sent], verifier
        assert call.headers.get("x-gitlab-agent-platform-model-metadata") == json.dumps(METADATA), verifier
        recs = _records(st, request_id)
        assert len(recs) == 1, (verifier, recs)
        rec = recs[0]
        assert rec.get("grpc_method") == "DuoWorkflow/ExecuteWorkflow" and rec.get("grpc_status") == 0, (verifier, rec)
        assert (rec.get("messages_in"), rec.get("messages_out")) == (len(sent), 5), (verifier, rec)
        assert rec.get("feature") == "duo_agent_platform" and rec.get("provider") == "self_hosted", (verifier, rec)
        # The metadata's endpoint is codestral's authority: the model is named, its key is not.
        assert rec.get("model_name") == "codestral" and rec.get("upstream_cluster") == DWS, (verifier, rec)
        assert rec.get("model_identifier") == METADATA["identifier"], (verifier, rec)
        assert rec.get("gitlab_correlation_id") == dict(md)["x-gitlab-correlation-id"], (verifier, rec)
        assert rec.get("request_bytes", 0) > 15000 and rec.get("duration_s") is not None, (verifier, rec)
        line = json.dumps(rec)
        assert API_KEY not in line and dict(md)["authorization"].split()[1] not in line, f"{verifier}: secret in the record"
        # Metrics by method and status; the stream is no longer in flight.
        assert (st.envoy.metric("duo_grpc_calls_total", grpc_method="executeworkflow", grpc_status="0") or 0) >= 1, verifier
        assert st.envoy.metric("duo_grpc_streams_active", grpc_method="executeworkflow") == 0, verifier
        deadline = time.time() + 12  # histograms appear at Envoy's stats flush (every 5 s)
        while not st.envoy.metric("duo_grpc_call_duration_ms_count", grpc_method="executeworkflow") and time.time() < deadline:
            time.sleep(0.5)
        assert st.envoy.metric("duo_grpc_call_duration_ms_count", grpc_method="executeworkflow"), verifier


def test_agent_platform_stream_held_open_with_heartbeats(e2e):
    verifier, st = "envoy_jwt_authn", _stack(e2e, "envoy_jwt_authn")
    _wait_ready(st, verifier)
    pb = dws_proto.load()[0]
    stop = threading.Event()
    beats = []

    def requests() -> Iterator[Any]:
        yield pb.ClientEvent(startRequest=pb.StartWorkflowRequest(workflowID="wf-long", goal="wait"))
        while not stop.wait(0.5):
            beats.append(time.time())
            yield pb.ClientEvent(heartbeat=pb.HeartbeatRequest(timestamp=int(time.time() * 1000)))
        yield pb.ClientEvent(stopWorkflow=pb.StopWorkflowRequest(reason="user left"))

    with _Client(st) as c:
        started = time.time()
        responses = c.stub.ExecuteWorkflow(requests(), metadata=_metadata(st), timeout=60)
        assert next(responses).requestID == "1"
        time.sleep(2.0)
        # Open streams are visible while they last.
        assert (st.envoy.metric("duo_grpc_streams_active", grpc_method="executeworkflow") or 0) >= 1
        time.sleep(2.0)
        stop.set()
        last = list(responses)
        assert last and last[-1].newCheckpoint.status == "FINISHED", last
        assert responses.code() == grpc.StatusCode.OK
    assert len(beats) >= 6 and time.time() - started >= 4.0, beats
    call = st.fake(DWS).received("/DuoWorkflow/ExecuteWorkflow")[-1]
    kinds = [e.WhichOneof("response") for e in call.events]
    assert kinds[0] == "startRequest" and kinds[-1] == "stopWorkflow" and kinds.count("heartbeat") == len(beats), kinds


def test_agent_platform_generate_token_list_tools_and_self_signed_tokens(e2e):
    for verifier, st in _stacks(e2e):
        _wait_ready(st, verifier)
        fake: FakeDuoWorkflow = st.fake(DWS)
        with _Client(st) as c:
            tools = c.stub.ListTools(c.pb2.ListToolsRequest(), metadata=_metadata(st), timeout=TIMEOUT_S)
            assert [t["name"] for t in tools.tools] == ["read_file", "run_command"], verifier
            r = c.stub.GenerateToken(c.pb2.GenerateTokenRequest(workflowDefinition="chat"), metadata=_metadata(st), timeout=TIMEOUT_S)
            assert r.token.count(".") == 2 and r.expiresAt > time.time(), verifier
            # The service's own token works on the Agent Platform...
            listed = c.stub.ListTools(c.pb2.ListToolsRequest(), metadata=_metadata(st, token=r.token), timeout=TIMEOUT_S)
            assert len(listed.tools) == 2, verifier
            # ... also when signed with the key a rotation is retiring ...
            old = fake.mint(USER_ID, key=_OLD_KEY)
            c.stub.ListTools(c.pb2.ListToolsRequest(), metadata=_metadata(st, token=old), timeout=TIMEOUT_S)
            before = len(fake.received())
            # ... but never mints another, and names its user.
            e = _rpc_error(lambda: c.stub.GenerateToken(c.pb2.GenerateTokenRequest(), metadata=_metadata(st, token=r.token), timeout=TIMEOUT_S))
            assert (e.code(), e.details()) == (grpc.StatusCode.PERMISSION_DENIED, "Unauthorized to generate token"), (verifier, e)
            e = _rpc_error(lambda: c.stub.ListTools(c.pb2.ListToolsRequest(), metadata=_metadata(st, token=r.token, x_gitlab_global_user_id="other"), timeout=TIMEOUT_S))
            assert (e.code(), e.details()) == (grpc.StatusCode.UNAUTHENTICATED, "Header mismatch 'X-Gitlab-Global-User-Id'"), (verifier, e)
            # A key the admin did not list.
            stranger = fake.mint(USER_ID, key=SigningKey())
            e = _rpc_error(lambda: c.stub.ListTools(c.pb2.ListToolsRequest(), metadata=_metadata(st, token=stranger), timeout=TIMEOUT_S))
            assert (e.code(), e.details()) == (grpc.StatusCode.UNAUTHENTICATED, "Forbidden by auth provider"), (verifier, e)
            assert len(fake.received()) == before, f"{verifier}: a refused call reached the service"


def test_agent_platform_refusals_are_grpc_shaped(e2e):
    for verifier, st in _stacks(e2e):
        _wait_ready(st, verifier)
        gl = st.gitlab
        fake: FakeDuoWorkflow = st.fake(DWS)
        few = [s for s in gl.claims()["scopes"] if s not in ("duo_agent_platform", "duo_workflow_execute_workflow")]
        U, P = grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED
        cases = [
            ("no token", _metadata(st, authorization=""), U, "No authorization header presented"),
            ("expired", _metadata(st, token=gl.mint_expired(aud=[AUDIENCE])), U, "Forbidden by auth provider"),
            ("AI gateway audience", _metadata(st, token=gl.mint()), U, "Forbidden by auth provider"),
            ("bad signature", _metadata(st, token=gl.mint_bad_signature(aud=[AUDIENCE])), U, "Forbidden by auth provider"),
            ("not oidc", _metadata(st, x_gitlab_authentication_type="jwt"), U, "Invalid authentication token type - only OIDC is supported"),
            ("realm", _metadata(st, x_gitlab_realm="saas"), U, "Header mismatch 'X-Gitlab-Realm'"),
            ("instance", _metadata(st, x_gitlab_instance_id="00000000-0000-0000-0000-000000000000"), U, "Header mismatch 'X-Gitlab-Instance-Id'"),
            ("scope", _metadata(st, token=gl.mint(aud=[AUDIENCE], scopes=few)), P, "Unauthorized to access duo_agent_platform"),
        ]
        before = len(fake.received())
        with _Client(st) as c:
            for what, md, code, message in cases:
                e = _rpc_error(lambda: c.stub.ListTools(c.pb2.ListToolsRequest(), metadata=md, timeout=TIMEOUT_S))
                assert (e.code(), e.details()) == (code, message), (verifier, what, e.code(), e.details())
                trailers = dict(e.trailing_metadata() or ())
                assert trailers.get("x-duo-auth-reason"), (verifier, what, trailers)
            # The legacy scope name still grants the Agent Platform.
            legacy = gl.mint(aud=[AUDIENCE], scopes=few + ["duo_workflow_execute_workflow"])
            c.stub.ListTools(c.pb2.ListToolsRequest(), metadata=_metadata(st, token=legacy), timeout=TIMEOUT_S)
        assert len(fake.received()) == before + 1, f"{verifier}: a refused call reached the service"
        deadline = time.time() + 10  # Envoy flushes access logs about once a second
        while True:
            denied = [r for r in st.access_log() if isinstance(r, dict) and r.get("grpc_method") == "DuoWorkflow/ListTools"
                      and r.get("auth_result") == "denied"]
            if len(denied) >= len(cases) or time.time() > deadline:
                break
            time.sleep(0.1)
        assert len(denied) >= len(cases) and all(r.get("messages_in") == 0 and r.get("grpc_status") in (7, 16) for r in denied), (verifier, denied)


def test_agent_platform_service_down_is_unavailable(e2e):
    verifier, st = "envoy_jwt_authn", _stack(e2e, "envoy_jwt_authn")
    _wait_ready(st, verifier)
    fake: FakeDuoWorkflow = st.fake(DWS)
    port = fake.port
    fake.stop()
    try:
        with _Client(st) as c:
            e = _rpc_error(lambda: c.stub.ListTools(c.pb2.ListToolsRequest(), metadata=_metadata(st), timeout=TIMEOUT_S))
            assert e.code() == grpc.StatusCode.UNAVAILABLE, (e.code(), e.details())
    finally:
        fake.start(port=port)
    _wait_ready(st, verifier)


def _call_raw(c: _Client, method: str, md: list[tuple[str, str]]) -> grpc.RpcError:
    """A unary call of any method with an empty message (the payload is never looked at)."""
    rpc = c.channel.unary_unary(method, request_serializer=lambda b: b, response_deserializer=lambda b: b)
    return _rpc_error(lambda: rpc(b"", metadata=md, timeout=TIMEOUT_S))


def test_agent_platform_router_guards_and_refusals(e2e):
    """duo_router's part (self_hosted.yaml): unknown method 12; residency and endpoint guards 7;
    malformed metadata 3 (not JSON, over 16 KiB); HTTP/1.1 a clear gRPC error; nothing forwarded."""
    verifier, st = "envoy_jwt_authn", _stack(e2e, "envoy_jwt_authn")
    _wait_ready(st, verifier)
    fake: FakeDuoWorkflow = st.fake(DWS)
    before = len(fake.received())
    I, P, X = grpc.StatusCode.UNIMPLEMENTED, grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.INVALID_ARGUMENT
    managed = json.dumps({"provider": "gitlab", "feature_setting": "duo_agent_platform", "identifier": None})
    elsewhere = json.dumps({**METADATA, "endpoint": "http://attacker.example:8000/v1"})
    cases = [
        ("/DuoWorkflow/NoSuchMethod", {}, I, "unknown method DuoWorkflow/NoSuchMethod"),
        ("/gitlab.DuoWorkflow/ListTools", {}, I, "unknown method gitlab.DuoWorkflow/ListTools"),
        ("/DuoWorkflow/ListTools", {"x_gitlab_agent_platform_model_metadata": managed}, P,
         "Unauthorized to access duo_agent_platform: a GitLab-managed model cannot be used in a self-hosted configuration"),
        ("/DuoWorkflow/ListTools", {"x_gitlab_agent_platform_model_metadata": elsewhere}, P,
         "Unauthorized to access model at 'http://attacker.example:8000/v1': not a model endpoint this AI gateway lists"),
        ("/DuoWorkflow/ListTools", {"x_gitlab_agent_platform_model_metadata": "not json"}, X,
         "x-gitlab-agent-platform-model-metadata is not a JSON object"),
        # Above duo_router's 16 KiB limit (a single header much larger than this never reaches a
        # filter: Envoy's HTTP/2 codec answers it with a connection GOAWAY).
        ("/DuoWorkflow/ListTools", {"x_gitlab_agent_platform_model_metadata": json.dumps({"name": "x" * 20000})}, X,
         "x-gitlab-agent-platform-model-metadata is larger than 16384 bytes"),
    ]
    with _Client(st) as c:
        for method, extra, code, message in cases:
            e = _call_raw(c, method, _metadata(st, **extra))
            assert (e.code(), e.details()) == (code, message), (method, e.code(), e.details())
    assert len(fake.received()) == before, "a refused call reached the service"
    # HTTP/1.1 to a gRPC path: a clear error, gRPC-shaped, nothing forwarded.
    headers = {k: v for k, v in _metadata(st)}
    r = request(st.grpc_port, "POST", "/DuoWorkflow/ListTools", headers={**headers, "content-type": "application/grpc"},
                body=b"\x00\x00\x00\x00\x00", timeout_s=TIMEOUT_S)
    assert r.status == 200 and r.header("grpc-status") == "3", (r.status, r.header_list)
    assert "HTTP/2" in unquote(r.header("grpc-message") or ""), r.header_list
    assert len(fake.received()) == before, "an HTTP/1.1 call reached the service"


def test_agent_platform_vendored_goes_to_gitlabs_service(e2e):
    """hybrid.yaml with the Agent Platform on `vendored`: GitLab's Duo Workflow Service gets the
    call (and its token) unchanged; a GitLab-managed model is fine outside self_hosted."""
    def patch(boot: dict[str, Any]) -> None:
        bootstrap.patch_plugin(boot, "duo_router", lambda c: c["features"].update(duo_agent_platform={"provider": "vendored"}))

    st = e2e.stack("hybrid", name="agent_platform_hybrid_vendored", patch=patch)
    _wait_ready(st, "hybrid")
    cloud: FakeDuoWorkflow = st.fake("duo_workflow_cloud")
    cloud.reset()
    managed = json.dumps({"provider": "gitlab", "feature_setting": "duo_agent_platform", "identifier": None})
    with _Client(st) as c:
        r = c.stub.ListTools(c.pb2.ListToolsRequest(), metadata=_metadata(st, x_gitlab_agent_platform_model_metadata=managed), timeout=TIMEOUT_S)
        assert len(r.tools) == 2
    assert len(cloud.received("/DuoWorkflow/ListTools")) == 1
    st.fake(DWS).assert_nothing_received()


def test_agent_platform_disabled_is_permission_denied(e2e):
    """`features.duo_agent_platform: disabled`: 7 with GitLab's wording, health still answered."""
    def patch(boot: dict[str, Any]) -> None:
        bootstrap.patch_plugin(boot, "duo_router", lambda c: c["features"].update(duo_agent_platform={"provider": "disabled"}))

    st = e2e.stack("self_hosted", name="agent_platform_disabled", patch=patch)
    fake: FakeDuoWorkflow = st.fake(DWS)
    with _Client(st) as c:
        deadline = time.time() + 15
        while True:  # jwt_authn's keys may still be on the way right after start
            e = _rpc_error(lambda: c.stub.ListTools(c.pb2.ListToolsRequest(), metadata=_metadata(st), timeout=TIMEOUT_S))
            if e.code() != grpc.StatusCode.UNAVAILABLE or time.time() > deadline:
                break
            time.sleep(0.2)
        assert (e.code(), e.details()) == (grpc.StatusCode.PERMISSION_DENIED, "Unauthorized to access duo_agent_platform"), e
        r = c.health.Check(health_pb2.HealthCheckRequest(service=""), timeout=TIMEOUT_S)
        assert r.status == health_pb2.HealthCheckResponse.SERVING
    fake.assert_nothing_received()


def _explain(boot: Path, path: str, *headers: tuple[str, str], forwarded: bool = True) -> dict[str, Any]:
    """`./build.sh explain --json` on a bootstrap (the first run may compile tools/explain); its
    exit status is 0 for a forwarded call, 1 for one answered locally."""
    args = [str(ROOT / "build.sh"), "explain", "--config", str(boot), "--path", path, "--json"]
    for k, v in headers:
        args += ["--header", f"{k}: {v}"]
    r = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=900, check=False)
    assert r.returncode == (0 if forwarded else 1), (r.returncode, r.stderr[-2000:])
    return json.loads(r.stdout)


@scenario(timeout_s=900)  # `./build.sh explain` may compile tools/explain
def test_agent_platform_settings_route_by_their_own_keys(e2e):
    """hybrid.yaml (duo_agent_platform on your service) plus two flow settings: SAST false-positive
    detection on GitLab's service, secret false-positive detection disabled. GitLab names the
    setting in the model metadata (GitLab-managed models) or in its feature-setting header; a
    setting without a key of its own, or no name at all, follows duo_agent_platform."""
    def patch(boot: dict[str, Any]) -> None:
        bootstrap.patch_plugin(boot, "duo_router", lambda c: c["features"].update(
            sast_vulnerability_fp_detection={"provider": "vendored"},
            secret_vulnerability_fp_detection={"provider": "disabled"}))

    st = e2e.stack("hybrid", name="agent_platform_hybrid_settings", patch=patch)
    _wait_ready(st, "hybrid")
    own, cloud = st.fake(DWS), st.fake("duo_workflow_cloud")
    own.reset()
    cloud.reset()

    def managed(setting: str) -> str:
        return json.dumps({"provider": "gitlab", "feature_setting": setting, "identifier": None})

    self_hosted = json.dumps({k: v for k, v in METADATA.items() if k != "feature_setting"})  # Rails sends none
    cases = [  # (what, metadata, feature-setting header, the service that gets it, logged feature)
        ("sast by metadata", managed("sast_vulnerability_fp_detection"), "", cloud, "sast_vulnerability_fp_detection"),
        ("agentic chat falls back", managed("duo_agent_platform_agentic_chat"), "", own, "duo_agent_platform_agentic_chat"),
        ("sast by header", self_hosted, "sast_vulnerability_fp_detection", cloud, "sast_vulnerability_fp_detection"),
        ("no name", self_hosted, "", own, "duo_agent_platform"),
        ("not an Agent Platform setting", managed("duo_chat"), "duo_chat", own, "duo_agent_platform"),
    ]
    with _Client(st) as c:
        for what, meta, header, service, feature in cases:
            before = (len(own.received()), len(cloud.received()))
            md = _metadata(st, x_gitlab_agent_platform_model_metadata=meta, x_gitlab_agent_platform_feature_setting_name=header)
            r = c.stub.ListTools(c.pb2.ListToolsRequest(), metadata=md, timeout=TIMEOUT_S)
            assert len(r.tools) == 2, what
            after = (len(own.received()), len(cloud.received()))
            want = (before[0] + (service is own), before[1] + (service is cloud))
            assert after == want, (what, before, after)
            got = service.received("/DuoWorkflow/ListTools")[-1]
            assert got.headers.get("x-gitlab-agent-platform-model-metadata") == meta, what  # never changed here
            recs = _records(st, dict(md)["x-request-id"])
            assert len(recs) == 1 and recs[0].get("feature") == feature, (what, recs)
            assert recs[0].get("upstream_cluster") == service.name, (what, recs[0])
        # Disabled, named either way: 7 naming the setting, nothing forwarded.
        before = (len(own.received()), len(cloud.received()))
        for meta, header in ((managed("secret_vulnerability_fp_detection"), ""), (self_hosted, "secret_vulnerability_fp_detection")):
            md = _metadata(st, x_gitlab_agent_platform_model_metadata=meta, x_gitlab_agent_platform_feature_setting_name=header)
            e = _rpc_error(lambda: c.stub.ListTools(c.pb2.ListToolsRequest(), metadata=md, timeout=TIMEOUT_S))
            assert (e.code(), e.details()) == (grpc.StatusCode.PERMISSION_DENIED, "Unauthorized to access secret_vulnerability_fp_detection"), e
            recs = _records(st, dict(md)["x-request-id"])
            assert len(recs) == 1 and recs[0].get("feature") == "secret_vulnerability_fp_detection" and recs[0].get("grpc_status") == 7, recs
        assert (len(own.received()), len(cloud.received())) == before, "a disabled setting reached a service"
    # `./build.sh explain` decides the same way from the same headers, on the same bootstrap.
    boot = st.run_dir / f"{st.name}.yaml"
    out = _explain(boot, "/DuoWorkflow/ExecuteWorkflow", ("x-gitlab-agent-platform-feature-setting-name", "sast_vulnerability_fp_detection"))
    assert out["feature"] == "sast_vulnerability_fp_detection" and out["upstream"]["cluster"] == "duo_workflow_cloud", out
    out = _explain(boot, "/DuoWorkflow/ExecuteWorkflow", ("x-gitlab-agent-platform-model-metadata", managed("secret_vulnerability_fp_detection")),
                   forwarded=False)
    assert out["feature"] == "secret_vulnerability_fp_detection" and out["answer"]["status"] == 403, out


INGRESS_KEY = "sk-e2e-dws-through-the-ingress"
INGRESS_URL = "http://gateway.ingress.test:5052/v1"  # the gateway as the service would reach it


def _ingress_patch(boot: dict[str, Any]) -> None:
    def auth(conf: dict[str, Any]) -> None:
        conf["ingress_keys"] = [{"name": "dws", "sha256": hashlib.sha256(INGRESS_KEY.encode()).hexdigest()}]

    def router(conf: dict[str, Any]) -> None:
        conf["model_ingress"] = {"enabled": True}
        conf["agent_platform"]["model_ingress"] = {"url": INGRESS_URL, "api_key": INGRESS_KEY}

    bootstrap.patch_plugin(boot, "duo_auth", auth)
    bootstrap.patch_plugin(boot, "duo_router", router)


def test_agent_platform_model_calls_go_through_the_model_ingress(e2e):
    """`agent_platform.model_ingress`: the service gets metadata pointing at the gateway's own
    `/v1/chat/completions` with an ingress key instead of the model's, then (as the real service
    does, through LiteLLM's `custom_openai/<model>`) calls the model there: duo_auth checks the
    ingress key, duo_router sends the call to vLLM with the served model name. No record holds
    either key."""
    import litellm  # noqa: F401 - imported here so the fake's first model call is not slowed by it

    st = e2e.stack("self_hosted", name="agent_platform_ingress", patch=_ingress_patch,
                   fakes={DWS: FakeDuoWorkflow(DWS, call_model=True)})
    _wait_ready(st, "ingress")
    dws: FakeDuoWorkflow = st.fake(DWS)
    dws.resolve = {urlsplit(INGRESS_URL).netloc: f"127.0.0.1:{st.port}"}
    vllm = st.fake("vllm_codestral")
    dws.reset()
    vllm.reset()
    vllm.enqueue(Answer(text="answered through the ingress"))
    pb = dws_proto.load()[0]
    md = _metadata(st)
    request_id = dict(md)["x-request-id"]

    def events() -> Iterator[Any]:
        yield pb.ClientEvent(startRequest=pb.StartWorkflowRequest(workflowID="wf-ingress", goal="say hi"))
        yield pb.ClientEvent(stopWorkflow=pb.StopWorkflowRequest(reason="done"))

    with _Client(st) as c:
        responses = list(c.stub.ExecuteWorkflow(events(), metadata=md, timeout=60))
    assert responses and responses[-1].newCheckpoint.status == "FINISHED", responses

    call = dws.received("/DuoWorkflow/ExecuteWorkflow")[-1]
    got = json.loads(call.headers["x-gitlab-agent-platform-model-metadata"])
    assert got == {**METADATA, "endpoint": INGRESS_URL, "identifier": "custom_openai/codestral", "api_key": INGRESS_KEY}, got
    assert API_KEY not in json.dumps(call.header_list), "the model's own key reached the service"
    assert call.model_calls == [{"endpoint": INGRESS_URL, "identifier": "custom_openai/codestral",
                                 "answer": "answered through the ingress"}], call.model_calls
    # vLLM got the served model name, and neither key.
    sent = vllm.received("/v1/chat/completions")
    assert len(sent) == 1 and sent[0].json()["model"] == "Codestral-22B-v0.1", sent
    upstream = json.dumps(sent[0].header_list)
    assert INGRESS_KEY not in upstream and API_KEY not in upstream, upstream

    # The gRPC call's record and the ingress call's record: the model named, no key in either.
    recs = _records(st, request_id)
    assert len(recs) == 1 and recs[0].get("grpc_method") == "DuoWorkflow/ExecuteWorkflow", recs
    assert recs[0].get("model_name") == "codestral" and recs[0].get("grpc_status") == 0, recs[0]
    deadline = time.time() + 10
    while True:
        ingress = [r for r in st.access_log() if isinstance(r, dict) and r.get("feature") == "model_ingress"]
        if ingress or time.time() > deadline:
            break
        time.sleep(0.1)
    assert len(ingress) == 1 and ingress[0].get("ingress_key_name") == "dws" and ingress[0].get("model_name") == "codestral", ingress
    for rec in (recs[0], ingress[0]):
        line = json.dumps(rec)
        assert INGRESS_KEY not in line and API_KEY not in line, f"a key in the access log: {line}"

