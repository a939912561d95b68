from __future__ import annotations

import json
from typing import Any

import pytest

from brickwork.errors import ToolArgumentsError, ToolExecutionError
from brickwork.tools.smart_home import BENCHMARK_TOOLS, DeviceError, SmartHomeHub
from tests._paths import SHARED_DATA

DATA = SHARED_DATA / "smart_home"


@pytest.fixture
def hub() -> SmartHomeHub:
    return SmartHomeHub()


def _benchmark_calls() -> list[dict[str, Any]]:
    """Every call in the benchmark's train split: the gold answers and the history turns."""
    path = DATA / "train.jsonl"
    if not path.is_file():
        pytest.skip(f"{path} is not available")
    calls = []
    for line in path.read_text().splitlines():
        row = json.loads(line)
        calls.append(json.loads(row["answer"]))
        for message in json.loads(row["question"]):
            for call in message.get("tool_calls", []):
                fn = call["function"]
                calls.append({"name": fn["name"], "parameters": fn["arguments"]})
    return calls


# --- schemas match the benchmark's tool set ----------------------------------------------------


def test_registry_has_the_benchmark_tools_in_order(hub: SmartHomeHub) -> None:
    assert hub.registry().names() == BENCHMARK_TOOLS
    assert hub.registry(extras=True).names() == (*BENCHMARK_TOOLS, "set_brightness")


def test_derived_schemas_mean_the_same_as_the_job_description(hub: SmartHomeHub) -> None:
    path = DATA / "job_description.json"
    if not path.is_file():
        pytest.skip(f"{path} is not available")
    reference = {
        t["function"]["name"]: t["function"] for t in json.loads(path.read_text())["tools"]
    }
    ours = {t["function"]["name"]: t["function"] for t in hub.registry().openai_tools()}
    assert set(ours) == set(reference)
    for name, spec in reference.items():
        expected, derived = spec["parameters"], ours[name]["parameters"]
        assert set(derived["properties"]) == set(expected["properties"]), name
        assert sorted(derived["required"]) == sorted(expected["required"]), name
        for prop, want in expected["properties"].items():
            got = derived["properties"][prop]
            for keyword in ("type", "enum", "minimum", "maximum"):
                assert got.get(keyword) == want.get(keyword), (name, prop, keyword)
            assert got["description"], (name, prop)


def test_every_benchmark_call_validates_and_runs(hub: SmartHomeHub) -> None:
    calls = _benchmark_calls()
    registry = hub.registry()
    assert len(calls) > 50
    for call in calls:
        arguments = registry.validate(call["name"], call["parameters"])
        function = registry.get(call["name"]).function
        assert function is not None
        function(**arguments)


# --- state changes -----------------------------------------------------------------------------


async def test_lights_on_off_flip_and_all_rooms(hub: SmartHomeHub) -> None:
    registry = hub.registry()
    result = await registry.execute("toggle_lights", {"room": "kitchen", "state": "on"})
    assert result.ok and result.value == {"lights": {"kitchen": {"on": True, "brightness": 100}}}
    assert hub.lights["kitchen"].on and not hub.lights["office"].on
    hub.toggle_lights(room="kitchen")
    assert not hub.lights["kitchen"].on
    hub.toggle_lights(state="on")
    assert all(light.on for light in hub.lights.values())
    hub.toggle_lights(state="off")
    assert not any(light.on for light in hub.lights.values())


def test_brightness(hub: SmartHomeHub) -> None:
    hub.set_brightness("bedroom", 35)
    assert hub.lights["bedroom"].on and hub.lights["bedroom"].brightness == 35
    hub.set_brightness("bedroom", 0)
    assert not hub.lights["bedroom"].on and hub.lights["bedroom"].brightness == 35
    for level in (-1, 101):
        with pytest.raises(DeviceError, match=f"brightness {level} is out of range"):
            hub.set_brightness("bedroom", level)


def test_thermostat(hub: SmartHomeHub) -> None:
    hub.set_thermostat(temperature=74)
    assert (hub.thermostat.mode, hub.thermostat.temperature) == ("auto", 74)
    hub.set_thermostat(mode="cool")
    assert (hub.thermostat.mode, hub.thermostat.temperature) == ("cool", 74)
    unchanged = hub.set_thermostat()
    assert unchanged == {"thermostat": {"mode": "cool", "temperature": 74}, "changed": False}
    for bad in (59, 81, 200):
        with pytest.raises(DeviceError, match=f"temperature {bad} °F is outside"):
            hub.set_thermostat(temperature=bad)
    with pytest.raises(DeviceError, match="unknown thermostat mode 'dry'"):
        hub.set_thermostat(mode="dry")  # type: ignore[arg-type]
    assert hub.thermostat.temperature == 74


