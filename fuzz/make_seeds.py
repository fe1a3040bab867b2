#!/usr/bin/env python3
"""Writes the committed seed corpora (fuzz/corpus/<target>/seed-*): small, synthetic inputs that
take each parser down its main paths, so libFuzzer starts from valid shapes instead of noise.
Filter configurations come from the repository's own envoy/*.yaml. Rerun after changing it:
    python3 fuzz/make_seeds.py
"""
import base64
import json
import pathlib
import struct

import yaml  # the project venv has PyYAML (tests/e2e/requirements.txt)

FUZZ = pathlib.Path(__file__).resolve().parent
ROOT = FUZZ.parent


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def write(target: str, seeds: dict) -> None:
    folder = FUZZ / "corpus" / target
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("seed-*"):
        old.unlink()
    for name, data in seeds.items():
        if isinstance(data, str):
            data = data.encode()
        (folder / f"seed-{name}").write_bytes(data)


def pairs(items) -> bytes:
    """proxy-wasm's pair encoding of a map or list (what Envoy returns for a struct property)."""
    out = struct.pack("<I", len(items))
    for k, v in items:
        out += struct.pack("<II", len(k), len(v))
    for k, v in items:
        out += k + b"\0" + v + b"\0"
    return out


CLAIMS = {
    "iss": "https://gitlab.example.com", "sub": "instance-1", "aud": "gitlab-ai-gateway",
    "exp": 1795000000, "nbf": 1794990000, "iat": 1794990000, "jti": "3f2b",
    "gitlab_realm": "self-managed", "gitlab_instance_id": "instance-1",
    "scopes": ["complete_code", "generate_code", "duo_chat", "include_file_context"],
}


def token(header: dict, claims: dict, signature: bytes = b"\x01" * 256) -> str:
    return ".".join([b64url(json.dumps(header).encode()), b64url(json.dumps(claims).encode()), b64url(signature)])


def jwt_seeds():
    rs = {"alg": "RS256", "kid": "a", "typ": "JWT"}
    return {
        "rs256": token(rs, CLAIMS) + "\x00",
        "aud-list": token(rs, dict(CLAIMS, aud=["x", "gitlab-ai-gateway"])) + "\x01",
        "user-token": token({"alg": "RS256", "kid": "duo-auth-user-token"}, dict(CLAIMS, iss="gitlab-ai-gateway")) + "\x03",
        "alg-none": token({"alg": "none"}, CLAIMS, b"") + "\x02",
        "crit": token(dict(rs, crit=["b64"]), CLAIMS),
        "exp-float": token(rs, dict(CLAIMS, exp=1.7e300, nbf=-1)),
        "two-parts": "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0",
    }


def jwt_authn_seeds():
    num = lambda n: struct.pack("<d", n)
    payload = [
        (b"iss", b"https://gitlab.example.com"), (b"sub", b"instance-1"),
        (b"aud", pairs([(b"gitlab-ai-gateway", b"")])), (b"exp", num(1795000000)),
        (b"iat", num(1794990000)), (b"gitlab_realm", b"self-managed"),
        (b"gitlab_instance_id", b"instance-1"),
        (b"scopes", pairs([(b"complete_code", b"duo_chat"), (b"include_file_context", b"")])),
    ]
    return {
        "payload": pairs(payload),
        "empty-map": pairs([]),
        "number-le": num(1795000000),
        "number-int": struct.pack("<q", 1795000000),
        "number-text": "1795000000.5",
        "json-list": '["a","b"]',
        "failure": "Jwt is expired",
        "failure-jwks": "Jwks remote fetch is failed",
    }


def jwks_seeds():
    # A real-shaped RS256 key (2048-bit modulus, e=65537); the modulus bytes need not factor.
    n = b64url(bytes([0xC1]) + bytes(range(1, 256)))
    key = {"kty": "RSA", "kid": "a", "use": "sig", "alg": "RS256", "n": n, "e": "AQAB"}
    return {
        "jwks": json.dumps({"keys": [key, {"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"}]}),
        "jwks-enc": json.dumps({"keys": [dict(key, use="enc"), dict(key, alg="RS512")]}),
        "discovery": json.dumps({"issuer": "https://gitlab.example.com", "jwks_uri": "https://gitlab.example.com/oauth/discovery/keys"}),
        "discovery-path": json.dumps({"jwks_uri": "/oauth/discovery/keys#x"}),
        "shared": json.dumps({"sources": {"gitlab": {"keys": [{"kid": "a", "n": n, "e": "AQAB"}], "fetched_at": 1}}}),
    }


