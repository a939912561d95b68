"""A simulated smart home: rooms with dimmable lights, one thermostat, door locks, scenes.

Its tools have the names and argument schemas of the smart-home function-calling benchmark
(`toggle_lights`, `set_thermostat`, `lock_door`, `get_device_status`, `set_scene`,
`intent_unclear`), so the calls a model makes there can be executed and their effect checked.
Every argument may be left out, as in the benchmark; the hub then applies a stated default
(all rooms, all doors, flip the lights...) or rejects the command with a `DeviceError`.

```python
hub = SmartHomeHub()
registry = hub.registry()
await registry.execute("toggle_lights", {"room": "kitchen", "state": "on"})
hub.lights["kitchen"].on  # True
```
"""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass
from typing import Annotated, Any, Literal, get_args

from pydantic import Field

from brickwork.tools.registry import Tool, ToolRegistry

__all__ = [
    "BENCHMARK_TOOLS",
    "MAX_TEMPERATURE_F",
    "MIN_TEMPERATURE_F",
    "SENSITIVE_TOOLS",
    "DeviceError",
    "Door",
    "Light",
    "SmartHomeHub",
    "Thermostat",
]

Room = Literal["living_room", "bedroom", "kitchen", "bathroom", "office", "hallway"]
DoorName = Literal["front", "back", "garage", "side"]
Mode = Literal["heat", "cool", "auto"]
Scene = Literal["movie_night", "bedtime", "morning", "away", "party"]
DeviceType = Literal["lights", "thermostat", "door", "all"]
UnclearReason = Literal["ambiguous", "off_topic", "incomplete", "unsupported_device"]

MIN_TEMPERATURE_F = 60
MAX_TEMPERATURE_F = 80
BENCHMARK_TOOLS = (
    "toggle_lights",
    "set_thermostat",
    "lock_door",
    "get_device_status",
    "set_scene",
    "intent_unclear",
)
"""The tools of the benchmark's tool set, in its order (`registry()` registers these)."""
SENSITIVE_TOOLS: dict[str, tuple[str, ...]] = {"lock_door": ("lock", "unlock")}
"""Tools that run only when plainly asked for (name -> the verbs that ask): a door lock."""

ROOMS: tuple[str, ...] = get_args(Room)
DOORS: tuple[str, ...] = get_args(DoorName)
_SCENES: dict[Scene, dict[str, Any]] = {
    # lights: room -> brightness (0 = off); rooms not listed keep their state.
    "movie_night": {"lights": {"living_room": 20, "kitchen": 0, "hallway": 0}},
    "bedtime": {
        "lights": {room: 0 for room in ROOMS} | {"bedroom": 10},
        "lock_all": True,
        "thermostat": ("auto", 67),
    },
    "morning": {"lights": {"bedroom": 80, "kitchen": 100, "bathroom": 100}},
    "away": {"lights": {room: 0 for room in ROOMS}, "lock_all": True, "thermostat": ("auto", 62)},
    "party": {"lights": {"living_room": 100, "kitchen": 100, "hallway": 70}},
}


class DeviceError(Exception):
    """A command the house cannot carry out (unknown device, value out of range, ...)."""


@dataclass
class Light:
    """The lights of one room."""

    on: bool = False
    brightness: int = 100


@dataclass
class Thermostat:
    """The house thermostat (degrees Fahrenheit)."""

    mode: Mode = "auto"
    temperature: int = 70


@dataclass
class Door:
    """One door lock."""

    locked: bool = True


