"""The `brickwork` command line.

brickwork serve [--port P] [--lora NAME=PATH ...]   run the shared local vLLM
brickwork run [TEXT ...] [--pool FILE]              the main job (see README)
brickwork version
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import threading
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from brickwork import __version__
from brickwork._settings import DEFAULT_SERVE_PORT
from brickwork.errors import BrickworkError

__all__ = ["main"]


def _lora(value: str) -> tuple[str, Path]:
    name, sep, path = value.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError(f"expected NAME=PATH, got {value!r}")
    return name, Path(path)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="brickwork", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the shared local vLLM server until Ctrl-C")
    serve.add_argument("--port", type=int, default=DEFAULT_SERVE_PORT)
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--model", type=Path, help="model folder (default: the embedded model)")
    serve.add_argument("--served-name", help="name clients use (default: the model's)")
    serve.add_argument("--lora", type=_lora, action="append", default=[], metavar="NAME=PATH")
    serve.add_argument("--ready-timeout", type=float, default=600.0, metavar="SECONDS")

    run = sub.add_parser("run", help="send requests through the pool and print the results")
    run.add_argument("texts", nargs="*", help="requests (default: a few smart-home commands)")
    run.add_argument("--pool", type=Path, help="pool config (.toml/.json) instead of local vLLM")

    sub.add_parser("version", help="print the version")
    return parser


def _serve(args: argparse.Namespace) -> int:
    from rich.console import Console

    from brickwork.serving.launcher import ServerSpec, VLLMServer
    from brickwork.serving.models import EMBEDDED_MODEL, ensure_embedded_model
    from brickwork.serving.registry import ServeLease, ServeRecord

    console = Console(stderr=True)
    lease = ServeLease(args.port)
    lease.acquire()
    try:
        model = args.model or ensure_embedded_model()
        spec = ServerSpec(
            model=model,
            served_name=args.served_name or EMBEDDED_MODEL.served_name,
            host=args.host,
            port=args.port,
            lora_modules=dict(args.lora),
        )
        server = VLLMServer(spec, ready_timeout_s=args.ready_timeout).start()
        try:
            lease.publish(
                ServeRecord(
                    pid=os.getpid(),
                    host=spec.host,
                    port=server.port,
                    served_name=spec.served_name,
                    adapters=tuple(sorted(spec.lora_modules)),
                    model=str(spec.model),
                    log=str(server.log_path),
                    started_at=datetime.now(UTC).isoformat(timespec="seconds"),
                )
            )
            console.print(
                f"[green]serving[/] {', '.join(spec.model_names)} at {server.base_url} "
                f"(ready in {server.ready_after_s or 0:.1f} s; log {server.log_path}). "
                "Ctrl-C stops."
            )
            done = threading.Event()
            for sig in (signal.SIGINT, signal.SIGTERM):
                signal.signal(sig, lambda *_: done.set())
            while not done.wait(1.0):
                if server.status == "failed":
                    console.print(f"[red]server failed for good[/]:\n{server.log_tail()}")
                    return 1
        finally:
            console.print("stopping...")
            server.stop()
    finally:
        lease.release()
    return 0


async def _run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from brickwork._demo import DEFAULT_COMMANDS, run_demo
    from brickwork.serving.local import LocalServing
    from brickwork.serving.pool import ModelPool

    commands = tuple(args.texts) or DEFAULT_COMMANDS
    if args.pool is not None:
        async with ModelPool.from_config(args.pool) as pool:
            await run_demo(pool, commands)
        return 0
    local = await asyncio.to_thread(LocalServing().start)
    try:
        Console(stderr=True).print(f"model: {local.served_name} on {local.origin}")
        async with local.pool() as pool:
            await run_demo(pool, commands)
    finally:
        await asyncio.to_thread(local.stop)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `brickwork` console script."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "serve":
            return _serve(args)
        if args.command == "run":
            return asyncio.run(_run(args))
        print(__version__)
        return 0
    except BrickworkError as exc:
        from rich.console import Console

        Console(stderr=True).print(f"[red]error:[/] {exc}", highlight=False)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
