"""Deployment: the same topology on one machine, a Ray cluster or Kubernetes.

This package owns how brickwork runs past one process. `topology` describes a deployment
(HTTP front replicas, model tiers with their models, adapters and GPUs or cores, the shared
PostgreSQL store and Redis cache); `replica` builds one replica of the HTTP front (the ASGI
app over one `App` per graph, with the run store and checkpointer in the shared PostgreSQL),
which a Ray Serve replica and a Kubernetes pod both run, holding a PostgreSQL advisory lock
per run while resuming it (`locks`: two replicas never advance one thread); `k8s` renders
plain manifests from a topology (vLLM command lines from `brickwork.serving.profiles`) and
validates them offline;
`ray` runs the front as Ray Serve replicas on a local Ray cluster bound to 127.0.0.1, and
`tiers` each model server as a supervised process inside a Serve replica of its own;
`commands` is `brickwork deploy`. Nothing here imports ray, fastapi or yaml until used.
"""

from __future__ import annotations

from brickwork.deploy.commands import add_deploy_arguments, deploy_main
from brickwork.deploy.k8s import KUBERNETES_VERSION, Manifest, render, validate, vllm_args, write
from brickwork.deploy.replica import FrontSpec, build_front, serve_replica
from brickwork.deploy.tiers import TierProcesses, tier_pool_config, vllm_command
from brickwork.deploy.topology import API_PORT, MODEL_PORT, Tier, Topology, h100_topology

__all__ = [
    "API_PORT",
    "KUBERNETES_VERSION",
    "MODEL_PORT",
    "FrontSpec",
    "Manifest",
    "Tier",
    "TierProcesses",
    "Topology",
    "add_deploy_arguments",
    "build_front",
    "deploy_main",
    "h100_topology",
    "render",
    "serve_replica",
    "tier_pool_config",
    "validate",
    "vllm_args",
    "vllm_command",
    "write",
]
