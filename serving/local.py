"""The embedded default: the bundled small model on a local vLLM, plus the frontier role.

`LocalServing` reuses a running `brickwork serve` when there is one, and otherwise launches a
private vLLM instance for the life of the context. The frontier role goes to the API named by
`BRICKWORK_FRONTIER_*`; without it, the local model stands in and every completion says so
(`Completion.stand_in`).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Self

from brickwork._settings import FrontierSettings, frontier_settings
from brickwork.serving.client import EndpointConfig
from brickwork.serving.launcher import ServerSpec, VLLMServer
from brickwork.serving.models import EMBEDDED_MODEL, ensure_embedded_model
from brickwork.serving.pool import ModelPool, PoolConfig
from brickwork.serving.registry import ServeRecord, running_servers

__all__ = ["LocalServing", "embedded_spec", "pool_config_for"]

SLM = "slm"
FRONTIER = "frontier"


def embedded_spec(
    *, port: int | None = None, lora_modules: Mapping[str, Path] | None = None
) -> ServerSpec:
    """Server spec for the embedded model (materialised on first use)."""
    return ServerSpec(
        model=ensure_embedded_model(),
        served_name=EMBEDDED_MODEL.served_name,
        port=port,
        lora_modules=dict(lora_modules or {}),
    )


def pool_config_for(
    base_url: str, served_name: str, *, frontier: FrontierSettings | None = None
) -> PoolConfig:
    """Pool with `slm` on the given vLLM and `frontier` on the real API or the stand-in."""
    local = EndpointConfig(name="local-vllm", base_url=base_url, model=served_name, kind="vllm")
    frontier = frontier or frontier_settings()
    if frontier.configured:
        assert frontier.base_url is not None and frontier.model is not None
        remote = EndpointConfig(
            name="frontier",
            base_url=frontier.base_url,
            model=frontier.model,
            kind="openai",
            api_key_env=frontier.api_key_env,
        )
    else:
        remote = EndpointConfig(
            name="frontier-stand-in",
            base_url=base_url,
            model=served_name,
            kind="vllm",
            stand_in=True,
        )
    return PoolConfig(models={SLM: [local], FRONTIER: [remote]})


class LocalServing:
    """Context that provides a pool over the embedded default model.

    with LocalServing() as local:
        pool = local.pool()
    """

    def __init__(self, *, reuse: bool = True, progress: bool = True) -> None:
        self.reuse = reuse
        self.progress = progress
        self.server: VLLMServer | None = None
        self.record: ServeRecord | None = None

    @property
    def base_url(self) -> str:
        """Base URL of the vLLM in use."""
        if self.record is not None:
            return self.record.base_url
        if self.server is not None:
            return self.server.base_url
        raise RuntimeError("LocalServing is not started; use it as a context manager")

    @property
    def served_name(self) -> str:
        """Model name of the base model on that server."""
        return self.record.served_name if self.record is not None else EMBEDDED_MODEL.served_name

    @property
    def origin(self) -> str:
        """Human description of where the model runs."""
        if self.record is not None:
            return f"brickwork serve (pid {self.record.pid}) at {self.record.base_url}"
        return f"private vLLM at {self.base_url}"

    def start(self) -> Self:
        """Find a running `brickwork serve`, or launch a private instance."""
        if self.reuse:
            for record in running_servers():
                if record.served_name == EMBEDDED_MODEL.served_name:
                    self.record = record
                    return self
        self.server = VLLMServer(embedded_spec(), progress=self.progress).start()
        return self

    def stop(self) -> None:
        """Stop the private instance, if this context launched one."""
        if self.server is not None:
            self.server.stop()
            self.server = None

    def pool_config(self) -> PoolConfig:
        """Pool config for this server plus the frontier role."""
        return pool_config_for(self.base_url, self.served_name)

    def pool(self) -> ModelPool:
        """A new pool over this server (close it with `await pool.aclose()`)."""
        return ModelPool(self.pool_config())

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
