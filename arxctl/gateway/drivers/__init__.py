"""Connector drivers: REST connectors declared as data, AWS through boto3, and LLM chats through the router."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from arxctl.gateway.drivers.base import Caller, Current, Downstream, Driver, DriverError

if TYPE_CHECKING:
    from arxctl.gateway.config import GatewayConfig

__all__ = ["Caller", "Current", "Downstream", "Driver", "DriverError", "Drivers", "build_drivers"]


class Drivers:
    """The drivers the gateway can call, by connector, and why the others cannot be called."""

    def __init__(self, drivers: Mapping[str, Driver], missing: Mapping[str, str]) -> None:
        self.drivers = dict(drivers)
        self.missing = dict(missing)
        self._session: Any = None

    def get(self, connector: str) -> Driver | None:
        return self.drivers.get(connector)

    def describe(self) -> list[str]:
        """One line per connector, for the startup log."""
        lines = []
        for name, driver in sorted(self.drivers.items()):
            base = getattr(driver, "base_url", None) or getattr(driver, "endpoint_url", None)
            lines.append(f"{name}: ready" + (f" ({base})" if base else ""))
        lines.extend(f"{name}: not callable ({why})" for name, why in sorted(self.missing.items()))
        return lines

    async def start(self) -> None:
        """Open the HTTP client session the REST drivers share (inside the running event loop)."""
        import aiohttp

        connector = aiohttp.TCPConnector(limit=512, limit_per_host=128, ttl_dns_cache=60, enable_cleanup_closed=True)
        self._session = aiohttp.ClientSession(connector=connector, headers={"User-Agent": "arxctl-gateway"},
                                              cookie_jar=aiohttp.DummyCookieJar())
        for driver in self.drivers.values():
            if hasattr(driver, "session"):
                driver.session = self._session

    async def close(self) -> None:
        for driver in self.drivers.values():
            await driver.close()
        if self._session is not None:
            await self._session.close()
            self._session = None


def build_drivers(config: GatewayConfig) -> Drivers:
    """Every driver the config makes callable; a REST connector needs a base URL (its default or the config's)."""
    from arxctl.gateway.drivers.aws import AwsDriver
    from arxctl.gateway.drivers.llm import LlmDriver
    from arxctl.gateway.drivers.rest import RestDriver, RestSpec

    drivers: dict[str, Driver] = {}
    missing: dict[str, str] = {}
    for name, declared in config.drivers.items():
        settings = config.settings(name)
        if declared.kind == "boto3":
            drivers[name] = AwsDriver(declared.data, region=settings.region, endpoint_url=settings.endpoint_url,
                                      connect_timeout=settings.connect_timeout, read_timeout=settings.read_timeout)
        elif declared.kind == "router":
            drivers[name] = LlmDriver(settings.router)
        else:
            spec = RestSpec.from_dict(declared.data, declared.source)
            base_url = settings.base_url or spec.base_url
            if not base_url:
                missing[name] = f"set connectors.{name}.base_url in the gateway config"
                continue
            drivers[name] = RestDriver(spec, base_url=base_url, auth=settings.auth, headers=settings.headers,
                                       connect_timeout=settings.connect_timeout, read_timeout=settings.read_timeout)
    return Drivers(drivers, missing)
