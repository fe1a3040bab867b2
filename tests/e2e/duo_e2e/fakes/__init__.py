"""Fake upstreams for the real-Envoy end-to-end layer (see docs/e2e.md)."""

from .aigw import FakeAigw
from .base import Answer, FakeServer, Refuse, Reply, Request, carries_jwt, count_tokens
from .bedrock import TEST_ACCESS_KEY_ID, TEST_SECRET_ACCESS_KEY, FakeBedrock
from .gitlab import ALL_SCOPES, AUDIENCE, FakeGitLab, SigningKey
from .openai import FakeAzure, FakeVllm

__all__ = [
    "ALL_SCOPES", "AUDIENCE", "Answer", "FakeAigw", "FakeAzure", "FakeBedrock", "FakeGitLab", "FakeServer",
    "FakeVllm", "Refuse", "Reply", "Request", "SigningKey", "TEST_ACCESS_KEY_ID", "TEST_SECRET_ACCESS_KEY",
    "carries_jwt", "count_tokens",
]
