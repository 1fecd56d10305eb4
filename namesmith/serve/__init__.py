"""`namesmith serve`: a web page and a JSON API to generate, steer, score and compare names.

    from namesmith.serve import create_app, run_server
    run_server(["runs/tf"], port=8000)          # or create_app(...) for any ASGI server / test client

See `app.py` for how the app is put together, `routers/` for the endpoints (`deps.py`: what they
share), `limits.py` for what one request may ask, `registry.py` for which models are served, and
`static/` for the page (no CDN, no build step).
"""

from namesmith.serve.app import create_app
from namesmith.serve.limits import Limits
from namesmith.serve.registry import ModelRegistry, cache_dir
from namesmith.serve.server import build_registry, run_server

__all__ = ["Limits", "ModelRegistry", "build_registry", "cache_dir", "create_app", "run_server"]
