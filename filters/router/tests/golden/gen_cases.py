#!/usr/bin/env python3
"""Writes the golden case inputs (requests.json, responses.json) of the provider codecs.

The expected outputs live beside them (requests.expected.json, responses.expected.json) and are
checked by `cargo test -p duo_router golden`; after a deliberate change, regenerate them with
`DUO_BLESS=1 cargo test -p duo_router golden` and review the diff.
"""
import json, os

HERE = os.path.dirname(os.path.abspath(__file__))
KEY = "sk-golden-test-key"

def m(platform, model, family, **kw):
    d = {"platform": platform, "cluster": "c_" + platform, "authority": "model.internal:8000", "model": model, "family": family}
    d.update(kw)
    return d

MODELS = {
    "vllm_codestral": m("vllm", "Codestral-22B-v0.1", "codestral", base_path="/v1", params={"temperature": 0.1}),
    "vllm_mistral": m("vllm", "Mistral-7B-Instruct-v0.3", "mistral"),
    "compat_mixtral": m("openai_compatible", "Mixtral-8x7B-Instruct-v0.1", "mixtral", base_path="/api/v1/"),
    "vllm_llama3_chat": m("vllm", "Meta-Llama-3.1-8B-Instruct", "llama3"),
    "vllm_llama3_completions": m("vllm", "Meta-Llama-3.1-8B-Instruct", "llama3", api="completions"),
    "vllm_codellama": m("vllm", "CodeLlama-13b-Instruct-hf", "codellama"),
    "vllm_codegemma": m("vllm", "codegemma-7b-it", "codegemma"),
    "vllm_deepseekcoder": m("vllm", "deepseek-coder-33b-instruct", "deepseekcoder"),
    "vllm_general": m("vllm", "Qwen2.5-Coder-32B-Instruct", "general", credentials="envoy"),
    "bedrock_claude_converse": m("bedrock", "us.anthropic.claude-3-5-sonnet-20240620-v1:0", "claude_3"),
    "bedrock_claude_invoke": m("bedrock", "us.anthropic.claude-3-5-sonnet-20240620-v1:0", "claude_3", api="invoke", params={"top_k": 40}),
    "bedrock_mistral_invoke": m("bedrock", "mistral.mistral-7b-instruct-v0:2", "mistral", api="invoke"),
    "bedrock_mixtral_converse": m("bedrock", "mistral.mixtral-8x7b-instruct-v0:1", "mixtral", params={"top_k": 50, "temperature": 1.5}),
    "bedrock_llama_invoke": m("bedrock", "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.meta.llama3-3-70b-instruct-v1:0", "llama3", api="invoke"),
    "bedrock_llama_converse": m("bedrock", "us.meta.llama3-3-70b-instruct-v1:0", "llama3"),
    "azure_gpt_dated": m("azure_openai", "gpt-4o-deploy", "gpt", api_version="2024-10-21"),
    "azure_gpt_v1": m("azure_openai", "gpt-4o-mini", "gpt", api_version="v1"),
    "azure_gpt_old": m("azure_openai", "gpt-4-turbo", "gpt", api_version="2024-06-01"),
}

META = {"provider": "openai", "name": "mistral", "endpoint": "http://model.internal:8000/v1", "api_key": KEY,
        "identifier": "custom_openai/Mistral-7B-Instruct-v0.3"}

FILE = {"file_name": "app/car.py", "language_identifier": "python",
        "content_above_cursor": "class Car:\n    def __init__(self):\n        self.speed = 0\n\n    def increase_speed(self, inc):\n",
        "content_below_cursor": "\n\ncar = Car()\n"}

def code_completion(stream=False):
    return {"prompt_version": 2, "project_path": "group/project", "current_file": FILE, "model_provider": "litellm",
            "model_name": "codestral", "model_endpoint": "http://model.internal:8000/v1", "model_api_key": KEY,
            "model_identifier": "custom_openai/Codestral-22B-v0.1", "prompt": None, "stream": stream, "choices_count": 0,
            "context": [{"type": "file", "name": "app/engine.py", "content": "class Engine:\n    pass\n"}]}

def code_generation(stream=False):
    return {"current_file": {"file_name": "main.go", "content_above_cursor": "package main\n\n// reverse a string\n", "content_below_cursor": ""},
            "project_path": "group/project", "stream": stream, "model_provider": "litellm", "prompt_version": 2,
            "prompt_id": "code_suggestions/generations", "prompt": "reverse a string", "model_api_key": KEY, "model_name": "mistral"}

