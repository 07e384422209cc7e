"""The optional app: ``INSTALLED_APPS += ["ferrite_integrations.django"]`` adds
pre-warming and the background monitor at startup, the system checks, and the ``ferrite``
management command. The cache backend works without it.

Also what the checks, the health view and the command share: which ``CACHES`` entries are
``FerriteCache`` ones, and what is wrong with one, in words safe to show."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import unquote, urlsplit

from django.apps import AppConfig
from django.core.cache import caches
from django.utils.module_loading import import_string

from ferrite_integrations.django.cache import FerriteCache

__all__ = ["FerriteConfig", "entry_problem", "ferrite_entries"]

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


def ferrite_entries() -> dict[str, tuple[type[FerriteCache], Mapping[str, Any]]]:
    """``CACHES`` name -> (backend class, entry) for every entry whose ``BACKEND`` is
    ``FerriteCache`` or a subclass, in ``CACHES`` order; nothing is built."""
    found = {}
    for name, entry in caches.settings.items():
        backend = _backend(entry)
        if backend is not None:
            found[name] = (backend, entry)
    return found


def entry_problem(entry: Mapping[str, Any], build: Callable[[], FerriteCache]) -> str | None:
    """What makes a ``FerriteCache`` entry unusable, or ``None``: ``OPTIONS`` that is not a
    dict (reported without building the cache: Django's ``BaseCache`` fails on it with an
    AttributeError), the cache's ``config_error``, or anything else ``build()`` raised.
    No password appears in the text: ConfigErrors redact them, and the entry's own are
    blanked out of any other error."""
    options = entry.get("OPTIONS", {})
    if not isinstance(options, Mapping):
        return (
            f"OPTIONS must be a dict of options, such as {{'max_connections': 20}} (or left "
            f"out); got {type(options).__name__}."
        )
    try:
        error: Exception | None = build().config_error
    except Exception as failure:  # not a ConfigError (those are kept in config_error)
        return _without_secrets(f"{type(failure).__name__}: {failure}", entry)
    return None if error is None else str(error)


def _backend(entry: Any) -> type[FerriteCache] | None:
    if not isinstance(entry, Mapping) or not isinstance(entry.get("BACKEND"), str):
        return None
    try:
        backend = import_string(entry["BACKEND"])
    except ImportError:  # not ours to report: Django's cache handler does
        return None
    if isinstance(backend, type) and issubclass(backend, FerriteCache):
        return backend
    return None


def _without_secrets(text: str, entry: Mapping[str, Any]) -> str:
    """``text`` with the entry's passwords (in ``LOCATION`` or ``OPTIONS``) blanked out."""
    options = entry.get("OPTIONS")
    secrets = [
        options.get(name) for name in ("password", "ssl_password") if isinstance(options, Mapping)
    ]
    locations = entry.get("LOCATION")
    for location in locations if isinstance(locations, list | tuple) else [locations]:
        if isinstance(location, str):
            try:
                password = urlsplit(location).password
            except ValueError:
                continue
            secrets += [password, unquote(password or "")]
    for secret in secrets:
        if isinstance(secret, str) and secret:
            text = text.replace(secret, "***")
    return text
