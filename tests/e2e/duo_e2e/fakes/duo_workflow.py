"""Fake Duo Workflow Service (GitLab's Agent Platform runtime) behind the gateway's gRPC
listener: a real grpcio server speaking the wire-compatible subset of GitLab's contract
(duo_e2e/proto/contract.proto) plus the standard gRPC health service.

Strict about what it receives, as the real service's interceptors are (docs/agent-platform.md):
every DuoWorkflow call must carry `authorization: Bearer <JWT>` that verifies (RS256) with a key
of a GitLab fake or with this service's own key, with audience `gitlab-duo-workflow-service`;
a self-signed token may not call GenerateToken; GitLab's `x-gitlab-*` headers must be there;
nothing the gateway keeps to itself may arrive (the cluster header, `x-duo-*`, `bypass-auth`,
an `api-key`). A call that fails a check is aborted with the service's own status and recorded
in `refusals` (the runner fails a scenario that leaves one behind).

ExecuteWorkflow, scripted like an agent that asks the executor to read files:
    startRequest            -> Action(requestID "1", runReadFile "step-1.txt")
    actionResponse(id N)    -> Action(requestID N+1, runReadFile "step-<N+1>.txt")
    heartbeat               -> (nothing; recorded)
    stopWorkflow            -> Action(newCheckpoint status "FINISHED"), then the call ends OK
`fail_next(code, message)` makes the next DuoWorkflow call end with that status instead.

With `call_model=True` the fake also does what the real service does with a self-hosted model
before it answers the startRequest: it calls the model the metadata names through LiteLLM
(`litellm.completion(model=identifier, api_base=endpoint, api_key=api_key)`, the
`custom_openai/<model>` route) and records what happened in `Call.model_calls`. Test hosts are
not in DNS: `resolve` maps the endpoint's host:port to where it really listens; an endpoint
that is not mapped is not called (recorded as an error).
"""

from __future__ import annotations

import json
import time
import uuid
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any, Iterator
from urllib.parse import urlsplit, urlunsplit

import grpc
import jwt  # PyJWT
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from .. import dws_proto
from .base import FakeServer, Request
from .gitlab import FakeGitLab, SigningKey

AUDIENCE = "gitlab-duo-workflow-service"
ISSUER = "gitlab-duo-workflow-service"
SCOPES = ("duo_agent_platform", "duo_workflow_execute_workflow")
METADATA_HEADER = "x-gitlab-agent-platform-model-metadata"
REQUIRED = ("x-gitlab-authentication-type", "x-gitlab-realm", "x-gitlab-global-user-id")
# What the gateway must never pass on (its own routing and auth internals, model credentials).
FORBIDDEN_PREFIXES = ("x-duo-", "bypass-auth", "api-key", "x-api-key", "x-envoy-original-")


@dataclass
class Call(Request):
    """One DuoWorkflow call as the fake received it: metadata in `header_list`, the decoded
    client messages in `events`, and the gRPC status the fake ended it with."""

    events: list[Any] = field(default_factory=list)
    grpc_status: grpc.StatusCode | None = None
    claims: dict[str, Any] = field(default_factory=dict)
    # `call_model`: {"endpoint", "identifier", "answer" or "error"} per model call the fake made.
    model_calls: list[dict[str, Any]] = field(default_factory=list)


class _Abort(Exception):
    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(message)
        self.code, self.message = code, message


