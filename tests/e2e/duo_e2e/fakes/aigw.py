"""Fake GitLab AI gateways that receive GitLab's request unchanged: the vendor gateway
(cloud.gitlab.com, paths under `/ai`) for `vendored` features, and an existing Python AI gateway
for `aigw` targets. They check what the real one checks first (the token is there, is a JWT, the
Cloud Connector headers are present, the path is an AI-gateway endpoint, the body is JSON) and
answer in the AI gateway's shapes (docs/fidelity.md): completions objects, bare JSON
strings for `/v1/prompts/*`, `{content, usage}` for `/v2/prompts/*`, NDJSON for `/v2/chat/agent`,
raw text chunks when `stream: true`."""

from __future__ import annotations

import json
import re
import time
import uuid
from typing import Any

from .base import Answer, FakeServer, Refuse, Reply, Request, carries_jwt

_ENDPOINTS = [
    r"/v2/code/completions", r"/v2/completions", r"/v2/code/generations", r"/v3/code/completions",
    r"/v2/chat/agent", r"/v1/chat/agent", r"/v1/chat/[a-z_]+", r"/v1/prompts/.+", r"/v2/prompts/.+",
    r"/v1/code/user_access_token", r"/v1/proxy/.+",
]
_PUBLIC = {"/monitoring/healthz", "/monitoring/ready", "/v1/models/definitions"}


class FakeAigw(FakeServer):
    kind = "aigw"
    health_path = "/monitoring/healthz"  # the Python AI gateway's liveness endpoint

    def __init__(self, name: str, path_prefix: str = ""):
        super().__init__(name)
        self.path_prefix = path_prefix.rstrip("/")
        self.default_answer = Answer(text=f"Hello from {name}.")

    def handle(self, req: Request) -> Reply:
        prefix = self.path_prefix
        if prefix and not req.path.startswith(prefix + "/"):
            raise Refuse(f"path {req.path} outside {prefix}/", Reply.json({"detail": "Not Found"}, 404))
        path = req.path[len(prefix):]
        if path in _PUBLIC and req.method == "GET":
            return Reply.json({"status": "ok"} if path != "/v1/models/definitions" else {"models": [], "unit_primitives": []})
        if not any(re.fullmatch(p, path) for p in _ENDPOINTS):
            raise Refuse(f"unknown endpoint {path}", Reply.json({"detail": "Not Found"}, 404))
        auth = req.header("authorization") or ""
        if not auth:
            raise Refuse("no Authorization", Reply.json({"error": "No authorization header presented"}, 401))
        if not auth.lower().startswith("bearer ") or not carries_jwt(auth):
            raise Refuse("Authorization is not GitLab's bearer JWT", Reply.json({"error": "Invalid authorization header"}, 401))
        if req.header("x-gitlab-authentication-type") != "oidc":
            raise Refuse("X-Gitlab-Authentication-Type is not oidc",
                         Reply.json({"error": "Invalid authentication token type - only OIDC is supported"}, 401))
        for h in ("x-gitlab-instance-id", "x-gitlab-realm"):
            if req.header(h) is None:
                raise Refuse(f"{h} missing", Reply.json({"error": f"Header mismatch '{h}'"}, 401))
        if req.method != "POST":
            raise Refuse(f"{req.method} {path}", Reply.json({"detail": "Method Not Allowed"}, 405))
        try:
            body = json.loads(req.body or b"{}")
        except json.JSONDecodeError:
            raise Refuse("body is not JSON", Reply.json({"detail": [{"loc": ["body"], "msg": "JSON decode error", "type": "json_invalid"}]}, 422))
        if not isinstance(body, dict):
            raise Refuse("body is not an object", Reply.json({"detail": [{"loc": ["body"], "msg": "Input should be a valid dictionary", "type": "dict_type"}]}, 422))
        scripted = self.next_scripted(req)
        ans = scripted if scripted is not None else self.default_answer
        if isinstance(ans, Reply):
            return ans
        return self.render(path, body, ans)

    def render(self, path: str, body: dict[str, Any], ans: Answer) -> Reply:
        stream = body.get("stream") is True
        pieces = [p.encode() for p in ans.split()]
        if path == "/v1/code/user_access_token":
            return Reply.json({"token": "not-a-real-user-token", "expires_at": int(time.time()) + 3600})
        if path in ("/v2/chat/agent",):
            lines = [json.dumps({"type": "final_answer_delta", "data": {"text": p.decode()}}).encode() + b"\n" for p in pieces]
            return Reply(200, [("content-type", "application/x-ndjson")], chunks=lines, delay_s=ans.delay_s, abort_after=ans.abort_after)
        if path.startswith(("/v2/code/", "/v2/completions", "/v3/code/")):
            if stream:
                return Reply(200, [("content-type", "text/event-stream")], chunks=pieces, delay_s=ans.delay_s, abort_after=ans.abort_after)
            return Reply.json({"id": "id", "model": {"engine": "vendor", "name": "vendor-model", "lang": "python"},
                               "object": "text_completion", "created": int(time.time()),
                               "choices": [{"text": ans.text, "index": 0, "finish_reason": "length"}]})
        if path.startswith("/v2/prompts/"):
            if stream:
                lines = [json.dumps({"content": p.decode()}).encode() + b"\n" for p in pieces]
                return Reply(200, [("content-type", "text/event-stream")], chunks=lines, delay_s=ans.delay_s, abort_after=ans.abort_after)
            return Reply.json({"content": ans.text, "usage": {"vendor-model": {"input_tokens": 10, "output_tokens": 5}}})
        if stream:
            return Reply(200, [("content-type", "text/event-stream")], chunks=pieces, delay_s=ans.delay_s, abort_after=ans.abort_after)
        return Reply.json(ans.text, headers=[("x-request-id", str(uuid.uuid4()))])
