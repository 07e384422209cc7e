"""Three uses of FerriteCache: ``cache.incr`` counts hits, ``{% cache %}`` keeps a costly
fragment (see the template), and the session lives in the cache (``SESSION_ENGINE``)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.core.cache import cache
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

HITS = "hits"
FRAGMENT_SECONDS = 30


def count_hit() -> int:
    """One more hit, counted on the server (``INCR``): right with many workers."""
    try:
        return int(cache.incr(HITS))
    except ValueError:  # the first hit (or the counter was evicted)
        if cache.add(HITS, 1, timeout=None):
            return 1
        return int(cache.incr(HITS))  # another worker added it first


def server_report() -> dict[str, Any]:
    """Costly on purpose (a server round trip): the template calls it only when its
    cached fragment has expired."""
    info = cache.get_client().info("server")
    return {
        "built_at": dt.datetime.now(dt.UTC).isoformat(timespec="microseconds"),
        "version": info.get("redis_version", "?"),
        "uptime": info.get("uptime_in_seconds", "?"),
    }


def index(request: HttpRequest) -> HttpResponse:
    visits = request.session.get("visits", 0) + 1
    request.session["visits"] = visits
    context = {
        "hits": count_hit(),
        "visits": visits,
        "report": server_report,  # a callable: run only if the fragment is rendered
        "fragment_seconds": FRAGMENT_SECONDS,
    }
    return render(request, "hits/index.html", context)


@require_POST
def forget(request: HttpRequest) -> HttpResponse:
    request.session.flush()
    return redirect("hits:index")


def api(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"hits": cache.get(HITS, 0), "visits": request.session.get("visits", 0)})
