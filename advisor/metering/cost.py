"""Metering: what every phase of work cost (time, FLOPs, energy, emissions, memory) and how we know.

A :class:`Meter` wraps one phase (a training run, an evaluation, a baseline fit) and turns into an
:class:`~advisor.types.Cost` when it closes. Each figure group carries its provenance:

* time: ``measured`` (``time.perf_counter``; CPU time from ``time.process_time`` + children);
* FLOPs: ``analytic`` (:mod:`advisor.metering.flops` on the tokens actually processed, counted by
  :class:`~advisor.training.counting.MeteringCallback`), ``not_applicable`` for work that is not a transformer (TF-IDF), or
  ``not_measured`` when nothing was counted;
* energy: from an :class:`~advisor.metering.energy.EnergyReader`. codecarbon reads hardware counters where it can (RAPL for
  the CPU, NVML for NVIDIA GPUs: ``measured``) and otherwise models power from TDP and load
  (``estimated``); RAM power is always modelled. Mixed sources give e.g. "estimated+measured".
  Without codecarbon, or with metering off, energy is ``not_measured``;
* emissions: energy times the grid's average carbon intensity, so always ``estimated`` (an annual
  average is not the grid at the hour you trained), or ``not_measured`` with energy;
* memory: peak RSS sampled with psutil and CUDA's peak allocation: ``measured``.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import threading
import time
from collections.abc import Callable, Mapping
from types import TracebackType

import psutil
import torch

from advisor.config.settings import MeteringConfig
from advisor.metering import devices
from advisor.metering.devices import Sampler, describe_device
from advisor.metering.energy import EnergyReader, EnergyReading, grid_intensity_g_per_kwh, location_of, make_reader
from advisor.metering.flops import PASSES, FlopsKind
from advisor.types import Cost

#: the wall clock a :class:`Meter` reads when it is given none (read when the meter is made, so a test
#: can swap in a fake clock for every meter of a search)
wall_clock: Callable[[], float] = time.perf_counter

# ---------------------------------------------------------------------------------------------
# the meter


def _children_cpu_s(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.children_user + times.children_system)


class Meter:
    """Meters one phase of work; ``cost`` holds the result once the ``with`` block has closed.

    Usage::

        with Meter(cfg.metering, phase="train") as meter:
            trainer = Trainer(..., callbacks=[MeteringCallback(meter)])
            trainer.train()
        run_cost = meter.cost

    With ``cfg.enabled`` False only the clocks run (they cost nothing): energy, emissions and
    memory are ``not_measured``. FLOPs are whatever was added, since they are arithmetic.

    Args:
        cfg: the metering settings; defaults when None.
        phase: a label for the phase ("train", "eval", "baseline" ...), given to codecarbon.
        device: the device the work runs on ("cpu", "cuda:0"); detected when None.
        reader: the energy reader; by default codecarbon or, if unavailable or disabled, none.
        sample_every_s: interval of the background memory/utilisation sampler.
        clock: the wall clock, in seconds (:data:`wall_clock`, ``time.perf_counter``, when None); tests
            pass a fake one so that a seconds budget is decided without racing real time.

    Raises:
        ConfigError: the configured country or cloud region has no known grid intensity.
    """

    def __init__(
        self,
        cfg: MeteringConfig | None = None,
        phase: str = "train",
        device: str | None = None,
        reader: EnergyReader | None = None,
        sample_every_s: float = 0.5,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.cfg = cfg if cfg is not None else MeteringConfig()
        self.phase = phase
        self.device = device
        self.reader = (
            reader if reader is not None else make_reader(self.cfg, f"greenladder-{phase}", devices.gpus_in_use())
        )
        self.sample_every_s = sample_every_s
        self._clock = clock if clock is not None else wall_clock
        if self.cfg.enabled and importlib.util.find_spec("codecarbon") is not None:
            grid_intensity_g_per_kwh(self.cfg)  # a mistyped location fails now, not after the work
        self._flops: dict[str, float] = {"train": 0.0, "eval": 0.0, "inference": 0.0}
        self._padding_flops = 0.0
        self._tokens = 0
        self._padded_tokens = 0
        self._flops_provenance: set[str] = set()
        self._before_close: list[Callable[[], None]] = []
        self._lock = threading.Lock()
        self._active = False
        self._cost: Cost | None = None

    # -- what the work reports ------------------------------------------------------------------

    def add_flops(self, kind: FlopsKind, flops: float, padding_flops: float = 0.0) -> None:
        """Add analytic FLOPs of ``kind`` ("train", "eval" or "inference"), padding share included."""
        if kind not in PASSES:
            raise ValueError(f"kind must be one of {tuple(PASSES)}. Got {kind!r} instead.")
        if flops < 0 or padding_flops < 0 or padding_flops > flops:
            raise ValueError(f"FLOPs must be non-negative with padding_flops <= flops. Got {flops}, {padding_flops}.")
        with self._lock:
            self._check_open()
            self._flops[kind] += flops
            self._padding_flops += padding_flops
            self._flops_provenance.add("analytic")

    def add_tokens(self, real: int, padded: int) -> None:
        """Add ``real`` (non-padding) tokens and ``padded`` padding positions (not the padded total)."""
        if real < 0 or padded < 0:
            raise ValueError(f"Token counts must be non-negative. Got real={real}, padded={padded}.")
        with self._lock:
            self._check_open()
            self._tokens += int(real)
            self._padded_tokens += int(padded)

    def not_applicable_flops(self) -> None:
        """Declare that this work has no meaningful FLOPs count (a TF-IDF fit, a linear model)."""
        with self._lock:
            self._check_open()
            self._flops_provenance.add("not_applicable")

    def before_close(self, fn: Callable[[], None]) -> None:
        """Call ``fn`` when the phase ends, before the cost is totalled (to flush pending counts)."""
        self._before_close.append(fn)

    def so_far(self) -> tuple[float, float]:
        """FLOPs added and wall seconds elapsed so far in the open phase (what a budget watch reads)."""
        with self._lock:
            flops = sum(self._flops.values())
        return flops, (self._clock() - self._wall0) if self._active else 0.0

    def energy_so_far(self) -> float | None:
        """kWh spent so far in the open phase, from the energy reader's live total; None when it
        cannot say (no ``so_far`` method, no energy metering, the phase not open)."""
        read = getattr(self.reader, "so_far", None)
        return read() if self._active and read is not None else None

    def snapshot(self, pending: Cost | None = None) -> Cost:
        """The open phase's cost so far, totalled as closing the meter now would (for a checkpoint of
        what a kill would otherwise lose); the final :attr:`cost` replaces it once the phase closes.

        FLOPs are those handed in so far plus ``pending``, the counts a counter holds but has not
        handed in (:meth:`advisor.training.counting.MeteringCallback.pending_cost`), as if they had been; or
        flush the counter first. Energy: the reader's live reading split by device when it offers one
        (``reading_so_far``); else its running total (:meth:`energy_so_far`), filed under
        ``energy_cpu_kwh`` and labelled ``estimated`` since it is not split; else ``not_measured``.
        Nothing is changed.
        """
        if not self._active:
            raise RuntimeError("Meter.snapshot is for an open phase; read Meter.cost once it has closed.")
        wall_s = self._clock() - self._wall0
        cpu_s = time.process_time() - self._cpu0 + max(_children_cpu_s(self._process) - self._children0, 0.0)
        read = getattr(self.reader, "reading_so_far", None)
        reading = read() if read is not None else None
        if reading is None:
            kwh = self.energy_so_far()
            reading = EnergyReading(cpu_kwh=kwh, provenance="estimated") if kwh is not None else EnergyReading()
        peak_rss_mb = self._sampler.peak_rss / 2**20 if self._sampler is not None else 0.0
        peak_gpu_mb = 0.0
        if self._sampler is not None:
            peak_gpu_mb = sum(torch.cuda.max_memory_allocated(i) for i in self._cuda_indices) / 2**20
        with self._lock:
            cost = self._total(wall_s, cpu_s, reading, peak_rss_mb, peak_gpu_mb, None)
            counted = set(self._flops_provenance)
        if pending is None:
            return cost
        counted |= {p for p in pending.provenance.get("flops", "").split("+") if p}
        flops = "+".join(sorted(counted)) or "not_measured"
        return dataclasses.replace(cost + pending, provenance={**cost.provenance, "flops": flops})

    @property
    def active(self) -> bool:
        """True between entering and leaving the ``with`` block."""
        return self._active

    @property
    def cost(self) -> Cost:
        """The phase's Cost; available once the ``with`` block has closed."""
        if self._cost is None:
            raise RuntimeError("Meter.cost is available once the `with Meter(...)` block has closed.")
        return self._cost

    def _check_open(self) -> None:
        if self._cost is not None:
            raise RuntimeError(f"The meter of phase {self.phase!r} is closed; open a new Meter for more work.")

    # -- the phase ------------------------------------------------------------------------------

    def __enter__(self) -> Meter:
        if self._active or self._cost is not None:
            raise RuntimeError("A Meter meters one phase; create a new one for the next phase.")
        described = describe_device(self.device)
        self._device_label = described
        # the GPUs this process trains on: this rank's under DDP, all visible under DataParallel
        on_gpu = described.startswith("cuda:")
        self._cuda_indices = devices.torch_gpu_indices() if on_gpu else []
        self._process = psutil.Process()
        self._sampler: Sampler | None = None
        if self.cfg.enabled:
            for index in self._cuda_indices:
                torch.cuda.reset_peak_memory_stats(index)
            self._sampler = Sampler(self.sample_every_s, devices.gpus_in_use() if on_gpu else [])
            self._sampler.sample()
            self._sampler.start()
        self.reader.start()
        self._active = True
        self._children0 = _children_cpu_s(self._process)
        self._cpu0 = time.process_time()
        self._wall0 = self._clock()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        # the cost is totalled even when the work failed: a failed run still spent energy
        wall_s = self._clock() - self._wall0
        cpu_s = time.process_time() - self._cpu0 + max(_children_cpu_s(self._process) - self._children0, 0.0)
        for flush in self._before_close:
            flush()
        self._active = False
        reading = self.reader.stop()
        peak_rss_mb = peak_gpu_mb = 0.0
        gpu_util: float | None = None
        if self._sampler is not None:
            self._sampler.finish()
            peak_rss_mb = self._sampler.peak_rss / 2**20
            if self._sampler.gpu_utils:
                gpu_util = sum(self._sampler.gpu_utils) / len(self._sampler.gpu_utils)
            peak_gpu_mb = sum(torch.cuda.max_memory_allocated(i) for i in self._cuda_indices) / 2**20
        self._cost = self._total(wall_s, cpu_s, reading, peak_rss_mb, peak_gpu_mb, gpu_util)

    def _total(
        self,
        wall_s: float,
        cpu_s: float,
        reading: EnergyReading,
        peak_rss_mb: float,
        peak_gpu_mb: float,
        gpu_util: float | None,
    ) -> Cost:
        energy_known = reading.provenance != "not_measured"
        emissions = 0.0
        if energy_known:
            emissions = (
                reading.emissions_g
                if reading.emissions_g is not None
                else (reading.cpu_kwh + reading.gpu_kwh + reading.ram_kwh) * grid_intensity_g_per_kwh(self.cfg)
            )
        provenance: Mapping[str, str] = {
            "time": "measured",
            "flops": "+".join(sorted(self._flops_provenance)) or "not_measured",
            "energy": reading.provenance,
            "emissions": "estimated" if energy_known else "not_measured",
            "memory": "measured" if self.cfg.enabled else "not_measured",
        }
        return Cost(
            wall_s=wall_s,
            cpu_s=cpu_s,
            train_flops=self._flops["train"],
            eval_flops=self._flops["eval"],
            inference_flops=self._flops["inference"],
            padding_flops=self._padding_flops,
            tokens=self._tokens,
            padded_tokens=self._padded_tokens,
            energy_cpu_kwh=reading.cpu_kwh,
            energy_gpu_kwh=reading.gpu_kwh,
            energy_ram_kwh=reading.ram_kwh,
            emissions_g=emissions,
            peak_rss_mb=peak_rss_mb,
            peak_gpu_mem_mb=peak_gpu_mb,
            gpu_util_avg=gpu_util,
            device=self._device_label,
            location=location_of(self.cfg),
            provenance=provenance,
        )
