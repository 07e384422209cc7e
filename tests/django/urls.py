"""The URLconf of the Django tests: small views that use the cache the way apps do."""

from __future__ import annotations

from django.core.cache import cache
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import include, path
from django.views.decorators.cache import cache_page

RENDERS: list[str] = []
"""The paths whose view really ran (a cached page does not add to it)."""


def _hit(key: str) -> int:
    try:
        return int(cache.incr(key))
    except ValueError:
        return 1 if cache.add(key, 1, timeout=None) else int(cache.incr(key))


def counter(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"hits": _hit("hits")})


async def async_counter(request: HttpRequest) -> JsonResponse:
    try:
        hits = await cache.aincr("async-hits")
    except ValueError:
        await cache.aadd("async-hits", 1, timeout=None)
        hits = await cache.aincr("async-hits", 0)
    await cache.aset("last-async-hits", hits)
    return JsonResponse({"hits": hits, "last": await cache.aget("last-async-hits")})


def visits(request: HttpRequest) -> JsonResponse:
    request.session["visits"] = request.session.get("visits", 0) + 1
    return JsonResponse({"visits": request.session["visits"]})


def remember(request: HttpRequest) -> JsonResponse:
    cache.set("first", 1)
    cache.set("second", 2)
    cache.set_many({"third": 3, "fourth": 4})
    return JsonResponse({"first": cache.get("first")})


def page(request: HttpRequest) -> HttpResponse:
    RENDERS.append(request.path)
    return HttpResponse(f"render {len(RENDERS)}")


urlpatterns = [
    path("counter/", counter),
    path("async-counter/", async_counter),
    path("visits/", visits),
    path("remember/", remember),
    path("page/", page),
    path("cached-page/", cache_page(60)(page)),
    path("health/ferrite/", include("ferrite_integrations.django.urls")),
]
