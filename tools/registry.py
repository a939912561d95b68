"""Tools: typed Python functions with JSON schemas, a registry, validation and safe execution.

```python
@tool(timeout_s=2)
def toggle_lights(room: Literal["kitchen", "office"], state: Literal["on", "off"]) -> str:
    \"\"\"Turn the lights of one room on or off.\"\"\"  # plus an `Args:` section
    ...

registry = ToolRegistry([toggle_lights])
registry.call_schema()                       # anyOf of {name: const, parameters: schema}
result = await registry.execute("toggle_lights", {"room": "kitchen", "state": "on"})
```

A tool marked `sensitive=True` (unlocking a door, closing an account, moving money) is one an
agent runs only when the user's own words plainly ask for it (see
`brickwork.agents.injection.not_plainly_asked`); otherwise the run stops and asks for a
confirmation. `verbs` are the words that ask for it (default: the first word of its name).

`execute` never raises for a failing call: unknown tools, bad arguments, exceptions inside the
tool and timeouts come back as `ToolResult.error` (a `ToolError`), for agents to turn into
escalation signals.
"""

from __future__ import annotations

import asyncio
import copy
import functools
import inspect
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Generic, ParamSpec, TypeVar, overload

import jsonschema
from pydantic import BaseModel, ValidationError

from brickwork.errors import (
    ConfigError,
    ToolArgumentsError,
    ToolError,
    ToolExecutionError,
    ToolTimeoutError,
    UnknownToolError,
)
from brickwork.tools._schema import derive_schema

__all__ = ["DEFAULT_TIMEOUT_S", "Tool", "ToolRegistry", "ToolResult", "tool"]

P = ParamSpec("P")
R = TypeVar("R")

DEFAULT_TIMEOUT_S = 30.0
#: Threads that run sync tool functions (shared by every registry in the process).
TOOL_THREADS = 32
"""Time limit of one tool call when neither the call nor the tool sets one."""


@dataclass(frozen=True, eq=False)
class Tool(Generic[P, R]):
    """A callable the model may ask for, described by a JSON schema.

    Calling a `Tool` calls its function directly (no validation), so decorated functions keep
    their signature for ordinary Python callers and type checkers.

    Attributes:
        name: The name the model uses.
        description: What the tool does (the docstring summary).
        parameters: JSON schema of the keyword arguments (a closed object).
        function: The implementation, or None for tools known only by their schema.
        timeout_s: Time limit of one call, overriding the registry default.
        arguments_model: Pydantic model that coerces validated arguments, when derived from
            a Python signature.
        sensitive: A call acts on something that is hard to undo or costly (unlock a door,
            close an account, move money): it runs only when the request plainly asks for it,
            else after the user confirms.
        verbs: Words that plainly ask for this tool's action (default: the first word of its
            name, e.g. "close" for `close_account`).
    """

    name: str
    description: str
    parameters: dict[str, Any]
    function: Callable[P, R] | None = None
    timeout_s: float | None = None
    arguments_model: type[BaseModel] | None = field(default=None, repr=False)
    sensitive: bool = False
    verbs: tuple[str, ...] = ()

    @property
    def action_verbs(self) -> tuple[str, ...]:
        """The words that plainly ask for this tool (`verbs`, or the first word of the name)."""
        return self.verbs or (self.name.split("_")[0],)

    @classmethod
    def from_function(
        cls,
        function: Callable[P, R],
        *,
        name: str | None = None,
        description: str | None = None,
        timeout_s: float | None = None,
        sensitive: bool = False,
        verbs: Sequence[str] = (),
    ) -> Tool[P, R]:
        """Describe a typed function (or bound method) as a tool.

        Args:
            function: A sync or async callable with annotated, keyword-passable parameters.
            name: The tool name; defaults to the function's `__name__`.
            description: Overrides the docstring summary.
            timeout_s: Time limit of one call.
            sensitive: Run calls only when plainly asked for (see the class doc).
            verbs: Words that plainly ask for this tool's action.

        Returns:
            The tool.
        """
        tool_name = name if name is not None else str(getattr(function, "__name__", ""))
        if not tool_name.isidentifier():
            raise TypeError(f"tool name {tool_name!r} is not an identifier; pass name='...'")
        derived = derive_schema(function, name=tool_name)
        return cls(
            name=tool_name,
            description=derived.description if description is None else description,
            parameters=derived.parameters,
            function=function,
            timeout_s=timeout_s,
            arguments_model=derived.model,
            sensitive=sensitive,
            verbs=tuple(verbs),
        )

    @property
    def is_async(self) -> bool:
        """Whether the function is a coroutine function."""
        return self.function is not None and inspect.iscoroutinefunction(self.function)

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        """Call the underlying function with exactly these arguments."""
        if self.function is None:
            raise ToolExecutionError(_no_implementation(self.name), tool=self.name)
        return self.function(*args, **kwargs)


