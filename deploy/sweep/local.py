"""The local executor: every cell of the sweep in this process, in plan order, one model at a
time (the parent is built once per model and kept in memory)."""
from __future__ import annotations

from typing import Any

from deploy.benchmark import BenchmarkConfig
from deploy.sweep.cells import (EVALUATE, EXPORT, PARENT, TIME, Cell, Log, eval_images,
                                load_parent, record_latency, run_evaluate, run_export,
                                run_parent, run_time)


class LocalExecutor:
    name = "local"

    def run(self, config: BenchmarkConfig, cells: list[Cell], cpu, log: Log
            ) -> dict[str, tuple[dict[str, Any], list[dict[str, Any]]]]:
        """{model: (model record, rows)}; a model whose parent fails raises for that model."""
        from deploy.sweep.outcome import failed_model

        out = {}
        for name in config.models:
            try:
                out[name] = self._model(name, [c for c in cells if c.model == name], config,
                                        cpu, log)
            except Exception as err:  # noqa: BLE001 - a model that cannot be built fails its rows
                out[name] = failed_model(name, config, err, log)
        return out

    def _model(self, name: str, cells: list[Cell], config: BenchmarkConfig, cpu, log: Log):
        from device_runners.sysinfo import machine_record

        source = load_parent(name, config)
        model: dict[str, Any] = {}
        torch_pred = None
        made, rows = {}, []  # made: (target, precision) -> (row, path, artifact)
        for cell in cells:
            if cell.kind == PARENT:
                parent = run_parent(source, config, log)
                model, torch_pred = parent["model"], parent["torch_pred"]
            elif cell.kind == EXPORT:
                made[cell.target, cell.precision] = run_export(source, cell.target,
                                                               cell.precision, config, log)
            elif cell.kind == EVALUATE:
                row, path, art = made[cell.target, cell.precision]
                new = [row]
                if row["status"] == "ok":
                    images = eval_images(source, config) if config.evaluate else None
                    new = run_evaluate(row, path, art, images, model, torch_pred, config, log)
                rows += [(r, path) for r in new]
            elif cell.kind == TIME:
                model["eager"] = run_time(source, model, rows, config, cpu, log)
                record_latency(rows, machine_record(cpu))
        return model, [r for r, _ in rows]
