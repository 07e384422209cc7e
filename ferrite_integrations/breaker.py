"""The circuit breaker: one per server endpoint, shared by every pool that talks to it.

Closed: calls go through; ``threshold`` consecutive connection failures open it. Open:
calls fail at once with ``ServerUnavailableError`` (no connect attempt, no timeout paid).
After the reset timeout one caller (or the monitor) is let through as a probe (half-open):
success closes the breaker, failure opens it again for twice as long (up to a cap).

Locking: ``self._lock`` guards every field; it is never held while doing I/O, and every
method is a few assignments, so async code may call it from the event loop.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Literal

from ferrite_integrations.config import PoolConfig
from ferrite_integrations.errors import ServerUnavailableError

__all__ = ["BreakerSnapshot", "CircuitBreaker", "breaker_for_config"]

State = Literal["closed", "open", "half_open"]
MAX_RESET_TIMEOUT = 10.0


@dataclass(frozen=True)
class BreakerSnapshot:
    """A breaker's state at one moment, for health reports and stats."""

    state: State
    consecutive_failures: int
    opened_at: float | None  # wall-clock time (time.time())
    last_error: str | None
    retry_in: float  # seconds until the next probe is allowed (0 when not open)


class CircuitBreaker:
    """Fails fast while a server is known to be down.

    Args:
        address: the server (``host:port`` or ``unix:/path``), used in messages.
        threshold: consecutive failures that open the breaker.
        reset_timeout: seconds the breaker stays open before the first probe.
        probe_timeout: seconds after which an unanswered probe no longer blocks others.
    """

    def __init__(
        self, address: str, threshold: int, reset_timeout: float, probe_timeout: float
    ) -> None:
        self.address = address
        self.threshold = threshold
        self.base_reset_timeout = reset_timeout
        self.probe_timeout = probe_timeout
        self._lock = threading.Lock()
        self._state: State = "closed"
        self._failures = 0
        self._reset_timeout = reset_timeout
        self._opened_mono = 0.0
        self._opened_wall: float | None = None
        self._probe_started = 0.0
        self._last_error: str | None = None
        self.opened_count = 0

    @property
    def state(self) -> State:
        return self._state

    def admit(self) -> None:
        """Let a call through, or raise ``ServerUnavailableError`` at once.

        When the open period is over, the first caller becomes the probe (half-open) and
        is let through; others keep failing fast until the probe reports back.
        """
        if self._state == "closed":
            return
        with self._lock:
            now = time.monotonic()
            state: State = self._state
            if state == "closed":
                return
            if state == "open" and now - self._opened_mono >= self._reset_timeout:
                self._state = "half_open"
                self._probe_started = now
                return
            if state == "half_open" and now - self._probe_started >= self.probe_timeout:
                self._probe_started = now
                return
            raise ServerUnavailableError(self._message(now))

    def succeeded(self) -> None:
        """A connect or a command reached the server and got its answer."""
        if self._state == "closed" and self._failures == 0:
            return
        with self._lock:
            self._state = "closed"
            self._failures = 0
            self._reset_timeout = self.base_reset_timeout
            self._opened_wall = None

    def failed(self, error: BaseException) -> None:
        """A connect or a command failed at the connection level."""
        with self._lock:
            self._failures += 1
            self._last_error = _describe(error)
            now = time.monotonic()
            if self._state == "half_open":
                self._reset_timeout = min(self._reset_timeout * 2, MAX_RESET_TIMEOUT)
                self._open(now)
            elif self._state == "closed" and self._failures >= self.threshold:
                self._open(now)

    def snapshot(self) -> BreakerSnapshot:
        with self._lock:
            retry_in = 0.0
            if self._state == "open":
                retry_in = max(0.0, self._reset_timeout - (time.monotonic() - self._opened_mono))
            return BreakerSnapshot(
                self._state, self._failures, self._opened_wall, self._last_error, retry_in
            )

    def _open(self, now: float) -> None:
        if self._state == "closed":
            self._opened_wall = time.time()
            self.opened_count += 1
        self._state = "open"
        self._opened_mono = now

    def _message(self, now: float) -> str:
        down_for = (
            now - self._opened_mono
            if self._opened_wall is None
            else (time.time() - self._opened_wall)
        )
        since = (
            time.strftime("%H:%M:%S", time.localtime(self._opened_wall))
            if self._opened_wall is not None
            else "?"
        )
        retry_in = max(0.0, self._reset_timeout - (now - self._opened_mono))
        return (
            f"Server {self.address} is unavailable: the circuit breaker opened at {since} "
            f"({down_for:.1f} s ago) after {self._failures} consecutive connection "
            f"failures; last error: {self._last_error}. Calls fail at once without "
            f"connecting; the next probe is allowed in {retry_in:.1f} s."
        )


def _describe(error: BaseException) -> str:
    text = str(error) or type(error).__name__
    return text if len(text) <= 300 else text[:297] + "..."


def breaker_for_config(config: PoolConfig) -> CircuitBreaker:
    """A new breaker for the server of ``config``, with its breaker settings."""
    probe_timeout = config.socket_connect_timeout + (config.socket_timeout or 5.0) + 1.0
    return CircuitBreaker(
        config.address, config.breaker_threshold, config.breaker_reset_timeout, probe_timeout
    )
