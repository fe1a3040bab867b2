"""Fake OpenAI-compatible model servers: vLLM (`FakeVllm`) and Azure OpenAI (`FakeAzure`).

Both check what they receive as strictly as the real service (path, method, content type, JSON
body against the OpenAI chat/completions request schema, model or deployment name, the key
header) and refuse like it does, in its own error format. On top of that they refuse any
request that carries a JWT in `Authorization` (GitLab's token must never reach a model platform).
Answers are rendered from an `Answer` (scripted with `enqueue`, else `default_answer`) in the
platform's real format: JSON, or an SSE stream (`data: <json>\\n\\n` ... `data: [DONE]\\n\\n`).
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from .base import Answer, FakeServer, Refuse, Reply, Request, carries_jwt, count_tokens

CHAT_ROLES = {"system", "developer", "user", "assistant", "tool"}
# Fields of OpenAI's / vLLM's request models that the fakes know; others are noted (vLLM ignores
# them with a warning, so they are not refused, but a scenario can assert `req.notes == []`).
CHAT_FIELDS = {
    "messages", "model", "frequency_penalty", "logit_bias", "logprobs", "top_logprobs", "max_tokens",
    "max_completion_tokens", "n", "presence_penalty", "response_format", "seed", "stop", "stream",
    "stream_options", "temperature", "top_p", "tools", "tool_choice", "parallel_tool_calls", "user",
    "reasoning_effort", "top_k", "min_p", "repetition_penalty", "stop_token_ids", "skip_special_tokens",
    "include_stop_str_in_output", "ignore_eos", "min_tokens", "echo", "add_generation_prompt",
    "continue_final_message", "chat_template_kwargs",
}
COMPLETION_FIELDS = {
    "prompt", "model", "best_of", "echo", "frequency_penalty", "logit_bias", "logprobs", "max_tokens", "n",
    "presence_penalty", "seed", "stop", "stream", "stream_options", "suffix", "temperature", "top_p", "user",
    "top_k", "min_p", "repetition_penalty", "stop_token_ids", "skip_special_tokens",
    "include_stop_str_in_output", "ignore_eos", "min_tokens",
}


class BodyError(Exception):
    def __init__(self, message: str, param: str | None = None):
        super().__init__(message)
        self.param = param


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _check_common(body: dict[str, Any], fields: set[str], notes: list[str]) -> None:
    for k in body:
        if k not in fields:
            notes.append(f"ignored field {k!r}")
    if "model" in body and not isinstance(body["model"], str):
        raise BodyError("model: Input should be a valid string", "model")
    if "stream" in body and not isinstance(body["stream"], bool):
        raise BodyError("stream: Input should be a valid boolean", "stream")
    if "temperature" in body and body["temperature"] is not None:
        t = body["temperature"]
        if not _is_num(t) or not 0 <= t <= 2:
            raise BodyError("temperature must be a number between 0 and 2", "temperature")
    if "top_p" in body and body["top_p"] is not None:
        p = body["top_p"]
        if not _is_num(p) or not 0 < p <= 1:
            raise BodyError("top_p must be in (0, 1]", "top_p")
    for name in ("max_tokens", "max_completion_tokens", "n", "top_k", "seed"):
        if name in body and body[name] is not None:
            v = body[name]
            if not isinstance(v, int) or isinstance(v, bool):
                raise BodyError(f"{name}: Input should be a valid integer", name)
            if name in ("max_tokens", "max_completion_tokens", "n") and v < 1:
                raise BodyError(f"{name} must be at least 1, got {v}.", name)
    if "stop" in body and body["stop"] is not None:
        s = body["stop"]
        if not (isinstance(s, str) or (isinstance(s, list) and all(isinstance(x, str) for x in s))):
            raise BodyError("stop: Input should be a valid string or list of strings", "stop")
    if body.get("stream_options") is not None:
        if body.get("stream") is not True:
            raise BodyError("Stream options can only be defined when `stream=True`.", "stream_options")
        so = body["stream_options"]
        if not isinstance(so, dict) or any(k not in ("include_usage", "continuous_usage_stats") for k in so):
            raise BodyError("stream_options: invalid", "stream_options")


def check_chat_body(body: Any, notes: list[str]) -> None:
    """OpenAI chat-completions request schema (what vLLM's ChatCompletionRequest and Azure accept)."""
    if not isinstance(body, dict):
        raise BodyError("Input should be a valid dictionary or object")
    msgs = body.get("messages")
    if not isinstance(msgs, list) or not msgs:
        raise BodyError("messages: Field required (a non-empty list)", "messages")
    for i, m in enumerate(msgs):
        if not isinstance(m, dict) or m.get("role") not in CHAT_ROLES:
            raise BodyError(f"messages.{i}.role: Input should be one of {sorted(CHAT_ROLES)}", "messages")
        content = m.get("content")
        if content is None:
            if not (m["role"] == "assistant" and m.get("tool_calls")):
                raise BodyError(f"messages.{i}.content: Field required", "messages")
        elif isinstance(content, list):
            for j, part in enumerate(content):
                if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                    raise BodyError(f"messages.{i}.content.{j}: expected a text part", "messages")
        elif not isinstance(content, str):
            raise BodyError(f"messages.{i}.content: Input should be a valid string", "messages")
        if m["role"] == "tool" and not isinstance(m.get("tool_call_id"), str):
            raise BodyError(f"messages.{i}.tool_call_id: Field required", "messages")
        if m["role"] == "tool":
            # A tool result answers a call an earlier assistant message made.
            asked = {c.get("id") for prev in msgs[:i] if prev.get("role") == "assistant" for c in prev.get("tool_calls") or []}
            if m["tool_call_id"] not in asked:
                raise BodyError(f"messages.{i}.tool_call_id: no earlier assistant tool call has id {m['tool_call_id']!r}", "messages")
    _check_common(body, CHAT_FIELDS, notes)


def check_completion_body(body: Any, notes: list[str]) -> None:
    """OpenAI (legacy) completions request schema, with vLLM's refusal of `suffix`."""
    if not isinstance(body, dict):
        raise BodyError("Input should be a valid dictionary or object")
    p = body.get("prompt")
    if not (isinstance(p, str) or (isinstance(p, list) and p and all(isinstance(x, str) for x in p))):
        raise BodyError("prompt: Field required (a string or a list of strings)", "prompt")
    if body.get("suffix") is not None:
        raise BodyError("suffix is not currently supported")
    _check_common(body, COMPLETION_FIELDS, notes)


def message_text(body: dict[str, Any]) -> str:
    if "messages" in body:
        out = []
        for m in body["messages"]:
            c = m.get("content")
            if isinstance(c, str):
                out.append(c)
            elif isinstance(c, list):
                out.extend(p.get("text", "") for p in c if isinstance(p, dict))
        return "\n".join(out)
    p = body.get("prompt")
    return p if isinstance(p, str) else "\n".join(p or [])


def sse(obj: Any) -> bytes:
    return b"data: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n"


class _OpenAIBase(FakeServer):
    """Rendering shared by vLLM and Azure."""

    def __init__(self, name: str):
        super().__init__(name)
        self.default_answer = Answer(text=f"Hello from {name}.")

    def _answer(self, req: Request) -> Answer | Reply:
        scripted = self.next_scripted(req)
        return scripted if scripted is not None else self.default_answer

    def usage(self, body: dict[str, Any], ans: Answer) -> dict[str, Any]:
        p = ans.input_tokens if ans.input_tokens is not None else count_tokens(message_text(body))
        c = ans.output_tokens if ans.output_tokens is not None else count_tokens(ans.text)
        return {"prompt_tokens": p, "total_tokens": p + c, "completion_tokens": c}


class FakeVllm(_OpenAIBase):
    """vLLM's OpenAI-compatible server (`vllm serve <model> --served-model-name <name> [--api-key K]`)."""

    kind = "vllm"
    health_path = "/health"  # vLLM's own: GET /health answers 200 while the engine is up

    def __init__(self, name: str, served_models: list[str] | None = None, api_key: str | None = None, base_path: str = "/v1"):
        super().__init__(name)
        self.served_models = list(served_models or [])
        self.api_key = api_key  # None: started without --api-key (any Authorization is ignored)
        self.base_path = base_path.rstrip("/")

    @staticmethod
    def error(status: int, message: str, etype: str = "BadRequestError", param: str | None = None) -> Reply:
        # vLLM >= 0.10.1 error shape.
        return Reply.json({"error": {"message": message, "type": etype, "param": param, "code": status}}, status)

    def handle(self, req: Request) -> Reply:
        auth = req.header("authorization")
        if carries_jwt(auth):
            raise Refuse("GitLab's JWT reached a model platform", Reply.json({"error": "Unauthorized"}, 401))
        bp = self.base_path
        if req.method == "GET" and req.path == "/health":
            return Reply(200)
        if self.api_key is not None and req.path.startswith(("/v1", "/v2")):
            if auth != f"Bearer {self.api_key}":
                raise Refuse("missing or wrong API key", Reply.json({"error": "Unauthorized"}, 401))
        if req.method == "GET" and req.path == f"{bp}/models":
            return Reply.json({"object": "list", "data": [
                {"id": m, "object": "model", "created": int(time.time()), "owned_by": "vllm", "root": m,
                 "parent": None, "max_model_len": 32768, "permission": []} for m in self.served_models]})
        if req.path not in (f"{bp}/chat/completions", f"{bp}/completions"):
            raise Refuse(f"unknown path {req.path}", Reply.json({"detail": "Not Found"}, 404))
        if req.method != "POST":
            raise Refuse(f"{req.method} not allowed", Reply.json({"detail": "Method Not Allowed"}, 405))
        if req.query:
            req.notes.append(f"unexpected query {sorted(req.query)}")
        ctype = (req.header("content-type") or "").split(";")[0].strip().lower()
        if ctype != "application/json":
            raise Refuse(f"content-type {ctype!r}", self.error(400, "Unsupported Media Type: Only 'application/json' is allowed"))
        chat = req.path.endswith("/chat/completions")
        try:
            body = json.loads(req.body)
            (check_chat_body if chat else check_completion_body)(body, req.notes)
        except json.JSONDecodeError as e:
            raise Refuse(f"body is not JSON: {e}", self.error(400, f"JSON decode error: {e}"))
        except BodyError as e:
            raise Refuse(str(e), self.error(400, str(e), param=e.param))
        model = body.get("model")
        if model is None or model not in self.served_models:
            raise Refuse(f"model {model!r} is not served ({self.served_models})",
                         self.error(404, f"The model `{model}` does not exist.", "NotFoundError", "model"))
        ans = self._answer(req)
        if isinstance(ans, Reply):
            return ans
        return self.render(body, ans, chat)

    def render(self, body: dict[str, Any], ans: Answer, chat: bool) -> Reply:
        rid = ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex
        created = int(time.time())
        model = body["model"]
        usage = self.usage(body, ans)
        tools = ans.tool_calls or []
        finish = "tool_calls" if tools else ans.finish_reason
        if not body.get("stream"):
            if chat:
                message: dict[str, Any] = {"role": "assistant", "content": ans.text or None, "reasoning": None}
                if tools:
                    message["tool_calls"] = [{"id": i, "type": "function", "function": {"name": n, "arguments": json.dumps(inp)}}
                                             for i, n, inp in tools]
                choice = {"index": 0, "message": message,
                          "logprobs": None, "finish_reason": finish, "stop_reason": None}
                obj = {"id": rid, "object": "chat.completion", "created": created, "model": model, "choices": [choice],
                       "usage": {**usage, "prompt_tokens_details": None}, "system_fingerprint": None,
                       "prompt_logprobs": None, "kv_transfer_params": None}
            else:
                choice = {"index": 0, "text": ans.text, "logprobs": None, "finish_reason": ans.finish_reason,
                          "stop_reason": None, "prompt_logprobs": None}
                obj = {"id": rid, "object": "text_completion", "created": created, "model": model,
                       "choices": [choice], "usage": usage}
            return Reply.json(obj)
        head = {"id": rid, "object": "chat.completion.chunk" if chat else "text_completion", "created": created, "model": model}
        chunks: list[bytes] = []
        if chat:
            chunks.append(sse({**head, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "logprobs": None, "finish_reason": None}]}))
        pieces = ans.split()
        if chat:
            for k, (tid, name, inp) in enumerate(tools):
                args = json.dumps(inp)
                chunks.append(sse({**head, "choices": [{"index": 0, "delta": {"tool_calls": [{"index": k, "id": tid, "type": "function",
                    "function": {"name": name, "arguments": ""}}]}, "logprobs": None, "finish_reason": None}]}))
                chunks.append(sse({**head, "choices": [{"index": 0, "delta": {"tool_calls": [{"index": k,
                    "function": {"arguments": args}}]}, "logprobs": None, "finish_reason": None}]}))
        for i, piece in enumerate(pieces):
            last = i == len(pieces) - 1
            fin = finish if last else None
            if chat:
                choice = {"index": 0, "delta": {"content": piece}, "logprobs": None, "finish_reason": fin}
            else:
                choice = {"index": 0, "text": piece, "logprobs": None, "finish_reason": fin}
            if last:
                choice["stop_reason"] = None
            chunks.append(sse({**head, "choices": [choice]}))
        so = body.get("stream_options") or {}
        if body.get("stream_options") is not None and so.get("include_usage", True):
            chunks.append(sse({**head, "choices": [], "usage": usage}))
        chunks.append(b"data: [DONE]\n\n")
        abort = None if ans.abort_after is None else ans.abort_after + (1 if chat else 0)
        return Reply(200, [("content-type", "text/event-stream; charset=utf-8")], chunks=chunks,
                     delay_s=ans.delay_s, first_delay_s=ans.first_delay_s, abort_after=abort)


