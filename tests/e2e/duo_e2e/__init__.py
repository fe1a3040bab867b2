"""The real-Envoy end-to-end layer: fakes, Envoy runner, stacks, scenario runner (docs/e2e.md)."""

from .client import Response, request
from .envoy import ENVOY, ROOT, Envoy, validate
from .fakes import (ALL_SCOPES, AUDIENCE, Answer, FakeAigw, FakeAzure, FakeBedrock, FakeGitLab, FakeServer,
                    FakeVllm, Reply, Request, SigningKey)
from .runner import E2E, Skip, scenario
from .stack import Stack, shipped

__all__ = [
    "ALL_SCOPES", "AUDIENCE", "Answer", "E2E", "ENVOY", "Envoy", "FakeAigw", "FakeAzure", "FakeBedrock", "FakeGitLab",
    "FakeServer", "FakeVllm", "ROOT", "Reply", "Request", "Response", "SigningKey", "Skip", "Stack", "request",
    "scenario", "shipped", "validate",
]