@overload
def tool(function: Callable[P, R], /) -> Tool[P, R]: ...


@overload
def tool(
    *,
    name: str | None = None,
    description: str | None = None,
    timeout_s: float | None = None,
    sensitive: bool = False,
    verbs: Sequence[str] = (),
) -> Callable[[Callable[P, R]], Tool[P, R]]: ...


def tool(
    function: Callable[P, R] | None = None,
    /,
    *,
    name: str | None = None,
    description: str | None = None,
    timeout_s: float | None = None,
    sensitive: bool = False,
    verbs: Sequence[str] = (),
) -> Tool[P, R] | Callable[[Callable[P, R]], Tool[P, R]]:
    """Turn a typed function with a Google-style docstring into a `Tool`.

    Use it bare (`@tool`) or with options (`@tool(name="lights", timeout_s=2)`).

    Args:
        function: The function, when used bare.
        name: The tool name; defaults to the function name.
        description: Overrides the docstring summary.
        timeout_s: Time limit of one call.
        sensitive: Run calls only when the request plainly asks for them (`Tool.sensitive`).
        verbs: Words that plainly ask for this tool's action (`Tool.verbs`).

    Returns:
        The tool, or a decorator that makes one.
    """
    options: dict[str, Any] = {
        "name": name,
        "description": description,
        "timeout_s": timeout_s,
        "sensitive": sensitive,
        "verbs": verbs,
    }
    if function is not None:
        return Tool.from_function(function, **options)

    def decorate(inner: Callable[P, R]) -> Tool[P, R]:
        return Tool.from_function(inner, **options)

    return decorate


@dataclass(frozen=True)
class ToolResult:
    """The outcome of `ToolRegistry.execute`.

    Attributes:
        ok: True when the tool returned a value.
        value: What the tool returned (None on failure).
        error: Why the call failed, or None.
        elapsed_s: Wall time of validation and execution.
    """

    ok: bool
    value: Any
    error: ToolError | None
    elapsed_s: float