INPUTS = {
    "chat/explain_code": {"input": "", "selected_text": "x = [i*i for i in range(10)]", "file_content": "import os\nx = [i*i for i in range(10)]\n", "language_info": "The code is written in Python."},
    "chat/write_tests": {"input": "use pytest", "selected_text": "def add(a, b):\n    return a + b", "file_content": "", "language_info": "Python", "libraries": ["pytest", "requests"]},
    "chat/refactor_code": {"input": "", "selected_text": "if a == True:\n    return True\nelse:\n    return False", "file_content": "", "file_content_reuse": "", "language_info": "Python", "libraries": []},
    "chat/fix_code": {"input": "", "selected_text": "def div(a, b): return a / b", "file_content": "", "file_content_reuse": "", "language_info": "Python", "libraries": "numpy"},
    "chat/troubleshoot_job": {"selected_text": "$ bundle exec rspec\nrspec: command not found\nERROR: Job failed: exit code 127", "language_info": ""},
    "chat/explain_vulnerability": {"title": "SQL injection", "vulnerability_description": "User input in a query", "identifiers": ["CWE-89"], "vulnerability_info": "app/db.rb:10", "language_info": "Ruby"},
    "chat/summarize_comments": {"notes_content": "alice: let's ship\nbob: tests are red"},
    "generate_commit_message": {"diff": "diff --git a/a.py b/a.py\n@@ -1 +1 @@\n-x = 1\n+x = 2\n"},
    "summarize_new_merge_request": {"extracted_diff": "diff --git a/README.md b/README.md\n+## Install\n"},
    "summarize_review": {"draft_notes_content": "Please rename foo to bar.\nMissing test for the error path."},
    "review_merge_request": {"formatted_mr_input": "<file name=\"a.py\">\n+eval(input())\n</file>"},
    "resolve_vulnerability": {"name": "Command injection", "filename": "run.py", "identifiers": ["CWE-78"], "source_code": "import os\nos.system('ls ' + arg)\n", "vulnerable_code": "os.system('ls ' + arg)", "vulnerability_description": "shell command built from input"},
    "glab_ask_git_command": {"prompt": "undo my last commit but keep the changes"},
    "generate_description": {"content": "login page broken on safari", "template": "## Steps\n## Expected"},
    "categorize_question": {"question": "how do I fix my pipeline?", "previous_answer": ""},
    "model_configuration/check": {},
}

def prompt_body(pid, stream=False):
    return {"inputs": INPUTS[pid], "prompt_version": "^1.0.0", "stream": stream, "model_metadata": META}

def legacy_chat(stream=True):
    return {"prompt_components": [{"type": "prompt", "metadata": {"source": "GitLab EE", "version": "18.4.0"},
            "payload": {"content": [{"role": "system", "content": "You are a helpful assistant."}, {"role": "user", "content": "Explain recursion."}, {"role": "user", "content": "Briefly."}],
                        "provider": "litellm", "model": "mistral", "model_endpoint": "http://model.internal:8000/v1", "model_api_key": KEY,
                        "model_identifier": "custom_openai/Mistral-7B-Instruct-v0.3",
                        "params": {"stop_sequences": ["\n\nHuman", "Observation:"], "temperature": 0.2, "max_tokens_to_sample": 2048}}}],
            "stream": stream}

ALL = list(MODELS)
SOME = ["vllm_mistral", "bedrock_claude_converse", "azure_gpt_dated", "bedrock_llama_invoke", "bedrock_mistral_invoke"]

requests = []
def add(name, model, path, body):
    requests.append({"name": name, "model": model, "path": path, "body": body})

for mk in ALL:
    add(f"code_completions/{mk}", mk, "/v2/code/completions", code_completion())
    add(f"code_generations/{mk}", mk, "/v2/code/generations", code_generation())
    add(f"generate_commit_message/{mk}", mk, "/v1/prompts/generate_commit_message", prompt_body("generate_commit_message"))
    add(f"chat/explain_code/{mk}", mk, "/v1/prompts/chat/explain_code", prompt_body("chat/explain_code", stream=True))
    add(f"model_configuration/check/{mk}", mk, "/v1/prompts/model_configuration%2Fcheck", prompt_body("model_configuration/check"))
for pid in INPUTS:
    if pid in ("generate_commit_message", "chat/explain_code", "model_configuration/check"):
        continue
    for mk in SOME:
        add(f"{pid}/{mk}", mk, "/v1/prompts/" + pid, prompt_body(pid))
for mk in ["vllm_mistral", "bedrock_claude_converse", "bedrock_claude_invoke", "bedrock_llama_invoke", "azure_gpt_v1", "azure_gpt_old"]:
    add(f"legacy_chat/{mk}", mk, "/v1/chat/explain_code", legacy_chat())
