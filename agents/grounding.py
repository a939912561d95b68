"""Grounding: whether a value was actually said by the user, or made up by the model.

Schema-valid but invented values are the small model's commonest error ("250 GBP" extracted as
`currency: USD`, a payment reference nobody gave). A value is *grounded* when it appears in what
the user said after normalisation:

- strings: case, underscores, hyphens and runs of spaces are ignored ("living_room" is in
  "Living-room lights on"; "door" is in "doors");
- numbers: 250, 250.0, 250.00 and 1,000 / 1000 are the same number;
- currencies: a code is grounded by itself or its symbol or name (GBP by "£", "pound",
  "sterling"; USD by "$", "dollar"; EUR by "€", "euro"; ...);
- dates: an ISO date (2024-05-06) by the same date written as 6 May, May 6th, 06/05/2024 or
  2024-05-06; a weekday ("monday") by its name or abbreviation.

Booleans and None are never checked. `ungrounded_values` walks nested objects and lists and
names every leaf that fails, in words a repair turn can act on.
"""

from __future__ import annotations

import copy
import datetime as dt
import re
from collections.abc import Collection, Iterable, Mapping
from typing import Any

__all__ = [
    "CURRENCY_WORDS",
    "LABEL_MIN_SEEN",
    "LABEL_SHARE",
    "REFERRING_WORDS",
    "is_grounded",
    "label_parameters",
    "named_choices",
    "normalise_text",
    "overlooked_choices",
    "pin_named_choices",
    "refers_back",
    "said_numbers",
    "ungrounded_values",
]

#: How each currency code may be said.
CURRENCY_WORDS: Mapping[str, tuple[str, ...]] = {
    "GBP": ("£", "pound", "pounds", "sterling", "quid"),
    "USD": ("$", "us$", "dollar", "dollars", "bucks"),
    "EUR": ("€", "euro", "euros"),
    "JPY": ("¥", "yen"),
    "CHF": ("franc", "francs"),
    "INR": ("₹", "rupee", "rupees"),
}
_WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_MONTHS = (
    "january", "february", "march", "april", "may", "june",
    "july", "august", "september", "october", "november", "december",
)  # fmt: skip
_NUMBER = re.compile(r"(?<![\w.])\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?")
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def normalise_text(text: str) -> str:
    """Lower case, underscores and hyphens as spaces, one space between words."""
    return " ".join(text.lower().replace("_", " ").replace("-", " ").split())


def said_numbers(text: str) -> set[float]:
    """Every number in `text` (1,000 and 1000.00 both give 1000.0)."""
    return {float(n.replace(",", "")) for n in _NUMBER.findall(text)}


def is_grounded(value: Any, said: str) -> bool:
    """Whether `value` (a scalar) appears in what the user said, after normalisation."""
    if isinstance(value, bool) or value is None:
        return True
    if isinstance(value, int | float):
        return float(value) in said_numbers(said)
    if not isinstance(value, str):
        return True
    text = normalise_text(said)
    wanted = normalise_text(value)
    if not wanted or wanted in text:  # a substring, as "door" in "doors"
        return True
    code = value.strip().upper()
    if code in CURRENCY_WORDS:
        return any(_contains(text, word) for word in CURRENCY_WORDS[code])
    if wanted in _WEEKDAYS:
        return _contains(text, wanted[:3])
    if _ISO_DATE.match(value.strip()):
        return _date_said(value.strip(), said)
    return False


def ungrounded_values(
    value: Any, said: str, *, skip: Collection[str] = (), path: str = "$"
) -> list[str]:
    """A message for every leaf of `value` the user never said.

    Args:
        value: A scalar, a mapping (field -> value) or a list of them.
        said: Everything the user said.
        skip: Top-level field names not to check (derived fields).
        path: Where `value` sits, for the messages.
    """
    if isinstance(value, Mapping):
        problems = []
        for key, item in value.items():
            if path == "$" and key in skip:
                continue
            problems += ungrounded_values(item, said, path=f"{path}.{key}")
        return problems
    if isinstance(value, list | tuple):
        return [
            p
            for i, item in enumerate(value)
            for p in ungrounded_values(item, said, path=f"{path}[{i}]")
        ]
    if is_grounded(value, said):
        return []
    if isinstance(value, int | float):
        return [f"{path}={value!r}: the user said no such number; use only values the user gave"]
    return [
        f"{path}={value!r} does not appear in the request; use only values the user gave "
        "(leave an optional field out when the user did not give it)"
    ]


#: A parameter is a label when at most this share of its example values were said.
LABEL_SHARE = 0.25
#: ... and at least this many example values were seen.
LABEL_MIN_SEEN = 2


def label_parameters(
    calls: Iterable[tuple[str, Mapping[str, Any], str]],
    *,
    max_share: float = LABEL_SHARE,
    min_seen: int = LABEL_MIN_SEEN,
) -> frozenset[tuple[str, str]]:
    """The (tool, parameter) pairs whose values the examples show are judged, not quoted.

    Grounding assumes an argument copies something the user said. Some arguments are the
    model's judgement instead: `intent_unclear(reason='off_topic')` for "Can you order me a
    pizza?" (nobody says "off topic"). Requiring such a value to be said refuses every right
    answer, on every tier. The examples tell them apart: a string parameter whose example
    values were said by the user in at most `max_share` of at least `min_seen` cases is a
    label, and grounding leaves it alone. (On the shared smart_home conversations,
    `intent_unclear.reason` was said in 0 of 5; every other parameter in 80 % or more.)

    Args:
        calls: (tool name, arguments, everything the user had said) for each answered turn
            of the examples (see `agents.toolcall.answered_turns`).
        max_share: The largest share of said values a label may have.
        min_seen: The fewest values needed to call a parameter a label.
    """
    seen: dict[tuple[str, str], list[bool]] = {}
    for name, arguments, said in calls:
        for key, value in arguments.items():
            if isinstance(value, str) and value.strip():
                seen.setdefault((name, key), []).append(is_grounded(value, said))
    return frozenset(
        pair
        for pair, said_flags in seen.items()
        if len(said_flags) >= min_seen and sum(said_flags) <= max_share * len(said_flags)
    )


