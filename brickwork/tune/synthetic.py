"""Templated synthetic examples: the project's own training data for the bundled specialists.

A template is a request with slots (`"Turn {state} the {room} lights"`) and the tool call it
asks for; filling the slots from the tool's own value sets (rooms, doors, scenes, the
thermostat's range) gives labelled examples whose labels are right by construction. They are
what the shipped smart_home adapter was trained on (see `skills/adapters/`), so the demo's
specialist never saw the reference data under `../shared/data` (which only tests may read).

```python
examples = smart_home_examples(240, seed=0)     # [Example(question, answer), ...]
write_examples(examples, "synthetic.jsonl")     # question/answer JSONL for `brickwork tune`
```

Each example is checked against the skill's contract by `build_dataset`, like any other.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["Template", "smart_home_examples", "smart_home_templates", "write_examples"]

#: How people name each room (only names the tool-call grounding check recognises).
_ROOM_WORDS = {
    "living_room": ("living room",),
    "bedroom": ("bedroom",),
    "kitchen": ("kitchen",),
    "bathroom": ("bathroom",),
    "office": ("office",),
    "hallway": ("hallway",),
}
_DOORS = ("front", "back", "garage", "side")
_SCENES = {
    "movie_night": ("movie night", "the movie night scene", "movie mode"),
    "bedtime": ("bedtime", "the bedtime scene", "bedtime mode"),
    "morning": ("the morning scene", "morning mode"),
    "away": ("away mode", "the away scene"),
    "party": ("party mode", "the party scene"),
}

Slots = dict[str, str]
Call = dict[str, Any]


@dataclass(frozen=True)
class Template:
    """Request phrasings and the call they ask for, as a function of the filled slots.

    Attributes:
        phrasings: Format strings over the slot names.
        slots: Slot name -> the values it takes (picked uniformly).
        call: The tool call (`{"name", "parameters"}`) for one filling.
    """

    phrasings: tuple[str, ...]
    slots: dict[str, tuple[str, ...]]
    call: Callable[[Slots], Call]


def _room_phrase(room: str, rng: random.Random) -> str:
    return rng.choice(_ROOM_WORDS[room])


def smart_home_templates() -> list[Template]:
    """The smart_home templates: lights, thermostat, locks, status, scenes, unclear."""
    rooms = tuple(_ROOM_WORDS)
    temperatures = tuple(str(t) for t in range(62, 79))

    def lights(s: Slots) -> Call:
        return {"name": "toggle_lights", "parameters": {"room": s["room"], "state": s["state"]}}

    return [
        Template(
            (
                "Turn {state} the {room_word} lights",
                "Switch the {room_word} lights {state}",
                "Can you turn the lights {state} in the {room_word}?",
                "Please switch {state} the lights in the {room_word}",
                "{state_cap} with the {room_word} lights",
                "Lights {state} in the {room_word}, please",
            ),
            {"room": rooms, "state": ("on", "off")},
            lights,
        ),
        Template(
            (
                "Kill the {room_word} lights",
                "It's too bright in the {room_word}, shut the lights off",
                "Nobody's in the {room_word}, lights off",
            ),
            {"room": rooms, "state": ("off",)},
            lights,
        ),
        Template(
            (
                "I can't see a thing in the {room_word}, put the lights on",
                "Light up the {room_word}",
                "I'm heading into the {room_word}, lights on please",
            ),
            {"room": rooms, "state": ("on",)},
            lights,
        ),
        Template(
            ("Turn {state} all the lights", "Switch every light {state}"),
            {"state": ("on", "off")},
            lambda s: {"name": "toggle_lights", "parameters": {"state": s["state"]}},
        ),
        Template(
            (
                "Set the thermostat to {t}",
                "Make it {t} degrees in here",
                "Change the temperature to {t}",
                "I'd like the house at {t} degrees",
            ),
            {"t": temperatures},
            lambda s: {"name": "set_thermostat", "parameters": {"temperature": int(s["t"])}},
        ),
        Template(
            (
                "It's cold, heat the house to {t}",
                "Put the heating on at {t}",
                "Warm it up to {t} degrees",
            ),
            {"t": temperatures},
            lambda s: {
                "name": "set_thermostat",
                "parameters": {"temperature": int(s["t"]), "mode": "heat"},
            },
        ),
        Template(
            ("Cool the house down to {t}", "Put the AC on at {t}", "It's hot, cool it to {t}"),
            {"t": temperatures},
            lambda s: {
                "name": "set_thermostat",
                "parameters": {"temperature": int(s["t"]), "mode": "cool"},
            },
        ),
        Template(
            (
                "{verb_cap} the {door} door",
                "Please {verb} the {door} door",
                "Can you {verb} the {door} door?",
                "{verb_cap} the {door} door for me",
            ),
            {"door": _DOORS, "verb": ("lock", "unlock")},
            lambda s: {"name": "lock_door", "parameters": {"door": s["door"], "state": s["verb"]}},
        ),
        Template(
            ("Lock all the doors", "Lock every door in the house", "Lock up the house"),
            {},
            lambda s: {"name": "lock_door", "parameters": {"state": "lock"}},
        ),
        Template(
            (
                "Is the {door} door locked?",
                "Did I lock the {door} door?",
                "Check whether the {door} door is locked",
            ),
            {"door": _DOORS},
            lambda s: {
                "name": "get_device_status",
                "parameters": {"device_type": "door", "room": s["door"]},
            },
        ),
        Template(
            (
                "Are the {room_word} lights on?",
                "Did I leave the lights on in the {room_word}?",
                "Are the lights in the {room_word} still on?",
            ),
            {"room": rooms},
            lambda s: {
                "name": "get_device_status",
                "parameters": {"device_type": "lights", "room": s["room"]},
            },
        ),
        Template(
            (
                "What's the thermostat set to?",
                "What temperature is the thermostat at?",
                "Tell me the thermostat mode",
                "What mode is the heating in?",
            ),
            {},
            lambda s: {"name": "get_device_status", "parameters": {"device_type": "thermostat"}},
        ),
        Template(
            (
                "Start {scene_word}",
                "Activate {scene_word}",
                "Switch the house to {scene_word}",
                "Set up {scene_word}, please",
            ),
            {"scene": tuple(_SCENES)},
            lambda s: {"name": "set_scene", "parameters": {"scene": s["scene"]}},
        ),
        Template(
            (
                "What's the weather going to be tomorrow?",
                "Who won the football last night?",
                "Tell me a joke",
                "What's the capital of Portugal?",
                "Order me a pizza",
                "Book a table for two at eight",
            ),
            {},
            lambda s: {"name": "intent_unclear", "parameters": {"reason": "off_topic"}},
        ),
        Template(
            (
                "Open the blinds in the {room_word}",
                "Turn on the sprinklers",
                "Start the dishwasher",
                "Turn on the TV in the {room_word}",
                "Run the robot vacuum in the {room_word}",
            ),
            {"room": rooms},
            lambda s: {"name": "intent_unclear", "parameters": {"reason": "unsupported_device"}},
        ),
    ]


def _fill(template: Template, rng: random.Random) -> tuple[str, Call]:
    slots = {name: rng.choice(values) for name, values in template.slots.items()}
    words = dict(slots)
    if "room" in slots:
        words["room_word"] = _room_phrase(slots["room"], rng)
    if "state" in slots:
        words["state_cap"] = slots["state"].capitalize()
    if "verb" in slots:
        words["verb_cap"] = slots["verb"].capitalize()
    if "scene" in slots:
        words["scene_word"] = rng.choice(_SCENES[slots["scene"]])
    phrasing = rng.choice(template.phrasings)
    return phrasing.format(**words), template.call(slots)


def smart_home_examples(
    count: int, *, seed: int = 0, templates: Sequence[Template] | None = None
) -> list[dict[str, str]]:
    """`count` distinct question/answer examples (fewer if the templates run out).

    Templates are visited in turn, so every kind of call is represented; the same seed gives
    the same examples.
    """
    rng = random.Random(seed)
    chosen = list(templates or smart_home_templates())
    seen: set[str] = set()
    examples: list[dict[str, str]] = []
    misses = 0
    while len(examples) < count and misses < 50 * max(count, 1):
        template = chosen[len(examples) % len(chosen)] if misses == 0 else rng.choice(chosen)
        question, call = _fill(template, rng)
        if question in seen:
            misses += 1
            continue
        misses = 0
        seen.add(question)
        examples.append({"question": question, "answer": json.dumps(call)})
    return examples


def write_examples(examples: Sequence[dict[str, str]], path: str | Path) -> Path:
    """Write question/answer JSONL (what `brickwork tune --data` reads)."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("".join(json.dumps(e) + "\n" for e in examples), encoding="utf-8")
    return out
