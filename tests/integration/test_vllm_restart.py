"""A server killed with SIGKILL mid-run is restarted; clients fail clearly, then recover."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import pytest

from brickwork.errors import BrickworkError
from brickwork.serving.launcher import RestartPolicy, ServerSpec, VLLMServer, group_members
from brickwork.serving.local import pool_config_for
from brickwork.serving.pool import ModelPool

pytestmark = [pytest.mark.vllm, pytest.mark.slow]


def _group_gone(pgid: int) -> bool:
    return group_members(pgid) == []


async def test_kill_9_restarts_and_clients_recover_then_a_dead_engine_is_restarted(
    embedded_model: Path,
) -> None:
    """kill -9 of the server under load, then of its engine core alone: restarted each time.

    One server for both (a start costs half a minute): three processes (API, engine core,
    worker), so the engine can die alone behind a live API process.
    """
    spec = ServerSpec(
        model=embedded_model, served_name="victim", cores=(0,), worker_in_engine=False
    )
    server = await asyncio.to_thread(
        VLLMServer(
            spec,
            progress=False,
            ready_timeout_s=900,
            restart=RestartPolicy(backoff_s=0.5, unhealthy_after_s=10),
        ).start
    )
    first_pid = server.pid
    assert first_pid is not None
    try:
        async with ModelPool(pool_config_for(server.base_url, "victim")) as pool:
            messages = [{"role": "user", "content": "Write a long story about a lighthouse."}]
            assert (await pool.complete("slm", messages, max_tokens=4)).text

            in_flight = [
                asyncio.create_task(pool.complete("slm", messages, max_tokens=400))
                for _ in range(4)
            ]
            await asyncio.sleep(1.0)  # let them reach the server
            os.kill(first_pid, signal.SIGKILL)
            outcomes = await asyncio.wait_for(
                asyncio.gather(*in_flight, return_exceptions=True), timeout=120
            )
            for outcome in outcomes:
                # Each either finished or failed with a clear brickwork error; none hung.
                assert not isinstance(outcome, BaseException) or isinstance(
                    outcome, BrickworkError
                ), repr(outcome)
            assert any(isinstance(o, BrickworkError) for o in outcomes)

            assert await asyncio.to_thread(server.wait_ready, 600)
            assert server.restarts == 1 and server.pid != first_pid
            assert _group_gone(first_pid)
            # Said when and why, in the events and in the instance's own log.
            assert "process exited on SIGKILL; restarting in" in server.events[0]
            assert "back and ready" in server.events[1]
            assert "=== brickwork: back and ready" in server.log_path.read_text()
            # The circuit may be open from the failures; it half-opens after its reset time.
            await asyncio.sleep(pool.config.circuit.reset_after_s)
            after = await pool.complete("slm", messages, max_tokens=8)
            assert after.text and after.endpoint == "local-vllm"

        # Now the engine core alone: the API process lives on, unhealthy, and is restarted.
        leader = server.pid
        assert leader is not None
        engine = [
            pid
            for pid in group_members(leader)
            if "EngineCore" in Path(f"/proc/{pid}/cmdline").read_text(errors="replace")
        ]
        assert engine, "the API server has no engine core process in its group"
        os.kill(engine[0], signal.SIGKILL)
        deadline = asyncio.get_running_loop().time() + 900
        while server.pid == leader and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.5)
        assert await asyncio.to_thread(server.wait_ready, 900)
        assert server.restarts == 2 and _group_gone(leader)
        async with ModelPool(pool_config_for(server.base_url, "victim")) as pool:
            messages = [{"role": "user", "content": "Say hi."}]
            assert (await pool.complete("slm", messages, max_tokens=4)).text
    finally:
        last_pid = server.pid
        await asyncio.to_thread(server.stop)
    assert server.status == "stopped"
    assert last_pid is not None and _group_gone(last_pid)
