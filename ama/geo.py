"""Geo routing: a client address to a location, then regions and edges nearest first.

Lookups use a MaxMind-format database through ``geoip2``: a City database
gives coordinates; a Country database (or a City record without coordinates)
gives the country, placed at the country's centre (``countryinfo``).
Addresses with no location never raise: they get the default order and a
``reason`` that says why.

The database is reopened when its file is replaced. Replace it atomically
(write the new file elsewhere on the same file system, then rename it over
the old one): the open reader keeps the old inode mapped, so no lookup fails
during the swap. Copying over the file in place rewrites pages that the
reader has mapped, and lookups may then return garbage or crash.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import geoip2.database
import geoip2.errors
import maxminddb
from countryinfo import CountryInfo

from ama.addresses import parse_address
from ama.plan import great_circle_km

log = logging.getLogger("ama.geo")

RELOAD_CHECK_S = 5.0
CGNAT = ipaddress.ip_network("100.64.0.0/10")


@dataclass(frozen=True)
class Location:
    latitude: float
    longitude: float
    country: str | None = None
    city: str | None = None
    accuracy: str = "city"

    def as_dict(self) -> dict:
        return {"latitude": self.latitude, "longitude": self.longitude, "country": self.country, "city": self.city, "accuracy": self.accuracy}


@dataclass(frozen=True)
class Lookup:
    client_ip: str | None
    location: Location | None
    reason: str


def unroutable_reason(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    """Return why an address has no location of its own, or None for a public address."""
    if address.is_loopback:
        return "loopback"
    if address.is_link_local:
        return "link_local"
    if address.version == 4 and address in CGNAT:
        return "shared_address_space"
    if address.is_private:
        return "private"
    if address.is_multicast or address.is_unspecified or address.is_reserved:
        return "reserved"
    return None


def country_centre(iso_code: str | None) -> tuple[float, float] | None:
    if not iso_code:
        return None
    try:
        latitude, longitude = CountryInfo(iso_code).latlng()
    except (KeyError, ValueError, TypeError, AttributeError):
        return None
    return float(latitude), float(longitude)


class GeoDatabase:
    """A MaxMind database that follows atomic replacements of its file."""

    def __init__(self, path: Path, clock=time.monotonic):
        self.path = Path(path)
        self.clock = clock
        self.reader: geoip2.database.Reader | None = None
        self.identity: tuple[int, int, int] | None = None
        self.checked_at = 0.0
        self._open()

    def _open(self) -> None:
        status = os.stat(self.path)
        reader = geoip2.database.Reader(str(self.path))
        old, self.reader = self.reader, reader
        self.identity = (status.st_dev, status.st_ino, status.st_mtime_ns)
        self.is_city = "City" in reader.metadata().database_type
        if old is not None:
            old.close()
        log.info("geo database %s opened type=%s", self.path, reader.metadata().database_type)

    def maybe_reload(self) -> None:
        now = self.clock()
        if now - self.checked_at < RELOAD_CHECK_S:
            return
        self.checked_at = now
        try:
            status = os.stat(self.path)
            if (status.st_dev, status.st_ino, status.st_mtime_ns) != self.identity:
                self._open()
        except (OSError, maxminddb.InvalidDatabaseError, ValueError) as exc:
            log.warning("geo database %s could not be reloaded, keeping the open one: %s", self.path, exc)

    def locate(self, address: str) -> tuple[Location | None, str]:
        self.maybe_reload()
        try:
            record = self.reader.city(address) if self.is_city else self.reader.country(address)
        except geoip2.errors.AddressNotFoundError:
            return None, "not_found"
        except (ValueError, maxminddb.InvalidDatabaseError) as exc:
            log.warning("geo lookup of %s failed: %s", address, exc)
            return None, "lookup_failed"
        iso_code = record.country.iso_code or record.registered_country.iso_code
        location = getattr(record, "location", None)
        if location is not None and location.latitude is not None and location.longitude is not None:
            return Location(location.latitude, location.longitude, iso_code, record.city.name, "city"), "located"
        centre = country_centre(iso_code)
        if centre is None:
            return None, "no_coordinates"
        return Location(centre[0], centre[1], iso_code, None, "country"), "located_by_country"


class Resolver:
    """Turns a client address into a location and a nearest-first order of regions and edges."""

    def __init__(self, regions: list[dict], default_order: list[str], database: GeoDatabase | None = None):
        self.regions = {region["name"]: region for region in regions}
        self.default_order = list(default_order)
        self.database = database

    def lookup(self, client_ip: str | None) -> Lookup:
        if not client_ip:
            return Lookup(None, None, "no_address")
        address = parse_address(client_ip)
        if address is None:
            return Lookup(client_ip, None, "invalid_address")
        reason = unroutable_reason(address)
        if reason is not None:
            return Lookup(str(address), None, reason)
        if self.database is None:
            return Lookup(str(address), None, "no_database")
        location, reason = self.database.locate(str(address))
        return Lookup(str(address), location, reason)

    def region_order(self, location: Location | None, unhealthy: set[str] = frozenset()) -> list[str]:
        """Return region names nearest first (the default order without a location), healthy ones first."""
        if location is None:
            order = [name for name in self.default_order if name in self.regions]
            order += sorted(name for name in self.regions if name not in order)
        else:
            point = (location.latitude, location.longitude)
            order = sorted(self.regions, key=lambda name: (great_circle_km(point, tuple(self.regions[name]["location"])), name))
        return [name for name in order if name not in unhealthy] + [name for name in order if name in unhealthy]

    def edge_order(self, regions: list[str], edge_urls: dict[str, list[str]], unhealthy_edges: set[str] = frozenset()) -> list[str]:
        urls = [url for region in regions for url in edge_urls.get(region, [])]
        return [url for url in urls if url not in unhealthy_edges] + [url for url in urls if url in unhealthy_edges]

    def locate(self, client_ip: str | None, edge_urls: dict[str, list[str]], unhealthy: set[str] = frozenset(), unhealthy_edges: set[str] = frozenset()) -> dict:
        """Return the ``/v1/locate`` body for one client."""
        found = self.lookup(client_ip)
        regions = self.region_order(found.location, unhealthy)
        return {
            "client_ip": found.client_ip,
            "location": None if found.location is None else found.location.as_dict(),
            "reason": found.reason,
            "regions": regions,
            "edges": self.edge_order(regions, edge_urls, unhealthy_edges),
        }
