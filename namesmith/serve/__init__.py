"""`namesmith serve`: a web page and a JSON API to generate, steer, score and compare names.

    from namesmith.serve import create_app, run_server
    run_server(["runs/tf"], port=8000)          # or create_app(...) for any ASGI server / test client

See `app.py` for how the app is put together, `routers/` for the endpoints (`deps.py`: what they
share), `limits.py` for what one request may ask, `registry.py` for which models are served, and
`static/` for the page (no CDN, no build step).

The names below are imported when first used (PEP 562), so the supervisor of `--workers N`, which
imports only `server.py`, holds neither torch nor a model: its workers do.
"""

from importlib import import_module
from typing import Any

_WHERE = {"create_app": "app", "Limits": "limits", "ModelRegistry": "registry", "cache_dir": "registry",
          "build_registry": "server", "run_server": "server"}

__all__ = ["Limits", "ModelRegistry", "build_registry", "cache_dir", "create_app", "run_server"]


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f"namesmith.serve.{_WHERE[name]}"), name)
