"""The Flask example app: ``create_app()`` in ``app.py``."""

from .app import create_app, ferrite

__all__ = ["create_app", "ferrite"]
