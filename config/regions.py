"""Extend's regions and their API base URLs."""

from __future__ import annotations

from enum import StrEnum


class Region(StrEnum):
    """Extend's regions and their base URLs (the SDK's `ExtendEnvironment`)."""

    US = "us"
    US2 = "us2"
    EU = "eu"

    @property
    def base_url(self) -> str:
        return _REGION_URLS[self]


_REGION_URLS = {
    Region.US: "https://api.extend.ai",
    Region.US2: "https://api.us2.extend.app",
    Region.EU: "https://api.eu1.extend.ai",
}
