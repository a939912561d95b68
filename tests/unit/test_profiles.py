"""GPU launch plans: exact rendered vLLM commands and refusals of plans that cannot fit."""

from __future__ import annotations

import shlex
from dataclasses import replace

import pytest

from brickwork.errors import ConfigError
from brickwork.serving.profiles import (
    GPU,
    H100_80GB,
    BaseModelProfile,
    InstancePlan,
    LaunchPlan,
    RenderedCommand,
    h100_shared_small,
    h100_tensor_parallel,
)

SERVER = ["python", "-m", "vllm.entrypoints.openai.api_server"]
QWEN_06 = BaseModelProfile(name="qwen3-0.6b", path="Qwen/Qwen3-0.6B", params_b=0.6)
QWEN_4 = BaseModelProfile(name="qwen3-4b", path="Qwen/Qwen3-4B", params_b=4.0)
LLAMA_70 = BaseModelProfile(name="llama-70b", path="/models/llama-3.3-70b", params_b=70.6)


def test_two_instances_share_one_gpu_with_an_even_split() -> None:
    plan = LaunchPlan.pack([QWEN_06, QWEN_4], gpus=(H100_80GB,), max_num_seqs=64)

    first, second = plan.render()

    assert first == RenderedCommand(
        argv=[
            *SERVER,
            "--model", "Qwen/Qwen3-0.6B",
            "--served-model-name", "qwen3-0.6b",
            "--host", "127.0.0.1",
            "--port", "8000",
            "--dtype", "bfloat16",
            "--tensor-parallel-size", "1",
            "--gpu-memory-utilization", "0.45",
            "--max-num-seqs", "64",
            "--enable-prefix-caching",
        ],
        env={"CUDA_VISIBLE_DEVICES": "0"},
    )  # fmt: skip
    assert second.env == {"CUDA_VISIBLE_DEVICES": "0"}
    assert second.argv[second.argv.index("--port") + 1] == "8001"
    assert second.argv[second.argv.index("--model") + 1] == "Qwen/Qwen3-4B"
    assert second.argv[second.argv.index("--gpu-memory-utilization") + 1] == "0.45"


def test_pack_rounds_each_share_down() -> None:
    models = [replace(QWEN_06, name=f"m{i}") for i in range(4)]
    plan = LaunchPlan.pack(models, gpu_index=2, total_utilization=0.9)

    assert [i.gpu_memory_utilization for i in plan.instances] == [0.22] * 4
    assert {c.env["CUDA_VISIBLE_DEVICES"] for c in plan.render()} == {"2"}


def test_tensor_parallel_fp8_70b_renders_exactly() -> None:
    plan = h100_tensor_parallel(LLAMA_70, gpus=4, fp8=True, port=9000, max_model_len=32768)

    (command,) = plan.render()

    assert command.argv == [
        *SERVER,
        "--model", "/models/llama-3.3-70b",
        "--served-model-name", "llama-70b",
        "--host", "127.0.0.1",
        "--port", "9000",
        "--dtype", "bfloat16",
        "--tensor-parallel-size", "4",
        "--gpu-memory-utilization", "0.9",
        "--max-num-seqs", "256",
        "--max-model-len", "32768",
        "--enable-prefix-caching",
        "--quantization", "fp8",
        "--kv-cache-dtype", "fp8",
    ]  # fmt: skip
    assert command.env == {"CUDA_VISIBLE_DEVICES": "0,1,2,3"}


def test_tensor_parallel_from_a_model_id_estimates_from_params() -> None:
    plan = h100_tensor_parallel("meta-llama/Llama-3.3-70B-Instruct", params_b=70, gpus=2)

    (instance,) = plan.instances
    assert instance.served_name == "Llama-3.3-70B-Instruct"
    assert instance.weight_gib_per_gpu == pytest.approx(70e9 / 2 / 2**30)


def test_lora_flags_and_adapters_are_rendered_sorted() -> None:
    instance = InstancePlan(
        model=QWEN_4,
        port=8100,
        served_name="slm",
        lora_modules={"sql": "/adapters/sql", "intent": "/adapters/intent"},
        max_loras=2,
        max_lora_rank=32,
        enable_prefix_caching=False,
        extra_args=("--enforce-eager",),
        extra_env={"VLLM_LOGGING_LEVEL": "DEBUG"},
    )

    (command,) = LaunchPlan(instances=(instance,)).render()

    assert command.argv[-10:] == [
        "--no-enable-prefix-caching",
        "--enable-lora",
        "--max-loras", "2",
        "--max-lora-rank", "32",
        "--lora-modules", "intent=/adapters/intent", "sql=/adapters/sql",
        "--enforce-eager",
    ]  # fmt: skip
    assert "--quantization" not in command.argv
    assert command.env == {"CUDA_VISIBLE_DEVICES": "0", "VLLM_LOGGING_LEVEL": "DEBUG"}
    assert instance.model_names == ("slm", "intent", "sql")


