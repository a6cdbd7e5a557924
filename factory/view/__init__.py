"""`factory view`: a read-only trace viewer in the browser (factory/view/app.py)."""

from .app import create_app, run

__all__ = ["create_app", "run"]
