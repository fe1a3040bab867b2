"""Smoke tests of the fakes themselves: each accepts a well-formed request in its real format
and refuses malformed ones as the real service does; the Bedrock fake checks SigV4 against
Envoy's own signer and refuses a bad signature; our event-stream frames decode with botocore."""

from __future__ import annotations

import http.client
import json
import socket
import time

import jwt
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from duo_e2e import Answer, FakeAzure, FakeBedrock, FakeGitLab, FakeVllm, Skip, bootstrap, request
from duo_e2e import eventstream
from duo_e2e.envoy import Envoy
from duo_e2e.fakes.bedrock import TEST_ACCESS_KEY_ID, TEST_SECRET_ACCESS_KEY
from duo_e2e.stack import shipped

CHAT = {"model": "m1", "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi there"}]}


def _post(fake, path, body, headers=None):
    h = {"Content-Type": "application/json", **(headers or {})}
    return request(fake.port, "POST", path, headers=h, body=json.dumps(body) if not isinstance(body, (bytes, str)) else body)


def test_vllm_fake_answers_and_refuses(e2e):
    fake = FakeVllm("vllm", served_models=["m1"], api_key="k1").start()
    try:
        r = _post(fake, "/v1/chat/completions", CHAT, {"Authorization": "Bearer k1"})
        assert r.status == 200, r
        doc = r.json()
        assert doc["object"] == "chat.completion" and doc["model"] == "m1"
        assert doc["choices"][0]["message"]["content"] == "Hello from vllm."
        assert doc["usage"]["prompt_tokens"] == 4 and doc["usage"]["completion_tokens"] == 3
        fake.enqueue(Answer(text="a b c"))
        r = _post(fake, "/v1/chat/completions", {**CHAT, "stream": True, "stream_options": {"include_usage": True}},
                  {"Authorization": "Bearer k1"})
        assert r.status == 200 and r.header("content-type").startswith("text/event-stream"), r
        events = [e for e in r.text.split("\n\n") if e]
        assert events[-1] == "data: [DONE]", events
        deltas = [json.loads(e[6:]) for e in events[:-1]]
        assert "".join(d["choices"][0]["delta"].get("content", "") for d in deltas if d["choices"]) == "a b c"
        assert deltas[-1]["choices"] == [] and deltas[-1]["usage"]["completion_tokens"] == 3
        r = _post(fake, "/v1/completions", {"model": "m1", "prompt": "def f(", "max_tokens": 8}, {"Authorization": "Bearer k1"})
        assert r.status == 200 and r.json()["object"] == "text_completion", r
        assert not fake.refusals
        bad = [
            ("/v1/chat/completions", {**CHAT, "model": "other"}, {"Authorization": "Bearer k1"}, 404),
            ("/v1/chat/completions", {"model": "m1"}, {"Authorization": "Bearer k1"}, 400),
            ("/v1/chat/completions", {**CHAT, "messages": [{"role": "wizard", "content": "x"}]}, {"Authorization": "Bearer k1"}, 400),
            ("/v1/chat/completions", {**CHAT, "temperature": "hot"}, {"Authorization": "Bearer k1"}, 400),
            ("/v1/chat/completions", {**CHAT, "stream_options": {"include_usage": True}}, {"Authorization": "Bearer k1"}, 400),
            ("/v1/completions", {"model": "m1", "prompt": "x", "suffix": "y"}, {"Authorization": "Bearer k1"}, 400),
            ("/v1/chat/completions", CHAT, {"Authorization": "Bearer wrong"}, 401),
            ("/v1/chat/completions", CHAT, {}, 401),
            ("/chat/completions", CHAT, {"Authorization": "Bearer k1"}, 404),
            ("/v1/chat/completions", "{not json", {"Authorization": "Bearer k1"}, 400),
        ]
        for path, body, headers, status in bad:
            r = _post(fake, path, body, headers)
            assert r.status == status, (path, body, r)
        assert len(fake.take_refusals()) == len(bad)
        # GitLab's JWT must never reach a model platform, even a keyless one.
        open_fake = FakeVllm("vllm-open", served_models=["m1"]).start()
        try:
            token = FakeGitLab().mint()
            r = _post(open_fake, "/v1/chat/completions", CHAT, {"Authorization": f"Bearer {token}"})
            assert r.status == 401 and open_fake.take_refusals()[0].refused.startswith("GitLab's JWT"), r
            r = _post(open_fake, "/v1/chat/completions", CHAT)
            assert r.status == 200, r
        finally:
            open_fake.stop()
    finally:
        fake.stop()