def test_doors(hub: SmartHomeHub) -> None:
    hub.lock_door(door="front", state="unlock")
    assert not hub.doors["front"].locked and hub.doors["back"].locked
    hub.lock_door(door="front")
    assert hub.doors["front"].locked
    hub.lock_door(state="unlock")
    assert not any(door.locked for door in hub.doors.values())
    with pytest.raises(DeviceError, match="no door called 'window'"):
        hub.lock_door(door="window", state="unlock")  # type: ignore[arg-type]
    with pytest.raises(DeviceError, match="unknown door command 'open'"):
        hub.lock_door(door="front", state="open")  # type: ignore[arg-type]


def test_status_queries(hub: SmartHomeHub) -> None:
    hub.toggle_lights("bedroom", "on")
    assert hub.get_device_status("lights", "bedroom") == {
        "lights": {"bedroom": {"on": True, "brightness": 100}}
    }
    assert hub.get_device_status("door", "Front Door") == {"doors": {"front": {"locked": True}}}
    assert hub.get_device_status("thermostat") == {
        "thermostat": {"mode": "auto", "temperature": 70}
    }
    everything = hub.get_device_status()
    assert set(everything) == {"lights", "doors", "thermostat"}
    assert everything == hub.snapshot()
    assert set(hub.get_device_status("all", "living room")) == {"lights", "thermostat"}
    with pytest.raises(DeviceError, match="no room or door called 'attic'"):
        hub.get_device_status("lights", "attic")
    with pytest.raises(DeviceError, match="'kitchen' has no door"):
        hub.get_device_status("door", "kitchen")
    with pytest.raises(DeviceError, match="'garage' has no lights"):
        hub.get_device_status("lights", "garage")


def test_scenes(hub: SmartHomeHub) -> None:
    hub.lock_door(state="unlock")
    hub.toggle_lights(state="on")
    hub.set_scene("away")
    assert hub.scene == "away"
    assert not any(light.on for light in hub.lights.values())
    assert all(door.locked for door in hub.doors.values())
    assert hub.thermostat.temperature == 62
    hub.set_scene("movie_night")
    living = hub.lights["living_room"]
    assert living.on and living.brightness == 20
    with pytest.raises(DeviceError, match="no scene given"):
        hub.set_scene()
    with pytest.raises(DeviceError, match="unknown scene 'disco'"):
        hub.set_scene("disco")  # type: ignore[arg-type]


def test_intent_unclear_changes_nothing(hub: SmartHomeHub) -> None:
    before = hub.snapshot()
    assert hub.intent_unclear("off_topic") == {"handled": False, "reason": "off_topic"}
    assert hub.snapshot() == before


# --- rejections through the registry -----------------------------------------------------------


async def test_registry_rejects_impossible_commands(hub: SmartHomeHub) -> None:
    registry = hub.registry(extras=True)
    cases: list[tuple[str, dict[str, Any], str]] = [
        ("toggle_lights", {"room": "garden", "state": "on"}, "$.room: 'garden' is not one of"),
        ("set_thermostat", {"temperature": 95}, "$.temperature: 95 is greater than the maximum"),
        ("lock_door", {"door": "window", "state": "unlock"}, "$.door: 'window' is not one of"),
        ("set_brightness", {"room": "office", "level": 120}, "$.level: 120 is greater"),
        ("set_brightness", {"room": "office"}, "'level' is a required property"),
        ("set_scene", {"scene": "party", "volume": 11}, "'volume' was unexpected"),
    ]
    for name, arguments, fragment in cases:
        result = await registry.execute(name, arguments)
        assert isinstance(result.error, ToolArgumentsError), name
        assert fragment in str(result.error)
    before = hub.snapshot()
    missing = await registry.execute("get_device_status", {"device_type": "door", "room": "attic"})
    assert isinstance(missing.error, ToolExecutionError)
    assert "raised DeviceError: no room or door called 'attic'" in str(missing.error)
    assert hub.snapshot() == before
