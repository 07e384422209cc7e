"""``manage.py ferrite status|ping|info|stats [--alias NAME]``: ``NAME`` is a ``CACHES``
name or a pool alias."""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import partial
from typing import Any

import redis
from django.core.cache import caches
from django.core.management.base import BaseCommand, CommandError, CommandParser

from ferrite_integrations import FerriteError, get_manager
from ferrite_integrations.django.apps import entry_problem, ferrite_entries


class Command(BaseCommand):
    help = "Ferrite pools: status (health), ping (latency), info (server clients), stats."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("action", choices=["status", "ping", "info", "stats"])
        parser.add_argument(
            "--alias",
            help="a CACHES name, or a pool alias (default: the pool of every FerriteCache)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        manager = get_manager()
        for alias in _pool_aliases(options["alias"]):
            try:
                self._show(manager, options["action"], alias)
            except (FerriteError, redis.RedisError) as error:  # e.g. ping with the server down
                raise CommandError(f"{alias}: {error}") from None

    def _show(self, manager: Any, action: str, alias: str) -> None:
        if action == "status":
            report = manager.health(alias)["pools"][alias]
            self.stdout.write(f"{alias}: {report['status']} {json.dumps(report)}")
        elif action == "ping":
            latency = manager.pool(alias).ping(manager.config(alias).health_timeout)
            self.stdout.write(f"{alias}: PONG in {latency * 1000:.2f} ms")
        elif action == "info":
            clients = manager.client(alias).info("clients")
            wanted = ("connected_clients", "blocked_clients", "maxclients")
            shown = {name: clients.get(name) for name in wanted}
            self.stdout.write(f"{alias}: {json.dumps(shown)}")
        else:
            self.stdout.write(f"{alias}: {json.dumps(manager.stats(alias), default=str)}")


def _pool_aliases(wanted: str | None) -> list[str]:
    """The pools to show: that of the ``CACHES`` entry named ``wanted``, else the pool alias
    ``wanted``, else (``None``) the pool of every ``FerriteCache``, each once."""
    entries = {name: entry for name, (_, entry) in ferrite_entries().items()}
    if wanted is None:
        if not entries:
            raise CommandError("No FerriteCache in CACHES (and no --alias given).")
        return list(dict.fromkeys(_pool_of(name, entry) for name, entry in entries.items()))
    if wanted in entries:
        return [_pool_of(wanted, entries[wanted])]
    for name, entry in entries.items():  # built, their pools have aliases in the manager
        entry_problem(entry, partial(caches.__getitem__, name))
    if wanted in get_manager().aliases():
        return [wanted]
    names = ", ".join(map(repr, entries)) or "none"
    raise CommandError(
        f"No pool alias {wanted!r}, and no FerriteCache of that name in CACHES: give a CACHES "
        f"name ({names}) or a pool alias (as `manage.py ferrite status` shows them)."
    )


def _pool_of(name: str, entry: Mapping[str, Any]) -> str:
    """The pool alias of ``caches[name]``; a misconfigured entry is a CommandError saying
    what is wrong (not a traceback, with ``--skip-checks``)."""
    problem = entry_problem(entry, partial(caches.__getitem__, name))
    if problem is not None:
        raise CommandError(f"CACHES[{name!r}]: {problem}")
    alias: str = caches[name].pool_alias
    return alias