def test_fake_stopped_with_its_connections_closed_refuses(e2e):
    """The refused-connection fault (tests/soak/faults.py): `stop()` alone closes only the
    listening socket, so a client's keep-alive connection goes on being served; with
    `drop_connections()` that connection is closed too and a new one is refused."""
    fake = FakeVllm("vllm", served_models=["m1"], api_key="k1").start()
    port = fake.port
    body = json.dumps(CHAT)
    h = {"Content-Type": "application/json", "Authorization": "Bearer k1"}
    kept = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        kept.request("POST", "/v1/chat/completions", body=body, headers=h)
        assert kept.getresponse().read() and not fake.refusals
        fake.stop()
        kept.request("POST", "/v1/chat/completions", body=body, headers=h)  # still served
        assert kept.getresponse().status == 200
        assert fake.drop_connections() == 1
        try:
            kept.request("POST", "/v1/chat/completions", body=body, headers=h)
            status = kept.getresponse().status
        except (ConnectionError, http.client.HTTPException, OSError):
            status = None
        assert status is None, f"the kept connection was served after drop_connections(): {status}"
        try:
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
            refused = False
        except ConnectionRefusedError:
            refused = True
        assert refused, "a new connection to the stopped fake was accepted"
    finally:
        kept.close()
        fake.stop()


def test_azure_fake_answers_and_refuses(e2e):
    fake = FakeAzure("azure", deployments=["gpt-4o-deploy"], api_key="ak").start()
    try:
        ok = "/openai/deployments/gpt-4o-deploy/chat/completions?api-version=2024-10-21"
        r = _post(fake, ok, {"messages": CHAT["messages"]}, {"api-key": "ak"})
        assert r.status == 200, r
        doc = r.json()
        assert doc["object"] == "chat.completion" and "prompt_filter_results" in doc
        r = _post(fake, "/openai/v1/chat/completions", {**CHAT, "model": "gpt-4o-deploy", "stream": True}, {"api-key": "ak"})
        events = [e for e in r.text.split("\n\n") if e]
        first = json.loads(events[0][6:])
        assert first["choices"] == [] and first["prompt_filter_results"], first  # Azure's empty first chunk
        assert events[-1] == "data: [DONE]"
        bad = [
            ("/openai/deployments/gpt-4o-deploy/chat/completions", {"messages": CHAT["messages"]}, {"api-key": "ak"}, 404),
            ("/openai/deployments/gpt-4o-deploy/chat/completions?api-version=1999-01-01", {"messages": CHAT["messages"]}, {"api-key": "ak"}, 400),
            ("/openai/deployments/other/chat/completions?api-version=2024-10-21", {"messages": CHAT["messages"]}, {"api-key": "ak"}, 404),
            (ok, {"messages": CHAT["messages"]}, {"api-key": "nope"}, 401),
            (ok, {"messages": CHAT["messages"]}, {"Authorization": "Bearer ak"}, 401),
            (ok, {"messages": []}, {"api-key": "ak"}, 400),
            ("/openai/v1/chat/completions", {**CHAT, "model": "nope"}, {"api-key": "ak"}, 404),
        ]
        for path, body, headers, status in bad:
            r = _post(fake, path, body, headers)
            assert r.status == status, (path, r)
        assert len(fake.take_refusals()) == len(bad)
    finally:
        fake.stop()


def test_gitlab_fake_tokens(e2e):
    gl = FakeGitLab().start()
    try:
        host = {"Host": "gitlab.example.com"}
        disc = request(gl.port, "GET", "/.well-known/openid-configuration", headers=host).json()
        assert disc["jwks_uri"] == "https://gitlab.example.com/oauth/discovery/keys" and disc["issuer"] == gl.issuer
        jwks = request(gl.port, "GET", "/oauth/discovery/keys", headers=host).json()
        assert [k["kid"] for k in jwks["keys"]] == [gl.current.kid]
        assert request(gl.port, "GET", "/oauth/discovery/keys", headers={"Host": "evil.example"}).status == 404
        gl.take_refusals()
        key = jwt.PyJWK(jwks["keys"][0]).key
        token = gl.mint()
        header = jwt.get_unverified_header(token)
        assert header == {"alg": "RS256", "typ": "JWT", "kid": gl.current.kid}
        claims = jwt.decode(token, key, algorithms=["RS256"], audience="gitlab-ai-gateway")
        assert claims["sub"] == gl.instance_id and claims["nbf"] == claims["iat"] - 5 and claims["exp"] == claims["iat"] + 3600
        assert claims["gitlab_realm"] == "self-managed" and "complete_code" in claims["scopes"]
        rejected = {
            "expired": gl.mint_expired(), "not yet valid": gl.mint_not_yet_valid(), "wrong aud": gl.mint_wrong_audience(),
            "unknown kid": gl.mint_unknown_kid(), "alg none": gl.mint_alg_none(),
            "hs256 with public key": gl.mint_hs256_with_public_key(), "tampered": gl.mint_bad_signature(),
        }
        for what, bad in rejected.items():
            try:
                jwt.decode(bad, key, algorithms=["RS256"], audience="gitlab-ai-gateway")
            except jwt.PyJWTError:
                continue
            raise AssertionError(f"PyJWT accepted the {what} token")
        old = gl.current
        new = gl.rotate()
        assert [k["kid"] for k in gl.jwks()["keys"]] == [old.kid, new.kid]
        assert jwt.get_unverified_header(gl.mint())["kid"] == new.kid
        gl.retire(old)
        assert [k["kid"] for k in gl.jwks()["keys"]] == [new.kid]
        gl.fail_next(1)
        assert request(gl.port, "GET", "/oauth/discovery/keys", headers=host).status == 500
        assert request(gl.port, "GET", "/oauth/discovery/keys", headers=host).status == 200
    finally:
        gl.stop()


