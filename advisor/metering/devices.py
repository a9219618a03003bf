"""The hardware a phase runs on: which GPUs a process uses, what precision they train in, its description,
and a background sampler of memory and GPU utilisation.

torch numbers the GPUs ``CUDA_VISIBLE_DEVICES`` leaves visible from 0; NVML (and codecarbon) number
every GPU of the machine. Meters must read the physical devices behind torch's indices, and only
those this process uses: its own under DDP (one process per GPU), all visible ones under the
Trainer's DataParallel (one process, several GPUs).
"""

from __future__ import annotations

import contextlib
import functools
import os
import platform
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psutil
import torch

from advisor import distributed
from advisor.errors import ConfigError


def visible_gpu_ids(env: str | None = None, count: int | None = None) -> list[str]:
    """The physical ids (index or UUID) behind torch's ``cuda:0, cuda:1, ...``, in that order.

    torch numbers the devices ``CUDA_VISIBLE_DEVICES`` leaves visible from 0; NVML numbers every
    GPU on the machine. ``CUDA_VISIBLE_DEVICES=2,3`` makes torch's ``cuda:0`` NVML's device 2.

    Args:
        env: the ``CUDA_VISIBLE_DEVICES`` value; read from the environment when None.
        count: devices torch sees; ``torch.cuda.device_count()`` when None.
    """
    value = os.environ.get("CUDA_VISIBLE_DEVICES") if env is None else env
    n = torch.cuda.device_count() if count is None else count
    if value is None:
        return [str(i) for i in range(n)]
    ids = []
    for part in value.split(","):
        part = part.strip()
        if not part or part == "-1":
            break  # CUDA stops at the first invalid entry
        ids.append(part)
    return ids[:n]


def gpus_in_use(env: str | None = None, count: int | None = None) -> list[str]:
    """Physical ids of the GPUs this process trains on.

    One process per GPU (DDP under accelerate / torchrun): the device of this rank's
    ``LOCAL_RANK``. One process alone with several GPUs: the Trainer's DataParallel uses them all.
    """
    ids = visible_gpu_ids(env, count)
    return [ids[i] for i in torch_gpu_indices(len(ids))]


def torch_gpu_indices(count: int | None = None) -> list[int]:
    """torch's indices of the GPUs this process trains on (see :func:`gpus_in_use`)."""
    n = torch.cuda.device_count() if count is None else count
    if n == 0:
        return []
    return [distributed.local_rank() % n] if distributed.world_size() > 1 else list(range(n))


def resolve_precision(setting: str, on_gpu: bool, gpu_has_bf16: bool) -> str:
    """The precision a run trains in: ``train.precision`` with "auto" decided for the device.

    "auto": bf16 on a GPU that supports it (same exponent range as fp32, no loss scaling), fp16
    on an older GPU (with the Trainer's loss scaling), fp32 on a CPU.

    Raises:
        ConfigError: fp16 was asked for without a GPU (CPU kernels for fp16 training are missing).
    """
    if setting == "auto":
        if not on_gpu:
            return "fp32"
        return "bf16" if gpu_has_bf16 else "fp16"
    if setting == "fp16" and not on_gpu:
        raise ConfigError("train.precision=fp16 needs a GPU. Use auto, fp32 or bf16 on a CPU.")
    return setting


@functools.cache
def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def describe_device(device: str | None = None) -> str:
    """ "cpu (2 threads, <cpu model>)" or "cuda:0 <gpu name>"; None picks CUDA when available."""
    name = device if device is not None else ("cuda:0" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and torch.cuda.is_available():
        index = torch.device(name).index or 0
        return f"cuda:{index} {torch.cuda.get_device_name(index)}"
    if name.startswith("cpu"):
        return f"cpu ({torch.get_num_threads()} threads, {_cpu_model()})"
    return name


def nvml_handle(nvml: Any, gpu_id: str) -> Any:
    """NVML's handle for a physical GPU id as ``CUDA_VISIBLE_DEVICES`` writes it: an index or a UUID.

    NVML numbers every GPU of the machine; torch's ``cuda:N`` is the N-th *visible* one, so the
    id must come from :func:`advisor.distributed.gpus_in_use`, not from torch's index.
    """
    if gpu_id.isdigit():
        return nvml.nvmlDeviceGetHandleByIndex(int(gpu_id))
    return nvml.nvmlDeviceGetHandleByUUID(gpu_id)


class Sampler(threading.Thread):
    """Samples peak RSS (and GPU utilisation through NVML) in the background, every ``every_s``.

    ``gpu_ids`` are the physical ids of the GPUs this process uses; their utilisation is averaged.
    """

    def __init__(self, every_s: float, gpu_ids: Sequence[str] = (), nvml: Any = None) -> None:
        super().__init__(name="greenladder-meter", daemon=True)
        self.every_s = every_s
        self.peak_rss = 0
        self.gpu_utils: list[float] = []
        self._stop_event = threading.Event()
        self._process = psutil.Process()
        self._nvml: Any = None
        self._handles: list[Any] = []
        if gpu_ids:
            with contextlib.suppress(Exception):  # nvidia-ml-py is optional ([gpu] extra)
                if nvml is None:
                    import pynvml

                    nvml = pynvml
                nvml.nvmlInit()
                self._nvml = nvml
                self._handles = [nvml_handle(nvml, g) for g in gpu_ids]

    def sample(self) -> None:
        with contextlib.suppress(psutil.Error):
            self.peak_rss = max(self.peak_rss, self._process.memory_info().rss)
        if self._handles:
            with contextlib.suppress(Exception):
                rates = [float(self._nvml.nvmlDeviceGetUtilizationRates(h).gpu) for h in self._handles]
                self.gpu_utils.append(sum(rates) / len(rates))

    def run(self) -> None:
        while not self._stop_event.wait(self.every_s):
            self.sample()

    def finish(self) -> None:
        self._stop_event.set()
        if self.is_alive():
            self.join()
        self.sample()
        if self._nvml is not None:
            with contextlib.suppress(Exception):
                self._nvml.nvmlShutdown()


def latency_device(name: str) -> torch.device:
    """The torch device for ``criteria.latency_device``; a GPU that is not there is a ConfigError."""
    device = torch.device(name)
    if device.type == "cuda" and (not torch.cuda.is_available() or (device.index or 0) >= torch.cuda.device_count()):
        raise ConfigError(
            f"criteria.latency_device is {name} but this machine has no such GPU. "
            "Measure latency where the model will run: set criteria.latency_device=cpu, or train on that GPU."
        )
    return device


def process_peak_rss_mb() -> float | None:
    """This process's peak resident memory so far, in MB (the kernel's high-water mark, so nothing
    between samples is missed); None where the platform does not say (Windows)."""
    try:
        import resource
    except ImportError:
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if platform.system() == "Darwin" else peak / 2**10  # bytes on macOS, KiB on Linux
