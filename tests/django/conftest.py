"""Django is configured once for these tests, with caches on the session's embedded server."""

from __future__ import annotations

from typing import Any

import pytest

django = pytest.importorskip("django")

from django.conf import settings  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def django_settings(ferrite_server: Any) -> None:
    if not settings.configured:
        settings.configure(
            CACHES={
                "default": {
                    "BACKEND": "ferrite_integrations.django.FerriteCache",
                    "LOCATION": ferrite_server.url,
                },
            },
            INSTALLED_APPS=["ferrite_integrations.django"],
            SECRET_KEY="test-only-not-secret",
            ALLOWED_HOSTS=["testserver"],
            USE_TZ=True,
        )
        django.setup()
