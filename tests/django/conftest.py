"""Django for these tests, with pytest-django and no project.

Settings are made the way pytest-django documents for a project without a settings module:
``settings.configure()`` from a ``pytest_configure`` hook. It runs only when pytest loads
this directory, so Flask, FastAPI and core tests run alone without Django settings. The
server's URL is known only once the session's ``ferrite_server`` runs, so ``CACHES`` starts
as a local-memory placeholder and a session fixture points it at the server (Django resets
its cache handler on every ``CACHES`` change: ``override_settings`` and pytest-django's
``settings`` fixture both do that).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

django = pytest.importorskip("django")

from django.conf import settings  # noqa: E402
from django.test import override_settings  # noqa: E402

from ferrite_integrations.testing import EmbeddedServer  # noqa: E402

BACKEND = "ferrite_integrations.django.FerriteCache"

TEST_SETTINGS: dict[str, Any] = {
    "SECRET_KEY": "test-only-not-secret",
    "ALLOWED_HOSTS": ["testserver"],
    "USE_TZ": True,
    "INSTALLED_APPS": ["django.contrib.sessions", "ferrite_integrations.django"],
    # In memory, for the cached_db session tests (the django_db marker).
    "DATABASES": {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
    "DEFAULT_AUTO_FIELD": "django.db.models.AutoField",
    "CACHES": {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}},
    "MIDDLEWARE": [
        "ferrite_integrations.django.PipelineMiddleware",
        "django.contrib.sessions.middleware.SessionMiddleware",
    ],
    "ROOT_URLCONF": "tests.django.urls",
    "SESSION_ENGINE": "django.contrib.sessions.backends.cache",
    "TEMPLATES": [{"BACKEND": "django.template.backends.django.DjangoTemplates"}],
}


def pytest_configure(config: pytest.Config) -> None:
    if settings.configured:  # DJANGO_SETTINGS_MODULE or --ds: the user's settings win
        return
    settings.configure(**TEST_SETTINGS)
    # pytest-django sets Django up itself when this hook runs before its own (``pytest
    # tests/django``); when this directory is collected later (``pytest``), it is ours to do.
    django.setup()


def ferrite_caches(url: str, **options: Any) -> dict[str, Any]:
    """``CACHES`` with two FerriteCache aliases of one configuration (one shared pool)."""
    return {
        "default": {"BACKEND": BACKEND, "LOCATION": url, "OPTIONS": dict(options)},
        "other": {
            "BACKEND": BACKEND,
            "LOCATION": url,
            "OPTIONS": dict(options),
            "KEY_PREFIX": "other",
        },
    }


@pytest.fixture(scope="session", autouse=True)
def django_caches(ferrite_server: EmbeddedServer, django_db_blocker: Any) -> Iterator[None]:
    """``CACHES`` on the session's server, and the database closed to tests that do not
    ask for it with ``@pytest.mark.django_db``."""
    with django_db_blocker.block(), override_settings(CACHES=ferrite_caches(ferrite_server.url)):
        yield