def request_auth_seeds():
    chat = {"prompt": "hi", "messages": [{"role": "user", "content": "x", "additional_context": [
        {"category": "file", "id": "a", "content": "c"}, {"category": "merge_request", "id": "b", "content": "d"}]}]}
    lines = lambda *ls: "\n".join(ls)
    return {
        "completions": lines("POST", "/v2/code/completions", "Bearer abc.def.ghi", "oidc", "", "{}"),
        "chat": lines("POST", "/v2/chat/agent", "bearer  x.y.z ", "oidc", "", json.dumps(chat)),
        "chat-scopes": lines("POST", "/v2/chat/agent", "Bearer t", "oidc", "", "include_file_context " + json.dumps(chat)),
        "prompt-id": lines("POST", "/v1/prompts/code_suggestions%2Fgenerations?x=1", "Bearer t", "oidc", "true", "{}"),
        "bad-escape": lines("POST", "/v1/prompts/model_configuration%2", "Basic dXNlcg==", "jwt", "TRUE", ""),
        "health": lines("HEAD", "/monitoring/healthz/", "", "", "", ""),
        "user-token": lines("POST", "/v1/code/user_access_token", "Bearer t", "oidc", "", ""),
        "legacy-chat": lines("POST", "/v1/chat/explain_vulnerability", "Bearer t", "oidc", "", ""),
    }


def filter_configs():
    """Every duo_* plugin configuration in envoy/*.yaml (valid and deliberately invalid)."""
    found = {}
    for path in sorted(ROOT.glob("envoy/**/*.yaml")):
        text = path.read_text()
        for doc in yaml.safe_load_all(text):
            stack = [doc]
            while stack:
                node = stack.pop()
                if isinstance(node, dict):
                    if node.get("root_id") in ("duo_auth", "duo_router", "duo_logger"):
                        value = (node.get("configuration") or {}).get("value")
                        if isinstance(value, str):
                            found.setdefault(node["root_id"], []).append((path.stem, value))
                    stack.extend(node.values())
                elif isinstance(node, list):
                    stack.extend(node)
    return found


def configs_seeds():
    selector = {"duo_auth": 0, "duo_router": 1, "duo_logger": 2}
    seeds, seen = {}, set()
    for root_id, values in filter_configs().items():
        for stem, value in values:
            data = bytes([selector[root_id]]) + value.encode()
            if data not in seen:
                seen.add(data)
                seeds[f"{root_id}-{stem}"] = data
    seeds["logger-empty"] = b"\x02{}"
    return seeds


def redact_seeds():
    return {
        "header": "authorization: Bearer eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln and more",
        "json": '{"model_api_key": "sk-abcdefghijklmnopqrstuvwxyz", "x": 1}',
        "escaped": '{\\"api_key\\": \\"k\\"}',
        "query": "/v1/x?private_token=glpat-abcdefghijklmnopqrst&a=b",
        "sigv4": "AWS4-HMAC-SHA256 Credential=AKIAABCDEFGHIJKLMNOP/20260101/us-east-1/bedrock/aws4_request, Signature=abc",
        "cut": '"password": "hunter2 never closes',
        "utf8": "héllo wörld token: ünïcode\x00suffix",
        "planted": "\x03prefix text\x00suffix text",
    }