class SmartHomeHub:
    """In-memory state of one house and the tools that change it.

    State is public for inspection: `lights` (room -> Light), `thermostat`, `doors`
    (door -> Door) and `scene` (the last scene activated). All lights start off at full
    brightness, every door locked, the thermostat on auto at 70 °F.
    """

    def __init__(self) -> None:
        self.lights: dict[str, Light] = {room: Light() for room in ROOMS}
        self.thermostat = Thermostat()
        self.doors: dict[str, Door] = {door: Door() for door in DOORS}
        self.scene: str | None = None
        self._lock = threading.Lock()

    def registry(self, *, extras: bool = False) -> ToolRegistry:
        """A registry of this hub's tools, bound to this hub.

        Args:
            extras: Also register `set_brightness`, which the benchmark's tool set lacks.

        Returns:
            The registry (benchmark tools first, in the benchmark's order).
        """
        names = BENCHMARK_TOOLS + (("set_brightness",) if extras else ())
        return ToolRegistry(
            Tool.from_function(
                getattr(self, name),
                sensitive=name in SENSITIVE_TOOLS,
                verbs=SENSITIVE_TOOLS.get(name, ()),
            )
            for name in names
        )

    def snapshot(self) -> dict[str, Any]:
        """The whole state as plain JSON data."""
        with self._lock:
            return self._status("all", None)

    def toggle_lights(
        self, room: Room | None = None, state: Literal["on", "off"] | None = None
    ) -> dict[str, Any]:
        """Turn lights on or off in a specified room.

        Args:
            room: The room whose lights to switch; left out, every room.
            state: Whether the lights should be on or off; left out, each light is flipped.
        """
        with self._lock:
            rooms = ROOMS if room is None else (self._room(room),)
            for name in rooms:
                light = self.lights[name]
                light.on = (not light.on) if state is None else _on_off(state)
            return {"lights": {name: asdict(self.lights[name]) for name in rooms}}

    def set_brightness(
        self, room: Room, level: Annotated[int, Field(ge=0, le=100)]
    ) -> dict[str, Any]:
        """Dim or brighten the lights of one room.

        Args:
            room: The room whose lights to dim.
            level: Brightness in percent; 0 turns the lights off.
        """
        with self._lock:
            light = self.lights[self._room(room)]
            if isinstance(level, bool) or not 0 <= level <= 100:
                raise DeviceError(f"brightness {level!r} is out of range; give 0 to 100 percent")
            light.on = level > 0
            if level > 0:
                light.brightness = level
            return {"lights": {room: asdict(light)}}

    def set_thermostat(
        self,
        temperature: Annotated[int, Field(ge=MIN_TEMPERATURE_F, le=MAX_TEMPERATURE_F)]
        | None = None,
        mode: Mode | None = None,
    ) -> dict[str, Any]:
        """Set the temperature for heating or cooling.

        Args:
            temperature: Target temperature in degrees Fahrenheit, from 60 to 80.
            mode: Heat, cool or auto.
        """
        with self._lock:
            if temperature is not None:
                _check_temperature(temperature)
            if mode is not None and mode not in get_args(Mode):
                raise DeviceError(f"unknown thermostat mode {mode!r}; use one of {get_args(Mode)}")
            if temperature is not None:
                self.thermostat.temperature = temperature
            if mode is not None:
                self.thermostat.mode = mode
            changed = temperature is not None or mode is not None
            return {"thermostat": asdict(self.thermostat), "changed": changed}

    def lock_door(
        self, door: DoorName | None = None, state: Literal["lock", "unlock"] | None = None
    ) -> dict[str, Any]:
        """Lock or unlock a door.

        Args:
            door: Which door; left out, every door.
            state: Lock or unlock; left out, lock.
        """
        with self._lock:
            if state not in (None, "lock", "unlock"):
                raise DeviceError(f"unknown door command {state!r}; use 'lock' or 'unlock'")
            doors = DOORS if door is None else (self._door(door),)
            for name in doors:
                self.doors[name].locked = state != "unlock"
            return {"doors": {name: asdict(self.doors[name]) for name in doors}}

    def get_device_status(
        self, device_type: DeviceType | None = None, room: str | None = None
    ) -> dict[str, Any]:
        """Query the current state of a device or room.

        Args:
            device_type: Lights, thermostat, door or all; left out, all.
            room: The room or door to report on (e.g. "kitchen", "front"); left out, all of them.
        """
        with self._lock:
            if device_type not in (None, *get_args(DeviceType)):
                raise DeviceError(
                    f"unknown device type {device_type!r}; use one of {get_args(DeviceType)}"
                )
            return self._status(device_type or "all", room)

    def set_scene(self, scene: Scene | None = None) -> dict[str, Any]:
        """Activate a predefined scene that sets several devices at once.

        Args:
            scene: The scene to activate.
        """
        with self._lock:
            if scene is None:
                raise DeviceError(f"no scene given; name one of {sorted(_SCENES)}")
            if scene not in _SCENES:
                raise DeviceError(f"unknown scene {scene!r}; use one of {sorted(_SCENES)}")
            plan = _SCENES[scene]
            for room, level in plan["lights"].items():
                self.lights[room].on = level > 0
                self.lights[room].brightness = level or self.lights[room].brightness
            if plan.get("lock_all"):
                for door in self.doors.values():
                    door.locked = True
            if "thermostat" in plan:
                self.thermostat.mode, self.thermostat.temperature = plan["thermostat"]
            self.scene = scene
            return {"scene": scene, **self._status("all", None)}

    def intent_unclear(self, reason: UnclearReason | None = None) -> dict[str, Any]:
        """Call when the request is ambiguous, off-topic, or maps to no smart home function.

        Args:
            reason: Why the request cannot be carried out.
        """
        return {"handled": False, "reason": reason}

    def _room(self, room: str) -> str:
        if room not in self.lights:
            raise DeviceError(f"no room called {room!r} in this house; rooms are {list(ROOMS)}")
        return room

    def _door(self, door: str) -> str:
        if door not in self.doors:
            raise DeviceError(f"no door called {door!r} in this house; doors are {list(DOORS)}")
        return door

    def _status(self, device_type: str, place: str | None) -> dict[str, Any]:
        key = None if place is None else _normalise(place)
        if key is not None and key not in self.lights and key not in self.doors:
            raise DeviceError(
                f"no room or door called {place!r}; "
                f"rooms are {list(ROOMS)}, doors are {list(DOORS)}"
            )
        status: dict[str, Any] = {}
        if device_type in ("lights", "all") and (key is None or key in self.lights):
            rooms = ROOMS if key is None else (key,)
            status["lights"] = {room: asdict(self.lights[room]) for room in rooms}
        if device_type in ("door", "all") and (key is None or key in self.doors):
            doors = DOORS if key is None else (key,)
            status["doors"] = {door: asdict(self.doors[door]) for door in doors}
        if device_type in ("thermostat", "all"):
            status["thermostat"] = asdict(self.thermostat)
        if not status:
            what, places = ("lights", ROOMS) if device_type == "lights" else ("door", DOORS)
            raise DeviceError(f"{place!r} has no {what}; ask about one of {list(places)}")
        return status


def _on_off(state: str) -> bool:
    if state not in ("on", "off"):
        raise DeviceError(f"unknown light state {state!r}; use 'on' or 'off'")
    return state == "on"


def _check_temperature(temperature: int) -> None:
    if isinstance(temperature, bool) or not MIN_TEMPERATURE_F <= temperature <= MAX_TEMPERATURE_F:
        raise DeviceError(
            f"temperature {temperature!r} °F is outside the safe range; "
            f"choose {MIN_TEMPERATURE_F} to {MAX_TEMPERATURE_F} °F"
        )


def _normalise(place: str) -> str:
    """'Living Room' -> 'living_room', 'front door' -> 'front'."""
    key = "_".join(place.strip().lower().replace("-", " ").split())
    return key.removesuffix("_door")
