"""Receiver of Extend's webhooks: verifies, de-duplicates and hands each event to the workers."""

from extendq.webhooks.app import create_app

__all__ = ["create_app"]