def log_record_seeds():
    nums = struct.pack("<9q", 1795000000123456789, 1200000000, 1795000000200000000,
                       1795000000300000000, 1795000001323456789, 200, 1234, 5678, 0)
    headers = ["req-1", "POST", "/v2/code/completions?token=x", "gitlab-language-server/7.0",
               "instance-1", "user-1", "self-managed", "gitlab.example.com", "18.6.0", "7.0.0",
               "duo_pro", "1,2", "1795000000.1", "application/json", "true"]
    handoffs = [
        json.dumps({"result": "ok", "feature": "code_completions", "unit_primitive": "complete_code", "scopes": ["complete_code"]}),
        json.dumps({"feature": "code_completions", "provider": "self_hosted", "model_name": "codestral", "stream": False}),
        json.dumps({"input_tokens": 10, "output_tokens": 20, "upstream_status": 200}),
        json.dumps({"prompt": "def f(): api_key=sk-abcdefghijklmnopqrstu", "response": "return 1"}),
        json.dumps({"log_content": "when_enabled", "max_content_bytes": 16, "hash_user_ids": True}),
    ]
    return {
        "full": nums + "\n".join(headers + handoffs).encode(),
        "denied": nums[:48] + "\n".join(["", "GET", "/", "", "", "", "", "", "", "", "", "", "", "", "",
                                          json.dumps({"result": "denied", "error": "token_expired"})]).encode(),
        "short": b"\x01\x02",
    }


def router_config_json():
    """duo_router's configuration in envoy/self_hosted.yaml: the config the router targets load."""
    (stem, value), = [(st, v) for st, v in filter_configs()["duo_router"] if st == "self_hosted"][:1]
    (FUZZ / "router_self_hosted.json").write_text(json.dumps(json.loads(value), indent=1) + "\n")


COMPLETION = {"current_file": {"file_name": "a.py", "language_identifier": "python",
                               "content_above_cursor": "def add(a, b):\n", "content_below_cursor": "\nprint(add(1, 2))\n"},
              "model_provider": "litellm", "model_name": "codestral", "prompt_version": 2, "stream": False,
              "model_endpoint": "http://vllm.internal:8000/v1", "model_api_key": "sk-seed",
              "model_identifier": "custom_openai/Codestral-22B-v0.1"}
META = {"provider": "openai", "name": "gpt", "identifier": "azure/gpt-4o-deploy",
        "endpoint": "https://myres.openai.azure.com/", "api_key": "k"}


def router_request_seeds():
    chat = {"prompt": "What does this do?", "messages": [
        {"role": "user", "content": "What does this do?",
         "additional_context": [{"category": "file", "id": "a.py", "content": "x = 1", "metadata": {}}]}],
        "options": {"chat_history": [], "agent_scratchpad": {"agent_type": "react", "steps": []}},
        "model_metadata": dict(META, identifier="custom_openai/Codestral-22B-v0.1", name="codestral"),
        "unavailable_resources": ["Pipelines"]}
    generation = {"current_file": {"file_name": "main.go", "content_above_cursor": "package main\n", "content_below_cursor": ""},
                  "stream": True, "model_provider": "litellm", "prompt_version": 2, "prompt_id": "code_suggestions/generations",
                  "prompt": "reverse a string", "model_name": "claude_3",
                  "model_identifier": "bedrock/us.anthropic.claude-3-5-sonnet-20240620-v1:0"}
    legacy = {"prompt_components": [{"type": "prompt", "metadata": {"source": "GitLab EE", "version": "17.0"},
                                     "payload": {"prompt": "explain", "provider": "litellm", "model": "codestral",
                                                 "model_endpoint": "http://vllm.internal:8000/v1"}}], "stream": False}
    return {
        "completions": b"\x00" + json.dumps(COMPLETION).encode(),
        "completions-stream": b"\x01" + json.dumps(dict(COMPLETION, stream=True)).encode(),
        "generations": b"\x02" + json.dumps(generation).encode(),
        "commit-message": b"\x03" + json.dumps({"inputs": {"diff": "diff --git a/x b/x\n+y\n"}, "stream": False, "model_metadata": META}).encode(),
        "explain-code": b"\x04" + json.dumps({"inputs": {"input": "explain", "selected_text": "x", "file_content": "", "language_info": ""},
                                               "stream": True, "model_metadata": META}).encode(),
        "v2-prompt": b"\x06" + json.dumps({"inputs": {"name": "SQLi", "code": "q"}, "prompt_version": "^1.0.0", "model_metadata": META}).encode(),
        "legacy-chat": b"\x07" + json.dumps(legacy).encode(),
        "chat-agent": b"\x09" + json.dumps(chat).encode(),
        "not-an-object": b"\x00[1, 2]",
    }


def sse(*objs):
    return b"".join(b"data: " + json.dumps(o).encode() + b"\n\n" for o in objs) + b"data: [DONE]\n\n"