#: Words by which a turn refers back to what the user said before ("Lock it for me").
REFERRING_WORDS = frozenset(
    {"it", "them", "that", "those", "this", "these", "one", "ones", "same", "too", "also"}
)


def refers_back(turn: str) -> bool:
    """Whether `turn` refers back to the user's previous turn ("it", "that one", "too", ...)."""
    return not REFERRING_WORDS.isdisjoint(re.findall(r"[a-z]+", turn.lower()))


def overlooked_choices(
    parameters: Mapping[str, Any],
    schema: Mapping[str, Any],
    turn: str,
    previous: str | None = None,
) -> list[str]:
    """A message for every closed-choice argument whose choice the user named but the call missed.

    The converse of grounding: when the user's turn names one of an argument's enum values as
    whole words or in the plural ("on heat mode" for `mode: heat|cool|auto`), the call must set
    that argument to a value the turn names. Leaving it out ("set_thermostat(temperature=75)")
    or setting another value ("unlock the front door" -> `state='lock'`) is an error a repair
    turn can fix. Only string enums of the tool's own parameters are checked, against `turn`
    (the last user turn: earlier turns may name other rooms or doors) and, for a parameter
    `turn` names no value of, against `previous` when `turn` refers back to it ("Lock it for
    me" after "Is the front door locked?" needs `door='front'`; see `named_choices`).

    Args:
        parameters: The call's arguments.
        schema: The tool's parameters JSON schema (an object with `properties`).
        turn: The user's last turn.
        previous: The user's turn before it, if any.
    """
    own = named_choices(schema, turn)
    problems = []
    for name, named in named_choices(schema, turn, previous).items():
        if parameters.get(name) in named:
            continue
        choices = " or ".join(repr(o) for o in named)
        got = f"{name}={parameters[name]!r}" if name in parameters else f"no {name}"
        said = "said" if name in own else "referred back to"
        problems.append(f"the user {said} {choices} (a value of {name}) but the call has {got}")
    return problems


def named_choices(
    schema: Mapping[str, Any], turn: str, previous: str | None = None
) -> dict[str, list[str]]:
    """For each string-enum parameter of `schema`, the values the user named for it.

    The values `turn` names; for a parameter it names none of, the values `previous` names
    when `turn` refers back (`refers_back`). On the shared smart_home conversations such a
    carried value agreed with the gold call in all 22 turns where it applied.
    """
    found = _named_in(schema, turn)
    if previous and refers_back(turn):
        for name, named in _named_in(schema, previous).items():
            found.setdefault(name, named)
    return found


def _named_in(schema: Mapping[str, Any], turn: str) -> dict[str, list[str]]:
    text = normalise_text(turn)
    found: dict[str, list[str]] = {}
    properties = schema.get("properties")
    for name, spec in (properties if isinstance(properties, Mapping) else {}).items():
        options = spec.get("enum") if isinstance(spec, Mapping) else None
        if not isinstance(options, list):
            continue
        named = [o for o in options if isinstance(o, str) and _names(text, normalise_text(o))]
        if named:
            found[name] = named
    return found


def pin_named_choices(
    schema: Mapping[str, Any], turn: str, previous: str | None = None
) -> dict[str, Any]:
    """`schema` (a tool's parameters) with the closed choices the user named pinned.

    Each string-enum parameter with values in `named_choices(schema, turn, previous)` is made
    required and narrowed to them: the calls `overlooked_choices` accepts, as a schema.

    Constrained decoding with it cannot leave out "heat" from "Set the heat to 70", which a
    135M model often does; a call the check would refuse is never written, so no repair turn
    or escalation is spent on it. Accepts exactly what the check accepts, no more.
    """
    named = named_choices(schema, turn, previous)
    if not named:
        return dict(schema)
    pinned = copy.deepcopy(dict(schema))
    for name, values in named.items():
        pinned["properties"][name]["enum"] = values
    pinned["required"] = [
        *pinned.get("required", []),
        *(n for n in named if n not in pinned.get("required", [])),
    ]
    return pinned


def _names(text: str, value: str) -> bool:
    """Whether `text` names `value` as whole words, or its plural ("doors" for "door")."""
    return bool(value) and any(_contains(text, form) for form in (value, f"{value}s", f"{value}es"))


def _contains(text: str, word: str) -> bool:
    if not word[0].isalnum() or not word[-1].isalnum():  # a symbol such as "£" or "$"
        return word in text
    return re.search(rf"(?<!\w){re.escape(word)}(?!\w)", text) is not None


def _date_said(iso: str, said: str) -> bool:
    try:
        day = dt.date.fromisoformat(iso)
    except ValueError:
        return False
    text = normalise_text(said).replace(",", " ")
    month = _MONTHS[day.month - 1]
    forms = [
        normalise_text(iso),
        f"{day.day} {month}",
        f"{day.day} {month[:3]}",
        f"{month} {day.day}",
        f"{month[:3]} {day.day}",
        f"{day.day:02d}/{day.month:02d}",
        f"{day.day}/{day.month}",
        f"{day.month:02d}/{day.day:02d}",
        f"{day.month}/{day.day}",
    ]
    text = re.sub(r"(\d)(st|nd|rd|th)\b", r"\1", text).replace(" of ", " ")
    text = text.replace(".", "/")
    return any(_contains(text, form) for form in forms)
