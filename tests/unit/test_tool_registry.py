from __future__ import annotations

import asyncio
import threading
import time
from datetime import date
from typing import Annotated, Literal

import jsonschema
import pytest
from pydantic import BaseModel, Field

from brickwork.errors import (
    ConfigError,
    ToolArgumentsError,
    ToolExecutionError,
    ToolTimeoutError,
    UnknownToolError,
)
from brickwork.tools._schema import parse_docstring
from brickwork.tools.registry import Tool, ToolRegistry, ToolResult, tool


class Address(BaseModel):
    street: str
    zip_code: str = Field(pattern=r"^\d{5}$")


@tool
def book_table(
    restaurant: str,
    guests: Annotated[int, Field(ge=1, le=12)],
    day: date,
    seating: Literal["inside", "terrace"] = "inside",
    note: str | None = None,
    tags: list[str] | None = None,
    nullable_rank: int | None = 3,
) -> str:
    """Book a table at a restaurant.

    Longer explanation that is not part of the summary.

    Args:
        restaurant: Name of the restaurant.
        guests (int): How many people, the booker
            included.
        day: The day of the booking.
        seating: Where to sit.
        note: Anything the restaurant should know.
        tags: Labels for the booking.
        nullable_rank: A rank that may be null.

    Returns:
        A confirmation code.
    """
    return f"{restaurant}-{guests}-{day.isoformat()}-{seating}-{note}"


@tool(name="ship", timeout_s=0.05)
def ship_parcel(address: Address, express: bool = False) -> dict[str, object]:
    """Ship a parcel.

    Args:
        address: Where to deliver.
        express: Next-day delivery.
    """
    return {"zip": address.zip_code, "express": express}


@tool
async def fetch_quote(symbol: str, delay_s: float = 0.0) -> float:
    """Fetch a stock quote.

    Args:
        symbol: Ticker symbol.
        delay_s: Artificial latency.
    """
    await asyncio.sleep(delay_s)
    return 42.5 if symbol == "ACME" else 1.0


class QuoteUnavailableError(RuntimeError):
    pass


@tool
def flaky(symbol: str) -> str:
    """Always fails.

    Args:
        symbol: Ignored.
    """
    raise QuoteUnavailableError(f"no quote for {symbol}")


@tool
async def flaky_async(symbol: str) -> str:
    """Always fails, asynchronously."""
    raise QuoteUnavailableError(f"no async quote for {symbol}")


@tool
def raises_timeout_itself() -> str:
    """Raise TimeoutError from inside the tool."""
    raise TimeoutError("upstream timed out")


_release = threading.Event()


@tool
def slow_sync(seconds: float) -> str:
    """Block for a while (or until the test releases it).

    Args:
        seconds: Longest time to block.
    """
    _release.wait(seconds)
    return "done"


def _registry() -> ToolRegistry:
    return ToolRegistry(
        [book_table, ship_parcel, fetch_quote, flaky, flaky_async, raises_timeout_itself, slow_sync]
    )


# --- schema derivation -------------------------------------------------------------------------


def test_tool_metadata_from_docstring() -> None:
    assert isinstance(book_table, Tool)
    assert book_table.name == "book_table"
    assert book_table.description == "Book a table at a restaurant."
    assert ship_parcel.name == "ship"
    assert ship_parcel.timeout_s == 0.05


def test_schema_types_defaults_enums_and_required() -> None:
    schema = book_table.parameters
    props = schema["properties"]
    assert schema["type"] == "object"
    assert schema["additionalProperties"] is False
    assert schema["required"] == ["restaurant", "guests", "day"]
    assert props["restaurant"] == {"type": "string", "description": "Name of the restaurant."}
    assert props["guests"] == {
        "type": "integer",
        "minimum": 1,
        "maximum": 12,
        "description": "How many people, the booker included.",
    }
    assert props["day"]["type"] == "string"
    assert props["day"]["format"] == "date"
    assert props["seating"]["enum"] == ["inside", "terrace"]
    assert props["seating"]["default"] == "inside"
    # `T | None = None` means "may be left out": T's schema, no null, no default.
    assert props["note"] == {
        "type": "string",
        "description": "Anything the restaurant should know.",
    }
    assert props["tags"] == {
        "type": "array",
        "items": {"type": "string"},
        "description": "Labels for the booking.",
    }
    # A non-None default keeps null as a real value.
    assert {"type": "null"} in props["nullable_rank"]["anyOf"]
    assert props["nullable_rank"]["default"] == 3
    assert "title" not in str(schema)
    jsonschema.Draft202012Validator.check_schema(schema)