def _botocore_signed(fake, path, body, secret=TEST_SECRET_ACCESS_KEY, region="us-east-1"):
    url = f"https://bedrock-runtime.{region}.amazonaws.com{path}"
    req = AWSRequest(method="POST", url=url, data=body, headers={"Content-Type": "application/json"})
    SigV4Auth(Credentials(TEST_ACCESS_KEY_ID, secret), "bedrock", region).add_auth(req)
    headers = dict(req.headers.items())
    headers["Host"] = f"bedrock-runtime.{region}.amazonaws.com"
    return request(fake.port, "POST", path, headers=headers, body=body)


def test_bedrock_fake_sigv4_and_model(e2e):
    model = "us.anthropic.claude-3-5-sonnet-20240620-v1:0"
    fake = FakeBedrock("bedrock", models=[model]).start()
    try:
        path = "/model/us.anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse"
        body = json.dumps({"messages": [{"role": "user", "content": [{"text": "hi"}]}], "inferenceConfig": {"maxTokens": 10}})
        r = _botocore_signed(fake, path, body)
        assert r.status == 200, (r, fake.refusals)
        assert r.json()["output"]["message"]["content"][0]["text"] == "Hello from bedrock."
        assert r.json()["stopReason"] == "end_turn"
        fake.enqueue(Answer(text="x y"))
        r = _botocore_signed(fake, path.replace("/converse", "/converse-stream"), body)
        assert r.status == 200 and r.header("content-type") == "application/vnd.amazon.eventstream", r
        msgs = eventstream.decode(r.body)
        kinds = [h[":event-type"] for h, _ in msgs]
        assert kinds == ["messageStart", "contentBlockDelta", "contentBlockDelta", "contentBlockStop", "messageStop", "metadata"], kinds
        assert "".join(json.loads(p)["delta"]["text"] for h, p in msgs if h[":event-type"] == "contentBlockDelta") == "x y"
        bad = [
            (path, body, "wrong-secret", "us-east-1", 403),
            (path, body, TEST_SECRET_ACCESS_KEY, "eu-west-1", 403),
            (path, json.dumps({"messages": [{"role": "user", "content": [{"text": "hi"}]}], "bogus": 1}), TEST_SECRET_ACCESS_KEY, "us-east-1", 400),
            (path, json.dumps({"messages": [{"role": "user", "content": [{"text": "a"}]}, {"role": "user", "content": [{"text": "b"}]}]}), TEST_SECRET_ACCESS_KEY, "us-east-1", 400),
            (path, json.dumps({"messages": [{"role": "user", "content": [{"text": "hi"}]}], "inferenceConfig": {"maxTokens": 0}}), TEST_SECRET_ACCESS_KEY, "us-east-1", 400),
            ("/model/anthropic.other-v1%3A0/converse", body, TEST_SECRET_ACCESS_KEY, "us-east-1", 400),
            ("/model/us.anthropic.claude-3-5-sonnet-20240620-v1%253A0/converse", body, TEST_SECRET_ACCESS_KEY, "us-east-1", 400),
            (path.replace("/converse", "/invoke"), json.dumps({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}), TEST_SECRET_ACCESS_KEY, "us-east-1", 400),
        ]
        for p, b, secret, region, status in bad:
            r = _botocore_signed(fake, p, b, secret, region)
            assert r.status == status, (p, b, secret, region, r)
        assert r.header("x-amzn-errortype").startswith("ValidationException:"), r
        reasons = [x.refused for x in fake.take_refusals()]
        assert len(reasons) == len(bad) and reasons[0] == "signature mismatch", reasons
        # Unsigned: refused like AWS does.
        r = request(fake.port, "POST", path, headers={"Host": "bedrock-runtime.us-east-1.amazonaws.com", "Content-Type": "application/json"}, body=body)
        assert r.status == 403 and r.header("x-amzn-errortype").startswith("MissingAuthenticationTokenException"), r
        fake.take_refusals()
        invoke = json.dumps({"anthropic_version": "bedrock-2023-05-31", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]})
        r = _botocore_signed(fake, path.replace("/converse", "/invoke-with-response-stream"), invoke)
        assert r.status == 200, (r, fake.refusals)
        chunks = [json.loads(__import__("base64").b64decode(json.loads(p)["bytes"])) for _, p in eventstream.decode(r.body)]
        assert chunks[0]["type"] == "message_start" and chunks[-1]["type"] == "message_stop"
    finally:
        fake.stop()