def test_enable_lora_without_modules_allows_runtime_adapters() -> None:
    instance = InstancePlan(model=QWEN_4, port=8100, enable_lora=True)

    argv = instance.command()

    assert argv[-5:] == ["--enable-lora", "--max-loras", "4", "--max-lora-rank", "16"]
    assert "--lora-modules" not in argv


def test_to_shell_prefixes_env_and_quotes() -> None:
    model = BaseModelProfile(name="my model", path="/models/with space", params_b=1.0)
    plan = LaunchPlan(
        instances=(InstancePlan(model=model, port=8000),), python="/opt/venv/bin/python"
    )

    line = plan.to_shell()

    assert line.startswith("CUDA_VISIBLE_DEVICES=0 /opt/venv/bin/python -m ")
    words = shlex.split(line)
    assert words[0] == "CUDA_VISIBLE_DEVICES=0"
    assert words[1:] == plan.render()[0].argv
    assert "'/models/with space'" in line


def test_to_shell_gives_one_line_per_instance() -> None:
    plan = h100_shared_small([QWEN_06, QWEN_4, replace(QWEN_06, name="third")])

    lines = plan.to_shell().splitlines()

    assert len(lines) == 3
    assert all(line.startswith("CUDA_VISIBLE_DEVICES=0 python -m ") for line in lines)
    assert all("--gpu-memory-utilization 0.3 " in line for line in lines)


def test_refuses_an_over_subscribed_gpu() -> None:
    a = InstancePlan(model=QWEN_06, port=8000, gpu_memory_utilization=0.5)
    b = InstancePlan(model=QWEN_4, port=8001, gpu_memory_utilization=0.5)

    with pytest.raises(ConfigError, match=r"GPU 0 is over-subscribed.*'qwen3-0\.6b', 'qwen3-4b'"):
        LaunchPlan(instances=(a, b))


def test_a_plan_at_the_ceiling_is_accepted() -> None:
    a = InstancePlan(model=QWEN_06, port=8000, gpu_memory_utilization=0.5)
    b = InstancePlan(model=QWEN_4, port=8001, gpu_memory_utilization=0.45)

    assert len(LaunchPlan(instances=(a, b)).render()) == 2


def test_refuses_70b_bf16_on_one_gpu() -> None:
    instance = InstancePlan(model=LLAMA_70, port=8000, gpu_memory_utilization=0.95)

    with pytest.raises(ConfigError, match=r"'llama-70b' does not fit on GPU 0 \(H100-80GB\)"):
        LaunchPlan(instances=(instance,))


def test_70b_bf16_fits_on_two_gpus_but_not_with_a_small_share() -> None:
    two = InstancePlan(model=LLAMA_70, port=8000, gpus=(0, 1), tensor_parallel_size=2)
    assert LaunchPlan(instances=(two,)).instances == (two,)

    squeezed = replace(two, gpu_memory_utilization=0.8)
    with pytest.raises(ConfigError, match=r"65\.8 GiB of weights per GPU \+ 1 GiB KV cache"):
        LaunchPlan(instances=(squeezed,))


def test_min_kv_cache_is_configurable() -> None:
    instance = InstancePlan(model=QWEN_4, port=8000, gpu_memory_utilization=0.2)
    assert LaunchPlan(instances=(instance,)).min_kv_cache_gib == 1.0

    with pytest.raises(ConfigError, match="does not fit"):
        LaunchPlan(instances=(instance,), min_kv_cache_gib=10.0)


def test_refuses_a_gpu_index_out_of_range() -> None:
    instance = InstancePlan(model=QWEN_06, port=8000, gpus=(2,))

    with pytest.raises(ConfigError, match=r"GPU index 2 is out of range; the plan has 2 GPU"):
        LaunchPlan(instances=(instance,), gpus=(H100_80GB, H100_80GB))


def test_refuses_duplicate_ports() -> None:
    a = InstancePlan(model=QWEN_06, port=8000, gpu_memory_utilization=0.4)
    b = InstancePlan(model=QWEN_4, port=8000, gpus=(1,))

    with pytest.raises(ConfigError, match=r"duplicate port\(s\) \[8000\]"):
        LaunchPlan(instances=(a, b))


