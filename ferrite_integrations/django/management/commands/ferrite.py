"""``manage.py ferrite status|ping|info|stats [--alias A]``."""

from __future__ import annotations

import json
from typing import Any

import redis
from django.core.management.base import BaseCommand, CommandError, CommandParser

from ferrite_integrations import FerriteError, get_manager
from ferrite_integrations.django.middleware import ferrite_pool_aliases


class Command(BaseCommand):
    help = "Ferrite pools: status (health), ping (latency), info (server clients), stats."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("action", choices=["status", "ping", "info", "stats"])
        parser.add_argument("--alias", help="one pool alias (default: every Ferrite cache)")

    def handle(self, *args: Any, **options: Any) -> None:
        manager = get_manager()
        aliases = [options["alias"]] if options["alias"] else ferrite_pool_aliases()
        if not aliases:
            raise CommandError("No FerriteCache in CACHES (and no --alias given).")
        for alias in aliases:
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
