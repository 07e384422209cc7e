"""How cache values are stored: a serializer, an optional compressor, and a format that
reads back whatever was written, whatever the settings are today.

* Integers are stored as decimal text, so ``INCR``/``DECR`` work on them (as Django does).
* Other values are serialized (``pickle``, ``json``, ``msgpack`` or a dotted path to a
  class with ``dumps``/``loads``).
* Serialized values of at least ``compress_min_size`` bytes are compressed (``zlib``,
  ``zstd``, ``lz4`` or a dotted path) and stored behind a 3-byte header naming the
  compressor, so a value written with another compressor setting, or none, still reads.
"""

from __future__ import annotations

import importlib
import json
import pickle
import zlib
from collections.abc import Callable
from typing import Any, Protocol

from ferrite_integrations.errors import ConfigError

__all__ = ["ValueCodec", "compressor_named", "serializer_named"]

# Neither decimal text, pickle (0x80...), JSON nor msgpack of a non-integer starts so.
_COMPRESSED = b"\xfeF"
_INT_START = frozenset(bytes([char]) for char in b"+-0123456789 \t\n\r\x0b\x0c")


class Serializer(Protocol):
    def dumps(self, value: Any) -> bytes: ...
    def loads(self, data: bytes) -> Any: ...


class Compressor(Protocol):
    def compress(self, data: bytes) -> bytes: ...
    def decompress(self, data: bytes) -> bytes: ...


class PickleSerializer:
    def dumps(self, value: Any) -> bytes:
        return pickle.dumps(value, pickle.HIGHEST_PROTOCOL)

    def loads(self, data: bytes) -> Any:
        return pickle.loads(data)


class JSONSerializer:
    """JSON: readable by other languages; tuples come back as lists, bytes are refused."""

    def dumps(self, value: Any) -> bytes:
        return json.dumps(value, separators=(",", ":")).encode()

    def loads(self, data: bytes) -> Any:
        return json.loads(data)


class MsgpackSerializer:
    def __init__(self) -> None:
        self._msgpack = _extra("msgpack", "msgpack")

    def dumps(self, value: Any) -> bytes:
        packed: bytes = self._msgpack.packb(value, use_bin_type=True)
        return packed

    def loads(self, data: bytes) -> Any:
        return self._msgpack.unpackb(data, raw=False)


class ZlibCompressor:
    def compress(self, data: bytes) -> bytes:
        return zlib.compress(data)

    def decompress(self, data: bytes) -> bytes:
        return zlib.decompress(data)


class ZstdCompressor:
    def __init__(self) -> None:
        zstandard = _extra("zstandard", "zstd")
        self._compressor = zstandard.ZstdCompressor()
        self._decompressor = zstandard.ZstdDecompressor()

    def compress(self, data: bytes) -> bytes:
        compressed: bytes = self._compressor.compress(data)
        return compressed

    def decompress(self, data: bytes) -> bytes:
        decompressed: bytes = self._decompressor.decompress(data)
        return decompressed


class LZ4Compressor:
    def __init__(self) -> None:
        self._frame = _extra("lz4.frame", "lz4")

    def compress(self, data: bytes) -> bytes:
        compressed: bytes = self._frame.compress(data)
        return compressed

    def decompress(self, data: bytes) -> bytes:
        decompressed: bytes = self._frame.decompress(data)
        return decompressed


_SERIALIZERS: dict[str, Callable[[], Serializer]] = {
    "pickle": PickleSerializer,
    "json": JSONSerializer,
    "msgpack": MsgpackSerializer,
}
# One byte per compressor in the stored header; a dotted path gets "x".
_COMPRESSORS: dict[str, tuple[bytes, Callable[[], Compressor]]] = {
    "zlib": (b"z", ZlibCompressor),
    "zstd": (b"s", ZstdCompressor),
    "lz4": (b"l", LZ4Compressor),
}


def _extra(module: str, extra: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ConfigError(
            f"This option needs the {module.split('.', maxsplit=1)[0]!r} package: "
            f"pip install 'ferrite-integrations[{extra}]'",
            option=extra,
        ) from None


def _dotted(path: str, option: str, methods: tuple[str, str]) -> Any:
    """The object a dotted path names (a class is instantiated without arguments), checked
    now for the two ``methods`` the codec calls, so that a wrong path is a ConfigError
    when the cache is configured rather than an AttributeError on its first value."""
    module_name, _, attribute = path.rpartition(".")
    try:
        target = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError, ValueError):
        raise ConfigError(
            f"Option {option!r}: {path!r} is neither one of the built-in names nor an "
            "importable dotted path to a class.",
            option=option,
        ) from None
    wanted = f"{methods[0]}() and {methods[1]}()"
    if isinstance(target, type):
        try:
            target = target()
        except Exception as error:
            raise ConfigError(
                f"Option {option!r}: {path!r} could not be built without arguments "
                f"({type(error).__name__}: {error}); give a class with {wanted} whose "
                "constructor takes none.",
                option=option,
            ) from None
    if not all(callable(getattr(target, method, None)) for method in methods):
        raise ConfigError(
            f"Option {option!r}: {path!r} has no {wanted} methods; give a dotted path to a "
            f"class (or an object) with {wanted}.",
            option=option,
        )
    return target


