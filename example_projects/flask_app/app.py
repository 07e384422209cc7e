"""The Flask example: an app factory using ``ferrite.client``, ``ferrite.pipeline`` and the
health endpoint. Every link is built with ``url_for``, so the app also works mounted under
a path (the showcase serves it at ``/flask/`` through a WSGI adapter).

    FERRITE_URL=redis://127.0.0.1:6379/0 flask --app example_projects/flask_app/app.py run
    python example_projects/flask_app/app.py   # starts an embedded server when FERRITE_URL is unset
"""

from __future__ import annotations

import os
from typing import Any

from flask import Flask, render_template_string, url_for

from ferrite_integrations.flask import Ferrite

ferrite = Ferrite()

PAGE = """<!doctype html>
<title>Ferrite + Flask</title>
<h1>{{ title }}</h1>
<p>{{ message }}</p>
<ul>
  <li><a href="{{ url_for('index') }}">home</a> (counts visits)</li>
  <li><a href="{{ url_for('last') }}">last page</a> (reads what the pipeline wrote)</li>
  <li><a href="{{ url_for('ferrite_health') }}">health</a> (JSON, 200 or 503)</li>
</ul>
"""


def create_app(config: dict[str, Any] | None = None) -> Flask:
    """Build the example app. ``FERRITE_URL`` comes from the environment (default: a local
    server); ``config`` overrides any key."""
    app = Flask(__name__)
    app.config.update(
        FERRITE_URL=os.environ.get("FERRITE_URL", "redis://127.0.0.1:6379/0"),
        FERRITE_MAX_CONNECTIONS=20,
        FERRITE_MIN_IDLE=2,
        FERRITE_HEALTH_URL="/health/ferrite",
    )
    app.config.update(config or {})
    ferrite.init_app(app)

    @app.get("/")
    def index() -> str:
        hits = ferrite.client.incr("example:hits")  # a reply the page needs: sent now
        ferrite.pipeline.set("example:last", url_for("index"))  # sent at the end
        return render_template_string(PAGE, title="Home", message=f"{hits} visits so far.")

    @app.get("/last")
    def last() -> str:
        previous = ferrite.client.get("example:last")
        ferrite.pipeline.set("example:last", url_for("last"))
        shown = previous.decode() if isinstance(previous, bytes) else "none yet"
        return render_template_string(PAGE, title="Last page", message=f"Before this: {shown}")

    return app


if __name__ == "__main__":
    from contextlib import ExitStack

    from ferrite_integrations.testing import EmbeddedServer

    with ExitStack() as stack:
        if "FERRITE_URL" not in os.environ:
            os.environ["FERRITE_URL"] = stack.enter_context(EmbeddedServer()).url
        create_app().run(port=int(os.environ.get("PORT", "5000")))