def test_nested_model_is_inlined_without_refs() -> None:
    schema = ship_parcel.parameters
    assert "$defs" not in schema and "$ref" not in str(schema)
    address = schema["properties"]["address"]
    assert address["type"] == "object"
    assert address["properties"]["zip_code"]["pattern"] == r"^\d{5}$"
    assert address["description"] == "Where to deliver."
    assert schema["properties"]["express"] == {
        "type": "boolean",
        "default": False,
        "description": "Next-day delivery.",
    }


def test_parse_docstring_sections() -> None:
    summary, args = parse_docstring(book_table.function.__doc__ if book_table.function else None)
    assert summary == "Book a table at a restaurant."
    assert args["guests"] == "How many people, the booker included."
    assert "Returns" not in args and "A" not in args
    assert parse_docstring(None) == ("", {})
    assert parse_docstring("Only a summary\nover two lines.") == (
        "Only a summary over two lines.",
        {},
    )


def test_decorator_rejects_untyped_and_variadic_parameters() -> None:
    def untyped(x) -> None:  # type: ignore[no-untyped-def]
        """No annotation."""

    def variadic(*args: int) -> None:
        """Variadic."""

    with pytest.raises(TypeError, match="'x' has no type annotation"):
        tool(untyped)
    with pytest.raises(TypeError, match="'args'"):
        tool(variadic)

    class Thermostat:
        def set(self, degrees: int) -> int:
            """Set.

            Args:
                degrees: Target.
            """
            return degrees

    with pytest.raises(TypeError, match="register the bound method"):
        tool(Thermostat.set)
    bound = ToolRegistry([Thermostat().set]).get("set")
    assert list(bound.parameters["properties"]) == ["degrees"] and bound(degrees=3) == 3


def test_parameter_names_that_shadow_basemodel_attributes() -> None:
    def query(schema: str, json: int = 1) -> str:
        """Query.

        Args:
            schema: A schema name.
            json: A number.
        """
        return f"{schema}{json}"

    registry = ToolRegistry([query])
    assert set(registry.get("query").parameters["properties"]) == {"schema", "json"}
    assert registry.validate("query", {"schema": "s"}) == {"schema": "s", "json": 1}


# --- static typing preserved -------------------------------------------------------------------


def test_decorated_function_is_still_directly_callable() -> None:
    code: str = book_table("Chez Nous", 2, date(2026, 5, 1), seating="terrace")
    assert code == "Chez Nous-2-2026-05-01-terrace-None"
    result: dict[str, object] = ship_parcel(Address(street="Main St 1", zip_code="12345"))
    assert result == {"zip": "12345", "express": False}
    assert asyncio.run(fetch_quote("ACME")) == 42.5


# --- registry ----------------------------------------------------------------------------------


def test_registry_names_get_and_duplicates() -> None:
    registry = _registry()
    assert registry.names()[:3] == ("book_table", "ship", "fetch_quote")
    assert "ship" in registry and len(registry) == 7
    assert registry.get("ship") is ship_parcel
    with pytest.raises(UnknownToolError, match=r"'nope'.*known tools"):
        registry.get("nope")
    with pytest.raises(ConfigError, match="already registered"):
        registry.add(book_table)


