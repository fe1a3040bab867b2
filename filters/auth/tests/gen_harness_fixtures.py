#!/usr/bin/env python3
"""Writes tests/harness/tests/auth/fixtures.json: JWKS documents and RS256 tokens minted the way
GitLab 18.4 does, signed with the committed test keys (filters/auth/tests/data/*.pem), issued at
the harness clock's start (2026-01-01T00:00:00Z). Run with the project venv:
    .venv/bin/python filters/auth/tests/gen_harness_fixtures.py
"""
import base64
import json
import pathlib

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding

ROOT = pathlib.Path(__file__).resolve().parents[3]
DATA = ROOT / "filters/auth/tests/data"
NOW = 1_767_225_600
INSTANCE = "292c3c7c-c5d5-48ec-b4bf-f00b724ce560"


def b64(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def key(name: str):
    return serialization.load_pem_private_key((DATA / f"{name}.pem").read_bytes(), password=None)


def jwk(k, kid: str) -> dict:
    n = k.public_key().public_numbers()
    return {"kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256",
            "n": b64(n.n.to_bytes((n.n.bit_length() + 7) // 8, "big")), "e": b64(n.e.to_bytes(3, "big"))}


def sign(k, kid: str, claims: dict) -> str:
    h = b64(json.dumps({"alg": "RS256", "typ": "JWT", "kid": kid}, separators=(",", ":")).encode())
    p = b64(json.dumps(claims, separators=(",", ":")).encode())
    sig = k.sign(f"{h}.{p}".encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{h}.{p}.{b64(sig)}"


def claims(**over) -> dict:
    c = {"jti": "0099dd6c-b66e-4787-8ae2-c451d86025ae", "aud": ["gitlab-ai-gateway"], "sub": INSTANCE,
         "iss": "https://gitlab.example.com", "iat": NOW, "nbf": NOW - 5, "exp": NOW + 3600,
         "gitlab_realm": "self-managed",
         "scopes": ["complete_code", "generate_code", "duo_chat", "include_file_context", "generate_commit_message"]}
    c.update(over)
    return c


a, b = key("gitlab_a"), key("gitlab_b")
fixtures = {
    "now": NOW,
    "instance_id": INSTANCE,
    "jwks_a": {"keys": [jwk(a, "a")]},
    "jwks_ab": {"keys": [jwk(a, "a"), jwk(b, "b")]},
    "discovery": {"issuer": "https://gitlab.example.com", "jwks_uri": "https://gitlab.example.com/oauth/discovery/keys"},
    "token_a": sign(a, "a", claims()),
    "token_b": sign(b, "b", claims()),
    "token_a_expired": sign(a, "a", claims(iat=NOW - 7200, nbf=NOW - 7205, exp=NOW - 3600)),
    "token_a_chat_only": sign(a, "a", claims(scopes=["duo_chat"])),
    "token_unknown_kid": sign(a, "zzz", claims()),
    "user_key_pem": (DATA / "user_key.pem").read_text(),
}
out = ROOT / "tests/harness/tests/auth/fixtures.json"
out.write_text(json.dumps(fixtures, indent=1) + "\n")
print(f"wrote {out}")
