"""``path("health/ferrite/", include("ferrite_integrations.django.urls"))``."""

from django.urls import path

from ferrite_integrations.django.views import health

urlpatterns = [path("", health, name="ferrite-health")]
