"""Adapters carry a payload to a processor and bring back its envelope: transport only.

One keyword-only call for every adapter (SPEC section 8)::

    adapter = get_adapter("local", world_root=...)
    envelope = adapter.invoke(processor_ref=..., mode=..., inputs_json=..., write_prefix=...,
                              execution_id=..., registry_snapshot=..., adapter_opts=...,
                              secrets_present=..., stream=False)

``invoke`` never raises for run-time failures; they come back as error envelopes.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from pytest_theory.adapters.base import Adapter, AdapterError, ProcessorHandle

if TYPE_CHECKING:
    from pytest_theory.adapters.inprocess import InprocessAdapter
    from pytest_theory.adapters.local import LocalAdapter
    from pytest_theory.adapters.modal import ModalAdapter

#: Imported on first use: the in-process adapter pulls in FastAPI and the processors,
#: which a run through Docker never needs (and every pytest start would pay for).
ADAPTERS: dict[str, str] = {
    "local": "pytest_theory.adapters.local:LocalAdapter",
    "inprocess": "pytest_theory.adapters.inprocess:InprocessAdapter",
    "modal": "pytest_theory.adapters.modal:ModalAdapter",
}
_CLASSES = {path.rpartition(":")[2]: path for path in ADAPTERS.values()}


def _load(path: str) -> type[Any]:
    module, _, name = path.partition(":")
    cls: type[Any] = getattr(importlib.import_module(module), name)
    return cls


def __getattr__(name: str) -> Any:
    if name in _CLASSES:
        return _load(_CLASSES[name])
    raise AttributeError(f"module 'adapters' has no attribute {name!r}")


def get_adapter(name: str, **options: Any) -> Adapter:
    """A new adapter by name: ``local``, ``inprocess`` or ``modal``."""
    try:
        path = ADAPTERS[name]
    except KeyError:
        raise ValueError(f"unknown adapter {name!r} (choose from {', '.join(ADAPTERS)})") from None
    adapter: Adapter = _load(path)(**options)
    return adapter


__all__ = [
    "ADAPTERS",
    "Adapter",
    "AdapterError",
    "InprocessAdapter",
    "LocalAdapter",
    "ModalAdapter",
    "ProcessorHandle",
    "get_adapter",
]
