"""``flask ferrite status|ping|info|stats [--pool NAME]``: the app's Ferrite pools from the
command line. Registered through the ``flask.commands`` entry point, so every app with the
extension has it."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import click
from flask import current_app
from flask.cli import AppGroup

from ferrite_integrations import get_manager
from ferrite_integrations.flask.extension import EXTENSION_KEY, FerriteState
from ferrite_integrations.flask.health import any_down

__all__ = ["ferrite_cli"]

ferrite_cli = AppGroup(
    "ferrite",
    help="Ferrite pools: status (health), ping (latency), info (clients), stats (this "
    "process's view).",
)
_CLIENT_COUNTS = ("connected_clients", "blocked_clients", "maxclients")
_pool_option = click.option("--pool", "pool", default=None, help="Only the pool with this name.")


def _pools(pool: str | None) -> Iterator[tuple[str, str]]:
    """``(label, alias)`` of each selected pool of the current app, across extensions."""
    states: dict[str, FerriteState] = current_app.extensions.get(EXTENSION_KEY, {})
    if not states:
        raise click.ClickException(
            f"Ferrite is not registered on app {current_app.name!r}: call "
            "ferrite.init_app(app) in the app factory."
        )
    found = False
    for prefix, state in states.items():
        for name, alias in state.bound().items():
            if pool is None or pool == name:
                found = True
                yield (name if prefix == "FERRITE" else f"{prefix}:{name}"), alias
    if not found:
        known = sorted({name for state in states.values() for name in state.aliases})
        raise click.ClickException(f"No Ferrite pool named {pool!r}. Pools: {known}.")


@ferrite_cli.command("status")
@_pool_option
def status(pool: str | None) -> None:
    """Live health of each pool; exits with 1 when one is down."""
    reports = {}
    for label, alias in _pools(pool):
        report = reports[label] = get_manager().health(alias)["pools"][alias]
        click.echo(f"{label}: {report['status']} {json.dumps(report)}")
    if any_down(reports):
        raise SystemExit(1)


@ferrite_cli.command("ping")
@_pool_option
def ping(pool: str | None) -> None:
    """PING each pool's server; exits with 1 when one does not answer."""
    manager, failed = get_manager(), False
    for label, alias in _pools(pool):
        try:
            latency = manager.pool(alias).ping(manager.config(alias).health_timeout)
        except Exception as error:  # any failure is the answer: report it, no traceback
            failed = True
            address = manager.config(alias).address
            click.echo(
                f"{label}: no PONG from {address}: {type(error).__name__}: {error}", err=True
            )
            continue
        click.echo(f"{label}: PONG in {latency * 1000:.2f} ms")
    if failed:
        raise SystemExit(1)


@ferrite_cli.command("info")
@_pool_option
def info(pool: str | None) -> None:
    """The server's client counts, as seen from each pool."""
    for label, alias in _pools(pool):
        clients: dict[str, Any] = _call(get_manager().client(alias).info, "clients")
        click.echo(f"{label}: {json.dumps({name: clients.get(name) for name in _CLIENT_COUNTS})}")


@ferrite_cli.command("stats")
@_pool_option
def stats(pool: str | None) -> None:
    """Each pool as THIS command's process sees it: its configuration, the server's client
    counts and the counters of the pool this process just opened (a ping). The app's
    server processes keep counters of their own: read them there (health endpoint,
    metrics). Exits with 1 when a server does not answer."""
    manager, failed = get_manager(), False
    for label, alias in _pools(pool):
        config = manager.config(alias)
        shown: dict[str, Any] = {
            "view": f"this CLI process (pid {os.getpid()}), not the app's server processes",
            "url": config.redacted_url,
            "options": {
                name: value
                for name, value in config.non_default_options().items()
                if "password" not in name
            },
        }
        try:
            manager.pool(alias).ping(config.health_timeout)
            clients = manager.client(alias).info("clients")
        except Exception as error:  # the answer is that it failed: no traceback
            failed = True
            shown["server"] = {"error": f"{type(error).__name__}: {error}"}
        else:
            shown["server"] = {name: clients.get(name) for name in _CLIENT_COUNTS}
        shown["pool"] = manager.stats(alias)["sync"]
        click.echo(f"{label}: {json.dumps(shown, default=str)}")
    if failed:
        raise SystemExit(1)


def _call(call: Any, *args: Any) -> Any:
    try:
        return call(*args)
    except Exception as error:
        raise click.ClickException(f"{type(error).__name__}: {error}") from None
