"""brickwork: compose small language models like bricks.

The public API is what `__all__` lists; everything else is internal. Heavy modules load on
first use, so `import brickwork` stays fast and never imports vLLM, torch, textual or openai.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from brickwork.errors import (
    BrickworkError,
    ConfigError,
    EndpointUnavailableError,
    MissingDependencyError,
    ModelCallError,
    ModelFolderError,
    ModelTimeoutError,
    PortInUseError,
    ServerStartError,
    ServingError,
    UnknownModelError,
)

if TYPE_CHECKING:
    from brickwork.serving.client import EndpointConfig
    from brickwork.serving.launcher import ServerSpec, VLLMServer
    from brickwork.serving.local import LocalServing
    from brickwork.serving.models import ensure_embedded_model
    from brickwork.serving.pool import ModelPool, PoolConfig
    from brickwork.serving.types import ChatRequest, Completion, Usage

__version__ = "0.1.0"

__all__ = [
    "BrickworkError",
    "ChatRequest",
    "Completion",
    "ConfigError",
    "EndpointConfig",
    "EndpointUnavailableError",
    "LocalServing",
    "MissingDependencyError",
    "ModelCallError",
    "ModelFolderError",
    "ModelPool",
    "ModelTimeoutError",
    "PoolConfig",
    "PortInUseError",
    "ServerSpec",
    "ServerStartError",
    "ServingError",
    "UnknownModelError",
    "Usage",
    "VLLMServer",
    "__version__",
    "ensure_embedded_model",
]

_LAZY = {
    "ChatRequest": "brickwork.serving.types",
    "Completion": "brickwork.serving.types",
    "Usage": "brickwork.serving.types",
    "EndpointConfig": "brickwork.serving.client",
    "ModelPool": "brickwork.serving.pool",
    "PoolConfig": "brickwork.serving.pool",
    "ServerSpec": "brickwork.serving.launcher",
    "VLLMServer": "brickwork.serving.launcher",
    "LocalServing": "brickwork.serving.local",
    "ensure_embedded_model": "brickwork.serving.models",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'brickwork' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
