"""Django integration: ``CACHES = {"default": {"BACKEND":
"ferrite_integrations.django.FerriteCache", "LOCATION": "redis://...", "OPTIONS": {...}}}``
and ``MIDDLEWARE = ["ferrite_integrations.django.PipelineMiddleware", ...]``.
"""

from ferrite_integrations.django.cache import FerriteCache
from ferrite_integrations.django.middleware import PipelineMiddleware

__all__ = ["FerriteCache", "PipelineMiddleware"]
