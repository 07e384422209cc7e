"""Settings of the example site. ``FERRITE_URL`` names the server (default: a local one).

No database: the pages keep everything in the cache (the hit counter, the cached fragment
and the sessions), so ``DATABASES`` stays empty.
"""

from __future__ import annotations

import os

FERRITE_URL = os.environ.get("FERRITE_URL", "redis://127.0.0.1:6379/0")

DEBUG = os.environ.get("DJANGO_DEBUG", "") == "1"
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "example-site-only-not-a-secret")
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "[::1]", "testserver"]

INSTALLED_APPS = [
    "ferrite_integrations.django",  # pre-warming, the monitor, checks, manage.py ferrite
    "django_site.hits",
]

MIDDLEWARE = [
    "ferrite_integrations.django.PipelineMiddleware",  # first: the cache users come after
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
]

ROOT_URLCONF = "django_site.urls"
WSGI_APPLICATION = "django_site.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {"context_processors": ["django.template.context_processors.request"]},
    }
]

DATABASES: dict[str, dict[str, str]] = {}

CACHES = {
    "default": {
        "BACKEND": "ferrite_integrations.django.FerriteCache",
        "LOCATION": FERRITE_URL,
        "KEY_PREFIX": "django_site",
        "OPTIONS": {
            "client_name": "django-site",
            "min_idle": 2,  # opened at startup by the app
            "compressor": "zlib",
        },
    }
}

# Sessions live in the cache: no database, and no signed cookies holding the data.
SESSION_ENGINE = "django.contrib.sessions.backends.cache"

USE_TZ = True
TIME_ZONE = "UTC"
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"ferrite_integrations": {"handlers": ["console"], "level": "WARNING"}},
}
