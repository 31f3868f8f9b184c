"""``python -m splatlab.app.viewer SCENE [--port N]``: the viewer without the splatlab CLI."""

from __future__ import annotations

import sys

import tyro

from ...errors import SplatlabError
from .server import Viewer, ViewerConfig, bind_warning


def main() -> int:
    cfg = tyro.cli(ViewerConfig, description="splatlab browser viewer")
    try:
        viewer = Viewer(cfg)
    except SplatlabError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"viewer: {viewer.url}", flush=True)
    warning = bind_warning(cfg.host)
    if warning:
        print(warning.replace("on port", f"on port {viewer.port}"), flush=True)
    try:
        import time

        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        viewer.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