for mk in ["vllm_codestral", "vllm_mistral", "bedrock_claude_converse", "bedrock_mistral_invoke", "azure_gpt_dated", "azure_gpt_old"]:
    add(f"stream/code_completions/{mk}", mk, "/v2/code/completions", code_completion(stream=True))
    add(f"stream/code_generations/{mk}", mk, "/v2/code/generations", code_generation(stream=True))
for mk in ["vllm_mistral", "bedrock_claude_converse"]:
    add(f"v2_prompts/summarize_review/{mk}", mk, "/v2/prompts/summarize_review", prompt_body("summarize_review"))
# Generations v3: the prompt is a list of messages.
gen3 = code_generation(); gen3["prompt_version"] = 3
gen3["prompt"] = [{"role": "system", "content": "You write Go."}, {"role": "user", "content": "reverse a string"}]
for mk in ["vllm_mistral", "bedrock_claude_converse"]:
    add(f"code_generations_v3/{mk}", mk, "/v2/code/generations", gen3)
# Errors: missing inputs, unknown / unsupported prompt, bad body.
add("error/missing_inputs", "vllm_mistral", "/v1/prompts/generate_commit_message", {"inputs": {"difff": "x"}, "model_metadata": META})
add("error/unsupported_prompt", "vllm_mistral", "/v1/prompts/chat/issue_reader", {"inputs": {}, "model_metadata": META})
add("error/no_instruction", "vllm_mistral", "/v2/code/generations", {"current_file": FILE})
add("error/two_components", "vllm_mistral", "/v1/chat/explain_code", {"prompt_components": [legacy_chat()["prompt_components"][0]] * 2})

def resp(name, case, status, body, headers=None, via_upstream=True):
    return {"name": name, "request_case": case, "status": status, "headers": headers or {}, "body": body, "via_upstream": via_upstream}

OA_CHAT = {"id": "chatcmpl-1", "object": "chat.completion", "created": 1731679200, "model": "Mistral-7B-Instruct-v0.3",
           "choices": [{"index": 0, "message": {"role": "assistant", "content": "Change x from 1 to 2", "tool_calls": []}, "logprobs": None, "finish_reason": "stop", "stop_reason": None}],
           "usage": {"prompt_tokens": 42, "total_tokens": 50, "completion_tokens": 8, "prompt_tokens_details": None}}
OA_CHAT_CODE = json.loads(json.dumps(OA_CHAT)); OA_CHAT_CODE["choices"][0]["message"]["content"] = "```python\n        self.speed += inc\n```"
OA_COMPL = {"id": "cmpl-1", "object": "text_completion", "created": 1731679200, "model": "Codestral-22B-v0.1",
            "choices": [{"index": 0, "text": "        self.speed += inc", "logprobs": None, "finish_reason": "length", "stop_reason": None}],
            "usage": {"prompt_tokens": 60, "total_tokens": 64, "completion_tokens": 4}}
AZ_CHAT = {"choices": [{"content_filter_results": {}, "finish_reason": "stop", "index": 0, "logprobs": None,
                        "message": {"content": "git reset --soft HEAD~1", "refusal": None, "role": "assistant"}}],
           "created": 1731679200, "id": "chatcmpl-az", "model": "gpt-4o-2024-08-06", "object": "chat.completion",
           "prompt_filter_results": [{"content_filter_results": {}, "prompt_index": 0}], "system_fingerprint": "fp_1",
           "usage": {"completion_tokens": 9, "prompt_tokens": 30, "total_tokens": 39}}
CONVERSE = {"output": {"message": {"role": "assistant", "content": [{"text": "Recursion is "}, {"text": "a function calling itself."}]}},
            "stopReason": "end_turn", "usage": {"inputTokens": 125, "outputTokens": 12, "totalTokens": 137, "cacheReadInputTokens": 3, "cacheWriteInputTokens": 0},
            "metrics": {"latencyMs": 812}}
CONVERSE_GEN = {"output": {"message": {"role": "assistant", "content": [{"text": "\nfunc reverse(s string) string {\n\treturn s\n}\n"}]}},
                "stopReason": "stop_sequence", "usage": {"inputTokens": 80, "outputTokens": 20, "totalTokens": 100}, "metrics": {"latencyMs": 500}}
ANTHROPIC = {"id": "msg_bdrk_01", "type": "message", "role": "assistant", "model": "claude-3-5-sonnet-20240620",
             "content": [{"type": "text", "text": "Recursion means a function calls itself."}], "stop_reason": "max_tokens", "stop_sequence": None,
             "usage": {"input_tokens": 10, "output_tokens": 15, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}}
