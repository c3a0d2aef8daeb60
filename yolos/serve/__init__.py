"""``yolos serve``: an HTTP API and a web page in front of one model (needs ``yolos[serve]``)."""
from .app import ServeSettings, create_app

__all__ = ["ServeSettings", "create_app"]
