"""Plain Kubernetes manifests for a `Topology`, rendered from Python and validated offline.

    brickwork deploy k8s --render deploy/ [--api-replicas 2] [--slm-replicas 2]

What is rendered (one YAML file per object, `kubectl apply -f DIR` applies them all):

- a ConfigMap with the pool config (which Service answers each logical model) and the
  non-secret settings (graphs, Redis URL);
- the HTTP front: a Deployment of `api_replicas` pods running `brickwork deploy replica`
  (the same ASGI app a Ray Serve replica runs), with readiness and liveness probes on
  `/health`, Prometheus scrape annotations for `/metrics`, the store URL read from a Secret
  (never written here), and a Service;
- per model tier: a Deployment whose container runs the vLLM command line taken from
  `brickwork.serving.profiles` (GPU: `--tensor-parallel-size`, multi-LoRA flags with
  `--lora-modules name=/adapters/name`) or the launcher's `ServerSpec` (CPU), requesting
  `nvidia.com/gpu` or CPU cores, adapters mounted read-only from a PersistentVolumeClaim,
  a startup probe that allows for loading weights, and a Service.

PostgreSQL and Redis are referenced, not deployed: operators run them already. `validate`
checks every object against the Kubernetes OpenAPI schemas bundled in `kubernetes-validate`
(strict: unknown fields fail), with no cluster and no network.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from brickwork.deploy.topology import API_PORT, MODEL_PORT, Tier, Topology
from brickwork.errors import ConfigError, MissingDependencyError

__all__ = ["KUBERNETES_VERSION", "Manifest", "render", "validate", "vllm_args", "write"]

Manifest = dict[str, Any]

#: The Kubernetes version manifests are validated against.
KUBERNETES_VERSION = "1.31"
_POOL_MOUNT = "/etc/brickwork"
_ADAPTERS_MOUNT = "/adapters"


def render(topology: Topology) -> list[Manifest]:
    """Every object of the deployment, in the order `kubectl apply` should create them."""
    if not topology.tiers:
        raise ConfigError("the topology has no model tier to deploy; add one")
    objects = [_config_map(topology), *_api(topology)]
    for tier in topology.tiers:
        objects += _tier(topology, tier)
    return objects


def write(topology: Topology, folder: Path) -> list[Path]:
    """Render into `folder` (created), one `NN-kind-name.yaml` per object; the paths."""
    import yaml

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, manifest in enumerate(render(topology)):
        kind = manifest["kind"].lower()
        path = folder / f"{index:02d}-{kind}-{manifest['metadata']['name']}.yaml"
        path.write_text(yaml.safe_dump(manifest, sort_keys=False))
        paths.append(path)
    return paths


def validate(manifests: list[Manifest], version: str = KUBERNETES_VERSION) -> None:
    """Check each object against the Kubernetes schemas of `version` (strict), offline.

    Raises:
        ConfigError: An object does not validate (its kind, name and the failing field).
        MissingDependencyError: `kubernetes-validate` is not installed (extra `k8s`).
    """
    try:
        import kubernetes_validate
    except ImportError as exc:
        raise MissingDependencyError("kubernetes-validate", "k8s", "validating manifests") from exc
    for manifest in manifests:
        try:
            kubernetes_validate.validate(manifest, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            where = ".".join(str(part) for part in exc.path)
            raise ConfigError(
                f"{manifest['kind']} {manifest['metadata']['name']!r} is not a valid Kubernetes "
                f"{version} object at {where or 'top level'}: {exc.message}"
            ) from None


# -- objects ----------------------------------------------------------------------------------


def _meta(topology: Topology, name: str, component: str) -> dict[str, Any]:
    labels = {
        "app.kubernetes.io/name": name,
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/part-of": topology.name,
        **topology.labels,
    }
    return {"name": name, "namespace": topology.namespace, "labels": labels}


def _config_map(topology: Topology) -> Manifest:
    data = {
        "pool.json": json.dumps(topology.pool_config(), indent=2),
        "BRICKWORK_GRAPHS": ",".join(topology.graphs),
    }
    if topology.redis_url is not None:
        data["BRICKWORK_REDIS_URL"] = topology.redis_url
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _meta(topology, f"{topology.name}-config", "config"),
        "data": data,
    }


def _probe(path: str, port: str, *, period: int, failures: int) -> dict[str, Any]:
    return {
        "httpGet": {"path": path, "port": port},
        "periodSeconds": period,
        "timeoutSeconds": 5,
        "failureThreshold": failures,
    }


def _deployment(
    topology: Topology,
    name: str,
    component: str,
    replicas: int,
    pod: dict[str, Any],
    annotations: dict[str, str] | None = None,
) -> Manifest:
    meta = _meta(topology, name, component)
    template_meta: dict[str, Any] = {"labels": meta["labels"]}
    if annotations:
        template_meta["annotations"] = annotations
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": meta,
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app.kubernetes.io/name": name}},
            "template": {"metadata": template_meta, "spec": pod},
        },
    }


def _service(topology: Topology, name: str, component: str, port: int) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(topology, name, component),
        "spec": {
            "selector": {"app.kubernetes.io/name": name},
            "ports": [{"name": "http", "port": port, "targetPort": "http", "protocol": "TCP"}],
        },
    }


def _api(topology: Topology) -> list[Manifest]:
    name = f"{topology.name}-api"
    secret, key = topology.store_secret
    config = f"{topology.name}-config"
    env: list[dict[str, Any]] = [
        {"name": "BRICKWORK_STORE_URL", "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}
    ]
    env += [
        {"name": var, "valueFrom": {"configMapKeyRef": {"name": config, "key": var}}}
        for var in ("BRICKWORK_GRAPHS", "BRICKWORK_REDIS_URL")
        if var != "BRICKWORK_REDIS_URL" or topology.redis_url is not None
    ]
    args = ["deploy", "replica", "--host", "0.0.0.0", "--port", str(API_PORT)]  # noqa: S104
    args += ["--pool", f"{_POOL_MOUNT}/pool.json", "--store", "$(BRICKWORK_STORE_URL)"]
    args += ["--graphs", "$(BRICKWORK_GRAPHS)"]
    if topology.redis_url is not None:
        args += ["--redis", "$(BRICKWORK_REDIS_URL)"]
    container = {
        "name": "api",
        "image": topology.image,
        "command": ["brickwork"],
        "args": args,
        "ports": [{"name": "http", "containerPort": API_PORT}],
        "env": env,
        "resources": {
            "requests": {"cpu": topology.api_cpu, "memory": topology.api_memory},
            "limits": {"memory": topology.api_memory},
        },
        "readinessProbe": _probe("/health", "http", period=5, failures=3),
        "livenessProbe": _probe("/health", "http", period=10, failures=6),
        "volumeMounts": [{"name": "config", "mountPath": _POOL_MOUNT, "readOnly": True}],
    }
    pod = {
        "containers": [container],
        "volumes": [{"name": "config", "configMap": {"name": config}}],
    }
    scrape = {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": str(API_PORT),
        "prometheus.io/path": "/metrics",
    }
    return [
        _deployment(topology, name, "api", topology.api_replicas, pod, scrape),
        _service(topology, name, "api", API_PORT),
    ]


def vllm_args(tier: Tier) -> list[str]:
    """The vLLM server's arguments for `tier` (after `python3 -m <module>`), from the launcher.

    GPU tiers take them from `serving.profiles.InstancePlan` (checked to fit on H100s);
    CPU tiers from `serving.launcher.ServerSpec`, as `brickwork serve` runs them.
    """
    from brickwork.serving.profiles import H100_80GB, BaseModelProfile, InstancePlan, LaunchPlan

    if tier.device == "gpu":
        profile = BaseModelProfile(
            name=tier.served_name, path=tier.model, params_b=tier.params_b, dtype=tier.dtype
        )
        instance = InstancePlan(
            model=profile,
            port=MODEL_PORT,
            gpus=tuple(range(tier.gpus)),
            tensor_parallel_size=tier.gpus,
            lora_modules=tier.adapter_paths(_ADAPTERS_MOUNT),
            max_loras=tier.max_loras,
            max_lora_rank=tier.max_lora_rank,
            max_model_len=tier.max_model_len,
            quantization="fp8" if tier.fp8 else None,
            kv_cache_dtype="fp8" if tier.fp8 else "auto",
            host="0.0.0.0",  # noqa: S104 - inside the pod; the Service is the way in
        )
        LaunchPlan(instances=(instance,), gpus=(H100_80GB,) * tier.gpus)  # refuses misfits
        return instance.command()[3:]
    from brickwork.serving.launcher import ServerSpec

    spec = ServerSpec(
        model=Path(tier.model),
        served_name=tier.served_name,
        lora_modules={n: Path(p) for n, p in tier.adapter_paths(_ADAPTERS_MOUNT).items()},
        dtype=tier.dtype,
        host="0.0.0.0",  # noqa: S104 - inside the pod; the Service is the way in
        max_model_len=tier.max_model_len,
        max_loras=tier.max_loras,
        max_lora_rank=tier.max_lora_rank,
    )
    return spec.command(MODEL_PORT)[3:]


def _tier(topology: Topology, tier: Tier) -> list[Manifest]:
    amount: dict[str, str]
    if tier.device == "gpu":
        image = topology.vllm_image
        amount = {"nvidia.com/gpu": str(tier.gpus)}
        requests = {"cpu": str(2 * tier.gpus), "memory": f"{16 * tier.gpus}Gi", **amount}
        env = [{"name": "VLLM_NO_USAGE_STATS", "value": "1"}]
    else:
        image = topology.vllm_cpu_image
        amount = {"cpu": str(tier.cores)}
        requests = {"memory": "8Gi", **amount}
        env = [
            {"name": "VLLM_NO_USAGE_STATS", "value": "1"},
            {"name": "VLLM_CPU_KVCACHE_SPACE", "value": "4"},
            {"name": "OMP_NUM_THREADS", "value": str(tier.cores)},
        ]
    container: dict[str, Any] = {
        "name": "vllm",
        "image": image,
        "command": ["python3", "-m", "vllm.entrypoints.openai.api_server"],
        "args": vllm_args(tier),
        "ports": [{"name": "http", "containerPort": MODEL_PORT}],
        "env": env,
        "resources": {"requests": requests, "limits": {**amount, "memory": requests["memory"]}},
        # Weights load before /health answers: up to 20 minutes, then the usual checks.
        "startupProbe": _probe("/health", "http", period=10, failures=120),
        "readinessProbe": _probe("/health", "http", period=5, failures=3),
        "livenessProbe": _probe("/health", "http", period=10, failures=6),
        # vLLM's workers share tensors through /dev/shm: a memory-backed volume, not a temp file.
        "volumeMounts": [{"name": "shm", "mountPath": "/dev/shm"}],  # noqa: S108
    }
    volumes: list[dict[str, Any]] = [{"name": "shm", "emptyDir": {"medium": "Memory"}}]
    if tier.adapters:
        container["volumeMounts"].append(
            {"name": "adapters", "mountPath": _ADAPTERS_MOUNT, "readOnly": True}
        )
        volumes.append(
            {
                "name": "adapters",
                "persistentVolumeClaim": {"claimName": topology.adapters_claim, "readOnly": True},
            }
        )
    pod = {"containers": [container], "volumes": volumes}
    scrape = {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": str(MODEL_PORT),
        "prometheus.io/path": "/metrics",
    }
    return [
        _deployment(topology, tier.service, f"model-{tier.name}", tier.replicas, pod, scrape),
        _service(topology, tier.service, f"model-{tier.name}", MODEL_PORT),
    ]
