"""`namesmith serve`: the web page and JSON API (namesmith.serve), started with the command's options."""

from __future__ import annotations

import argparse
import dataclasses
import logging

from namesmith.cli.options import common_options
from namesmith.core.errors import ConfigError

log = logging.getLogger("namesmith")


def add_serve(sub: argparse._SubParsersAction, building: bool) -> None:
    sv = sub.add_parser("serve", help="the web page and JSON API",
                        description="Serve a web page and a JSON API (/api/v1, OpenAPI at /docs) to generate, steer, "
                                    "score and compare names. With no -m, a count model of each built-in data set, "
                                    "built at the first start in a bounded worker process and cached. Needs the "
                                    "serve extra: pip install 'namesmith[serve]'.")
    common_options(sv)
    sv.add_argument("-m", "--model-dir", dest="model_dirs", action="append", default=[], metavar="DIR",
                    help="a trained model directory to serve (repeatable; default: the built-in data sets' models)")
    sv.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, this machine "
                                                        "only; another address needs --api-key to be safe)")
    sv.add_argument("--port", type=int, default=8000, help="port (default: 8000)")
    sv.add_argument("--api-key", metavar="KEY", help="require this key in the X-API-Key header of every API request; "
                                                     "a key on the command line shows in ps to every user of this "
                                                     "machine: prefer the NAMESMITH_API_KEY environment variable or "
                                                     "--api-key-file (an empty key is refused)")
    sv.add_argument("--api-key-file", metavar="FILE", help="read the API key from the first line of FILE")
    sv.add_argument("--limit", action="append", default=[], metavar="NAME=VALUE",
                    help="change a per-request limit (repeatable), e.g. max_names=500 or time_budget=1; "
                         "--limit help lists every limit with its default")
    sv.add_argument("--workers", type=int, default=1, metavar="N", help="server processes (default: 1)")
    sv.set_defaults(run=cmd_serve)


def cmd_serve(args: argparse.Namespace) -> int:
    try:
        from namesmith.serve.limits import Limits
        from namesmith.serve.server import run_server
    except ImportError as e:
        raise ConfigError(f"serve needs the serve extra ({e.name} is missing): "
                          "pip install 'namesmith[serve]'") from None
    if "help" in args.limit:
        for field in dataclasses.fields(Limits):
            print(f"{field.name}={field.default}")
        return 0
    if args.api_key:
        log.warning("--api-key shows the key to every user of this machine (ps); NAMESMITH_API_KEY or --api-key-file "
                    "do not")
    run_server(args.model_dirs, host=args.host, port=args.port, api_key=args.api_key, api_key_file=args.api_key_file,
               limits=Limits.parse(args.limit), workers=args.workers, log_level="warning" if args.quiet else "info")
    return 0
