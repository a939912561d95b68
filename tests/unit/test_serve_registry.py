"""`brickwork serve` state files: one per port, found by others, cleaned when stale."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest
from filelock import Timeout

from brickwork.errors import PortInUseError
from brickwork.serving.registry import (
    ServeLease,
    ServeRecord,
    held_cores,
    placement_lock,
    running_servers,
)


def _record(port: int) -> ServeRecord:
    return ServeRecord(
        pid=os.getpid(),
        host="127.0.0.1",
        port=port,
        served_name="slm",
        adapters=("intent",),
        model="/m",
        log="/l",
        started_at="2026-11-23T10:00:00+00:00",
    )


def test_second_lease_on_a_port_is_refused_with_the_holder(tmp_path: Path) -> None:
    first = ServeLease(9100, root=tmp_path)
    first.acquire()
    first.publish(_record(9100))
    with pytest.raises(
        PortInUseError, match=r"already running on port 9100 \(pid \d+, serving 'slm'"
    ):
        ServeLease(9100, root=tmp_path).acquire()
    other = ServeLease(9101, root=tmp_path)
    other.acquire()  # another port is fine
    other.release()
    assert running_servers(tmp_path) == [_record(9100)]
    first.release()
    assert running_servers(tmp_path) == []


def test_stale_records_are_removed(tmp_path: Path) -> None:
    # A record whose lock nobody holds was left by a process that died.
    (tmp_path / "serve-9200.json").write_text(_record(9200).to_json())
    assert running_servers(tmp_path) == []
    assert not (tmp_path / "serve-9200.json").exists()


def test_no_state_dir_means_no_servers(tmp_path: Path) -> None:
    assert running_servers(tmp_path / "absent") == []


def test_a_starting_serve_holds_its_cores_but_is_not_used_yet(tmp_path: Path) -> None:
    lease = ServeLease(9300, root=tmp_path)
    lease.acquire()
    starting = dataclasses.replace(_record(9300), cores={"slm": [0]}, ready=False)
    lease.publish(starting)
    assert running_servers(tmp_path) == []  # nothing is sent to it yet
    assert running_servers(tmp_path, starting=True) == [starting]
    assert list(held_cores(running_servers(tmp_path, starting=True)).values()) == [[0]]
    lease.publish(dataclasses.replace(starting, ready=True))
    assert [r.port for r in running_servers(tmp_path)] == [9300]
    lease.release()


def test_the_placement_lock_is_one_per_state_folder(tmp_path: Path) -> None:
    with placement_lock(tmp_path), pytest.raises(Timeout):
        placement_lock(tmp_path).acquire(timeout=0)
    with placement_lock(tmp_path):  # released
        pass
