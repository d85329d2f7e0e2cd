"""edgedeploy host side: the ``deploy`` CLI, the pipeline, manifests and reports."""

__version__ = "0.1.0"
