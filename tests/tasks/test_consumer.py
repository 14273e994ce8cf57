"""The worker's consumer goes on connecting after a broker restart that Celery 5.7 would end the worker on."""

from __future__ import annotations

from typing import Any

import pytest

from extendq.config.settings import Settings
from extendq.tasks.celery import create_app
from extendq.tasks.consumer import Consumer, settle_unless_gone


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


class RecordingConnection:
    """A broker connection that records how the consumer asks it to connect."""

    def __init__(self) -> None:
        self.given: dict[str, Any] = {}

    def ensure_connection(self, *args: Any, **kwargs: Any) -> RecordingConnection:
        self.given = kwargs
        return self


def test_the_consumer_tries_again_within_a_second_not_after_two(settings: Settings) -> None:
    # Given the consumer of a worker whose broker connection was lost
    consumer = Consumer.__new__(Consumer)
    consumer.app = create_app(settings)
    consumer.first_connection_attempt, consumer.broker_connection_retry_attempt = False, 0
    conn = RecordingConnection()
    # When it connects again
    assert consumer.ensure_connected(conn) is conn
    # Then it waits half a second before its second round of attempts (kombu's default: 2 s, then 4, 6 ...), at
    # most 4 s later on, and the connection keeps its own method afterwards
    assert (conn.given["interval_start"], conn.given["interval_step"], conn.given["interval_max"]) == (0.5, 0.5, 4.0)
    assert "callback" in conn.given and "ensure_connection" not in vars(conn)


class Transport:
    def __init__(self, client: object | None) -> None:
        self.client = client


class Channel:
    def __init__(self, transport: Transport) -> None:
        self.connection = transport


class Message:
    def __init__(self, channel: Channel) -> None:
        self.channel = channel
        self.delivery_tag = "tag-1"


def test_a_message_of_a_lost_connection_is_left_unacknowledged(caplog: pytest.LogCaptureFixture) -> None:
    settled: list[tuple[Any, ...]] = []
    # Given a message whose connection's transport Celery let go of (kombu sets its client to None)
    gone = Message(Channel(Transport(client=None)))
    # When its task ends and it is acknowledged
    settle_unless_gone(gone, lambda *args: settled.append(args), "acknowledged", "logger", ())
    # Then nothing is sent (it would raise AttributeError in the consumer's loop), and the log says why
    assert settled == [] and "tag-1 was not acknowledged" in caplog.text
    # While a message of a live connection is acknowledged as Celery asks
    live = Message(Channel(Transport(client=object())))
    settle_unless_gone(live, lambda *args: settled.append(args), "acknowledged", "logger", ())
    assert settled == [("logger", ())]
