"""Energy and emissions: where a phase's kWh come from, and what a kWh emits on which grid.

An :class:`EnergyReader` is started before a phase and stopped after it. codecarbon's offline
tracker reads hardware counters where it can (RAPL for the CPU, NVML for NVIDIA GPUs:
``measured``) and otherwise models power from TDP and load (``estimated``); RAM power is always
modelled. Grid carbon intensities (gCO2e/kWh, annual averages) come from the data files codecarbon
ships, so they work offline. :class:`~advisor.metering.cost.Meter` puts these together with time and FLOPs.
"""

from __future__ import annotations

import csv
import functools
import importlib.util
import json
import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from advisor.config.settings import MeteringConfig
from advisor.errors import ConfigError

# ---------------------------------------------------------------------------------------------
# energy readers


@dataclass(frozen=True)
class EnergyReading:
    """Energy one phase used, split by component, and where the figures came from."""

    cpu_kwh: float = 0.0
    gpu_kwh: float = 0.0
    ram_kwh: float = 0.0
    #: emissions computed by the reader itself; None lets the Meter apply the grid intensity
    emissions_g: float | None = None
    provenance: str = "not_measured"


class EnergyReader(Protocol):
    """Reads the energy of one phase: ``start()`` before it, ``stop()`` after it.

    A reader may also offer ``so_far() -> float | None``: the kWh spent since ``start()``, read while
    the phase runs (a budget watch uses it); :meth:`advisor.metering.cost.Meter.energy_so_far` treats a reader
    without it as one that cannot say. Likewise ``reading_so_far() -> EnergyReading | None``, the
    same split by component, for :meth:`advisor.metering.cost.Meter.snapshot`.
    """

    def start(self) -> None: ...

    def stop(self) -> EnergyReading: ...


class NullReader:
    """Reads nothing: energy and emissions are 0 and labelled ``not_measured``."""

    def start(self) -> None:
        pass

    def stop(self) -> EnergyReading:
        return EnergyReading()

    def so_far(self) -> float | None:
        return None


# codecarbon CPU modes backed by energy counters; the others (cpu_load, constant) model power
_COUNTER_CPU_MODES = ("intel_rapl", "windows_emi", "intel_power_gadget")


def _component_provenance(hardware: object) -> str:
    """Whether one of codecarbon's hardware objects reads counters (measured) or models power."""
    kind = type(hardware).__name__
    if kind == "CPU":
        return "measured" if getattr(hardware, "_mode", None) in _COUNTER_CPU_MODES else "estimated"
    if kind in ("GPU", "AppleSiliconChip", "Raspberry"):  # NVML/AMD-SMI, powermetrics, PMIC counters
        return "measured"
    return "estimated"  # RAM: a power model from installed memory


class CodecarbonReader:
    """Energy from codecarbon's offline tracker, one tracker per phase.

    The tracker runs with ``allow_multiple_runs=True``: codecarbon otherwise takes a machine-wide
    lock file (``<tmp>/.codecarbon.lock``) and refuses to start while another tracker (a parallel
    trial) holds it. ``save_to_file=False`` keeps its ``emissions.csv`` out of the working directory;
    the figures go into the Cost instead. ``tracking_mode="process"`` charges the phase with this
    process's share of the machine, so trials running side by side are not each billed for all.
    """

    def __init__(self, cfg: MeteringConfig, project_name: str = "greenladder", gpu_ids: Sequence[str] = ()) -> None:
        self.cfg = cfg
        self.project_name = project_name
        self.gpu_ids = list(gpu_ids)
        self._tracker: Any = None

    def start(self) -> None:
        from codecarbon import OfflineEmissionsTracker

        # codecarbon logs an INFO line and a WARNING on construction, before log_level applies
        logging.getLogger("codecarbon").setLevel(logging.ERROR)
        options: dict[str, Any] = (
            {"cloud_provider": self.cfg.cloud_provider, "cloud_region": self.cfg.cloud_region}
            if self.cfg.cloud_provider and self.cfg.cloud_region
            else {"country_iso_code": self.cfg.country_iso_code}
        )
        if self.gpu_ids:  # only the GPUs this process uses: each DDP rank meters its own, summed later
            options["gpu_ids"] = [int(g) if g.isdigit() else g for g in self.gpu_ids]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # save_to_file is deprecated in 3.x, the only spelling in 2.x
            self._tracker = OfflineEmissionsTracker(
                project_name=self.project_name,
                save_to_file=False,
                allow_multiple_runs=True,
                log_level="error",
                tracking_mode="process",
                **options,
            )
        self._tracker.start()

    def so_far(self) -> float | None:
        """kWh since ``start()``: codecarbon's running total after one more sample (about 30 ms).

        codecarbon has no public call for this (``flush()`` returns emissions only); it keeps the
        total in ``_total_energy``, updated by ``_measure_power_and_energy`` (both 2.x and 3.x). On a
        version without them this says None and a kWh budget waits for a phase's closing reading.
        """
        tracker = self._tracker
        measure = getattr(tracker, "_measure_power_and_energy", None)
        if tracker is None or measure is None:
            return None
        try:
            measure()
            return max(float(tracker._total_energy.kWh), 0.0)
        except Exception:  # noqa: BLE001 - a failed sample must not stop the work it meters
            return None

    def reading_so_far(self) -> EnergyReading | None:
        """The phase's energy so far, split by component, after one more sample; None when it cannot say.

        Read from the same private totals as :meth:`so_far` (``_total_cpu_energy`` ... in 2.x and
        3.x); a checkpoint of a run's cost uses it, so that work a kill interrupts keeps its energy.
        """
        tracker = self._tracker
        if tracker is None or self.so_far() is None:
            return None
        try:
            cpu, gpu, ram = (
                max(float(getattr(tracker, f"_total_{part}_energy").kWh), 0.0) for part in ("cpu", "gpu", "ram")
            )
        except AttributeError:
            return None
        labels = sorted({_component_provenance(h) for h in getattr(tracker, "_hardware", [])} or {"estimated"})
        return EnergyReading(cpu_kwh=cpu, gpu_kwh=gpu, ram_kwh=ram, provenance="+".join(labels))

    def stop(self) -> EnergyReading:
        tracker, self._tracker = self._tracker, None
        if tracker is None:
            return EnergyReading()
        tracker.stop()  # codecarbon swallows its own errors here; a missing result says so
        data = getattr(tracker, "final_emissions_data", None)
        if data is None:
            return EnergyReading()
        labels = sorted({_component_provenance(h) for h in getattr(tracker, "_hardware", [])} or {"estimated"})
        return EnergyReading(
            cpu_kwh=max(float(data.cpu_energy), 0.0),
            gpu_kwh=max(float(data.gpu_energy), 0.0),
            ram_kwh=max(float(data.ram_energy), 0.0),
            emissions_g=max(float(data.emissions), 0.0) * 1000.0,  # codecarbon reports kg
            provenance="+".join(labels),
        )


