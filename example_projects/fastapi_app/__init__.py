"""The FastAPI example app: ``from example_projects.fastapi_app import create_app``."""

from example_projects.fastapi_app.main import app, create_app

__all__ = ["app", "create_app"]