def test_eventstream_encoder_matches_botocore(e2e):
    frame = eventstream.event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "Hello"}, "p": "ab"})
    [(headers, payload)] = eventstream.decode(frame)
    assert headers == {":event-type": "contentBlockDelta", ":content-type": "application/json", ":message-type": "event"}
    assert json.loads(payload)["delta"]["text"] == "Hello"
    assert len(frame) == 160, len(frame)  # the worked example of AWS event-stream encoding (docs/streaming.md)
    [(headers, payload)] = eventstream.decode(eventstream.exception("throttlingException", "Too many requests"))
    assert headers[":message-type"] == "exception" and headers[":exception-type"] == "throttlingException"
    try:
        eventstream.decode(eventstream.frame([(":event-type", "x")], b"{}", corrupt_crc=True))
    except Exception as e:  # botocore's ChecksumMismatch
        assert "Checksum" in type(e).__name__ or "checksum" in str(e).lower(), e
    else:
        raise AssertionError("botocore accepted a frame with a bad CRC")


def _signing_envoy(e2e, name, fake, secret):
    """A minimal Envoy whose only cluster is the shipped bedrock cluster (with its upstream
    aws_request_signing filter), in front of the fake: proves the fake verifies what Envoy signs."""
    shipped_boot = bootstrap.load(shipped("self_hosted"))
    cluster = next(c for c in bootstrap.clusters(shipped_boot) if bootstrap.upstream_signing(c))
    boot = {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}},
        "static_resources": {
            "listeners": [{"name": "l", "address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}},
                           "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": {
                               "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                               "stat_prefix": "t", "route_config": {"virtual_hosts": [{"name": "v", "domains": ["*"], "routes": [
                                   {"match": {"prefix": "/"}, "route": {"cluster": cluster["name"]}}]}]},
                               "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {
                                   "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}]}}]}]}],
            "clusters": [cluster]}}
    boot = bootstrap.for_e2e(boot, {cluster["name"]: fake.port}, e2e.run_dir / f"{name}.access.log")
    cfg = bootstrap.dump(boot, e2e.run_dir / f"{name}.yaml")
    return Envoy(cfg, e2e.run_dir, env={"AWS_ACCESS_KEY_ID": TEST_ACCESS_KEY_ID, "AWS_SECRET_ACCESS_KEY": secret,
                                        "HOME": str(e2e.run_dir)}, name=name).start()


def test_bedrock_fake_accepts_envoy_sigv4_and_refuses_bad_signature(e2e):
    model = "us.anthropic.claude-3-5-sonnet-20240620-v1:0"
    fake = FakeBedrock("bedrock", models=[model]).start()
    body = json.dumps({"messages": [{"role": "user", "content": [{"text": "hello"}]}], "inferenceConfig": {"maxTokens": 16}})
    path = "/model/us.anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse"
    headers = {"Host": "bedrock-runtime.us-east-1.amazonaws.com", "Content-Type": "application/json",
               "x-gitlab-instance-id": "not-signed", "x-envoy-retry-on": "5xx"}
    try:
        envoy = _signing_envoy(e2e, "sigv4-good", fake, TEST_SECRET_ACCESS_KEY)
        try:
            r = request(envoy.port, "POST", path, headers=headers, body=body)
            assert r.status == 200, (r, fake.refusals)
            got = fake.last()
            assert got.header("authorization").startswith(f"AWS4-HMAC-SHA256 Credential={TEST_ACCESS_KEY_ID}/")
            assert "x-gitlab-instance-id" not in got.header("authorization"), "only the included headers are signed"
        finally:
            envoy.stop()
        envoy = _signing_envoy(e2e, "sigv4-bad", fake, "a-different-secret")
        try:
            r = request(envoy.port, "POST", path, headers=headers, body=body)
            assert r.status == 403 and "signature" in r.json()["message"], r
            assert [x.refused for x in fake.take_refusals()] == ["signature mismatch"]
        finally:
            envoy.stop()
    finally:
        fake.stop()
