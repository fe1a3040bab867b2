"""Fake GitLab instance (or CustomersDot): OIDC discovery + JWKS, and instance tokens minted
exactly as GitLab 18.4's `Gitlab::CloudConnector::JSONWebToken` does (docs/fidelity.md):

    header  {"alg":"RS256","typ":"JWT","kid":<RFC 7638 thumbprint of the RSA key>}
    payload {"jti","aud":["gitlab-ai-gateway"],"sub":<instance uuid>,"iss":<instance URL>,
             "iat","nbf":iat-5,"exp":iat+3600,"gitlab_realm","scopes":[every unit primitive]}

Plus the tokens an attacker or a broken setup would send (expired, wrong audience, alg none,
HS256 keyed with the public key, unknown kid, ...), key rotation, and failing key endpoints.
Keys are RSA-2048 generated per run with `cryptography`; signing goes through PyJWT/`cryptography`
(never hand-made crypto); the two forged kinds (none, HS256) are assembled by hand on purpose.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
import uuid
from typing import Any

import jwt  # PyJWT
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from .base import FakeServer, Refuse, Reply, Request

AUDIENCE = "gitlab-ai-gateway"

# Every unit primitive an instance with Duo Enterprise gets (GitLab puts all entitled ones in `scopes`).
ALL_SCOPES = [
    "complete_code", "generate_code", "code_suggestions", "duo_chat", "explain_code", "write_tests",
    "refactor_code", "fix_code", "troubleshoot_job", "explain_vulnerability", "summarize_comments",
    "generate_commit_message", "summarize_new_merge_request", "review_merge_request", "summarize_review",
    "resolve_vulnerability", "glab_ask_git_command", "duo_agent_platform", "generate_issue_description",
    "include_file_context", "include_snippet_context", "include_merge_request_context",
    "include_issue_context", "include_dependency_context", "include_local_git_context",
    "include_terminal_context", "include_user_rule_context", "include_repository_context",
    "ai_gateway_model_provider_proxy", "documentation_search",
    # Duo Chat's reader tools: GitLab grants them with duo_chat (docs/fidelity.md).
    "ask_issue", "ask_epic", "ask_merge_request", "ask_commit", "ask_build", "ask_work_item",
]


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64url_uint(n: int) -> str:
    return b64url(n.to_bytes((n.bit_length() + 7) // 8, "big"))


def _compact(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


class SigningKey:
    """An RSA-2048 key pair with its JWK and RFC 7638 thumbprint `kid`."""

    def __init__(self, private_key: rsa.RSAPrivateKey | None = None):
        self.private_key = private_key or rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pub = self.private_key.public_key().public_numbers()
        self.e, self.n = _b64url_uint(pub.e), _b64url_uint(pub.n)
        # RFC 7638: SHA-256 over the required members in lexicographic order, no whitespace.
        self.kid = b64url(hashlib.sha256(_compact({"e": self.e, "kty": "RSA", "n": self.n})).digest())

    @staticmethod
    def from_pem(pem: bytes) -> "SigningKey":
        key = serialization.load_pem_private_key(pem, password=None)
        assert isinstance(key, rsa.RSAPrivateKey)
        return SigningKey(key)

    def private_pem(self) -> bytes:
        return self.private_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )

    def public_pem(self) -> bytes:
        return self.private_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def jwk(self) -> dict[str, str]:
        # The members GitLab's /oauth/discovery/keys publishes for its RSA signing keys.
        return {"kty": "RSA", "kid": self.kid, "e": self.e, "n": self.n, "use": "sig", "alg": "RS256"}


class FakeGitLab(FakeServer):
    """A GitLab instance as the gateway sees it. `mint()` and friends make tokens; `publish`,
    `rotate`, `retire` and `fail_next` change what the key endpoints serve."""

    kind = "gitlab"

    def __init__(
        self,
        name: str = "gitlab",
        issuer: str = "https://gitlab.example.com",
        jwks_path: str = "/oauth/discovery/keys",
        instance_id: str = "292c3c7c-c5d5-48ec-b4bf-f00b724ce560",
        realm: str = "self-managed",
        key: SigningKey | None = None,
    ):
        super().__init__(name)
        self.issuer = issuer
        self.authority = issuer.split("://", 1)[1]
        self.jwks_path = jwks_path
        self.instance_id = instance_id
        self.realm = realm
        self.current = key or SigningKey()
        self.published: list[SigningKey] = [self.current]
        self._failures = 0
        self._fail_status = 500
        self._klock = threading.Lock()

    # ---- key management --------------------------------------------------------------------
    def rotate(self) -> SigningKey:
        """A new signing key: published next to the old ones and used from now on (GitLab's rotation)."""
        with self._klock:
            self.current = SigningKey()
            self.published.append(self.current)
            return self.current

    def retire(self, key: SigningKey) -> None:
        """Stop publishing `key` (the last step of a rotation)."""
        with self._klock:
            self.published = [k for k in self.published if k.kid != key.kid]

    def publish(self, keys: list[SigningKey]) -> None:
        with self._klock:
            self.published = list(keys)

    def fail_next(self, count: int, status: int = 500) -> None:
        """The next `count` requests to discovery or JWKS answer `status` (a GitLab outage)."""
        with self._klock:
            self._failures, self._fail_status = count, status

    def jwks(self) -> dict[str, Any]:
        with self._klock:
            return {"keys": [k.jwk() for k in self.published]}

    # ---- HTTP ------------------------------------------------------------------------------
    def handle(self, req: Request) -> Reply:
        if req.method != "GET":
            raise Refuse(f"{req.method} {req.path}", Reply.json({"message": "404 Not Found"}, 404))
        host = (req.header("host") or "").split(":")[0]
        if host != self.authority:
            # GitLab's nginx serves the instance only under its own host name.
            raise Refuse(f"Host {host!r} is not {self.authority!r}", Reply.json({"message": "404 Not Found"}, 404))
        with self._klock:
            if self._failures > 0:
                self._failures -= 1
                return Reply.json({"message": "500 Internal Server Error"}, self._fail_status)
        if req.path == "/.well-known/openid-configuration":
            return Reply.json(self.discovery())
        if req.path in (self.jwks_path, "/-/jwks"):
            return Reply.json(self.jwks())
        raise Refuse(f"unknown path {req.path}", Reply.json({"message": "404 Not Found"}, 404))

    def discovery(self) -> dict[str, Any]:
        base = self.issuer
        return {
            "issuer": base,
            "authorization_endpoint": f"{base}/oauth/authorize",
            "token_endpoint": f"{base}/oauth/token",
            "revocation_endpoint": f"{base}/oauth/revoke",
            "introspection_endpoint": f"{base}/oauth/introspect",
            "userinfo_endpoint": f"{base}/oauth/userinfo",
            "jwks_uri": f"{base}{self.jwks_path}",
            "scopes_supported": ["api", "read_api", "read_user", "openid", "profile", "email"],
            "response_types_supported": ["code"],
            "response_modes_supported": ["query", "fragment", "form_post"],
            "grant_types_supported": ["authorization_code", "password", "client_credentials", "device_code", "refresh_token"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "claim_types_supported": ["normal"],
            "claims_supported": ["iss", "sub", "aud", "exp", "iat", "sub_legacy", "name", "nickname", "preferred_username", "email"],
        }

    # ---- tokens ----------------------------------------------------------------------------
    def claims(self, **overrides: Any) -> dict[str, Any]:
        """GitLab 18.4's instance-token claims; `overrides` replace (None removes) a claim.
        `now=` shifts the clock (e.g. `now=time.time() - 7200` for an expired token)."""
        now = int(overrides.pop("now", time.time()))
        claims: dict[str, Any] = {
            "jti": str(uuid.uuid4()),
            "aud": [AUDIENCE],
            "sub": self.instance_id,
            "iss": self.issuer,
            "iat": now,
            "nbf": now - 5,
            "exp": now + 3600,
            "gitlab_realm": self.realm,
            "scopes": list(ALL_SCOPES),
        }
        for k, v in overrides.items():
            if v is None:
                claims.pop(k, None)
            else:
                claims[k] = v
        return claims

    def mint(self, key: SigningKey | None = None, kid: str | None = None, **claims: Any) -> str:
        """A valid RS256 instance token (change anything with `claims`, sign with another `key`,
        or announce another `kid`)."""
        key = key or self.current
        header = {"alg": "RS256", "typ": "JWT", "kid": kid if kid is not None else key.kid}
        signing_input = f"{b64url(_compact(header))}.{b64url(_compact(self.claims(**claims)))}"
        # PyJWT's RS256 (cryptography underneath) signs; we only assemble the compact form to
        # keep GitLab's exact header member order.
        sig = jwt.algorithms.RSAAlgorithm(jwt.algorithms.RSAAlgorithm.SHA256).sign(signing_input.encode(), key.private_key)
        return f"{signing_input}.{b64url(sig)}"

    def mint_expired(self, **claims: Any) -> str:
        return self.mint(now=int(time.time()) - 7200, **claims)

    def mint_not_yet_valid(self, **claims: Any) -> str:
        now = int(time.time()) + 3600
        return self.mint(now=now, **claims)

    def mint_wrong_audience(self, **claims: Any) -> str:
        return self.mint(aud=["gitlab-duo-workflow-service"], **claims)

    def mint_unknown_kid(self, **claims: Any) -> str:
        """Signed by a key GitLab never published."""
        return self.mint(key=SigningKey(), **claims)

    def mint_alg_none(self, **claims: Any) -> str:
        header = {"alg": "none", "typ": "JWT", "kid": self.current.kid}
        return f"{b64url(_compact(header))}.{b64url(_compact(self.claims(**claims)))}."

    def mint_hs256_with_public_key(self, **claims: Any) -> str:
        """The classic key-confusion forgery: HS256 keyed with the published RSA public key (PEM)."""
        header = {"alg": "HS256", "typ": "JWT", "kid": self.current.kid}
        signing_input = f"{b64url(_compact(header))}.{b64url(_compact(self.claims(**claims)))}"
        mac = hmac.new(self.current.public_pem(), signing_input.encode(), hashlib.sha256).digest()
        return f"{signing_input}.{b64url(mac)}"

    def mint_bad_signature(self, **claims: Any) -> str:
        """A valid token whose payload was changed after signing."""
        token = self.mint(**claims)
        h, _p, s = token.split(".")
        forged = b64url(_compact(self.claims(scopes=ALL_SCOPES + ["admin"])))
        return f"{h}.{forged}.{s}"

    def headers(self, token: str | None = None, **extra: str) -> dict[str, str]:
        """The headers GitLab Rails sends to the AI gateway with an instance token
        (docs/fidelity.md); `extra` adds or replaces (use '_' for '-')."""
        h = {
            "Authorization": f"Bearer {token if token is not None else self.mint()}",
            "X-Gitlab-Authentication-Type": "oidc",
            "X-Gitlab-Instance-Id": self.instance_id,
            "X-Gitlab-Realm": self.realm,
            "X-Gitlab-Global-User-Id": "Df0Jhs9xkUVnUjEMx0vUi1p3CkVbZIMj1Dn06ZQjI0E=",
            "X-Gitlab-Host-Name": self.authority,
            "X-Gitlab-Version": "18.4.1",
            "X-Gitlab-Feature-Enabled-By-Namespace-Ids": "",
            "X-Gitlab-Feature-Enablement-Type": "duo_enterprise",
            "x-gitlab-enabled-feature-flags": "",
            "x-gitlab-enabled-instance-verbose-ai-logs": "false",
            "X-Request-ID": str(uuid.uuid4()),
            # Rounded down: a send time rounded up could be after the gateway's arrival time.
            "X-Gitlab-Rails-Send-Start": f"{int(time.time() * 1000) / 1000:.3f}",
            "Content-Type": "application/json",
        }
        for k, v in extra.items():
            name = k.replace("_", "-")
            for existing in list(h):
                if existing.lower() == name.lower():
                    del h[existing]
            h[name] = v
        return h
