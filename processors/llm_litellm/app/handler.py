"""llm/litellm@1: ``mock`` answers deterministically from the inputs; ``real`` calls LiteLLM."""

from __future__ import annotations

import math
from typing import Any

from pytest_theory.contracts.hashing import canonical_json
from pytest_theory.processors.runtime import Output, ProviderError, Result, RunContext

INFO = "llm/litellm@1 (litellm 1.106.2)"


def handle(ctx: RunContext) -> Result:
    messages = [_flatten(ctx, m) for m in ctx.params["messages"]]
    model = ctx.params["model"]
    if ctx.is_mock:
        text, usage, finish = _mock_reply(ctx, model, messages)
        for token in text.split(" "):
            ctx.emit("token", {"text": token + " "})
    else:
        text, usage, finish = _real_reply(ctx, model, messages)
    metadata = {"model": model, "mode": ctx.mode, "finish_reason": finish, "usage": usage}
    ctx.log("handler.llm.ok", model=model, chars=len(text), finish_reason=finish)
    return Result(
        outputs=[
            Output("text/response.txt", text.encode()),
            Output("metadata.json", canonical_json(metadata)),
        ],
        processor_info=INFO,
        usage=usage,
    )


def _flatten(ctx: RunContext, message: dict[str, Any]) -> dict[str, str]:
    """One text message; attachments in the world are read (cid-checked) and inlined."""
    content = message["content"]
    if isinstance(content, str):
        return {"role": message["role"], "content": content}
    parts = []
    for part in content:
        if "$artifact" in part:
            data = ctx.read_artifact(part["$artifact"], part["cid"])
            if part["mime"].startswith("text/") or part["mime"] == "application/json":
                body = data.decode("utf-8", errors="replace")
                parts.append(f"[attachment {part['$artifact']} ({part['cid']})]\n{body}")
            else:
                parts.append(f"[attachment {part['$artifact']} ({part['cid']}, {len(data)} bytes)]")
        else:
            parts.append(part["text"])
    return {"role": message["role"], "content": "\n".join(parts)}


def _mock_reply(
    ctx: RunContext, model: str, messages: list[dict[str, str]]
) -> tuple[str, dict[str, int], str]:
    """A reply that depends on the inputs only: same inputs, same bytes, on any machine."""
    last_user = next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")
    text = f"MOCK[{model}] seed={ctx.seed:016x}: {last_user}"
    prompt_tokens = sum(len(m["content"].split()) for m in messages)
    usage = {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": len(text.split()),
        "total_tokens": prompt_tokens + len(text.split()),
    }
    return text, usage, "stop"


def _real_reply(
    ctx: RunContext, model: str, messages: list[dict[str, str]]
) -> tuple[str, dict[str, int], str]:
    import litellm  # only real mode touches the provider SDK

    litellm.telemetry = False
    kwargs: dict[str, Any] = {
        "model": model,
        "messages": messages,
        "api_key": ctx.secrets["OPENAI_API_KEY"],
    }
    if base_url := ctx.secrets.get("OPENAI_BASE_URL"):
        kwargs.update(api_base=base_url, custom_llm_provider="openai")
    for name in ("temperature", "max_tokens"):
        if name in ctx.params:
            kwargs[name] = ctx.params[name]
    try:
        if ctx.streaming:
            return _stream(ctx, litellm, kwargs)
        response = litellm.completion(**kwargs)
    except ProviderError:
        raise
    except Exception as exc:  # every SDK failure, without its (possibly secret) text
        raise ProviderError(f"LiteLLM call failed ({type(exc).__name__})") from None
    choice = response.choices[0]
    usage = _usage(getattr(response, "usage", None)) | _cost(litellm, response)
    return choice.message.content or "", usage, choice.finish_reason or "stop"


def _stream(
    ctx: RunContext, litellm: Any, kwargs: dict[str, Any]
) -> tuple[str, dict[str, int], str]:
    pieces: list[str] = []
    finish = "stop"
    chunks = []
    for chunk in litellm.completion(stream=True, **kwargs):
        ctx.check_cancelled()
        chunks.append(chunk)
        delta = chunk.choices[0].delta.content if chunk.choices else None
        if delta:
            pieces.append(delta)
            ctx.emit("token", {"text": delta})
        if chunk.choices and chunk.choices[0].finish_reason:
            finish = chunk.choices[0].finish_reason
    rebuilt = litellm.stream_chunk_builder(chunks, messages=kwargs["messages"])
    usage = _usage(getattr(rebuilt, "usage", None)) | _cost(litellm, rebuilt)
    return "".join(pieces), usage, finish


def _usage(usage: Any) -> dict[str, int]:
    if usage is None:
        return {}
    data = usage.model_dump() if hasattr(usage, "model_dump") else dict(usage)
    return {k: int(v) for k, v in data.items() if isinstance(v, int) and not isinstance(v, bool)}


def _cost(litellm: Any, response: Any) -> dict[str, int]:
    """``{"cost_usd_micro": N}`` from LiteLLM's own price table (rounded up, so nothing priced
    is free); nothing when the model has no price. The control plane charges this amount."""
    try:
        usd = float(litellm.completion_cost(completion_response=response))
    except Exception:  # an unpriced model: the control plane charges the reservation
        return {}
    return {"cost_usd_micro": math.ceil(usd * 1_000_000)} if usd >= 0 else {}
