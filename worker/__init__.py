"""The Celery worker package: `celery -A worker worker -Q gpu` finds `app` here.

`app` is imported on first use, so importing another submodule (worker.intake, worker.broker)
does not build the Celery application.
"""


def __getattr__(name: str):
    if name == "app":
        from worker.app import app

        return app
    raise AttributeError(f"module 'worker' has no attribute {name!r}")


__all__ = ["app"]
