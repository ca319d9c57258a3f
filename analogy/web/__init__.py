"""`analogy serve`: a local web app and HTTP API over the pipeline, for people who would rather drop
two pictures on a page than type a command.

`jobs.py` holds what does not depend on the web framework (the options a job takes, the queue and
its workers, each job's folder); `app.py` the FastAPI application, the upload checks and the server;
`static/` the page (plain HTML, CSS and JavaScript, no build step) and the bundled example images.
FastAPI and uvicorn are an optional extra: `pip install 'analogy[web]'`.
"""
from __future__ import annotations

import importlib.util

from ..errors import ConfigError

#: The modules the web extra provides, by the package that provides each.
_EXTRA = {"fastapi": "fastapi", "uvicorn": "uvicorn", "python_multipart": "python-multipart"}


def require_web() -> None:
    """A one-line ConfigError saying how to install the web extra, unless it is installed."""
    missing = [package for module, package in _EXTRA.items()
               if importlib.util.find_spec(module) is None]
    if missing:
        raise ConfigError(f"analogy serve needs the web extra ({', '.join(missing)} missing): "
                          f"pip install 'analogy[web]'")