class ToolRegistry:
    """The tools one agent may call, by name.

    Args:
        tools: Tools or plain typed functions to register.
        default_timeout_s: Time limit of a call when neither the call nor the tool sets one
            (None: no limit).
    """

    def __init__(
        self,
        tools: Iterable[Tool[..., Any] | Callable[..., Any]] = (),
        *,
        default_timeout_s: float | None = DEFAULT_TIMEOUT_S,
    ) -> None:
        self.default_timeout_s = default_timeout_s
        self._tools: dict[str, Tool[..., Any]] = {}
        self._validators: dict[str, Any] = {}
        for item in tools:
            self.add(item)

    @classmethod
    def from_openai_schemas(
        cls, schemas: Iterable[Mapping[str, Any]], *, close_objects: bool = True
    ) -> ToolRegistry:
        """Build a registry of schema-only tools from OpenAI function-tool definitions.

        Such tools validate arguments but have no implementation: executing one returns a
        `ToolExecutionError`.

        Args:
            schemas: Items like `{"type": "function", "function": {"name", "description",
                "parameters"}}` (the inner object alone is accepted too).
            close_objects: Add `"additionalProperties": false` to parameter schemas that do
                not say, since a model adding unknown arguments is always a mistake.

        Returns:
            The registry.

        Raises:
            ConfigError: An item has no name or its parameters are not a valid JSON schema.
        """
        registry = cls()
        for index, item in enumerate(schemas):
            spec = item.get("function", item)
            if not isinstance(spec, Mapping) or not isinstance(spec.get("name"), str):
                raise ConfigError(f"tool #{index} has no string 'name': {item!r}")
            parameters = copy.deepcopy(dict(spec.get("parameters") or {"type": "object"}))
            try:
                jsonschema.Draft202012Validator.check_schema(parameters)
            except jsonschema.SchemaError as exc:
                raise ConfigError(
                    f"tool {spec['name']!r}: 'parameters' is not a valid JSON schema: "
                    f"{exc.message}; fix the tool definition"
                ) from exc
            if close_objects and parameters.get("type") == "object":
                parameters.setdefault("additionalProperties", False)
            parameters.setdefault("properties", {})
            registry.add(
                Tool(
                    name=spec["name"],
                    description=str(spec.get("description", "")),
                    parameters=parameters,
                )
            )
        return registry

    def add(self, item: Tool[P, R] | Callable[P, R]) -> Tool[P, R]:
        """Register a tool (plain functions and bound methods are wrapped with `tool`).

        Returns:
            The registered tool.

        Raises:
            ConfigError: A tool with the same name is already registered.
        """
        new = item if isinstance(item, Tool) else Tool.from_function(item)
        if new.name in self._tools:
            raise ConfigError(f"tool {new.name!r} is already registered; give one a new name")
        self._tools[new.name] = new
        return new

    def get(self, name: str) -> Tool[..., Any]:
        """The tool called `name`.

        Raises:
            UnknownToolError: No such tool; the message lists the known names.
        """
        try:
            return self._tools[name]
        except KeyError:
            raise UnknownToolError(
                f"unknown tool {name!r}; known tools are {sorted(self._tools)}", tool=name
            ) from None

    def sensitive_names(self) -> tuple[str, ...]:
        """Names of the tools marked sensitive."""
        return tuple(name for name, found in self._tools.items() if found.sensitive)

    def names(self) -> tuple[str, ...]:
        """The registered tool names, in registration order."""
        return tuple(self._tools)

    def __iter__(self) -> Iterator[Tool[..., Any]]:
        return iter(self._tools.values())

    def __len__(self) -> int:
        return len(self._tools)

    def __contains__(self, name: object) -> bool:
        return name in self._tools

    def openai_tools(self) -> list[dict[str, Any]]:
        """The tools as an OpenAI `tools=[...]` list of function definitions."""
        return [
            {
                "type": "function",
                "function": {
                    "name": t.name,
                    "description": t.description,
                    "parameters": copy.deepcopy(t.parameters),
                },
            }
            for t in self
        ]

    def call_schema(self, only: Iterable[str] | None = None) -> dict[str, Any]:
        """JSON schema of one call `{"name": ..., "parameters": {...}}`, for constrained decoding.

        Args:
            only: Allow only these tools (default: every tool of the registry).

        Raises:
            ConfigError: The registry is empty, or `only` names no tool of it.
        """
        if not self._tools:
            raise ConfigError("the tool registry is empty; add at least one tool")
        allowed = None if only is None else set(only)
        tools = [t for t in self if allowed is None or t.name in allowed]
        if not tools:
            raise ConfigError(
                f"none of {sorted(allowed or ())} is a tool of this registry; "
                f"known: {sorted(self._tools)}"
            )
        return {
            "anyOf": [
                {
                    "type": "object",
                    "properties": {
                        "name": {"const": t.name},
                        "parameters": copy.deepcopy(t.parameters),
                    },
                    "required": ["name", "parameters"],
                    "additionalProperties": False,
                }
                for t in tools
            ]
        }

    def validate(self, name: str, arguments: Mapping[str, Any]) -> dict[str, Any]:
        """Check arguments against the tool's JSON schema, then coerce them with Pydantic.

        Args:
            name: The tool name.
            arguments: The arguments the model produced.

        Returns:
            Keyword arguments ready for the function (defaults filled in).

        Raises:
            UnknownToolError: No such tool.
            ToolArgumentsError: The message lists every violation as `path: problem`.
        """
        found = self.get(name)
        validator = self._validators.get(name)
        if validator is None:
            validator = jsonschema.Draft202012Validator(found.parameters)
            self._validators[name] = validator
        errors = sorted(validator.iter_errors(arguments), key=lambda e: (e.json_path, e.message))
        if errors:
            raise _arguments_error(name, [(e.json_path, e.message) for e in errors])
        if found.arguments_model is None:
            return dict(arguments)
        try:
            parsed = found.arguments_model.model_validate(arguments)
        except ValidationError as exc:
            problems = [(_json_path(e["loc"]), e["msg"]) for e in exc.errors()]
            raise _arguments_error(name, problems) from exc
        fields = type(parsed).model_fields
        return {info.alias or key: getattr(parsed, key) for key, info in fields.items()}

    async def execute(
        self, name: str, arguments: Mapping[str, Any], *, timeout_s: float | None = None
    ) -> ToolResult:
        """Validate and run one call; failures come back in the result, never raised.

        Sync functions run in a worker thread (a timed-out thread is abandoned, not killed);
        async functions run on the current loop and are cancelled on timeout.

        Args:
            name: The tool name.
            arguments: The arguments the model produced.
            timeout_s: Time limit for this call, overriding the tool's and the registry's.

        Returns:
            The result; `error` is an `UnknownToolError`, `ToolArgumentsError`,
            `ToolExecutionError` or `ToolTimeoutError` when `ok` is False.
        """
        started = time.perf_counter()
        try:
            kwargs = self.validate(name, arguments)
            value = await self._run(self.get(name), kwargs, timeout_s)
        except ToolError as exc:
            return ToolResult(False, None, exc, time.perf_counter() - started)
        return ToolResult(True, value, None, time.perf_counter() - started)

    async def _run(
        self, found: Tool[..., Any], kwargs: dict[str, Any], limit_s: float | None
    ) -> Any:
        if found.function is None:
            raise ToolExecutionError(_no_implementation(found.name), tool=found.name)
        if limit_s is None:
            limit_s = found.timeout_s if found.timeout_s is not None else self.default_timeout_s
        deadline = asyncio.timeout(limit_s)
        try:
            async with deadline:
                if found.is_async:
                    return await found.function(**kwargs)
                call = functools.partial(found.function, **kwargs)
                return await asyncio.get_running_loop().run_in_executor(_tool_executor(), call)
        except ToolError:
            raise
        except TimeoutError as exc:
            if deadline.expired():
                raise ToolTimeoutError(
                    f"tool {found.name!r} did not return within {limit_s} s; try again later "
                    "or raise its timeout_s",
                    tool=found.name,
                ) from exc
            raise _execution_error(found.name, exc) from exc
        except Exception as exc:
            raise _execution_error(found.name, exc) from exc


_executor_lock = threading.Lock()
_executor: ThreadPoolExecutor | None = None


def _tool_executor() -> ThreadPoolExecutor:
    """The threads that run sync tools.

    Their own, so a call's time limit never runs out while it waits behind other blocking work
    (embeddings, file I/O) in the loop's default pool.
    """
    global _executor
    with _executor_lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(
                max_workers=TOOL_THREADS, thread_name_prefix="brickwork-tool"
            )
        return _executor


def _execution_error(name: str, exc: Exception) -> ToolExecutionError:
    return ToolExecutionError(f"tool {name!r} raised {type(exc).__name__}: {exc}", tool=name)


def _no_implementation(name: str) -> str:
    return (
        f"tool {name!r} has no implementation (it is defined by a JSON schema only); "
        "register a Python function for it to execute calls"
    )


def _arguments_error(name: str, problems: list[tuple[str, str]]) -> ToolArgumentsError:
    listed = "; ".join(f"{path}: {message}" for path, message in problems)
    return ToolArgumentsError(
        f"invalid arguments for tool {name!r}: {listed}. Fix these and call it again.", tool=name
    )


def _json_path(loc: tuple[int | str, ...]) -> str:
    return "$" + "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc)
