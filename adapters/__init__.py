"""Adapters carry a payload to a processor and bring back its envelope: transport only.

One keyword-only call for every adapter (SPEC section 8)::

    adapter = get_adapter("local", world_root=...)
    envelope = adapter.invoke(processor_ref=..., mode=..., inputs_json=..., write_prefix=...,
                              execution_id=..., registry_snapshot=..., adapter_opts=...,
                              secrets_present=..., stream=False)

``invoke`` never raises for run-time failures; they come back as error envelopes.
"""

from __future__ import annotations

from typing import Any

from adapters.base import Adapter, AdapterError, ProcessorHandle
from adapters.inprocess import InprocessAdapter
from adapters.local import LocalAdapter
from adapters.modal import ModalAdapter

ADAPTERS: dict[str, type[Any]] = {
    "local": LocalAdapter,
    "inprocess": InprocessAdapter,
    "modal": ModalAdapter,
}


def get_adapter(name: str, **options: Any) -> Adapter:
    """A new adapter by name: ``local``, ``inprocess`` or ``modal``."""
    try:
        factory = ADAPTERS[name]
    except KeyError:
        raise ValueError(f"unknown adapter {name!r} (choose from {', '.join(ADAPTERS)})") from None
    adapter: Adapter = factory(**options)
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
