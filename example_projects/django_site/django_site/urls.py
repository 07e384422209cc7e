"""``/`` the page, ``/api/hits/`` its numbers as JSON, ``/health/ferrite/`` the health view."""

from django.urls import include, path

urlpatterns = [
    path("", include("django_site.hits.urls")),
    path("health/ferrite/", include("ferrite_integrations.django.urls")),
]
