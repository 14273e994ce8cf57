"""Local stand-in for the Extend API, served by uvicorn; the other side of the contract."""

from extendq.emulator.app import create_app
from extendq.emulator.extraction import Extraction, extract_fields
from extendq.emulator.profiles import BUILTIN, Profile, ProfileError, load_profile, parse_profile
from extendq.emulator.webhooks import sign

__all__ = [
    "BUILTIN",
    "Extraction",
    "Profile",
    "ProfileError",
    "create_app",
    "extract_fields",
    "load_profile",
    "parse_profile",
    "sign",
]
