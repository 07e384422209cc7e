"""One request on a pooled asyncio connection: a single command, or a batch of commands sent
in one write, with the fewest steps that keep every rule of redis-py's own path.

What redis-py's ``execute_command`` and ``Pipeline.execute`` do and this keeps: the
connection's retry policy (which asks the connection what was sent), a failed attempt's
connection closed before the next one, ``NEVER_DECODE`` / ``EMPTY_RESPONSE`` options,
response callbacks, a connection marked for reconnection closed before it goes back.
What it leaves out: redis-py 8's per-call telemetry hooks, and the layers of closures and
option copies around them, which cost more than the command on a loopback server.

The connection's own ``send_packed_command`` / ``read_response`` (our mixins in
``connection.py``) still carry the breaker, the health check and the retry bookkeeping.

This file is the source of both paths: ``scripts/unasync.py`` writes the sync twin,
``_wire.py``, from it (``make unasync``), and a test fails when the two differ.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from functools import partial
from inspect import isawaitable
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


async def run_command(
    pool: Any, args: tuple[Any, ...], options: Mapping[str, Any], callbacks: Any
) -> Any:
    """Send one command through ``pool`` and return what redis-py's command method would.

    Args:
        pool: the pool to borrow a connection from.
        args: the command and its arguments, as ``execute_command`` takes them.
        options: ``execute_command``'s keyword options (callback options included).
        callbacks: the client's response callbacks.
    """
    connection: Any = await pool.get_connection()
    try:
        failure: BaseException | None = None
        try:
            raw = await _send_and_read(connection, args, options)
        except RETRYABLE_ERRORS as error:
            failure = error
        if failure is not None:  # outside the except block: no "during handling" chain
            again = partial(_send_and_read, connection, args, options)
            raw = await _retry(connection, failure, again)
    finally:
        await _give_back(pool, connection)
    value = reply_value(raw, args, options, callbacks)
    return await value if isawaitable(value) else value  # redis-py awaits async callbacks


async def run_batch(pool: Any, commands: Sequence[Command]) -> list[Any]:
    """Send ``commands`` through ``pool`` in one write and read their raw replies in order;
    a command's server error is returned in its place (``raise_on_error=False``).

    A failure of the connection (after the retry policy gave up) is raised: no reply of
    the batch can then be trusted, and the caller decides what each command learns.

    Args:
        pool: the pool to borrow a connection from.
        commands: ``(args, options)`` pairs, as a pipeline's command stack holds them.
    """
    connection: Any = await pool.get_connection()
    try:
        try:
            return await _send_and_read_all(connection, commands)
        except RETRYABLE_ERRORS as error:
            failure = error
        return await _retry(connection, failure, partial(_send_and_read_all, connection, commands))
    finally:
        await _give_back(pool, connection)


async def _send_and_read(connection: Any, args: tuple[Any, ...], options: Mapping[str, Any]) -> Any:
    await connection.send_packed_command(packed_command(connection, args))
    if not options:
        return await connection.read_response()
    return await _read_one(connection, options)


async def _send_and_read_all(connection: Any, commands: Sequence[Command]) -> list[Any]:
    await connection.send_packed_command(packed_batch(connection, commands))
    replies: list[Any] = []
    for _, options in commands:
        try:
            reply = await _read_one(connection, options)
        except redis.exceptions.ResponseError as error:
            reply = error
        replies.append(options[EMPTY_RESPONSE] if reply is EMPTY else reply)
    return replies


async def _read_one(connection: Any, options: Mapping[str, Any]) -> Any:
    if not options:
        return await connection.read_response()
    try:
        return await connection.read_response(disable_decoding=NEVER_DECODE in options)
    except redis.exceptions.ResponseError:
        if EMPTY_RESPONSE in options:
            return EMPTY
        raise


async def _retry(connection: Any, error: BaseException, attempt: Callable[[], Awaitable[T]]) -> T:
    """The first attempt ran bare and failed with ``error``: the connection's retry policy
    takes over, seeing that failure as its own first one (same count, same backoff, same
    rules), and runs ``attempt`` again if it allows."""
    first: list[BaseException] = [error]

    async def again() -> T:
        if first:
            raise first.pop()
        return await attempt()

    result: T = await connection.retry.call_with_retry(again, connection.ferrite_drop)
    return result


async def _give_back(pool: Any, connection: Any) -> None:
    try:
        if connection.should_reconnect():
            await connection.disconnect()
    finally:
        await pool.release(connection)
