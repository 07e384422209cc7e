"""The optional app: ``INSTALLED_APPS += ["ferrite_integrations.django"]`` adds
pre-warming and the background monitor at startup, the system checks, and the ``ferrite``
management command. The cache backend works without it."""

from __future__ import annotations

import logging

from django.apps import AppConfig

logger = logging.getLogger("ferrite_integrations.django")


class FerriteConfig(AppConfig):
    name = "ferrite_integrations.django"
    label = "ferrite"
    verbose_name = "Ferrite"

    def ready(self) -> None:
        from ferrite_integrations import get_manager
        from ferrite_integrations.django import checks  # noqa: F401  (registers the checks)
        from ferrite_integrations.django.middleware import ferrite_pool_aliases

        try:
            aliases = ferrite_pool_aliases()
        except Exception as error:  # a bad CACHES entry: the system checks report it
            logger.warning("Ferrite pools were not prepared: %s", error)
            return
        manager = get_manager()
        for alias in aliases:
            try:
                manager.warm(alias)
            except Exception as error:  # the server may come up later; the monitor retries
                logger.warning("Could not pre-warm Ferrite pool %r: %s", alias, error)
        if aliases:
            manager.start_monitor()
