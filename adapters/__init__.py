"""Adapters carry a payload to a processor and bring back its envelope: transport only.

One keyword-only call for every adapter (SPEC section 8)::

    adapter = get_adapter("local", world_root=...)
    envelope = adapter.invoke(**invoke_kwargs(spec, execution_id="e-1", inputs={...}))

``invoke`` never raises for run-time failures; they come back as error envelopes.
The interface every adapter implements, and the exception tree, are in ``base``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from pytest_theory.adapters.base import (
    Adapter,
    AdapterError,
    ImageConfig,
    ProcessorHandle,
    invoke_kwargs,
)

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


def _load(path: str) -> type[Adapter]:
    module, _, name = path.partition(":")
    cls: type[Adapter] = getattr(importlib.import_module(module), name)
    return cls


def __getattr__(name: str) -> type[Adapter]:
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
    "ImageConfig",
    "InprocessAdapter",
    "LocalAdapter",
    "ModalAdapter",
    "ProcessorHandle",
    "get_adapter",
    "invoke_kwargs",
]
