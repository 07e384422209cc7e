"""One request on a pooled sync connection: a single command, or a batch of commands sent
in one write, with the fewest steps that keep every rule of redis-py's own path.

What redis-py's ``Redis.execute_command`` and ``Pipeline.execute`` do and this keeps: the
connection's retry policy (which asks the connection what was sent), a failed attempt's
connection closed before the next one, ``NEVER_DECODE`` / ``EMPTY_RESPONSE`` options,
response callbacks, a connection marked for reconnection closed before it goes back.
What it leaves out: redis-py 8's per-call telemetry hooks, and the layers of closures and
option copies around them, which cost more than the command on a loopback server.

The connection's own ``send_packed_command`` / ``read_response`` (our mixins in
``connection.py``) still carry the breaker, the health check and the retry bookkeeping.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Any, TypeVar

import redis.exceptions
from redis.client import EMPTY_RESPONSE, NEVER_DECODE
from redis.utils import HIREDIS_AVAILABLE

if HIREDIS_AVAILABLE:
    import hiredis

from ferrite_integrations.retry import RETRYABLE_ERRORS, command_name

__all__ = ["run_batch", "run_command"]

T = TypeVar("T")
Command = tuple[tuple[Any, ...], Mapping[str, Any]]


def run_command(
    pool: Any, args: tuple[Any, ...], options: Mapping[str, Any], callbacks: Any
) -> Any:
    """Send one command through ``pool`` and return what redis-py's command method would.

    Args:
        pool: the sync pool to borrow a connection from.
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
            raw = _retry(connection, failure, partial(_send_and_read, connection, args, options))
    finally:
        _give_back(pool, connection)
    if raw is _EMPTY:  # a server error the command's options turn into a value
        return options[EMPTY_RESPONSE]
    name = args[0]
    # Callback keys are stored upper-case: look up as is first (C speed), then as redis-py.
    callback = dict.get(callbacks, name)
    if callback is None and isinstance(name, str) and not name.isupper():
        callback = callbacks.get(name)
    if callback is None:
        return raw
    if not options:
        return callback(raw)
    kept = {key: value for key, value in options.items() if key not in _NOT_FOR_CALLBACKS}
    return callback(raw, **kept)


def run_batch(pool: Any, commands: Sequence[Command]) -> list[Any]:
    """Send ``commands`` through ``pool`` in one write and read their raw replies in order;
    a command's server error is returned in its place (``raise_on_error=False``).

    A failure of the connection (after the retry policy gave up) is raised: no reply of
    the batch can then be trusted, and the caller decides what each command learns.

    Args:
        pool: the sync pool to borrow a connection from.
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


_EMPTY = object()
_HIREDIS = HIREDIS_AVAILABLE
_NAME_TYPES = (str, bytes)
_NOT_FOR_CALLBACKS = frozenset({NEVER_DECODE, EMPTY_RESPONSE, "keys"})


def _hiredis_packed(args: tuple[Any, ...]) -> bytes | None:
    """The command's bytes as the connection would pack them, when hiredis can make them
    alone; ``None`` otherwise. The connection packs with hiredis when it is installed, after
    splitting a command name with spaces ("CLIENT LIST") and copying bytearrays: when
    neither applies, hiredis packs the arguments as they are. Whatever hiredis refuses goes
    to the connection, which raises redis-py's own ``DataError``."""
    first = args[0]
    if not (_HIREDIS and type(first) in _NAME_TYPES and first.isalpha()):
        return None
    try:
        packed: bytes = hiredis.pack_command(args)
    except TypeError:
        return None
    return packed


def _send_and_read(connection: Any, args: tuple[Any, ...], options: Mapping[str, Any]) -> Any:
    packed = _hiredis_packed(args)
    connection.ferrite_commands = (command_name(args),)
    connection.send_packed_command(connection.pack_command(*args) if packed is None else [packed])
    if not options:
        return connection.read_response()
    return _read_one(connection, options)


def _pack_all(connection: Any, commands: Sequence[Command]) -> Any:
    """The batch's bytes, as the connection would pack them (see ``_hiredis_packed``), with
    every command's name recorded on the connection for the retry policy."""
    parts = []
    for args, _ in commands:
        packed = _hiredis_packed(args)
        if packed is None:
            return connection.pack_commands([args for args, _ in commands])  # records names
        parts.append(packed)
    connection.ferrite_commands = tuple(command_name(args) for args, _ in commands)
    return [b"".join(parts)]


def _send_and_read_all(connection: Any, commands: Sequence[Command]) -> list[Any]:
    connection.send_packed_command(_pack_all(connection, commands))
    replies: list[Any] = []
    for _, options in commands:
        try:
            reply = _read_one(connection, options)
        except redis.exceptions.ResponseError as error:
            reply = error
        replies.append(options[EMPTY_RESPONSE] if reply is _EMPTY else reply)
    return replies


def _read_one(connection: Any, options: Mapping[str, Any]) -> Any:
    if not options:
        return connection.read_response()
    try:
        return connection.read_response(disable_decoding=NEVER_DECODE in options)
    except redis.exceptions.ResponseError:
        if EMPTY_RESPONSE in options:
            return _EMPTY
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
