"""A user's own serializer, compressor and key function, named by dotted path in settings."""

from __future__ import annotations

import bz2
import marshal
import threading
from typing import Any


class MarshalSerializer:
    """A serializer of the user's own: ``marshal`` (plain Python types)."""

    def dumps(self, value: Any) -> bytes:
        return marshal.dumps(value)

    def loads(self, data: bytes) -> Any:
        return marshal.loads(data)


class TextSerializer:
    """A serializer of the user's own that stores strings as plain text."""

    def dumps(self, value: Any) -> bytes:
        return str(value).encode()

    def loads(self, data: bytes) -> Any:
        return data.decode()


class BZ2Compressor:
    """A compressor of the user's own: ``bz2``."""

    def compress(self, data: bytes) -> bytes:
        return bz2.compress(data)

    def decompress(self, data: bytes) -> bytes:
        return bz2.decompress(data)


class ThreadRecordingSerializer(MarshalSerializer):
    """Records the thread every ``loads`` runs on."""

    threads: list[int] = []  # noqa: RUF012  (shared on purpose: the test reads it)

    def loads(self, data: bytes) -> Any:
        self.threads.append(threading.get_ident())
        return super().loads(data)


def reversed_key(key: str, key_prefix: str, version: int) -> str:
    """A ``KEY_FUNCTION``: the key reversed, then the prefix and version."""
    return f"{key[::-1]}|{key_prefix}|{version}"
