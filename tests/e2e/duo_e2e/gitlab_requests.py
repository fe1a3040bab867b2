"""The requests GitLab Rails sends to its AI gateway, per GitLab version (docs/fidelity.md).

Built from what Rails' request classes do (which fields, which values, merged in which order),
not copied from captured traffic:

- code suggestions: Rails merges the IDE's body (`current_file`, `project_path`, `stream`, ...)
  with the prompt class's `request_params` (`CodeSuggestions::Tasks::Base#body`);
  - 18.4, self-hosted completion (`/v2/code/completions`): `model_provider: "litellm"`,
    `prompt_version: 2`, flat `model_*` fields (the model FAMILY as `model_name`);
  - 18.4, self-hosted generation (`/v2/code/generations`): the same flat fields plus
    `prompt_id: "code_suggestions/generations"` and `prompt` = the user's instruction;
  - 19.x generation (`/v4/code/suggestions`, `Prompts::CodeGeneration::AiGatewayMessages`): one
    `code_editor_generation` prompt component (`language_identifier` = the language's display
    name, `prompt_enhancer` with the template variables, `prompt_id`, `prompt_version`) and the
    feature setting's `model_metadata` beside it;
- Duo Chat (`/v2/chat/agent`): `messages`, `model_metadata`, `unavailable_resources`;
- prompts (`/v1/prompts/<id>`): `inputs`, `prompt_version`, `stream`, `model_metadata`.

`X-Gitlab-Version` carries the version; 19.x tokens add the `duo_classic_chat` unit primitive.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from duo_e2e.fakes.gitlab import ALL_SCOPES


@dataclass(frozen=True)
class SelfHostedModel:
    """An admin's "self-hosted model deployment" as Rails holds it (`Ai::SelfHostedModel`)."""

    family: str
    identifier: str
    endpoint: str = ""
    api_key: str = ""

    def provider(self, major: int) -> str:
        # 18.x: a constant "openai"; newer Rails has an enum (api | bedrock | vertex_ai). The
        # gateway only branches on amazon_q/gitlab, so any other value routes by identifier.
        if major < 19:
            return "openai"
        return "bedrock" if self.identifier.startswith("bedrock/") else "api"


# The models of envoy/self_hosted.yaml, as an admin would have typed them into GitLab.
CODESTRAL = SelfHostedModel("codestral", "custom_openai/Codestral-22B-v0.1", "http://vllm.internal:8000/v1", "sk-e2e-fidelity")
CLAUDE_BEDROCK = SelfHostedModel("claude_3", "bedrock/us.anthropic.claude-3-5-sonnet-20240620-v1:0")
GPT_AZURE = SelfHostedModel("gpt", "azure/gpt-4o-deploy", "https://myres.openai.azure.com/", "azure-test-key")

# Rails' display names (`CodeSuggestions::ProgrammingLanguage#name`) for the file extensions the
# scenarios use.
LANGUAGE_NAMES = {".py": "Python", ".go": "Go", ".rb": "Ruby", ".js": "JavaScript", ".rs": "Rust"}


