"""llm/litellm@1 over HTTP: ``uvicorn app.http:app``."""

from pathlib import Path

from pytest_theory.processors.runtime import create_app

from .handler import handle

app = create_app(handle, registry_path=Path(__file__).resolve().parent.parent / "registry.yaml")
