"""Fake AWS Bedrock Runtime. Checks like the real service:

- SigV4: recomputes the signature of the received request with botocore's own signer
  (`botocore.auth.SigV4Auth`: canonical request, string to sign, signing key) from the known
  test credentials and the headers the request says it signed, and compares; checks the scope
  (date, region, service `bedrock`), the clock skew (5 min) and `x-amz-content-sha256`.
- Bodies: maps the REST request back to operation parameters (path label, headers, JSON body or
  blob payload) and validates them with `botocore.validate.validate_parameters` against the
  operation's input shape from botocore's bedrock-runtime service model; plus the rules the
  model does not encode (Converse role alternation, empty text, Anthropic `anthropic_version`).
- The model id must be one the admin configured for this cluster.

Answers in Bedrock's formats: Converse JSON, ConverseStream and InvokeModelWithResponseStream
as `application/vnd.amazon.eventstream`, InvokeModel as the Anthropic Messages JSON, errors as
`{"message"}` with `x-amzn-ErrorType`.
"""

from __future__ import annotations

import base64
import calendar
import hashlib
import hmac
import json
import re
import secrets
import time
import uuid
from typing import Any
from urllib.parse import unquote

import botocore.loaders
import botocore.model
import botocore.validate
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest, HTTPHeaders
from botocore.credentials import Credentials

from .. import eventstream
from .base import Answer, FakeServer, Refuse, Reply, Request, count_tokens

# The static test credentials the e2e gives Envoy (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY).
TEST_ACCESS_KEY_ID = "AKIAE2ETESTDUOGATEWAY"
TEST_SECRET_ACCESS_KEY = "e2e/duo-gateway/not-a-real-secret/0123456789"

_SERVICE_MODEL: botocore.model.ServiceModel | None = None


def service_model() -> botocore.model.ServiceModel:
    global _SERVICE_MODEL
    if _SERVICE_MODEL is None:
        data = botocore.loaders.Loader().load_service_model("bedrock-runtime", "service-2")
        _SERVICE_MODEL = botocore.model.ServiceModel(data, "bedrock-runtime")
    return _SERVICE_MODEL


def _pad() -> str:
    return "abcdefghijklmnopqrstuvwxyz"[: secrets.randbelow(20) + 1]


def _from_json(value: Any, shape: botocore.model.Shape) -> Any:
    """JSON wire value -> botocore parameter value (base64 blobs to bytes), recursively."""
    t = shape.type_name
    if t == "structure" and isinstance(value, dict) and not shape.metadata.get("document"):
        members = shape.members
        out = {}
        for k, v in value.items():
            out[k] = _from_json(v, members[k]) if k in members else v
        return out
    if t == "list" and isinstance(value, list):
        return [_from_json(v, shape.member) for v in value]
    if t == "map" and isinstance(value, dict):
        return {k: _from_json(v, shape.value) for k, v in value.items()}
    if t == "blob" and isinstance(value, str):
        return base64.b64decode(value)
    return value


class _Verifier(SigV4Auth):
    """botocore's SigV4 signer, told which headers the request says it signed."""

    def __init__(self, credentials: Credentials, service: str, region: str, signed: list[str]):
        super().__init__(credentials, service, region)
        self._signed = signed

    def headers_to_sign(self, request: AWSRequest) -> HTTPHeaders:
        out = HTTPHeaders()
        for name in self._signed:
            for value in request.headers.get_all(name) or []:
                out[name] = value
        return out