def test_openai_tools_and_call_schema() -> None:
    registry = ToolRegistry([book_table, ship_parcel])
    tools = registry.openai_tools()
    assert tools[0] == {
        "type": "function",
        "function": {
            "name": "book_table",
            "description": "Book a table at a restaurant.",
            "parameters": book_table.parameters,
        },
    }
    schema = registry.call_schema()
    assert [branch["properties"]["name"] for branch in schema["anyOf"]] == [
        {"const": "book_table"},
        {"const": "ship"},
    ]
    validator = jsonschema.Draft202012Validator(schema)
    good = {"name": "ship", "parameters": {"address": {"street": "x", "zip_code": "12345"}}}
    assert validator.is_valid(good)
    # Parameters of one tool under the name of another do not match.
    assert not validator.is_valid({"name": "book_table", "parameters": good["parameters"]})
    assert not validator.is_valid({**good, "extra": 1})
    with pytest.raises(ConfigError, match="empty"):
        ToolRegistry().call_schema()


def test_validate_coerces_and_fills_defaults() -> None:
    registry = _registry()
    args = registry.validate("book_table", {"restaurant": "R", "guests": 4, "day": "2026-05-01"})
    assert args == {
        "restaurant": "R",
        "guests": 4,
        "day": date(2026, 5, 1),
        "seating": "inside",
        "note": None,
        "tags": None,
        "nullable_rank": 3,
    }
    shipped = registry.validate("ship", {"address": {"street": "a", "zip_code": "99999"}})
    assert shipped["address"] == Address(street="a", zip_code="99999")


def test_validate_lists_every_violation_path() -> None:
    registry = _registry()
    with pytest.raises(ToolArgumentsError) as caught:
        registry.validate(
            "book_table",
            {"restaurant": 7, "guests": 40, "seating": "roof", "extra": True},
        )
    message = str(caught.value)
    assert caught.value.tool == "book_table"
    for fragment in (
        "$.restaurant: 7 is not of type 'string'",
        "$.guests: 40 is greater than the maximum of 12",
        "$.seating: 'roof' is not one of ['inside', 'terrace']",
        "'day' is a required property",
        "'extra' was unexpected",
    ):
        assert fragment in message
    with pytest.raises(ToolArgumentsError, match=r"\$\.address\.zip_code"):
        registry.validate("ship", {"address": {"street": "a", "zip_code": "1"}})
    with pytest.raises(ToolArgumentsError, match=r"\$: \[1\] is not of type 'object'"):
        registry.validate("ship", [1])  # type: ignore[arg-type]
    with pytest.raises(UnknownToolError):
        registry.validate("nope", {})


def test_validate_reports_pydantic_only_failures_with_paths() -> None:
    # JSON schema says "string" for a date; the bad date is caught by Pydantic.
    with pytest.raises(ToolArgumentsError, match=r"\$\.day: "):
        _registry().validate("book_table", {"restaurant": "R", "guests": 1, "day": "someday"})


# --- execute -----------------------------------------------------------------------------------


async def test_execute_sync_and_async_ok() -> None:
    registry = _registry()
    result = await registry.execute(
        "book_table", {"restaurant": "R", "guests": 2, "day": "2026-01-02"}
    )
    assert result == ToolResult(True, "R-2-2026-01-02-inside-None", None, result.elapsed_s)
    assert result.elapsed_s >= 0
    quote = await registry.execute("fetch_quote", {"symbol": "ACME"})
    assert quote.ok and quote.value == 42.5 and quote.error is None


@pytest.mark.parametrize(
    ("name", "text"), [("flaky", "no quote"), ("flaky_async", "no async quote")]
)
async def test_execute_turns_exceptions_into_execution_errors(name: str, text: str) -> None:
    result = await _registry().execute(name, {"symbol": "X"})
    assert not result.ok and result.value is None
    assert isinstance(result.error, ToolExecutionError)
    assert f"raised QuoteUnavailableError: {text} for X" in str(result.error)
    assert isinstance(result.error.__cause__, QuoteUnavailableError)
    assert result.error.tool == name


async def test_timeout_error_raised_inside_tool_is_not_a_timeout() -> None:
    result = await _registry().execute("raises_timeout_itself", {})
    assert isinstance(result.error, ToolExecutionError)
    assert "TimeoutError: upstream timed out" in str(result.error)


