"""replicate/generic@1: ``mock`` fabricates a deterministic file; ``real`` runs the model."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlparse

from blake3 import blake3

from pytest_theory.contracts.hashing import canonical_json
from pytest_theory.processors.runtime import Output, ProviderError, Result, RunContext

INFO = "replicate/generic@1 (replicate 1.0.7)"
MOCK_FILE_BYTES = 4096


def handle(ctx: RunContext) -> Result:
    model, model_input = ctx.params["model"], ctx.params["input"]
    ctx.emit("progress", {"stage": "predicting", "model": model})
    if ctx.is_mock:
        files = [("files/output-0.bin", blake3(canonical_json(ctx.inputs)).digest(MOCK_FILE_BYTES))]
        output: Any = [path for path, _ in files]
    else:
        output, files = _predict(ctx, model, model_input)
    prediction = {"model": model, "mode": ctx.mode, "input": model_input, "output": output}
    ctx.log("handler.replicate.ok", model=model, files=len(files))
    outputs = [Output("prediction.json", canonical_json(prediction))]
    outputs += [Output(path, data) for path, data in files]
    return Result(outputs=outputs, processor_info=INFO, usage={"predictions": 1})


def _predict(
    ctx: RunContext, model: str, model_input: dict[str, Any]
) -> tuple[Any, list[tuple[str, bytes]]]:
    import replicate  # only real mode touches the provider SDK
    from replicate.helpers import FileOutput

    client = replicate.Client(
        api_token=ctx.secrets["REPLICATE_API_TOKEN"],
        base_url=ctx.secrets.get("REPLICATE_BASE_URL") or None,
    )
    files: list[tuple[str, bytes]] = []

    def collect(value: Any) -> Any:
        """The output as JSON, each returned file replaced by its output path."""
        ctx.check_cancelled()
        if isinstance(value, FileOutput):
            suffix = urlparse(value.url).path.rsplit("/", 1)[-1].rpartition(".")[2][:8]
            path = f"files/output-{len(files)}" + (f".{suffix}" if suffix.isalnum() else "")
            files.append((path, value.read()))
            return path
        if isinstance(value, list | tuple):
            return [collect(v) for v in value]
        if isinstance(value, dict):
            return {str(k): collect(v) for k, v in value.items()}
        if hasattr(value, "__iter__") and not isinstance(value, str | bytes):
            return [collect(v) for v in value]  # streamed outputs (iterators of chunks)
        return value

    try:
        return collect(client.run(model, input=model_input)), files
    except ProviderError:
        raise
    except Exception as exc:  # SDK and HTTP failures, without their (possibly secret) text
        raise ProviderError(f"Replicate call failed ({type(exc).__name__})") from None