class FakeBedrock(FakeServer):
    kind = "bedrock"

    def __init__(self, name: str, region: str = "us-east-1", models: list[str] | None = None,
                 access_key_id: str = TEST_ACCESS_KEY_ID, secret_access_key: str = TEST_SECRET_ACCESS_KEY):
        super().__init__(name)
        self.region = region
        self.models = list(models or [])
        self.credentials = Credentials(access_key_id, secret_access_key)
        self.default_answer = Answer(text=f"Hello from {name}.")
        sm = service_model()
        self._ops: list[tuple[re.Pattern[str], botocore.model.OperationModel]] = []
        for op_name in ("Converse", "ConverseStream", "InvokeModel", "InvokeModelWithResponseStream", "CountTokens"):
            op = sm.operation_model(op_name)
            pattern = "^" + re.escape(op.http["requestUri"]).replace(re.escape("{modelId}"), "(?P<modelId>[^/]+)") + "$"
            self._ops.append((re.compile(pattern), op))

    # ---- errors ----------------------------------------------------------------------------
    @staticmethod
    def error(status: int, code: str, message: str, coral: str = "com.amazon.bedrock") -> Reply:
        return Reply.json({"message": message}, status, [
            ("x-amzn-RequestId", str(uuid.uuid4())),
            ("x-amzn-ErrorType", f"{code}:http://internal.amazon.com/coral/{coral}/"),
        ])

    def _sig_error(self, reason: str, code: str = "InvalidSignatureException", message: str | None = None) -> Refuse:
        return Refuse(reason, self.error(403, code, message or (
            "The request signature we calculated does not match the signature you provided. Check your AWS Secret "
            "Access Key and signing method. Consult the service documentation for details."), "com.amazon.coral.service"))

    # ---- checks ----------------------------------------------------------------------------
    def verify_signature(self, req: Request) -> None:
        auth = req.header("authorization")
        if not auth:
            raise self._sig_error("no Authorization", "MissingAuthenticationTokenException", "Missing Authentication Token")
        m = re.fullmatch(r"AWS4-HMAC-SHA256 Credential=([^/]+)/(\d{8})/([^/]+)/([^/]+)/aws4_request, "
                         r"SignedHeaders=([a-z0-9;._-]+), Signature=([0-9a-f]{64})", auth)
        if not m:
            raise self._sig_error("malformed Authorization", "IncompleteSignatureException",
                                  "Authorization header requires 'Credential', 'Signature' and 'SignedHeaders' parameters.")
        akid, date, region, service, signed_headers, signature = m.groups()
        if akid != self.credentials.access_key:
            raise self._sig_error("unknown access key", "UnrecognizedClientException",
                                  "The security token included in the request is invalid.")
        amz_date = req.header("x-amz-date") or ""
        if not re.fullmatch(r"\d{8}T\d{6}Z", amz_date):
            raise self._sig_error("no x-amz-date", "IncompleteSignatureException", "Missing X-Amz-Date")
        if date != amz_date[:8] or region != self.region or service != "bedrock":
            raise self._sig_error(f"credential scope {date}/{region}/{service}",
                                  message=f"Credential should be scoped to a valid region and service 'bedrock'.")
        signed = signed_headers.split(";")
        if "host" not in signed or "x-amz-date" not in signed:
            raise self._sig_error(f"SignedHeaders {signed_headers} lacks host or x-amz-date")
        if any(h not in req.headers for h in signed):
            raise self._sig_error(f"a signed header is missing from the request ({signed_headers})")
        signed_at = calendar.timegm(time.strptime(amz_date, "%Y%m%dT%H%M%SZ"))
        if abs(time.time() - signed_at) > 300:
            raise self._sig_error("x-amz-date is more than 5 minutes off", "InvalidSignatureException",
                                  "Signature expired: the request time is too far from the current time.")
        content_sha = req.header("x-amz-content-sha256")
        if content_sha is not None and content_sha != hashlib.sha256(req.body).hexdigest():
            raise self._sig_error("x-amz-content-sha256 does not match the body", "InvalidSignatureException",
                                  "The provided 'x-amz-content-sha256' header does not match what was computed.")
        received = HTTPHeaders()
        for k, v in req.header_list:
            received[k] = v  # appends: repeated headers stay repeated
        aws_req = AWSRequest(method=req.method, url=f"https://{req.header('host')}{req.target}",
                             headers=received, data=req.body)
        aws_req.context["timestamp"] = amz_date
        verifier = _Verifier(self.credentials, "bedrock", self.region, signed)
        canonical = verifier.canonical_request(aws_req)
        expected = verifier.signature(verifier.string_to_sign(aws_req, canonical), aws_req)
        if not hmac.compare_digest(expected, signature):
            raise self._sig_error("signature mismatch")

    def _params(self, req: Request, op: botocore.model.OperationModel, model_id: str) -> dict[str, Any]:
        shape = op.input_shape
        payload_member = shape.serialization.get("payload")
        params: dict[str, Any] = {}
        for name, member in shape.members.items():
            loc = member.serialization.get("location")
            if loc == "uri":
                params[name] = model_id
            elif loc == "header":
                v = req.header(member.serialization.get("name", name))
                if v is not None:
                    params[name] = v
        if payload_member:
            params[payload_member] = req.body
            return params
        try:
            body = json.loads(req.body or b"{}")
        except json.JSONDecodeError:
            raise Refuse("body is not JSON", self.error(400, "SerializationException", "Unexpected character in the request body"))
        if not isinstance(body, dict):
            raise Refuse("body is not an object", self.error(400, "SerializationException", "Start of structure or map found where not expected."))
        params.update(_from_json(body, shape))
        return params

    def handle(self, req: Request) -> Reply:
        self.verify_signature(req)
        for pattern, op in self._ops:
            m = pattern.match(req.path)
            if m:
                break
        else:
            raise Refuse(f"unknown path {req.path}", self.error(404, "UnknownOperationException", "Unknown operation"))
        if req.method != op.http["method"]:
            raise Refuse(f"{req.method} {req.path}", self.error(404, "UnknownOperationException", "Unknown operation"))
        raw_label = m.group("modelId")
        model_id = unquote(raw_label)
        if "%" in model_id:
            raise Refuse(f"model id double-encoded on the wire ({raw_label})",
                         self.error(400, "ValidationException", "The provided model identifier is invalid."))
        params = self._params(req, op, model_id)
        try:
            botocore.validate.validate_parameters(params, op.input_shape)
        except botocore.validate.ParamValidationError as e:
            raise Refuse(f"{op.name}: {e}", self.error(400, "ValidationException", str(e).replace("\n", " ")))
        if model_id not in self.models:
            raise Refuse(f"model {model_id!r} not in {self.models}", self.error(
                400, "ValidationException", "The provided model identifier is invalid."))
        if op.name in ("Converse", "ConverseStream"):
            self._check_converse(params)
            if req.header("content-type", ) is None or not req.header("content-type").startswith("application/json"):
                raise Refuse("content-type is not application/json", self.error(400, "SerializationException", "Unsupported Content-Type"))
        elif op.name in ("InvokeModel", "InvokeModelWithResponseStream"):
            self._check_invoke(model_id, req.body)
        scripted = self.next_scripted(req)
        ans = scripted if scripted is not None else self.default_answer
        if isinstance(ans, Reply):
            return ans
        return self.render(op.name, params, model_id, ans)

    def _check_converse(self, params: dict[str, Any]) -> None:
        msgs = params["messages"]
        if not msgs or msgs[0]["role"] != "user":
            raise Refuse("first message is not from the user", self.error(
                400, "ValidationException", "A conversation must start with a user message. Try again with a conversation that starts with a user message."))
        for a, b in zip(msgs, msgs[1:]):
            if a["role"] == b["role"]:
                raise Refuse("roles do not alternate", self.error(400, "ValidationException",
                    "A conversation must alternate between user and assistant roles. Make sure the conversation "
                    "alternates between user and assistant roles and try again."))
        # Bedrock's tool rules: a toolConfig whenever tool blocks appear; every toolResult answers
        # a toolUse of the assistant turn right before it.
        has_tools = any("toolUse" in b or "toolResult" in b for m in msgs for b in m["content"])
        if has_tools and not params.get("toolConfig"):
            raise Refuse("tool blocks without toolConfig", self.error(400, "ValidationException",
                "The toolConfig field must be defined when using toolUse and toolResult content blocks."))
        for a, b in zip(msgs, msgs[1:]):
            asked = {blk["toolUse"]["toolUseId"] for blk in a["content"] if "toolUse" in blk}
            answered = {blk["toolResult"]["toolUseId"] for blk in b["content"] if "toolResult" in blk}
            if answered - asked:
                raise Refuse(f"toolResult for {sorted(answered - asked)} without a matching toolUse", self.error(400, "ValidationException",
                    "The number of toolResult blocks at messages.1.content exceeds the number of toolUse blocks of previous turn."))
        for m in msgs:
            if m["role"] not in ("user", "assistant"):
                raise Refuse(f"role {m['role']!r} in messages", self.error(400, "ValidationException", "Invalid role"))
            for block in m["content"]:
                if "text" in block and not block["text"].strip():
                    raise Refuse("empty text block", self.error(400, "ValidationException",
                        "The text field in the ContentBlock object is blank. Add text to the text field, and try again."))

    def _check_invoke(self, model_id: str, body: bytes) -> None:
        try:
            doc = json.loads(body)
        except json.JSONDecodeError:
            raise Refuse("invoke body is not JSON", self.error(400, "ValidationException", "Malformed input request, please reformat your input and try again."))
        if "anthropic." not in model_id:
            return
        problems = []
        if doc.get("anthropic_version") != "bedrock-2023-05-31":
            problems.append("anthropic_version: must be bedrock-2023-05-31")
        if not isinstance(doc.get("max_tokens"), int) or doc["max_tokens"] < 1:
            problems.append("max_tokens: Value must be greater than or equal to 1")
        if not isinstance(doc.get("messages"), list) or not doc["messages"]:
            problems.append("messages: field required")
        for k in ("model", "stream"):
            if k in doc:
                problems.append(f"{k}: Extra inputs are not permitted")
        if problems:
            raise Refuse("; ".join(problems), self.error(400, "ValidationException", "; ".join(problems)))

    # ---- answers ---------------------------------------------------------------------------
    def render(self, op: str, params: dict[str, Any], model_id: str, ans: Answer) -> Reply:
        if op == "CountTokens":
            return Reply.json({"inputTokens": ans.input_tokens or 10})
        text_in = json.dumps(params.get("messages", [])) if op.startswith("Converse") else params.get("body", b"").decode("utf-8", "replace")
        n_in = ans.input_tokens if ans.input_tokens is not None else count_tokens(text_in)
        n_out = ans.output_tokens if ans.output_tokens is not None else count_tokens(ans.text)
        rid = str(uuid.uuid4())
        stop = {"stop": "end_turn", "length": "max_tokens"}.get(ans.finish_reason, ans.finish_reason)
        tools = ans.tool_calls or []
        if tools:
            stop = "tool_use"
        usage = {"inputTokens": n_in, "outputTokens": n_out, "totalTokens": n_in + n_out}
        if op == "Converse":
            content = ([{"text": ans.text}] if ans.text else []) + [
                {"toolUse": {"toolUseId": i, "name": n, "input": inp}} for i, n, inp in tools]
            return Reply.json({"output": {"message": {"role": "assistant", "content": content}},
                               "stopReason": stop, "usage": usage, "metrics": {"latencyMs": 42}},
                              headers=[("x-amzn-RequestId", rid)])
        headers = [("content-type", "application/vnd.amazon.eventstream"), ("x-amzn-RequestId", rid)]
        pieces = ans.split()
        if op == "ConverseStream":
            frames = [eventstream.event("messageStart", {"role": "assistant", "p": _pad()})]
            frames += [eventstream.event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": p}, "p": _pad()}) for p in pieces]
            frames += [eventstream.event("contentBlockStop", {"contentBlockIndex": 0, "p": _pad()})]
            for k, (tid, name, inp) in enumerate(tools, start=1):
                args = json.dumps(inp)
                half = len(args) // 2
                frames += [eventstream.event("contentBlockStart", {"contentBlockIndex": k, "start": {"toolUse": {"toolUseId": tid, "name": name}}, "p": _pad()}),
                           eventstream.event("contentBlockDelta", {"contentBlockIndex": k, "delta": {"toolUse": {"input": args[:half]}}, "p": _pad()}),
                           eventstream.event("contentBlockDelta", {"contentBlockIndex": k, "delta": {"toolUse": {"input": args[half:]}}, "p": _pad()}),
                           eventstream.event("contentBlockStop", {"contentBlockIndex": k, "p": _pad()})]
            frames += [eventstream.event("messageStop", {"stopReason": stop, "p": _pad()}),
                       eventstream.event("metadata", {"usage": usage, "metrics": {"latencyMs": 42}, "p": _pad()})]
            abort = None if ans.abort_after is None else ans.abort_after + 1
            return Reply(200, headers, chunks=frames, delay_s=ans.delay_s, first_delay_s=ans.first_delay_s, abort_after=abort)
        msg_id = "msg_bdrk_" + uuid.uuid4().hex[:24]
        if op == "InvokeModel":
            body = {"id": msg_id, "type": "message", "role": "assistant", "model": model_id.split(".", 1)[-1].rsplit("-v", 1)[0],
                    "content": [{"type": "text", "text": ans.text}], "stop_reason": stop, "stop_sequence": None,
                    "usage": {"input_tokens": n_in, "output_tokens": n_out, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}}
            return Reply.json(body, headers=[("x-amzn-RequestId", rid), ("x-amzn-bedrock-input-token-count", str(n_in)),
                                             ("x-amzn-bedrock-output-token-count", str(n_out)), ("x-amzn-bedrock-invocation-latency", "42")])
        # InvokeModelWithResponseStream (Anthropic events inside `chunk` events).
        def chunk(obj: dict[str, Any]) -> bytes:
            return eventstream.event("chunk", {"bytes": base64.b64encode(json.dumps(obj).encode()).decode(), "p": _pad()})
        frames = [chunk({"type": "message_start", "message": {"id": msg_id, "type": "message", "role": "assistant",
                         "model": model_id, "content": [], "stop_reason": None, "stop_sequence": None,
                         "usage": {"input_tokens": n_in, "output_tokens": 1}}}),
                  chunk({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}})]
        frames += [chunk({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": p}}) for p in pieces]
        frames += [chunk({"type": "content_block_stop", "index": 0}),
                   chunk({"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": None}, "usage": {"output_tokens": n_out}}),
                   chunk({"type": "message_stop", "amazon-bedrock-invocationMetrics": {
                       "inputTokenCount": n_in, "outputTokenCount": n_out, "invocationLatency": 42, "firstByteLatency": 21}})]
        abort = None if ans.abort_after is None else ans.abort_after + 2
        headers.append(("x-amzn-bedrock-content-type", "application/json"))
        return Reply(200, headers, chunks=frames, delay_s=ans.delay_s, first_delay_s=ans.first_delay_s, abort_after=abort)
