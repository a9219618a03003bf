"""Greener places to run: the cloud regions of AWS, Azure and GCP, each with its grid's carbon
intensity, and what a run's energy would have emitted there instead of where it ran.

Only regions where compute can be rented are listed (a country's annual average says little to a
user choosing a region). Every figure comes from the data files codecarbon ships, so this works
offline; each intensity carries the name of its source.
"""

from __future__ import annotations

import csv
import functools
from dataclasses import dataclass
from importlib import resources
from typing import Any

from advisor.config.settings import MeteringConfig
from advisor.metering.energy import cloud_intensities, grid_intensity_g_per_kwh

# Cloud regions of AWS and Azure and where each one is, so that its grid can be looked up in
# codecarbon's data (codecarbon 3 ships intensities for GCP regions only): _data/cloud_regions.csv,
# one row a region (provider, region, city, ISO 3166 alpha-3 country, and the US state, Canadian
# province or Nordic bidding zone where the grid is finer than the country's, else empty).
# Locations from the providers' region lists:
# https://docs.aws.amazon.com/global-infrastructure/latest/regions/aws-regions.html and
# https://learn.microsoft.com/azure/reliability/regions-list (with Microsoft's datacenter pages for
# the state or province). Nordic regions name their ENTSO-E bidding zone (Stockholm and Gävle are
# in SE3, Oslo in NO1, Stavanger in NO2).
REGIONS_CSV = "_data/cloud_regions.csv"


@functools.cache
def region_locations() -> dict[tuple[str, str], tuple[str, str, str | None]]:
    """(provider, region) -> (city, ISO 3166 alpha-3, US state / Canadian province / Nordic zone or None)."""
    text = resources.files("advisor").joinpath(REGIONS_CSV).read_text(encoding="utf-8")
    rows = csv.DictReader(text.splitlines())
    return {(r["provider"], r["region"]): (r["city"], r["country"], r["zone"] or None) for r in rows}


PROVIDERS = ("aws", "azure", "gcp")


@dataclass(frozen=True)
class RegionOption:
    """One cloud region where the same energy would have emitted less than where it ran."""

    region: str  # "provider:region"
    location: str
    g_per_kwh: float
    emissions_g: float  # what the energy would have emitted there
    saving_g: float  # against the configured location
    source: str  # where the intensity comes from


@functools.cache
def _emissions() -> Any:
    """codecarbon's emissions calculator, built once (it reads its data files on first use)."""
    from codecarbon.core.emissions import Emissions
    from codecarbon.input import DataSource

    return Emissions(DataSource())


@functools.cache
def _location_intensity(country: str, region: str | None) -> tuple[float, str]:
    """gCO2e/kWh of a place's grid as codecarbon computes it for private infrastructure.

    Sources (shipped with codecarbon, offline): US states from EPA eGRID2023 (annual CO2e output
    rate, https://www.epa.gov/egrid/download-data); Canadian provinces from their generation mix
    (codecarbon's canada_energy_mix.json) times per-fuel factors; Nordic bidding zones from ENTSO-E
    generation (codecarbon's nordic_emissions.json); countries from codecarbon's global energy mix
    (Our World in Data / Ember annual averages).
    """
    from codecarbon.core.units import Energy
    from codecarbon.external.geography import GeoMetadata

    kg = _emissions().get_private_infra_emissions(
        Energy.from_energy(kWh=1.0), GeoMetadata(country_iso_code=country, region=region)
    )
    source = {"USA": "EPA eGRID2023 state average", "CAN": "provincial generation mix"}.get(country, "")
    if region and country in ("SWE", "NOR"):
        source = f"ENTSO-E zone {region}"
    return float(kg) * 1000.0, source or "national annual average"


@functools.cache
def cloud_region_intensities() -> dict[tuple[str, str], tuple[str, float, str]]:
    """(provider, region) -> (location, gCO2e/kWh, source) for AWS, Azure and GCP regions.

    GCP: Google's published grid intensity per region, from codecarbon's cloud table (source:
    https://cloud.google.com/sustainability/region-carbon). AWS and Azure publish none per region,
    so their figure is the grid average of the region's location (see :func:`_location_intensity`).
    """
    out = {
        (p, r): (name, g, "Google's region carbon data")
        for (p, r), (name, g) in cloud_intensities().items()
        if p == "gcp"
    }
    for (provider, region), (city, country, zone) in region_locations().items():
        g, source = _location_intensity(country, zone)
        out[(provider, region)] = (f"{city}, {country}", g, source)
    return out


def low_carbon_alternatives(kwh: float, cfg: MeteringConfig, per_provider: int = 2) -> list[RegionOption]:
    """The cloud regions where ``kwh`` would have emitted least, with the saving against ``cfg``'s grid.

    Only AWS, Azure and GCP regions are listed (places where compute can be rented): those of the
    configured ``cloud_provider`` when it is one of them, else the ``per_provider`` cleanest of each.
    Regions no cleaner than the configured location, and grids listed at 0 gCO2e/kWh (a gap in the
    data, not a grid without emissions), are left out. Sorted from the lowest intensity.

    Raises:
        ConfigError: codecarbon (whose data files hold the intensities) is missing, or the
            configured location is unknown to it.
    """
    regions = cloud_region_intensities()
    key = (cfg.cloud_provider or "", cfg.cloud_region or "")
    here = regions[key][1] if key in regions else grid_intensity_g_per_kwh(cfg)
    providers = (cfg.cloud_provider,) if cfg.cloud_provider in PROVIDERS else PROVIDERS
    out: list[RegionOption] = []
    for provider in providers:
        cleaner = sorted(
            (g, region, location, source)
            for (p, region), (location, g, source) in regions.items()
            if p == provider and 0 < g < here
        )
        out += [
            RegionOption(f"{provider}:{region}", location, g, kwh * g, kwh * (here - g), source)
            for g, region, location, source in cleaner[:per_provider]
        ]
    return sorted(out, key=lambda o: (o.g_per_kwh, o.region))