def serializer_named(name: object) -> Serializer:
    """``"pickle"``, ``"json"``, ``"msgpack"`` or a dotted path to a class with
    ``dumps(value) -> bytes`` and ``loads(bytes)``."""
    if isinstance(name, str) and name in _SERIALIZERS:
        return _SERIALIZERS[name]()
    if not isinstance(name, str) or "." not in name:
        raise ConfigError(
            f"Option 'serializer' must be one of {', '.join(map(repr, _SERIALIZERS))} or a "
            f"dotted path (a string); got {name!r:.80} ({type(name).__name__}).",
            option="serializer",
        )
    serializer: Serializer = _dotted(name, "serializer", ("dumps", "loads"))
    return serializer


def compressor_named(name: object) -> tuple[bytes, Compressor]:
    """``"zlib"``, ``"zstd"``, ``"lz4"`` or a dotted path to a class with ``compress`` and
    ``decompress``; returns the header byte and the compressor."""
    if isinstance(name, str) and name in _COMPRESSORS:
        tag, make = _COMPRESSORS[name]
        return tag, make()
    if not isinstance(name, str) or "." not in name:
        raise ConfigError(
            f"Option 'compressor' must be one of {', '.join(map(repr, _COMPRESSORS))}, a "
            f"dotted path (a string) or None; got {name!r:.80} ({type(name).__name__}).",
            option="compressor",
        )
    compressor: Compressor = _dotted(name, "compressor", ("compress", "decompress"))
    return b"x", compressor


class ValueCodec:
    """Turns values into what is stored, and back.

    Args:
        serializer: a serializer name or dotted path (see ``serializer_named``).
        compressor: a compressor name, dotted path, or ``None`` for no compression.
        compress_min_size: values serialized to fewer bytes are stored uncompressed.
    """

    def __init__(
        self,
        serializer: str = "pickle",
        compressor: str | None = None,
        compress_min_size: int = 256,
    ) -> None:
        if isinstance(compress_min_size, bool) or not isinstance(compress_min_size, int):
            raise ConfigError(
                f"Option 'compress_min_size' must be an integer >= 0; got {compress_min_size!r}.",
                option="compress_min_size",
            )
        if compress_min_size < 0:
            raise ConfigError(
                f"Option 'compress_min_size' must be >= 0; got {compress_min_size}.",
                option="compress_min_size",
            )
        self.serializer = serializer_named(serializer)
        # Built-in serializers only: ints are stored as decimal text (INCR works on them)
        # and read back first as such. No pickle, JSON or msgpack output of anything else
        # reads as a decimal integer once int subclasses (which msgpack would write as one
        # byte, b"1" for 49) are stored that way too. A custom serializer, as in Django,
        # gets every value.
        self._raw_ints = serializer in _SERIALIZERS
        self._raw_int_subclasses = serializer == "msgpack"
        self.compress_min_size = compress_min_size
        self._compressor = compressor_named(compressor) if compressor is not None else None
        self._readers: dict[bytes, Compressor] = {}
        if self._compressor is not None:
            self._readers[self._compressor[0]] = self._compressor[1]

    def dumps(self, value: Any) -> bytes | int:
        # type() rather than isinstance(): True must not be stored as 1, and pickle keeps
        # an int subclass's type.
        if type(value) is int and self._raw_ints:
            return value
        if self._raw_int_subclasses and isinstance(value, int) and type(value) is not bool:
            return int(value)
        data = self.serializer.dumps(value)
        if self._compressor is not None and len(data) >= self.compress_min_size:
            tag, compressor = self._compressor
            return _COMPRESSED + tag + compressor.compress(data)
        return data

    def loads(self, data: bytes) -> Any:
        if data[:2] == _COMPRESSED:
            data = self._reader(data[2:3]).decompress(data[3:])
        elif self._raw_ints and data[:1] in _INT_START:  # skip an int() bound to fail
            try:
                return int(data)
            except ValueError:
                pass
        return self.serializer.loads(data)

    def _reader(self, tag: bytes) -> Compressor:
        reader = self._readers.get(tag)
        if reader is None:
            names = {code: name for name, (code, _) in _COMPRESSORS.items()}
            if tag not in names:
                raise ValueError(
                    "The value was compressed by a custom compressor that is not configured "
                    "now; set the 'compressor' option back to read it."
                )
            reader = self._readers[tag] = compressor_named(names[tag])[1]
        return reader
