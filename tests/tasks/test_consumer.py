"""The worker's consumer goes on connecting after a broker restart that Celery 5.7 would end the worker on."""

from __future__ import annotations

from typing import Any

import pytest

from extendq.config.settings import Settings
from extendq.tasks.celery import create_app
from extendq.tasks.consumer import Consumer


class CollectedConnection:
    """A broker connection as Celery leaves it after `collect()`: closing it fails inside kombu's Redis transport
    (restoring unacked messages reads settings the collect let go of). A fault of kombu's that a test cannot
    time on a real broker, so it is stood in for here."""

    def __init__(self) -> None:
        self.collected = False
        self.connection_errors: tuple[type[Exception], ...] = (ConnectionError,)
        self.channel_errors: tuple[type[Exception], ...] = ()

    def collect(self, **_: Any) -> None:
        self.collected = True

    def close(self) -> None:
        raise AttributeError("'NoneType' object has no attribute 'hostname'")


def test_the_worker_uses_the_consumer_that_survives_a_failed_close(settings: Settings) -> None:
    assert create_app(settings).conf.worker_consumer == "extendq.tasks.consumer:Consumer"


def test_a_lost_connection_whose_close_fails_is_let_go_and_not_raised(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    # Given the consumer of a worker whose broker connection was lost after it had connected
    consumer = Consumer.__new__(Consumer)
    consumer.app = create_app(settings)
    lost = CollectedConnection()
    consumer.connection = lost
    # When Celery handles the loss (collect, then close, which fails as kombu's does)
    consumer.on_connection_error_after_connected(ConnectionError("Connection closed by server."))
    # Then nothing is raised (Celery would stop the worker), the connection is let go, and the log says so
    assert lost.collected and consumer.connection is None
    assert "connecting again" in caplog.text