async def test_execute_async_timeout() -> None:
    result = await _registry().execute(
        "fetch_quote", {"symbol": "ACME", "delay_s": 5}, timeout_s=0.05
    )
    assert isinstance(result.error, ToolTimeoutError)
    assert "0.05" in str(result.error)
    assert result.elapsed_s < 2


async def test_execute_sync_timeout_uses_tool_then_registry_default() -> None:
    registry = ToolRegistry([slow_sync], default_timeout_s=0.05)
    try:
        started = time.perf_counter()
        result = await registry.execute("slow_sync", {"seconds": 5})
        assert isinstance(result.error, ToolTimeoutError)
        assert time.perf_counter() - started < 2
        fast = await registry.execute("slow_sync", {"seconds": 0}, timeout_s=5)
        assert fast.ok and fast.value == "done"
    finally:
        _release.set()


async def test_execute_unknown_tool_and_bad_arguments_do_not_raise() -> None:
    registry = _registry()
    unknown = await registry.execute("teleport", {})
    assert isinstance(unknown.error, UnknownToolError) and not unknown.ok
    bad = await registry.execute("fetch_quote", {"ticker": "X"})
    assert isinstance(bad.error, ToolArgumentsError)


# --- schema-only tools -------------------------------------------------------------------------

OPENAI_TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "set_alarm",
            "description": "Set an alarm.",
            "parameters": {
                "type": "object",
                "properties": {
                    "hour": {"type": "integer", "minimum": 0, "maximum": 23},
                    "label": {"type": "string"},
                },
                "required": ["hour"],
            },
        },
    },
    {"name": "snooze", "description": "Snooze.", "parameters": {"type": "object"}},
]


async def test_from_openai_schemas_validates_but_cannot_execute() -> None:
    registry = ToolRegistry.from_openai_schemas(OPENAI_TOOLS)
    assert registry.names() == ("set_alarm", "snooze")
    alarm = registry.get("set_alarm")
    assert alarm.function is None and alarm.parameters["additionalProperties"] is False
    assert registry.validate("set_alarm", {"hour": 7}) == {"hour": 7}
    with pytest.raises(ToolArgumentsError, match=r"\$\.hour: 24 is greater"):
        registry.validate("set_alarm", {"hour": 24})
    with pytest.raises(ToolArgumentsError, match="'hour' is a required property"):
        registry.validate("set_alarm", {"label": "x"})
    result = await registry.execute("set_alarm", {"hour": 7})
    assert isinstance(result.error, ToolExecutionError)
    assert "no implementation" in str(result.error)
    with pytest.raises(ToolExecutionError, match="no implementation"):
        alarm()
    # The original definitions are not mutated.
    assert "additionalProperties" not in OPENAI_TOOLS[0]["function"]["parameters"]  # type: ignore[index]


def test_from_openai_schemas_can_leave_objects_open() -> None:
    registry = ToolRegistry.from_openai_schemas(OPENAI_TOOLS, close_objects=False)
    assert registry.validate("set_alarm", {"hour": 1, "extra": 2}) == {"hour": 1, "extra": 2}


@pytest.mark.parametrize(
    ("bad", "match"),
    [
        ({"type": "function", "function": {"description": "no name"}}, "no string 'name'"),
        ({"name": "x", "parameters": {"type": "nonsense"}}, "not a valid JSON schema"),
    ],
)
def test_from_openai_schemas_rejects_malformed(bad: dict[str, object], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        ToolRegistry.from_openai_schemas([bad])


async def test_sync_tools_do_not_wait_behind_the_default_thread_pool() -> None:
    loop = asyncio.get_running_loop()
    release = threading.Event()
    # Occupy every thread of the loop's default executor (as 1,000 queued embeddings would).
    clog = [loop.run_in_executor(None, release.wait, 5.0) for _ in range(64)]
    try:
        result = await _registry().execute("slow_sync", {"seconds": 0.01}, timeout_s=1.0)
    finally:
        release.set()
        await asyncio.gather(*clog)
    assert result.ok, result.error
