"""edgedeploy host side: the ``deploy`` CLI and the pipeline's orchestration (the top floor)."""

from edgebase import __version__  # noqa: F401
