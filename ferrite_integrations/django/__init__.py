"""Django integration: ``CACHES = {"default": {"BACKEND":
"ferrite_integrations.django.FerriteCache", "LOCATION": "redis://...", "OPTIONS": {...}}}``.
"""

from ferrite_integrations.django.cache import FerriteCache

__all__ = ["FerriteCache"]
