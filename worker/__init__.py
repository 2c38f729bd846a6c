"""The Celery worker package: `celery -A worker worker -Q gpu` finds `app` here."""
from worker.app import app

__all__ = ["app"]
