"""Embedding the chain in an Envoy that serves other traffic (examples/embed/envoy.yaml,
docs/embedding.md): on the same listener, the existing application's virtual host switches the
four filters off (`typed_per_filter_config` FilterConfig `disabled: true`) and its requests pass
untouched, while the AI gateway's virtual host runs the whole chain."""

from __future__ import annotations

import json

from duo_e2e import FakeServer, Reply

AI_HOST = "ai-gateway.example.com"


class ExistingApp(FakeServer):
    """The application the Envoy served before the AI gateway was added: answers anything."""

    kind = "app"

    def handle(self, req):
        return self.next_scripted(req) or Reply.json({"app": "existing", "path": req.path})


def test_embed_unrelated_route_is_left_alone(e2e):
    app = ExistingApp("existing_app")

    def small_buffers(boot):  # so that Envoy itself answers 413 for a held AI body (see below)
        boot["static_resources"]["listeners"][0]["per_connection_buffer_limit_bytes"] = 65536

    st = e2e.stack(str(e2e.root / "examples" / "embed" / "envoy.yaml"), name="embed", fakes={"existing_app": app},
                   patch=small_buffers)
    try:
        # The existing application: no token, its own Authorization header, a body far over the
        # listener's buffer limit (streamed, since no filter holds it); nothing of the chain runs (no 401, no duo header, body and headers as sent).
        body = b"x" * 300_000
        r = st.request("POST", "/app/upload?q=1", headers={"Authorization": "Basic dXNlcjpwYXNz", "X-Custom": "kept",
                                                             "Content-Type": "application/octet-stream"}, body=body)
        assert r.status == 200 and r.json() == {"app": "existing", "path": "/app/upload"}, r
        got = app.last()
        assert got.body == body and got.header("authorization") == "Basic dXNlcjpwYXNz" and got.header("x-custom") == "kept"
        assert not [k for k, _ in got.header_list if k.startswith("x-duo") or k.startswith("x-gitlab")], got.header_list
        assert not [k for k, _ in r.header_list if k.startswith("x-duo")], r.header_list
        # A GitLab-looking path on the existing host is the app's too (the filters do not claim paths).
        r = st.post("/v2/code/completions", json_body={}, headers={})
        assert r.status == 200 and r.json()["app"] == "existing", r
        # Envoy's own replies on the existing host keep Envoy's plain text (local replies are
        # mapped only on the AI virtual host).
        app.enqueue(Reply(200, [("content-length", "not-a-number")]))  # Envoy refuses the answer itself
        r = st.get("/broken")
        assert r.status in (502, 503) and (r.header("content-type") or "").startswith("text/plain"), r
        assert st.envoy.metric("wasmcustom_duo_requests_total") in (None, 0.0)

        # The AI gateway host on the same listener: the full chain.
        r = st.post("/v2/code/completions", json_body={}, headers={"Host": AI_HOST})
        assert r.status == 401 and r.json() == {"error": "No authorization header presented"}, r
        meta = {"current_file": {"file_name": "a.py", "content_above_cursor": "def f():\n", "content_below_cursor": ""},
                "model_provider": "litellm", "model_name": "codestral", "prompt_version": 2, "stream": False,
                "model_endpoint": "http://vllm.internal:8000/v1", "model_api_key": "sk-embed",
                "model_identifier": "custom_openai/Codestral-22B-v0.1"}
        r = st.post("/v2/code/completions", json_body=meta, headers={**st.gitlab.headers(), "Host": AI_HOST})
        assert r.status == 200, r
        assert st.fake("vllm_codestral").last().target == "/v1/completions"
        # Envoy's own reply on the AI host is GitLab-shaped (duo_router holds this body past the buffer limit).
        big = dict(meta, current_file=dict(meta["current_file"], content_above_cursor="x" * 100_000))
        r = st.post("/v2/code/completions", json_body=big, headers={**st.gitlab.headers(), "Host": AI_HOST})
        assert r.status == 413 and r.json() == {"detail": "Payload Too Large"}, r
        r = st.request("GET", "/monitoring/healthz", headers={"Host": AI_HOST})
        assert r.status == 200 and r.json() == {"status": "ok"}
        records = [rec for rec in st.access_log(wait_for=4)]
        assert any(rec.get("status_code") == 200 and rec.get("feature") == "code_completions" for rec in records), records
        # Only the AI host's requests are in the Duo access log, each a record.
        assert len(records) == 4 and all(isinstance(rec, dict) for rec in records), records
        assert all(rec.get("path", "").startswith(("/v2/", "/monitoring/")) for rec in records), records
    finally:
        st.stop()
