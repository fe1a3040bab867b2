#!/usr/bin/env python3
"""Checks every golden Bedrock request against botocore's published bedrock-runtime model.

For each case of requests.expected.json whose path starts with /model/:
- Converse / ConverseStream: the JSON body plus the model id must pass botocore's
  ParamValidator for the operation's input shape, and botocore's own rest-json serializer,
  fed the same parameters, must produce exactly our path (SigV4 signs it) and the same body;
- InvokeModel(/WithResponseStream): the path must equal botocore's, and the model-native body
  must carry the fields AWS documents for Anthropic Messages, Mistral and Llama (types and
  required members; no `model`/`stream` fields, which Bedrock rejects).
Run: .venv/bin/python filters/router/tests/golden/check_bedrock.py  (exit 1 on any failure)
"""
import json, os, sys, urllib.parse

import botocore.session
from botocore.serialize import create_serializer
from botocore.validate import ParamValidator

HERE = os.path.dirname(os.path.abspath(__file__))
session = botocore.session.get_session()
model = session.get_service_model("bedrock-runtime")
serializer = create_serializer("rest-json", include_validation=False)
validator = ParamValidator()

def fail(name, msg):
    failures.append(f"{name}: {msg}")

def check_invoke_body(name, wire, body):
    def need(key, types):
        if key not in body:
            fail(name, f"missing `{key}`")
        elif not isinstance(body[key], types):
            fail(name, f"`{key}` has type {type(body[key]).__name__}")
    for bad in ("model", "stream", "modelId"):
        if bad in body:
            fail(name, f"body must not carry `{bad}`")
    if wire == "BedrockAnthropic":
        allowed = {"anthropic_version", "anthropic_beta", "max_tokens", "system", "messages", "temperature", "top_p", "top_k", "stop_sequences", "tools", "tool_choice", "metadata", "thinking"}
        need("anthropic_version", str); need("max_tokens", int); need("messages", list)
        if body.get("anthropic_version") != "bedrock-2023-05-31":
            fail(name, "anthropic_version must be bedrock-2023-05-31")
        msgs = body.get("messages", [])
        if not msgs or msgs[0].get("role") != "user":
            fail(name, "first message must be from the user")
        for a, b in zip(msgs, msgs[1:]):
            if a["role"] == b["role"]:
                fail(name, "roles must alternate")
        for mm in msgs:
            for block in mm.get("content", []):
                if block.get("type") != "text" or not block.get("text", "").strip():
                    fail(name, "content blocks must be non-empty text blocks")
    elif wire == "BedrockMistral":
        allowed = {"prompt", "max_tokens", "stop", "temperature", "top_p", "top_k"}
        need("prompt", str); need("max_tokens", int)
        if "stop" in body and not all(isinstance(s, str) and s for s in body["stop"]):
            fail(name, "stop must be non-empty strings")
        if not body.get("prompt", "").startswith("<s>[INST]"):
            fail(name, "Mistral prompt must start with <s>[INST]")
    elif wire == "BedrockLlama":
        allowed = {"prompt", "max_gen_len", "temperature", "top_p", "images"}
        need("prompt", str); need("max_gen_len", int)
        if not body.get("prompt", "").startswith("<|begin_of_text|>"):
            fail(name, "Llama 3 prompt must start with <|begin_of_text|>")
    else:
        fail(name, f"unexpected wire {wire}"); return
    extra = set(body) - allowed
    if extra:
        fail(name, f"fields not documented for {wire}: {sorted(extra)}")
    for k in ("temperature", "top_p"):
        if k in body and not (0 <= body[k] <= 1):
            fail(name, f"{k} out of 0..1")

failures = []
cases = json.load(open(os.path.join(HERE, "requests.expected.json")))
checked = 0
for name, out in sorted(cases.items()):
    path = out.get("path", "")
    if not path.startswith("/model/"):
        continue
    checked += 1
    _, _, enc_id, op = path.split("/")
    model_id = urllib.parse.unquote(enc_id)
    op_name = {"converse": "Converse", "converse-stream": "ConverseStream", "invoke": "InvokeModel",
               "invoke-with-response-stream": "InvokeModelWithResponseStream"}[op]
    op_model = model.operation_model(op_name)
    body = out["body"]
    if op_name.startswith("Converse"):
        params = dict(body, modelId=model_id)
    else:
        params = {"modelId": model_id, "body": json.dumps(body).encode(), "contentType": "application/json",
                  "accept": "application/json"}
        check_invoke_body(name, out["answer"]["wire"], body)
    report = validator.validate(params, op_model.input_shape)
    if report.has_errors():
        fail(name, report.generate_report())
        continue
    req = serializer.serialize_to_request(params, op_model)
    if req["url_path"] != path:
        fail(name, f"path {path} != botocore {req['url_path']}")
    if op_name.startswith("Converse"):
        if json.loads(req["body"]) != body:
            fail(name, "botocore serializes a different body")
        msgs = body["messages"]
        if msgs[0]["role"] != "user" or any(a["role"] == b["role"] for a, b in zip(msgs, msgs[1:])):
            fail(name, "Converse messages must start with user and alternate")
    want_accept = "application/vnd.amazon.eventstream" if out["stream"] else "application/json"
    if out["headers"].get("accept") != want_accept:
        fail(name, f"accept {out['headers'].get('accept')} != {want_accept}")
    if "authorization" in out["headers"]:
        fail(name, "Bedrock requests are signed by Envoy: no authorization header may be set")

print(f"{checked} Bedrock golden requests checked against botocore {botocore.__version__} bedrock-runtime")
for f in failures:
    print("FAIL", f)
print(f"{checked - len({f.split(':')[0] for f in failures})} passed, {len({f.split(':')[0] for f in failures})} failed")
sys.exit(1 if failures else 0)
