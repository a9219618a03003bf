"""One job on several processes: rank 0 owns the run directory, ranks agree on each run, GPUs are found.

The end-to-end check (``accelerate launch`` on two CPU processes against one process alone) is in
tests/test_multiprocess.py; here the pieces are checked on their own, the rank plumbing on two real
gloo processes (a second or two).
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from advisor import distributed
from advisor.errors import ConfigError, RunDirError
from advisor.metering import devices
from advisor.store.ledger import Ledger, rank_run_dir
from advisor.types import Candidate, Cost, RunResult
from tests.conftest import key_for


def _run(run_id: str, cost: Cost, accuracy: float = 0.5) -> RunResult:
    return RunResult(
        key=key_for(run_id),
        candidate=Candidate(name="tiny", kind="finetune", source="x"),
        hyperparameters={"learning_rate": 1e-4},
        status="ok",
        metrics={"accuracy": accuracy},
        cost=cost,
    )


def test_job_cost_sums_each_ranks_work_and_takes_the_slowest_wall_time() -> None:
    a = Cost(wall_s=10.0, cpu_s=9.0, train_flops=3e9, eval_flops=1e9, tokens=100, energy_cpu_kwh=0.2, peak_rss_mb=500)
    b = Cost(wall_s=12.0, cpu_s=11.0, train_flops=3e9, eval_flops=0.0, tokens=90, energy_cpu_kwh=0.3, peak_rss_mb=400)
    job = distributed.job_cost([a, b])
    assert job.train_flops == 6e9 and job.eval_flops == 1e9 and job.tokens == 190
    assert job.cpu_s == 20.0 and job.energy_cpu_kwh == pytest.approx(0.5)
    assert job.wall_s == 12.0  # side by side, not one after the other
    assert job.peak_rss_mb == 900  # both processes held their memory at once


def test_one_process_is_rank_zero_and_agree_changes_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    run = _run("r", Cost(train_flops=1.0))
    assert distributed.is_main() and distributed.world_size() == 1
    assert distributed.agree(run) is run
    assert distributed.from_main(lambda: 7) == 7


@pytest.mark.parametrize(
    ("env", "count", "expected"),
    [
        (None, 2, ["0", "1"]),  # nothing hidden: torch's numbers are NVML's
        ("2,3", 2, ["2", "3"]),  # torch's cuda:0 is the machine's GPU 2
        ("3,1", 2, ["3", "1"]),  # in the order given, not sorted
        ("GPU-8f2a,GPU-11c0", 2, ["GPU-8f2a", "GPU-11c0"]),  # UUIDs pass through
        ("1,-1,2", 3, ["1"]),  # CUDA stops at the first invalid entry
        ("", 0, []),
    ],
)
def test_visible_gpu_ids_follow_cuda_visible_devices(env: str | None, count: int, expected: list[str]) -> None:
    assert devices.visible_gpu_ids(env, count) == expected


def test_a_ddp_rank_uses_its_own_gpu_and_a_lone_process_all(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert devices.gpus_in_use("4,5", 2) == ["4", "5"]  # DataParallel over both
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert devices.gpus_in_use("4,5", 2) == ["5"]


# ---------------------------------------------------------------------------------------------
# two real processes (gloo)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _worker(rank: int, port: int, run_dir: str, results: dict[int, object]) -> None:
    os.environ.update(
        RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port)
    )
    os.environ["CUDA_VISIBLE_DEVICES"] = ""
    torch.distributed.init_process_group("gloo", rank=rank, world_size=2)
    try:
        out: dict[str, object] = {}
        path = Path(run_dir)
        # 1. rank 0 owns run_dir; the other rank gets a scratch copy of its ledger
        with rank_run_dir(path) as where, Ledger(where) as ledger:
            out["where_is_run_dir"] = where == path
            out["read_back"] = [r.run_id for r in ledger.all()]
            # every rank computes its own cost; the record is rank 0's, the cost the job's
            mine = _run("tiny-t2", Cost(wall_s=1.0 + rank, train_flops=10.0 * (rank + 1), tokens=rank + 1), 0.5 + rank)
            agreed = distributed.agree(mine)
            ledger.add(agreed)
            out["agreed"] = (
                agreed.metrics["accuracy"],
                agreed.cost.train_flops,
                agreed.cost.tokens,
                agreed.cost.wall_s,
            )
            out["again_is_same"] = distributed.agree(agreed) is agreed
        out["once"] = distributed.from_main(lambda: f"computed on rank {distributed.rank()}")
        # 2. a lock rank 0 cannot take stops every rank with rank 0's message, nobody waits
        from filelock import FileLock

        holder = FileLock(str(path / ".advise.lock"))
        if rank == 0:
            holder.acquire()
        try:
            with rank_run_dir(path):
                out["lock_error"] = None
        except RunDirError as exc:
            out["lock_error"] = str(exc)
        finally:
            if rank == 0:
                holder.release()
        results[rank] = out
    finally:
        torch.distributed.destroy_process_group()


# two spawned ranks and a manager process, each paying torch's imports: ~10 s, out of the default suite
@pytest.mark.multiprocess
def test_rank_zero_owns_the_run_dir_and_ranks_agree_on_each_run(tmp_path: Path) -> None:
    with Ledger(tmp_path) as ledger:  # an earlier run of this directory: both ranks must read it back
        ledger.add(_run("tiny-t1", Cost(train_flops=5.0)))
    results = mp.Manager().dict()
    mp.spawn(_worker, args=(_free_port(), str(tmp_path), results), nprocs=2, join=True)
    zero, one = results[0], results[1]
    assert zero["where_is_run_dir"] and not one["where_is_run_dir"]
    assert zero["read_back"] == one["read_back"] == ["tiny-t1"]
    # rank 0's metrics; FLOPs and tokens of both ranks; the slower rank's wall time
    assert zero["agreed"] == one["agreed"] == (0.5, 30.0, 3, 2.0)
    assert zero["again_is_same"] and one["again_is_same"]
    assert zero["once"] == one["once"] == "computed on rank 0"
    assert zero["lock_error"] == one["lock_error"] and "Another advise process" in str(zero["lock_error"])
    with Ledger(tmp_path) as ledger:  # only rank 0 wrote here, once
        assert [r.run_id for r in ledger.all()] == ["tiny-t1", "tiny-t2"]
        assert ledger.get("tiny-t2").cost.train_flops == 30.0  # type: ignore[union-attr]


# ---------------------------------------------------------------------------------------------
# the GPU path, checked on the CPU with fakes


@pytest.mark.parametrize(
    ("setting", "on_gpu", "bf16_ok", "expected"),
    [
        ("auto", False, False, "fp32"),  # CPUs train in fp32 unless told
        ("auto", True, True, "bf16"),  # Ampere and later
        ("auto", True, False, "fp16"),  # older GPUs: fp16 with loss scaling
        ("fp32", True, True, "fp32"),
        ("bf16", False, False, "bf16"),  # CPU autocast when asked for
    ],
)
def test_precision_auto_is_bf16_or_fp16_on_gpus_and_fp32_on_cpus(
    setting: str, on_gpu: bool, bf16_ok: bool, expected: str
) -> None:
    assert devices.resolve_precision(setting, on_gpu, bf16_ok) == expected


def test_fp16_without_a_gpu_is_a_config_error_that_says_what_to_use() -> None:
    with pytest.raises(ConfigError, match="needs a GPU. Use auto, fp32 or bf16"):
        devices.resolve_precision("fp16", False, False)


class FakeNvml:
    """NVML as the sampler uses it: handles by index or UUID, a utilisation per handle."""

    def __init__(self, utilisation: dict[str, float]) -> None:
        self.utilisation = utilisation
        self.opened: list[str] = []

    def nvmlInit(self) -> None:
        pass

    def nvmlShutdown(self) -> None:
        pass

    def nvmlDeviceGetHandleByIndex(self, index: int) -> str:
        self.opened.append(f"index {index}")
        return str(index)

    def nvmlDeviceGetHandleByUUID(self, uuid: str) -> str:
        self.opened.append(f"uuid {uuid}")
        return uuid

    def nvmlDeviceGetUtilizationRates(self, handle: str) -> object:
        return type("Rates", (), {"gpu": self.utilisation[handle]})()


def test_the_sampler_reads_the_physical_gpus_in_use_not_torchs_indices(monkeypatch: pytest.MonkeyPatch) -> None:
    from advisor.metering.devices import Sampler

    # CUDA_VISIBLE_DEVICES=2,GPU-7f: torch's cuda:0 and cuda:1 are NVML's device 2 and that UUID
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    ids = devices.gpus_in_use("2,GPU-7f", 2)
    nvml = FakeNvml({"2": 80.0, "GPU-7f": 40.0, "0": 0.0})
    sampler = Sampler(60.0, ids, nvml=nvml)
    sampler.sample()
    assert nvml.opened == ["index 2", "uuid GPU-7f"]
    assert sampler.gpu_utils == [60.0]  # the mean over the GPUs DataParallel uses


class _Embed(torch.nn.Module):
    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return input_ids.float().mean()


def test_token_counts_are_exact_when_dataparallel_replicas_call_the_hook_from_threads() -> None:
    """DataParallel runs each GPU's replica in its own thread, all through the one forward hook."""
    import threading

    from transformers import BertConfig

    from advisor.config.settings import MeteringConfig
    from advisor.metering.cost import Meter
    from advisor.training.counting import MeteringCallback

    config = BertConfig(vocab_size=10, hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=16)
    masks = [torch.ones(2, 5 + i % 4, dtype=torch.long) for i in range(40)]
    for i, m in enumerate(masks):
        m[0, : i % 3] = 0  # some padding in the first row
    model = _Embed()

    def count(threads: int) -> tuple[int, int, float]:
        with Meter(MeteringConfig(enabled=False, codecarbon=False), phase="dp") as meter:
            cb = MeteringCallback(meter, config, num_labels=2)
            cb.attach(model)
            model.train()
            start = threading.Barrier(threads)

            def replica(part: list[torch.Tensor]) -> None:
                start.wait()
                for m in part:
                    model(input_ids=torch.ones_like(m), attention_mask=m)

            workers = [threading.Thread(target=replica, args=(masks[k::threads],)) for k in range(threads)]
            for w in workers:
                w.start()
            for w in workers:
                w.join()
            cb.close()
        return meter.cost.tokens, meter.cost.padded_tokens, meter.cost.train_flops

    alone = count(1)
    assert alone[0] == sum(int(m.sum()) for m in masks)
    assert count(4) == alone