def make_reader(cfg: MeteringConfig, project_name: str = "greenladder", gpu_ids: Sequence[str] = ()) -> EnergyReader:
    """codecarbon when metering and codecarbon are enabled and it is installed, else a NullReader.

    ``gpu_ids`` are the physical ids of the GPUs in use (:func:`advisor.distributed.gpus_in_use`);
    codecarbon would otherwise meter every GPU ``CUDA_VISIBLE_DEVICES`` shows, once per process.
    """
    if cfg.enabled and cfg.codecarbon and importlib.util.find_spec("codecarbon") is not None:
        return CodecarbonReader(cfg, project_name, gpu_ids)
    return NullReader()


# ---------------------------------------------------------------------------------------------
# grid carbon intensity, from the data files codecarbon ships


@functools.cache
def _codecarbon_data() -> Path:
    spec = importlib.util.find_spec("codecarbon")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError("Grid carbon intensities come from codecarbon's data files: pip install codecarbon.")
    return Path(next(iter(spec.submodule_search_locations))) / "data"


@functools.cache
def _country_intensities() -> dict[str, tuple[str, float]]:
    """ISO alpha-3 -> (country name, gCO2e/kWh) from codecarbon's global energy mix."""
    mix = json.loads((_codecarbon_data() / "private_infra" / "global_energy_mix.json").read_text(encoding="utf-8"))
    return {
        code: (str(row.get("country_name", code)), float(row["carbon_intensity"]))
        for code, row in mix.items()
        if row.get("carbon_intensity") is not None
    }


@functools.cache
def cloud_intensities() -> dict[tuple[str, str], tuple[str, float]]:
    """(provider, region) -> ("city, country", gCO2e/kWh) from codecarbon's cloud impact table."""
    with (_codecarbon_data() / "cloud" / "impact.csv").open(encoding="utf-8-sig", newline="") as fh:
        return {
            (row["provider"], row["region"]): (
                ", ".join(x for x in (row.get("city"), row["country_name"]) if x),
                float(row["impact"]),
            )
            for row in csv.DictReader(fh)
            if row.get("impact")
        }


def location_of(cfg: MeteringConfig) -> str:
    """The configured grid: "provider:region" when both are set, else the country code."""
    if cfg.cloud_provider and cfg.cloud_region:
        return f"{cfg.cloud_provider}:{cfg.cloud_region}"
    return cfg.country_iso_code


def grid_intensity_g_per_kwh(cfg: MeteringConfig) -> float:
    """Average carbon intensity (gCO2e/kWh) of the configured location's grid.

    Raises:
        ConfigError: codecarbon knows no such country or cloud region.
    """
    if cfg.cloud_provider and cfg.cloud_region:
        clouds = cloud_intensities()
        key = (cfg.cloud_provider, cfg.cloud_region)
        if key not in clouds:
            known = sorted(f"{p}:{r}" for p, r in clouds)
            raise ConfigError(
                f"metering.cloud_provider/cloud_region {key[0]}:{key[1]} is unknown to codecarbon. "
                f"Use one of {', '.join(known[:8])} ..., or unset them to use metering.country_iso_code."
            )
        return clouds[key][1]
    countries = _country_intensities()
    if cfg.country_iso_code not in countries:
        raise ConfigError(
            f"metering.country_iso_code {cfg.country_iso_code!r} is unknown to codecarbon. "
            "Use an ISO 3166 alpha-3 code such as USA, FRA, DEU or IND."
        )
    return countries[cfg.country_iso_code][1]