@dataclass(frozen=True)
class Rails:
    """One GitLab version's request shapes."""

    version: str
    extra_headers: dict[str, str] = field(default_factory=dict)

    @property
    def major(self) -> int:
        return int(self.version.split(".", 1)[0])

    def scopes(self) -> list[str]:
        # 19.x instance tokens also grant the classic (ReAct) chat its own unit primitive.
        return list(ALL_SCOPES) + (["duo_classic_chat"] if self.major >= 19 else [])

    def headers(self, gl, **extra: str) -> dict[str, str]:
        token = gl.mint(scopes=self.scopes())
        return gl.headers(token=token, X_Gitlab_Version=self.version, **self.extra_headers, **extra)

    def model_metadata(self, m: SelfHostedModel) -> dict[str, Any]:
        # `Gitlab::Llm::AiGateway::ModelMetadata#to_params` for a self-hosted feature setting.
        return {"provider": m.provider(self.major), "name": m.family, "endpoint": m.endpoint,
                "api_key": m.api_key, "identifier": m.identifier}

    @staticmethod
    def _ide_body(file_name: str, above: str, below: str, stream: bool) -> dict[str, Any]:
        # What the IDE posted to /api/v4/code_suggestions/*, passed through by Rails.
        return {"project_path": "gitlab-org/fidelity", "project_id": 278964,
                "current_file": {"file_name": file_name, "content_above_cursor": above, "content_below_cursor": below},
                "stream": stream, "telemetry": []}

    def code_completion(self, m: SelfHostedModel, file_name: str, above: str, below: str = "", stream: bool = False):
        body = self._ide_body(file_name, above, below, stream)
        body.update({"model_provider": "litellm", "prompt_version": 2, "prompt": None, "model_name": m.family,
                     "model_endpoint": m.endpoint, "model_identifier": m.identifier})
        if m.api_key:
            body["model_api_key"] = m.api_key
        return "/v2/code/completions", body

    def code_generation(self, m: SelfHostedModel, file_name: str, above: str, instruction: str, below: str = "", stream: bool = False):
        body = self._ide_body(file_name, above, below, stream)
        if self.major < 19:
            body.update({"model_provider": "litellm", "prompt_version": 2, "prompt_id": "code_suggestions/generations",
                         "prompt": instruction, "model_name": m.family, "model_endpoint": m.endpoint,
                         "model_identifier": m.identifier})
            if m.api_key:
                body["model_api_key"] = m.api_key
            return "/v2/code/generations", body
        ext = file_name[file_name.rfind("."):] if "." in file_name else ""
        budget = 50_000  # Rails' MAX_INPUT_CHARS for the trimmed copies
        trimmed_above = above[-budget:]
        enhancer = {
            "examples_array": [{"example": "# print hello\n{{cursor}}", "response": "<new_code>print('hello')", "trigger_type": "comment"}],
            "trimmed_content_above_cursor": trimmed_above,
            "trimmed_content_below_cursor": below[: budget - len(trimmed_above)],
            "related_files": [], "related_snippets": [], "libraries": [],
            "user_instruction": instruction or "Generate the best possible code based on instructions.",
        }
        component = {"type": "code_editor_generation", "payload": {
            "file_name": file_name, "content_above_cursor": above, "content_below_cursor": below,
            "language_identifier": LANGUAGE_NAMES.get(ext, ""), "stream": stream, "prompt_enhancer": enhancer,
            "prompt_id": "code_suggestions/generations", "prompt_version": "^1.0.0"}}
        body.update({"prompt_components": [component], "model_metadata": self.model_metadata(m)})
        return "/v4/code/suggestions", body

    def chat(self, m: SelfHostedModel, question: str, scratchpad: list | None = None):
        messages: list[dict[str, Any]] = [{"role": "user", "content": question, "context": None,
                                           "current_file": None, "additional_context": []}]
        if scratchpad is not None:
            messages.append({"role": "assistant", "content": None, "agent_scratchpad": scratchpad})
        return "/v2/chat/agent", {"messages": messages, "model_metadata": self.model_metadata(m),
                                  "unavailable_resources": ["Pipelines", "Vulnerabilities"]}

    def prompt(self, m: SelfHostedModel, prompt_id: str, inputs: dict[str, Any], stream: bool = False, v2: bool = False):
        path = f"/{'v2' if v2 else 'v1'}/prompts/{prompt_id}"
        return path, {"stream": stream, "inputs": inputs, "prompt_version": "^1.0.0", "model_metadata": self.model_metadata(m)}


GITLAB_18_4 = Rails("18.4.1")
GITLAB_19 = Rails("19.1.0", {"X-Gitlab-Client-Type": "ide", "X-Gitlab-Root-Namespace-Id": "9970"})
VERSIONS = [GITLAB_18_4, GITLAB_19]
