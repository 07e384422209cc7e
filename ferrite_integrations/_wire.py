"""One request on a pooled connection: a single command, or a batch of commands sent
in one write, with the fewest steps that keep every rule of redis-py's own path.

What redis-py's ``execute_command`` and ``Pipeline.execute`` do and this keeps: the
connection's retry policy (which asks the connection what was sent), a failed attempt's
connection closed before the next one, ``NEVER_DECODE`` / ``EMPTY_RESPONSE`` options,
response callbacks, a connection marked for reconnection closed before it goes back.
What it leaves out: redis-py 8's per-call telemetry hooks, and the layers of closures and
option copies around them, which cost more than the command on a loopback server.

The connection's own ``send_packed_command`` / ``read_response`` (our mixins in
``connection.py``) still carry the breaker, the health check and the retry bookkeeping.

Generated from ``_wire_async.py`` by ``scripts/unasync.py``: edit that file, then run
``make unasync``. A test fails when the two differ.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Any, TypeVar

import redis.exceptions
from redis.client import EMPTY_RESPONSE, NEVER_DECODE

from ferrite_integrations._requests import (
    EMPTY,
    Command,
    packed_batch,
    packed_command,
    reply_value,
)
from ferrite_integrations.retry import RETRYABLE_ERRORS

__all__ = ["run_batch", "run_command"]

T = TypeVar("T")


def run_command(
    pool: Any, args: tuple[Any, ...], options: Mapping[str, Any], callbacks: Any
) -> Any:
    """Send one command through ``pool`` and return what redis-py's command method would.

    Args:
        pool: the pool to borrow a connection from.
        args: the command and its arguments, as ``execute_command`` takes them.
        options: ``execute_command``'s keyword options (callback options included).
        callbacks: the client's response callbacks.
    """
    connection: Any = pool.get_connection()
    try:
        failure: BaseException | None = None
        try:
            raw = _send_and_read(connection, args, options)
        except RETRYABLE_ERRORS as error:
            failure = error
        if failure is not None:  # outside the except block: no "during handling" chain
            again = partial(_send_and_read, connection, args, options)
            raw = _retry(connection, failure, again)
    finally:
        _give_back(pool, connection)
    return reply_value(raw, args, options, callbacks)


def run_batch(pool: Any, commands: Sequence[Command]) -> list[Any]:
    """Send ``commands`` through ``pool`` in one write and read their raw replies in order;
    a command's server error is returned in its place (``raise_on_error=False``).

    A failure of the connection (after the retry policy gave up) is raised: no reply of
    the batch can then be trusted, and the caller decides what each command learns.

    Args:
        pool: the pool to borrow a connection from.
        commands: ``(args, options)`` pairs, as a pipeline's command stack holds them.
    """
    connection: Any = pool.get_connection()
    try:
        try:
            return _send_and_read_all(connection, commands)
        except RETRYABLE_ERRORS as error:
            failure = error
        return _retry(connection, failure, partial(_send_and_read_all, connection, commands))
    finally:
        _give_back(pool, connection)


def _send_and_read(connection: Any, args: tuple[Any, ...], options: Mapping[str, Any]) -> Any:
    connection.send_packed_command(packed_command(connection, args))
    if not options:
        return connection.read_response()
    return _read_one(connection, options)


def _send_and_read_all(connection: Any, commands: Sequence[Command]) -> list[Any]:
    connection.send_packed_command(packed_batch(connection, commands))
    replies: list[Any] = []
    for _, options in commands:
        try:
            reply = _read_one(connection, options)
        except redis.exceptions.ResponseError as error:
            reply = error
        replies.append(options[EMPTY_RESPONSE] if reply is EMPTY else reply)
    return replies


def _read_one(connection: Any, options: Mapping[str, Any]) -> Any:
    if not options:
        return connection.read_response()
    try:
        return connection.read_response(disable_decoding=NEVER_DECODE in options)
    except redis.exceptions.ResponseError:
        if EMPTY_RESPONSE in options:
            return EMPTY
        raise


def _retry(connection: Any, error: BaseException, attempt: Callable[[], T]) -> T:
    """The first attempt ran bare and failed with ``error``: the connection's retry policy
    takes over, seeing that failure as its own first one (same count, same backoff, same
    rules), and runs ``attempt`` again if it allows."""
    first: list[BaseException] = [error]

    def again() -> T:
        if first:
            raise first.pop()
        return attempt()

    result: T = connection.retry.call_with_retry(again, connection.ferrite_drop)
    return result


def _give_back(pool: Any, connection: Any) -> None:
    try:
        if connection.should_reconnect():
            connection.disconnect()
    finally:
        pool.release(connection)