def router_stream_seeds():
    chat = sse({"id": "c", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"role": "assistant", "content": "Hel"}}]},
               {"id": "c", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": "lo"}, "finish_reason": "stop"}]},
               {"id": "c", "object": "chat.completion.chunk", "choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}})
    completions = sse({"id": "t", "object": "text_completion", "choices": [{"index": 0, "text": "return a + b", "finish_reason": None}]},
                      {"id": "t", "object": "text_completion", "choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}})
    seeds = {}
    for framing in range(4):
        sel = lambda wire: bytes([(framing * 5 + wire) % 256, 7])
        seeds[f"vllm-chat-{framing}"] = sel(0) + chat
        seeds[f"vllm-completions-{framing}"] = sel(1) + completions
        seeds[f"azure-chat-{framing}"] = sel(2) + chat.replace(b"\n\n", b"\r\n\r\n")
    # The committed synthetic Bedrock streams (duo-llm's test fixtures).
    fixtures = pathlib.Path(__file__).resolve().parent.parent / "filters/llm/tests/data/stream"
    for f in sorted(fixtures.glob("*.bin")):
        wire = 4 if "invoke" in f.name else 3
        seeds[f"bedrock-{f.stem}"] = bytes([wire, 3]) + f.read_bytes()
    seeds["truncated"] = b"\x00\x01" + chat[:40]
    return seeds


def react_seeds():
    return {
        "final-answer": "\x05Thought: I know it.\nFinal Answer: The function adds two numbers.  \n",
        "action": "\x09Thought: I need the issue.\nAction: issue_reader\nAction Input: #12\n",
        "direct": "\x03Action: DirectAnswer\nAction Input: hello",
        "think": "\x02<think>Final Answer: not yet</think>Thought: ok\nFinal Answer: yes",
        "unknown": "\x01just some text",
    }


def router_answer_seeds():
    chat = {"id": "c", "object": "chat.completion", "choices": [{"index": 0, "message": {"role": "assistant", "content": "```python\nx\n```"},
            "finish_reason": "stop"}], "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}}
    completion = {"id": "t", "object": "text_completion", "choices": [{"index": 0, "text": "return a + b", "finish_reason": "length"}],
                  "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}}
    converse = {"output": {"message": {"role": "assistant", "content": [{"text": "Hello"}]}}, "stopReason": "end_turn",
                "usage": {"inputTokens": 3, "outputTokens": 1, "totalTokens": 4}}
    anthropic = {"id": "m", "type": "message", "role": "assistant", "content": [{"type": "text", "text": "Hi"}],
                 "stop_reason": "end_turn", "usage": {"input_tokens": 3, "output_tokens": 1}}
    mistral = {"outputs": [{"text": "Hi", "stop_reason": "stop"}]}
    llama = {"generation": "Hi", "prompt_token_count": 3, "generation_token_count": 1, "stop_reason": "stop"}
    return {
        "openai-chat": b"\x00\x00" + json.dumps(chat).encode(),
        "openai-completions": b"\x01\x01" + json.dumps(completion).encode(),
        "converse": b"\x02\x00" + json.dumps(converse).encode(),
        "anthropic": b"\x03\x00" + json.dumps(anthropic).encode(),
        "mistral": b"\x04\x00" + json.dumps(mistral).encode(),
        "llama": b"\x05\x00" + json.dumps(llama).encode(),
        "openai-error": b"\x00\x05" + json.dumps({"error": {"message": "Rate limit", "type": "rate_limit", "code": 429}}).encode(),
        "bedrock-error": b"\x02\x02" + json.dumps({"message": "The security token included in the request is invalid."}).encode(),
        "prompt-v2": b"\x0c\x80" + json.dumps(chat).encode(),
    }


def main():
    write("jwt", jwt_seeds())
    write("jwt_authn", jwt_authn_seeds())
    write("jwks", jwks_seeds())
    write("request_auth", request_auth_seeds())
    write("configs", configs_seeds())
    write("redact", redact_seeds())
    write("log_record", log_record_seeds())
    router_config_json()
    write("router_request", router_request_seeds())
    write("router_stream", router_stream_seeds())
    write("react", react_seeds())
    write("router_answer", router_answer_seeds())


if __name__ == "__main__":
    main()