def test_refuses_a_name_served_twice() -> None:
    a = InstancePlan(model=QWEN_06, port=8000, lora_modules={"intent": "/a/intent"})
    b = InstancePlan(model=QWEN_4, port=8001, gpus=(1,), served_name="intent")

    with pytest.raises(ConfigError, match=r"duplicate served/adapter name\(s\) \['intent'\]"):
        LaunchPlan(instances=(a, b))


@pytest.mark.parametrize(
    ("gpus", "tp"),
    [((0, 1, 2, 3), 2), ((0, 1, 2), 3), ((0,), 2)],
)
def test_refuses_a_tensor_parallel_mismatch(gpus: tuple[int, ...], tp: int) -> None:
    with pytest.raises(ConfigError, match=rf"tensor_parallel_size {tp} must be one of"):
        InstancePlan(model=LLAMA_70, port=8000, gpus=gpus, tensor_parallel_size=tp)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"gpus": (0, 0), "tensor_parallel_size": 2}, r"gpus \(0, 0\) must be distinct"),
        ({"gpu_memory_utilization": 1.2}, r"gpu_memory_utilization 1\.2 must be in"),
        ({"port": 70000}, "port 70000 must be in"),
        ({"max_lora_rank": 24}, "max_lora_rank 24 must be one of"),
        ({"max_num_seqs": 0}, "must be at least 1"),
    ],
)
def test_refuses_bad_instance_settings(change: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        InstancePlan(**{"model": QWEN_06, "port": 8000, **change})


def test_weight_estimate_per_dtype() -> None:
    assert QWEN_4.weight_gib() == pytest.approx(4e9 * 2 / 2**30)
    assert QWEN_4.weight_gib("fp8") == pytest.approx(4e9 / 2**30)
    assert replace(QWEN_4, dtype="float32").weight_gib() == pytest.approx(4e9 * 4 / 2**30)


def test_a_smaller_gpu_changes_the_verdict() -> None:
    small = GPU("L4-24GB", 24)
    instance = InstancePlan(model=QWEN_4, port=8000, gpu_memory_utilization=0.3)

    assert LaunchPlan(instances=(instance,)).gpus[0] == H100_80GB
    with pytest.raises(ConfigError, match=r"does not fit on GPU 0 \(L4-24GB\)"):
        LaunchPlan(instances=(instance,), gpus=(small,))


@pytest.mark.slow
def test_vllm_own_parser_accepts_the_rendered_arguments() -> None:
    """The flags are spelled as the installed vLLM expects (its real argument parser)."""
    cli_args = pytest.importorskip("vllm.entrypoints.launchers.cli_args")
    argparse_utils = pytest.importorskip("vllm.utils.argparse_utils")
    parser = cli_args.make_arg_parser(argparse_utils.FlexibleArgumentParser())
    lora = InstancePlan(
        model=QWEN_4,
        port=8100,
        lora_modules={"intent": "/adapters/intent"},
        enable_prefix_caching=False,
    )
    tp = h100_tensor_parallel(LLAMA_70, gpus=4, max_model_len=8192).instances[0]

    parsed_tp = parser.parse_args(tp.command()[3:])
    parsed_lora = parser.parse_args(lora.command()[3:])

    assert parsed_tp.tensor_parallel_size == 4
    assert parsed_tp.quantization == "fp8"
    assert parsed_tp.kv_cache_dtype == "fp8"
    assert parsed_tp.enable_prefix_caching is True
    assert parsed_tp.max_model_len == 8192
    assert parsed_tp.gpu_memory_utilization == 0.9
    assert parsed_lora.enable_lora is True
    assert parsed_lora.enable_prefix_caching is False
    assert [(m.name, m.path) for m in parsed_lora.lora_modules] == [("intent", "/adapters/intent")]


def test_shared_small_defaults_can_be_overridden() -> None:
    plan = h100_shared_small([QWEN_06], host="0.0.0.0", max_model_len=None, quantization="fp8")

    argv = plan.render()[0].argv
    assert argv[argv.index("--host") + 1] == "0.0.0.0"
    assert argv[argv.index("--max-num-seqs") + 1] == "128"
    assert "--max-model-len" not in argv
    assert argv[argv.index("--quantization") + 1] == "fp8"
    assert argv[argv.index("--gpu-memory-utilization") + 1] == "0.9"