MISTRAL = {"outputs": [{"text": " Use `git reset --soft HEAD~1`.", "stop_reason": "stop"}]}
MISTRAL_LARGE = {"id": "x", "object": "chat.completion", "choices": [{"index": 0, "message": {"role": "assistant", "content": "Use git reset."}, "stop_reason": "length"}]}
LLAMA = {"generation": "Update x to 2", "prompt_token_count": 17, "generation_token_count": 5, "stop_reason": "stop"}
BEDROCK_TOKENS = {"x-amzn-bedrock-input-token-count": "21", "x-amzn-bedrock-output-token-count": "7", "x-amzn-requestid": "r-1"}

responses = [
    resp("ok/vllm_chat/prompt_v1", "generate_commit_message/vllm_mistral", 200, OA_CHAT),
    resp("ok/vllm_chat/prompt_v2", "v2_prompts/summarize_review/vllm_mistral", 200, OA_CHAT),
    resp("ok/vllm_chat/code_completion_fenced", "code_completions/vllm_mistral", 200, OA_CHAT_CODE),
    resp("ok/vllm_completions/code_completion_fim", "code_completions/vllm_codestral", 200, OA_COMPL),
    resp("ok/vllm_completions/prompt_llama3", "generate_commit_message/vllm_llama3_completions", 200, OA_COMPL),
    resp("ok/vllm_chat/legacy_chat", "legacy_chat/vllm_mistral", 200, OA_CHAT),
    resp("ok/azure/prompt_v1", "glab_ask_git_command/azure_gpt_dated", 200, AZ_CHAT),
    resp("ok/azure/code_generation", "code_generations/azure_gpt_dated", 200, AZ_CHAT),
    resp("ok/converse/prompt_v1", "generate_commit_message/bedrock_claude_converse", 200, CONVERSE, {"x-amzn-requestid": "r-2"}),
    resp("ok/converse/prompt_v2", "v2_prompts/summarize_review/bedrock_claude_converse", 200, CONVERSE),
    resp("ok/converse/code_generation_prefill", "code_generations/bedrock_claude_converse", 200, CONVERSE_GEN),
    resp("ok/converse/legacy_chat", "legacy_chat/bedrock_claude_converse", 200, CONVERSE),
    resp("ok/invoke_anthropic/prompt_v1", "generate_commit_message/bedrock_claude_invoke", 200, ANTHROPIC),
    resp("ok/invoke_anthropic/code_completion", "code_completions/bedrock_claude_invoke", 200, ANTHROPIC),
    resp("ok/invoke_mistral/prompt_v1", "glab_ask_git_command/bedrock_mistral_invoke", 200, MISTRAL, BEDROCK_TOKENS),
    resp("ok/invoke_mistral/large_chat_shape", "glab_ask_git_command/bedrock_mistral_invoke", 200, MISTRAL_LARGE, BEDROCK_TOKENS),
    resp("ok/invoke_llama/prompt_v1", "generate_commit_message/bedrock_llama_invoke", 200, LLAMA),
    resp("ok/invoke_llama/legacy_chat", "legacy_chat/bedrock_llama_invoke", 200, LLAMA),
    resp("ok/empty_completion_drops_choices", "code_completions/vllm_codestral", 200, {"choices": [{"index": 0, "text": "", "finish_reason": "stop"}], "usage": {"prompt_tokens": 5, "completion_tokens": 0}}),
    resp("malformed/converse_without_output", "generate_commit_message/bedrock_claude_converse", 200, {"Output": {"__type": "com.amazon.coral.service#UnknownOperationException"}}),
    resp("malformed/not_json", "generate_commit_message/vllm_mistral", 200, "<html>proxy</html>"),
    resp("error/vllm_new_shape/prompt", "generate_commit_message/vllm_mistral", 400,
         {"error": {"message": "This model's maximum context length is 32768 tokens.", "type": "BadRequestError", "param": None, "code": 400}}),
    resp("error/vllm_old_shape/prompt", "generate_commit_message/vllm_mistral", 400,
         {"object": "error", "message": "suffix is not currently supported", "type": "BadRequestError", "param": None, "code": 400}),
    resp("error/vllm_401/prompt", "chat/explain_code/vllm_mistral", 401, {"error": "Unauthorized"}),
    resp("error/vllm_500_text/prompt", "generate_commit_message/vllm_mistral", 500, "Internal Server Error", {"x-envoy-upstream-service-time": "12"}),
    resp("error/vllm_400/code_completion", "code_completions/vllm_codestral", 400, {"error": {"message": "bad", "type": "BadRequestError", "param": None, "code": 400}}),
    resp("error/vllm_400/legacy_chat", "legacy_chat/vllm_mistral", 400, {"error": {"message": "bad", "type": "BadRequestError", "param": None, "code": 400}}),
    resp("error/vllm_429", "generate_commit_message/vllm_mistral", 429, {"error": {"message": "busy", "type": "RateLimitError", "code": 429}}, {"retry-after": "3"}),
    resp("error/azure_429_retry_after_ms", "code_completions/azure_gpt_dated", 429,
         {"error": {"code": "429", "message": "Requests to the ChatCompletions_Create Operation have exceeded token rate limit. Please retry after 2 seconds."}}, {"retry-after-ms": "1200"}),
    resp("error/azure_content_filter", "glab_ask_git_command/azure_gpt_dated", 400,
         {"error": {"code": "content_filter", "message": "The response was filtered due to the prompt triggering Azure OpenAI's content management policy.", "param": "prompt", "type": None, "status": 400,
                    "innererror": {"code": "ResponsibleAIPolicyViolation", "content_filter_result": {"hate": {"filtered": False, "severity": "safe"}, "jailbreak": {"filtered": True, "detected": True}, "self_harm": {"filtered": True, "severity": "medium"}}}}}),
    resp("error/azure_401", "generate_commit_message/azure_gpt_v1", 401, {"error": {"code": "401", "message": "Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a valid key for an active subscription and use a correct regional API endpoint for your resource."}}),
    resp("error/azure_404_deployment", "generate_commit_message/azure_gpt_dated", 404, {"error": {"code": "DeploymentNotFound", "message": "The API deployment for this resource does not exist."}}),
    resp("error/bedrock_validation", "generate_commit_message/bedrock_claude_converse", 400,
         {"message": "A conversation must alternate between user and assistant roles."}, {"x-amzn-ErrorType": "ValidationException:http://internal.amazon.com/coral/com.amazon.bedrock/", "x-amzn-RequestId": "r-3"}),
    resp("error/bedrock_on_demand", "generate_commit_message/bedrock_claude_invoke", 400,
         {"message": "Invocation of model ID anthropic.claude-3-5-sonnet-20241022-v2:0 with on-demand throughput isn't supported."}, {"x-amzn-errortype": "ValidationException"}),
    resp("error/bedrock_access_denied", "code_completions/bedrock_claude_converse", 403, {"Message": "User is not authorized"}, {"x-amzn-errortype": "AccessDeniedException"}),
    resp("error/bedrock_throttling", "generate_commit_message/bedrock_claude_converse", 429, {"message": "Too many requests, please wait before trying again."}, {"x-amzn-errortype": "ThrottlingException"}),
    resp("error/bedrock_model_not_ready", "glab_ask_git_command/bedrock_mistral_invoke", 429, {"message": "Model is not ready"}, {"x-amzn-errortype": "ModelNotReadyException"}),
    resp("error/bedrock_model_error_424", "generate_commit_message/bedrock_llama_invoke", 424, {"message": "model crashed", "originalStatusCode": 500, "resourceName": "x"}, {"x-amzn-errortype": "ModelErrorException"}),
    resp("error/bedrock_signature", "generate_commit_message/bedrock_claude_converse", 403, {"message": "The request signature we calculated does not match the signature you provided."}, {"x-amzn-ErrorType": "InvalidSignatureException:http://internal.amazon.com/coral/com.amazon.coral.service/"}),
    resp("unreachable/envoy_503_no_upstream", "generate_commit_message/vllm_mistral", 503, "no healthy upstream", {"content-type": "text/plain"}, via_upstream=False),
    resp("unreachable/envoy_503_connect_failure_heuristic", "code_completions/vllm_codestral", 503,
         "upstream connect error or disconnect/reset before headers. reset reason: connection failure", {"content-type": "text/plain"}, via_upstream=None),
    resp("unreachable/envoy_504_timeout", "legacy_chat/vllm_mistral", 504, "upstream request timeout", {"content-type": "text/plain"}, via_upstream=False),
    resp("unreachable/model_server_503_is_its_own_error", "generate_commit_message/vllm_mistral", 503, {"error": {"message": "engine is dead", "type": "ServiceUnavailableError", "code": 503}}, {"x-envoy-upstream-service-time": "2"}, via_upstream=None),
]

def dump(name, data):
    with open(os.path.join(HERE, name), "w") as f:
        json.dump(data, f, indent=1, ensure_ascii=False)
        f.write("\n")

dump("models.json", MODELS)
dump("requests.json", requests)
dump("responses.json", responses)
print(len(requests), "request cases,", len(responses), "response cases")