AZURE_API_VERSIONS = {
    "2022-12-01", "2023-05-15", "2024-02-01", "2024-06-01", "2024-10-21",
    "2024-09-01-preview", "2024-12-01-preview", "2025-01-01-preview", "2025-03-01-preview", "2025-04-01-preview",
}
AZURE_401 = ("Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a valid key "
             "for an active subscription and use a correct regional API endpoint for your resource.")
_FILTERS_OK = {"hate": {"filtered": False, "severity": "safe"}, "self_harm": {"filtered": False, "severity": "safe"},
               "sexual": {"filtered": False, "severity": "safe"}, "violence": {"filtered": False, "severity": "safe"}}


class FakeAzure(_OpenAIBase):
    """An Azure OpenAI resource: deployments under `/openai/deployments/<d>/chat/completions?api-version=`
    and the v1 API `/openai/v1/chat/completions` (deployment in the body's `model`); `api-key` header."""

    kind = "azure"

    def __init__(self, name: str, deployments: list[str] | None = None, api_key: str | None = "azure-test-key",
                 underlying_model: str = "gpt-4o-2024-08-06"):
        super().__init__(name)
        self.deployments = list(deployments or [])
        self.api_key = api_key
        self.underlying_model = underlying_model

    @staticmethod
    def error(status: int, code: str, message: str, **extra: Any) -> Reply:
        return Reply.json({"error": {"code": code, "message": message, **extra}}, status,
                          [("apim-request-id", str(uuid.uuid4()))])

    def handle(self, req: Request) -> Reply:
        auth = req.header("authorization")
        if carries_jwt(auth) or carries_jwt(req.header("api-key")):
            raise Refuse("GitLab's JWT reached a model platform", self.error(401, "401", AZURE_401))
        parts = req.path.split("/")
        v1 = req.path in ("/openai/v1/chat/completions", "/openai/v1/completions")
        classic = (len(parts) == 6 and parts[1] == "openai" and parts[2] == "deployments"
                   and "/".join(parts[4:]) in ("chat/completions", "completions"))
        if not (v1 or classic):
            raise Refuse(f"unknown path {req.path}", self.error(404, "404", "Resource not found"))
        if self.api_key is not None:
            key = req.header("api-key")
            if key is None and v1 and auth and auth.startswith("Bearer "):
                key = auth[7:]
            if key != self.api_key:
                raise Refuse("missing or wrong api-key", self.error(401, "401", AZURE_401))
        if req.method != "POST":
            raise Refuse(f"{req.method} not allowed", self.error(405, "405", "Method Not Allowed"))
        version = (req.query.get("api-version") or [None])[0]
        if classic:
            if version is None:
                raise Refuse("api-version missing", self.error(404, "404", "Resource not found"))
            if version not in AZURE_API_VERSIONS:
                raise Refuse(f"api-version {version!r}", self.error(
                    400, "BadRequest", f"API version not supported: {version}"))
        elif version not in (None, "preview", "latest"):
            raise Refuse(f"api-version {version!r} on the v1 API", self.error(400, "BadRequest", "API version not supported"))
        ctype = (req.header("content-type") or "").split(";")[0].strip().lower()
        if ctype != "application/json":
            raise Refuse(f"content-type {ctype!r}", self.error(415, "UnsupportedMediaType", "Content-Type must be application/json"))
        chat = req.path.endswith("/chat/completions")
        try:
            body = json.loads(req.body)
            (check_chat_body if chat else check_completion_body)(body, req.notes)
        except json.JSONDecodeError:
            raise Refuse("body is not JSON", self.error(400, "BadRequest", "Invalid JSON body"))
        except BodyError as e:
            raise Refuse(str(e), self.error(400, "BadRequest", str(e), param=e.param, type="invalid_request_error"))
        deployment = parts[3] if classic else body.get("model")
        if deployment not in self.deployments:
            raise Refuse(f"deployment {deployment!r} not in {self.deployments}", self.error(
                404, "DeploymentNotFound", "The API deployment for this resource does not exist. If you created the "
                "deployment within the last 5 minutes, please wait a moment and try again."))
        ans = self._answer(req)
        if isinstance(ans, Reply):
            return ans
        return self.render(body, ans, chat)

    def render(self, body: dict[str, Any], ans: Answer, chat: bool) -> Reply:
        rid = "chatcmpl-" + uuid.uuid4().hex[:29]
        created = int(time.time())
        usage = self.usage(body, ans)
        headers = [("apim-request-id", str(uuid.uuid4())), ("x-ms-region", "East US"), ("x-request-id", str(uuid.uuid4())),
                   ("x-ratelimit-remaining-requests", "99"), ("x-ratelimit-remaining-tokens", "99000")]
        prompt_filter = [{"prompt_index": 0, "content_filter_results": _FILTERS_OK}]
        tools = ans.tool_calls or []
        finish = "tool_calls" if tools else ans.finish_reason
        if not body.get("stream"):
            if chat:
                message: dict[str, Any] = {"content": ans.text or None, "refusal": None, "role": "assistant"}
                if tools:
                    message["tool_calls"] = [{"id": i, "type": "function", "function": {"name": n, "arguments": json.dumps(inp)}}
                                             for i, n, inp in tools]
                choice = {"content_filter_results": _FILTERS_OK, "finish_reason": finish, "index": 0,
                          "logprobs": None, "message": message}
                obj = {"choices": [choice], "created": created, "id": rid, "model": self.underlying_model,
                       "object": "chat.completion", "prompt_filter_results": prompt_filter,
                       "system_fingerprint": "fp_azure", "usage": usage}
            else:
                obj = {"choices": [{"text": ans.text, "index": 0, "finish_reason": ans.finish_reason, "logprobs": None,
                                    "content_filter_results": _FILTERS_OK}],
                       "created": created, "id": "cmpl-" + uuid.uuid4().hex[:29], "model": self.underlying_model,
                       "object": "text_completion", "prompt_filter_results": prompt_filter, "usage": usage}
            return Reply.json(obj, headers=headers)
        chunks = [sse({"choices": [], "created": 0, "id": "", "model": "", "object": "", "prompt_filter_results": prompt_filter})]
        head = {"created": created, "id": rid, "model": self.underlying_model, "object": "chat.completion.chunk",
                "system_fingerprint": "fp_azure"}
        if chat:
            chunks.append(sse({**head, "choices": [{"content_filter_results": {}, "delta": {"content": "", "refusal": None, "role": "assistant"},
                                                    "finish_reason": None, "index": 0, "logprobs": None}]}))
        pieces = ans.split()
        if chat:
            for k, (tid, name, inp) in enumerate(tools):
                chunks.append(sse({**head, "choices": [{"content_filter_results": {}, "delta": {"tool_calls": [{"index": k, "id": tid,
                    "type": "function", "function": {"name": name, "arguments": json.dumps(inp)}}]}, "finish_reason": None, "index": 0, "logprobs": None}]}))
        for piece in pieces:
            if chat:
                choice = {"content_filter_results": _FILTERS_OK, "delta": {"content": piece}, "finish_reason": None, "index": 0, "logprobs": None}
            else:
                choice = {"text": piece, "index": 0, "finish_reason": None, "logprobs": None, "content_filter_results": _FILTERS_OK}
            chunks.append(sse({**head, "choices": [choice]}))
        fin = {"content_filter_results": {}, "delta": {}, "finish_reason": finish, "index": 0, "logprobs": None} if chat \
            else {"text": "", "index": 0, "finish_reason": finish, "logprobs": None}
        chunks.append(sse({**head, "choices": [fin]}))
        so = body.get("stream_options") or {}
        if so.get("include_usage"):
            chunks.append(sse({**head, "choices": [], "usage": usage}))
        chunks.append(b"data: [DONE]\n\n")
        abort = None if ans.abort_after is None else ans.abort_after + (2 if chat else 1)
        return Reply(200, [("content-type", "text/event-stream; charset=utf-8"), *headers], chunks=chunks,
                     delay_s=ans.delay_s, first_delay_s=ans.first_delay_s, abort_after=abort)
