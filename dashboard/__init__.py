"""The dashboard: the pool at a glance in a browser, read-only (issue 21, first step: the overview page)."""

from extendq.dashboard.app import create_app

__all__ = ["create_app"]
