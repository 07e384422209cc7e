"""Write the sync twin of an async module, so that their I/O logic is written once.

    python scripts/unasync.py           # rewrite every twin
    python scripts/unasync.py --check   # exit 1, naming the twin, when one is out of date

The async module is the source; its twin is the same code with ``async``/``await`` removed
and the few names that differ swapped. Every swap must match where it is expected: a rule
that no longer matches stops the script, instead of quietly leaving async code behind.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "ferrite_integrations"

# (async source, sync twin, exact swaps made before the keyword rules, each must match)
TWINS: list[tuple[str, str, list[tuple[str, str]]]] = [
    (
        "_wire_async.py",
        "_wire.py",
        [
            ("One request on a pooled asyncio connection", "One request on a pooled connection"),
            (
                "This file is the source of both paths: ``scripts/unasync.py`` writes the "
                "sync twin,\n``_wire.py``, from it (``make unasync``), and a test fails when "
                "the two differ.",
                "Generated from ``_wire_async.py`` by ``scripts/unasync.py``: edit that file, "
                "then run\n``make unasync``. A test fails when the two differ.",
            ),
            (
                "from collections.abc import Awaitable, Callable,",
                "from collections.abc import Callable,",
            ),
            ("Callable[[], Awaitable[T]]", "Callable[[], T]"),
            ("from inspect import isawaitable\n", ""),
            (
                "    value = reply_value(raw, args, options, callbacks)\n"
                "    return await value if isawaitable(value) else value"
                "  # redis-py awaits async callbacks\n",
                "    return reply_value(raw, args, options, callbacks)\n",
            ),
        ],
    ),
]

_KEYWORDS = [
    (re.compile(r"\basync def "), "def "),
    (re.compile(r"\basync with "), "with "),
    (re.compile(r"\basync for "), "for "),
    (re.compile(r"\bawait "), ""),
]
_LEFT_OVER = re.compile(r"\b(async|await|asyncio|Awaitable|isawaitable)\b")


def unasync(source: str, swaps: list[tuple[str, str]]) -> str:
    """The sync twin of ``source``.

    Raises:
        SystemExit: a swap did not match, or async code is left in the result.
    """
    for old, new in swaps:
        if source.count(old) < 1:
            raise SystemExit(f"unasync: {old!r} is not in the source any more; update TWINS")
        source = source.replace(old, new)
    for pattern, replacement in _KEYWORDS:
        source = pattern.sub(replacement, source)
    left = _LEFT_OVER.search(source)
    if left is not None:
        line = source.count("\n", 0, left.start()) + 1
        raise SystemExit(f"unasync: {left.group()!r} left on line {line}; add a swap to TWINS")
    return source


def stale_twins() -> list[Path]:
    """The twins whose content is not what their async source generates."""
    stale = []
    for source_name, twin_name, swaps in TWINS:
        expected = unasync((PACKAGE / source_name).read_text(), swaps)
        twin = PACKAGE / twin_name
        if not twin.exists() or twin.read_text() != expected:
            stale.append(twin)
    return stale


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report stale twins")
    args = parser.parse_args()
    if args.check:
        stale = stale_twins()
        for twin in stale:
            print(f"{twin} is out of date: run `make unasync`", file=sys.stderr)
        return 1 if stale else 0
    for source_name, twin_name, swaps in TWINS:
        (PACKAGE / twin_name).write_text(unasync((PACKAGE / source_name).read_text(), swaps))
    return 0


if __name__ == "__main__":
    sys.exit(main())
