"""What the sync and the async short command paths (``_wire`` and ``_wire_async``) share
and which does no I/O: a request's bytes, the record of what it holds for the retry policy,
and a reply turned into what redis-py's command method returns."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from redis.client import EMPTY_RESPONSE, NEVER_DECODE
from redis.connection import HiredisRespSerializer
from redis.utils import HIREDIS_AVAILABLE

if HIREDIS_AVAILABLE:
    import hiredis

from ferrite_integrations.retry import command_name

__all__ = [
    "EMPTY",
    "Command",
    "callback_options",
    "find_callback",
    "needs_redis_py",
    "packed_batch",
    "packed_command",
    "reply_value",
]

Command = tuple[tuple[Any, ...], Mapping[str, Any]]

# A server error that the command's options turn into a value (``EMPTY_RESPONSE``).
EMPTY = object()

_HIREDIS = HIREDIS_AVAILABLE
_NAME_TYPES = (str, bytes)
_PLAIN_TYPES = frozenset({str, bytes, int, float})
# HIMPORT's wire form depends on per-connection state that redis-py manages itself.
_REDIS_PY_PATH = frozenset({"HIMPORT", b"HIMPORT"})
_NOT_FOR_CALLBACKS = frozenset({NEVER_DECODE, EMPTY_RESPONSE, "keys"})


def needs_redis_py(args: tuple[Any, ...]) -> bool:
    """Whether this command must go through redis-py's own path (see _REDIS_PY_PATH)."""
    return args[0][:7].upper() in _REDIS_PY_PATH


def packed_command(connection: Any, args: tuple[Any, ...]) -> Any:
    """One command's bytes, as ``connection`` would pack them, with its name recorded on
    the connection for the retry policy."""
    packed = _hiredis_packed(connection, args)
    connection.ferrite_commands = (command_name(args),)
    return connection.pack_command(*args) if packed is None else [packed]


def packed_batch(connection: Any, commands: Sequence[Command]) -> Any:
    """A batch's bytes, as ``connection`` would pack them, with every command's name
    recorded on the connection for the retry policy."""
    parts = []
    for args, _ in commands:
        packed = _hiredis_packed(connection, args)
        if packed is None:
            return connection.pack_commands([args for args, _ in commands])  # records names
        parts.append(packed)
    connection.ferrite_commands = tuple(command_name(args) for args, _ in commands)
    return [b"".join(parts)]


def reply_value(raw: Any, args: tuple[Any, ...], options: Mapping[str, Any], callbacks: Any) -> Any:
    """What redis-py's command method returns for this raw reply: the ``EMPTY_RESPONSE``
    value, or the reply through the command's response callback (with its options)."""
    if raw is EMPTY:
        return options[EMPTY_RESPONSE]
    name = args[0]
    # find_callback's lookup, inline (it runs for every command): keys are stored
    # upper-case, so look up as is first (C speed), then as redis-py does.
    callback = dict.get(callbacks, name)
    if callback is None and isinstance(name, str) and not name.isupper():
        callback = callbacks.get(name)
    if callback is None:
        return raw
    if not options:
        return callback(raw)
    return callback(raw, **callback_options(options))


def find_callback(callbacks: Any, args: tuple[Any, ...]) -> Any:
    """The command's response callback, or ``None`` (looked up as ``reply_value`` does)."""
    name = args[0]
    callback = dict.get(callbacks, name)
    if callback is None and isinstance(name, str) and not name.isupper():
        callback = callbacks.get(name)
    return callback


def callback_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """The options a response callback is called with (the path's own ones left out)."""
    return {key: value for key, value in options.items() if key not in _NOT_FOR_CALLBACKS}


def _hiredis_packed(connection: Any, args: tuple[Any, ...]) -> bytes | None:
    """The command's bytes as the connection would pack them, when hiredis can make them
    alone; ``None`` otherwise, and for whatever hiredis refuses: the connection then packs
    (and raises redis-py's own ``DataError``).

    A command name with spaces ("CLIENT LIST") is split by the connection first, so it
    always goes there. A sync connection packs with hiredis itself when it is installed.
    An asyncio connection packs in Python with its encoder: hiredis makes the same bytes
    when the encoder is UTF-8 and strict and every argument is a plain str, bytes, int or
    float (bool, bytearray, memoryview and subclasses go to the connection)."""
    first = args[0]
    if not (_HIREDIS and type(first) in _NAME_TYPES and first.isalpha()):
        return None
    if type(getattr(connection, "_command_packer", None)) is not HiredisRespSerializer:
        encoder = connection.encoder
        if encoder.encoding != "utf-8" or encoder.encoding_errors != "strict":
            return None
        if not _PLAIN_TYPES.issuperset(map(type, args)):
            return None
    try:
        packed: bytes = hiredis.pack_command(args)
    except (TypeError, ValueError):
        return None
    return packed
