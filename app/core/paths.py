"""The path a request is routed on, whatever prefix a proxy mounts the app under."""

from __future__ import annotations

from starlette.types import Scope


def route_path(scope: Scope) -> str:
    """`scope["path"]` without the `root_path` prefix (uvicorn --root-path, a proxy's
    mount point), as the router matches it."""
    path, root = scope["path"], scope.get("root_path", "")
    if root and (path == root or path.startswith(root.rstrip("/") + "/")):
        return path[len(root.rstrip("/")) :] or "/"
    return path
