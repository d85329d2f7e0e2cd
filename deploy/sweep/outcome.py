"""What a sweep returns for a model whose parent cannot be built: the error on every row."""
from __future__ import annotations

from typing import Any

from deploy.benchmark import BenchmarkConfig, one_line


def failed_model(name: str, config: BenchmarkConfig, err: BaseException, log
                 ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    text = one_line(err)
    log(f"{name}: FAILED: {text}")
    return {"name": name, "error": text}, [
        {"model": name, "target": t, "precision": p, "status": "failed", "error": text}
        for t in config.targets for p in config.precisions]
