"""Greener places to run: the cloud regions of AWS, Azure and GCP, each with its grid's carbon
intensity, and what a run's energy would have emitted there instead of where it ran.

Only regions where compute can be rented are listed (a country's annual average says little to a
user choosing a region). Every figure comes from the data files codecarbon ships, so this works
offline; each intensity carries the name of its source.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from advisor.config import MeteringConfig
from advisor.energy import cloud_intensities, grid_intensity_g_per_kwh

# Cloud regions of AWS and Azure and where each one is, so that its grid can be looked up in
# codecarbon's data (codecarbon 3 ships intensities for GCP regions only). Locations from the
# providers' region lists: https://docs.aws.amazon.com/global-infrastructure/latest/regions/aws-regions.html
# and https://learn.microsoft.com/azure/reliability/regions-list (with Microsoft's datacenter
# pages for the state or province). Nordic regions name their ENTSO-E bidding zone (Stockholm and
# Gävle are in SE3, Oslo in NO1, Stavanger in NO2).
#: (provider, region) -> (city, ISO 3166 alpha-3, US state / Canadian province / Nordic zone or None)
_REGION_LOCATIONS: dict[tuple[str, str], tuple[str, str, str | None]] = {
    ("aws", "us-east-1"): ("N. Virginia", "USA", "virginia"),
    ("aws", "us-east-2"): ("Ohio", "USA", "ohio"),
    ("aws", "us-west-1"): ("N. California", "USA", "california"),
    ("aws", "us-west-2"): ("Oregon", "USA", "oregon"),
    ("aws", "ca-central-1"): ("Montreal", "CAN", "quebec"),
    ("aws", "ca-west-1"): ("Calgary", "CAN", "alberta"),
    ("aws", "mx-central-1"): ("Querétaro", "MEX", None),
    ("aws", "sa-east-1"): ("São Paulo", "BRA", None),
    ("aws", "eu-west-1"): ("Dublin", "IRL", None),
    ("aws", "eu-west-2"): ("London", "GBR", None),
    ("aws", "eu-west-3"): ("Paris", "FRA", None),
    ("aws", "eu-central-1"): ("Frankfurt", "DEU", None),
    ("aws", "eu-central-2"): ("Zurich", "CHE", None),
    ("aws", "eu-north-1"): ("Stockholm", "SWE", "SE3"),
    ("aws", "eu-south-1"): ("Milan", "ITA", None),
    ("aws", "eu-south-2"): ("Aragón", "ESP", None),
    ("aws", "il-central-1"): ("Tel Aviv", "ISR", None),
    ("aws", "me-south-1"): ("Bahrain", "BHR", None),
    ("aws", "me-central-1"): ("UAE", "ARE", None),
    ("aws", "af-south-1"): ("Cape Town", "ZAF", None),
    ("aws", "ap-east-1"): ("Hong Kong", "HKG", None),
    ("aws", "ap-south-1"): ("Mumbai", "IND", None),
    ("aws", "ap-south-2"): ("Hyderabad", "IND", None),
    ("aws", "ap-northeast-1"): ("Tokyo", "JPN", None),
    ("aws", "ap-northeast-2"): ("Seoul", "KOR", None),
    ("aws", "ap-northeast-3"): ("Osaka", "JPN", None),
    ("aws", "ap-southeast-1"): ("Singapore", "SGP", None),
    ("aws", "ap-southeast-2"): ("Sydney", "AUS", None),
    ("aws", "ap-southeast-3"): ("Jakarta", "IDN", None),
    ("aws", "ap-southeast-4"): ("Melbourne", "AUS", None),
    ("aws", "ap-southeast-5"): ("Malaysia", "MYS", None),
    ("azure", "eastus"): ("Virginia", "USA", "virginia"),
    ("azure", "eastus2"): ("Virginia", "USA", "virginia"),
    ("azure", "centralus"): ("Iowa", "USA", "iowa"),
    ("azure", "northcentralus"): ("Illinois", "USA", "illinois"),
    ("azure", "southcentralus"): ("Texas", "USA", "texas"),
    ("azure", "westcentralus"): ("Wyoming", "USA", "wyoming"),
    ("azure", "westus"): ("California", "USA", "california"),
    ("azure", "westus2"): ("Washington", "USA", "washington"),
    ("azure", "westus3"): ("Arizona", "USA", "arizona"),
    ("azure", "canadacentral"): ("Toronto", "CAN", "ontario"),
    ("azure", "canadaeast"): ("Quebec City", "CAN", "quebec"),
    ("azure", "mexicocentral"): ("Querétaro", "MEX", None),
    ("azure", "brazilsouth"): ("São Paulo", "BRA", None),
    ("azure", "northeurope"): ("Ireland", "IRL", None),
    ("azure", "westeurope"): ("Netherlands", "NLD", None),
    ("azure", "uksouth"): ("London", "GBR", None),
    ("azure", "ukwest"): ("Cardiff", "GBR", None),
    ("azure", "francecentral"): ("Paris", "FRA", None),
    ("azure", "germanywestcentral"): ("Frankfurt", "DEU", None),
    ("azure", "switzerlandnorth"): ("Zurich", "CHE", None),
    ("azure", "norwayeast"): ("Oslo", "NOR", "NO1"),
    ("azure", "norwaywest"): ("Stavanger", "NOR", "NO2"),
    ("azure", "swedencentral"): ("Gävle", "SWE", "SE3"),
    ("azure", "polandcentral"): ("Warsaw", "POL", None),
    ("azure", "italynorth"): ("Milan", "ITA", None),
    ("azure", "spaincentral"): ("Madrid", "ESP", None),
    ("azure", "israelcentral"): ("Israel", "ISR", None),
    ("azure", "qatarcentral"): ("Doha", "QAT", None),
    ("azure", "uaenorth"): ("Dubai", "ARE", None),
    ("azure", "southafricanorth"): ("Johannesburg", "ZAF", None),
    ("azure", "centralindia"): ("Pune", "IND", None),
    ("azure", "southindia"): ("Chennai", "IND", None),
    ("azure", "eastasia"): ("Hong Kong", "HKG", None),
    ("azure", "southeastasia"): ("Singapore", "SGP", None),
    ("azure", "japaneast"): ("Tokyo", "JPN", None),
    ("azure", "japanwest"): ("Osaka", "JPN", None),
    ("azure", "koreacentral"): ("Seoul", "KOR", None),
    ("azure", "australiaeast"): ("New South Wales", "AUS", None),
    ("azure", "australiasoutheast"): ("Victoria", "AUS", None),
}
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
    for (provider, region), (city, country, zone) in _REGION_LOCATIONS.items():
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