class FakeDuoWorkflow(FakeServer):
    kind = "duo_workflow"

    def __init__(self, name: str = "duo_workflow", gitlabs: list[FakeGitLab] | None = None,
                 key: SigningKey | None = None, rotated_from: SigningKey | None = None, call_model: bool = False):
        super().__init__(name)
        self.call_model = call_model
        self.resolve: dict[str, str] = {}  # "host:port" of a metadata endpoint -> "127.0.0.1:<port>"
        self.gitlabs = list(gitlabs or [])
        self.key = key or SigningKey()  # the service's self-signing key (DUO_WORKFLOW_SELF_SIGNED_JWT)
        self.old_key = rotated_from  # the validation key during a rotation
        self._grpc: grpc.Server | None = None
        self._port = 0
        self._fail: tuple[grpc.StatusCode, str] | None = None
        self.health = health.HealthServicer()

    # ---- lifecycle (a gRPC server instead of the base HTTP/1.1 one) ------------------------
    def start(self, port: int = 0, tls: Any = None, cert: Any = None) -> "FakeDuoWorkflow":
        pb2, pb2_grpc = dws_proto.load()
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=32, thread_name_prefix=f"fake-{self.name}"))
        pb2_grpc.add_DuoWorkflowServicer_to_server(_Servicer(self, pb2), server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        for service in ("", "DuoWorkflow"):
            self.health.set(service, health_pb2.HealthCheckResponse.SERVING)
        if tls is not None and cert is None:
            raise ValueError("FakeDuoWorkflow serves TLS from a ServerCert (cert=), not an ssl context")
        if cert is not None:
            creds = grpc.ssl_server_credentials([(cert.key_path.read_bytes(), cert.cert_path.read_bytes())])
            self._port = server.add_secure_port(f"127.0.0.1:{port}", creds)
        else:
            self._port = server.add_insecure_port(f"127.0.0.1:{port}")
        server.start()
        self._grpc = server
        self._server = server  # the Stack's "started" marker
        self.tls = cert is not None
        return self

    def stop(self) -> None:
        if self._grpc is not None:
            self._grpc.stop(grace=None)
            self._grpc = None
            self._server = None

    @property
    def port(self) -> int:
        assert self._grpc is not None, f"fake {self.name} is not started"
        return self._port

    def reset(self) -> None:
        super().reset()
        with self._lock:
            self._fail = None

    def fail_next(self, code: grpc.StatusCode, message: str) -> None:
        with self._lock:
            self._fail = (code, message)

    def set_serving(self, serving: bool) -> None:
        status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        for service in ("", "DuoWorkflow"):
            self.health.set(service, status)

    # ---- tokens the service issues ---------------------------------------------------------
    def mint(self, global_user_id: str, scopes: list[str] | None = None, key: SigningKey | None = None,
             ttl_s: int = 3600, **overrides: Any) -> str:
        """A self-signed token as GenerateToken issues it (no kid; iss = aud = the service)."""
        now = int(time.time())
        claims: dict[str, Any] = {"iss": ISSUER, "aud": AUDIENCE, "sub": global_user_id, "iat": now,
                                  "nbf": now - 5, "exp": now + ttl_s, "jti": str(uuid.uuid4()),
                                  "scopes": list(scopes if scopes is not None else SCOPES)}
        claims.update(overrides)
        return jwt.encode(claims, (key or self.key).private_key, algorithm="RS256", headers={"typ": "JWT"})

    # ---- checks ----------------------------------------------------------------------------
    def _verify(self, token: str) -> tuple[dict[str, Any], bool]:
        """(claims, self_signed) or _Abort(UNAUTHENTICATED)."""
        header = jwt.get_unverified_header(token)
        own = [k for k in (self.key, self.old_key) if k is not None]
        candidates: list[tuple[SigningKey, bool]] = []
        if header.get("kid"):
            candidates = [(k, False) for g in self.gitlabs for k in g.published if k.kid == header["kid"]]
        else:
            candidates = [(k, True) for k in own]
        for key, self_signed in candidates:
            try:
                claims = jwt.decode(token, key.private_key.public_key(), algorithms=["RS256"], audience=AUDIENCE,
                                    options={"require": ["exp", "iat", "aud", "iss"]})
            except jwt.InvalidTokenError:
                continue
            if self_signed != (claims.get("iss") == ISSUER):
                break
            return claims, self_signed
        raise _Abort(grpc.StatusCode.UNAUTHENTICATED, "Forbidden by auth provider")

    def check(self, call: Call, method: str) -> None:
        md = call.headers
        for name, _ in call.header_list:
            if name.startswith(FORBIDDEN_PREFIXES):
                raise _Abort(grpc.StatusCode.INTERNAL, f"fake: the gateway leaked header {name!r}")
        for name in REQUIRED:
            if not md.get(name):
                raise _Abort(grpc.StatusCode.UNAUTHENTICATED, f"fake: missing {name}")
        if md.get("x-gitlab-authentication-type") != "oidc":
            raise _Abort(grpc.StatusCode.UNAUTHENTICATED, "Invalid authentication token type - only OIDC is supported")
        auth = md.get("authorization", "")
        scheme, _, token = auth.partition(" ")
        if scheme.lower() != "bearer" or token.count(".") != 2:
            raise _Abort(grpc.StatusCode.UNAUTHENTICATED, "No authorization header presented")
        claims, self_signed = self._verify(token.strip())
        call.claims = claims
        if self_signed and claims.get("sub") != md.get("x-gitlab-global-user-id"):
            raise _Abort(grpc.StatusCode.UNAUTHENTICATED, "Header mismatch 'X-Gitlab-Global-User-Id'")
        if self_signed and method == "GenerateToken":
            raise _Abort(grpc.StatusCode.PERMISSION_DENIED, "fake: a self-signed token reached GenerateToken")
        if not any(s in (claims.get("scopes") or []) for s in SCOPES):
            raise _Abort(grpc.StatusCode.PERMISSION_DENIED, "fake: token without an Agent Platform scope got through")
        meta = md.get(METADATA_HEADER)
        if meta is not None:
            try:
                doc = json.loads(meta)
            except ValueError as e:
                raise _Abort(grpc.StatusCode.INVALID_ARGUMENT, f"fake: model metadata is not JSON: {e}") from e
            if not isinstance(doc, dict):
                raise _Abort(grpc.StatusCode.INVALID_ARGUMENT, "fake: model metadata is not an object")

    def model_call(self, call: Call, prompt: str) -> None:
        """The service's model call for this workflow (call_model=True), recorded on `call`."""
        meta = json.loads(call.headers.get(METADATA_HEADER) or "{}")
        endpoint, identifier = str(meta.get("endpoint") or ""), str(meta.get("identifier") or "")
        record: dict[str, Any] = {"endpoint": endpoint, "identifier": identifier}
        call.model_calls.append(record)
        parts = urlsplit(endpoint)
        real = self.resolve.get(parts.netloc)
        if not parts.scheme or real is None:
            record["error"] = f"fake: no address for {endpoint!r}"
            return
        import litellm  # heavy: only for the scenarios that call a model

        try:
            r = litellm.completion(model=identifier, api_base=urlunsplit(parts._replace(netloc=real)),
                                   api_key=meta.get("api_key"), messages=[{"role": "user", "content": prompt}],
                                   max_tokens=32, timeout=20, num_retries=0)
            record["answer"] = r.choices[0].message.content
        except Exception as e:  # noqa: BLE001 - recorded for the scenario to assert on
            record["error"] = f"{type(e).__name__}: {e}"

    def begin(self, method: str, context: grpc.ServicerContext) -> Call:
        header_list = [(k.lower(), v if isinstance(v, str) else v.decode("latin-1")) for k, v in context.invocation_metadata()]
        call = Call(method="POST", target=f"/DuoWorkflow/{method}", path=f"/DuoWorkflow/{method}", query={},
                    header_list=header_list, body=b"", chunked=False, received_at=time.time(), fake=self.name)
        with self._lock:
            self.requests.append(call)
            self.history.append(call)
            fail, self._fail = self._fail, None
        try:
            self.check(call, method)
        except _Abort as a:
            self._end(call, a.code, refused=a.message)
            context.abort(a.code, a.message)
        if fail is not None:
            self._end(call, fail[0])
            context.abort(*fail)
        return call

    def _end(self, call: Call, code: grpc.StatusCode, refused: str | None = None) -> None:
        call.grpc_status = code
        call.status = 200
        # A check failing is a refusal; the service's own UNAUTHENTICATED/PERMISSION_DENIED for a
        # token the gateway should have stopped is one too.
        if refused is not None:
            call.refused = refused
            with self._lock:
                self.refusals.append(call)


class _Servicer:
    """The DuoWorkflow methods, generic over the generated base class (registered by name)."""

    def __init__(self, fake: FakeDuoWorkflow, pb2: Any):
        self.fake, self.pb2 = fake, pb2

    def ExecuteWorkflow(self, request_iterator: Iterator[Any], context: grpc.ServicerContext) -> Iterator[Any]:  # noqa: N802
        call = self.fake.begin("ExecuteWorkflow", context)
        pb = self.pb2
        for event in request_iterator:
            call.events.append(event)
            kind = event.WhichOneof("response")
            if kind == "startRequest":
                if self.fake.call_model:
                    self.fake.model_call(call, event.startRequest.goal)
                yield pb.Action(requestID="1", runReadFile=pb.ReadFile(filepath="step-1.txt"))
            elif kind == "actionResponse":
                try:
                    n = int(event.actionResponse.requestID) + 1
                except ValueError:
                    self.fake._end(call, grpc.StatusCode.INVALID_ARGUMENT, refused="fake: actionResponse for an unknown requestID")
                    context.abort(grpc.StatusCode.INVALID_ARGUMENT, "unknown requestID")
                yield pb.Action(requestID=str(n), runReadFile=pb.ReadFile(filepath=f"step-{n}.txt"))
            elif kind == "stopWorkflow":
                yield pb.Action(requestID="stop", newCheckpoint=pb.NewCheckpoint(status="FINISHED", goal=event.stopWorkflow.reason))
                break
        self.fake._end(call, grpc.StatusCode.OK)

    def GenerateToken(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        call = self.fake.begin("GenerateToken", context)
        call.events.append(request)
        granted = [s for s in call.claims.get("scopes") or [] if s in SCOPES]
        token = self.fake.mint(call.headers.get("x-gitlab-global-user-id", ""), scopes=granted)
        self.fake._end(call, grpc.StatusCode.OK)
        return self.pb2.GenerateTokenResponse(token=token, expiresAt=int(time.time()) + 3600)

    def ListTools(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        call = self.fake.begin("ListTools", context)
        call.events.append(request)
        from google.protobuf import struct_pb2

        tools = []
        for name, desc in (("read_file", "Read a file"), ("run_command", "Run a command")):
            s = struct_pb2.Struct()
            s.update({"name": name, "description": desc})
            tools.append(s)
        self.fake._end(call, grpc.StatusCode.OK)
        return self.pb2.ListToolsResponse(tools=tools)

