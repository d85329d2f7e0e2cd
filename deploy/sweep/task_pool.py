"""The Ray tasks of a sweep in flight, for both sweeps (``deploy benchmark``'s dependent cells,
``deploy compress``'s independent settings): a task whose node or worker was lost is started
again, on any live node, up to ``MAX_ATTEMPTS`` times, and every retry is reported; Ray's own
retries stay off (``max_retries=0`` in each launch), so none goes unreported. Every task that
comes back is placed: its cell, attempt, node and seconds, for the report."""
from __future__ import annotations

from typing import Any, Callable

from deploy.sweep.held_signals import raise_if_signalled

MAX_ATTEMPTS = 3


def retried_cells(retried: list[dict[str, Any]]) -> list[str]:
    """The cells of a pool's retry records, each named once (a cell may run again twice)."""
    return list(dict.fromkeys(r["cell"] for r in retried))


class TaskPool:
    def __init__(self, ray, bar, on_loss: Callable[[], None] | None = None,
                 retry_if: Callable[[Any], bool] = lambda cell: True):
        # on_loss: called once per lost task; retry_if: whether a lost cell is still wanted
        self.ray, self.bar, self.on_loss, self.retry_if = ray, bar, on_loss, retry_if
        # object ref -> (cell, attempt, the launch that started it)
        self.inflight: dict[Any, tuple[Any, int, Callable[[], Any]]] = {}
        self.retried: list[dict[str, Any]] = []
        self.placements: list[dict[str, Any]] = []

    def submit(self, cell, launch: Callable[[], Any], attempt: int = 1) -> None:
        """``launch()`` starts ``cell``'s task and returns its object ref; it is called again
        for a retry."""
        self.inflight[launch()] = (cell, attempt, launch)

    def running(self, which: Callable[[Any], bool] = lambda cell: True) -> int:
        return sum(1 for cell, _, _ in self.inflight.values() if which(cell))

    def wait(self, timeout: float = 1.0) -> list[tuple[Any, dict[str, Any]]]:
        """(cell, result) of each task that finished within ``timeout``: what the cell
        returned, ``{"error": ...}`` when it raised or gave up after losing its node
        ``MAX_ATTEMPTS`` times. A lost task is started again and not returned."""
        raise_if_signalled()
        done, _ = self.ray.wait(list(self.inflight), num_returns=1, timeout=timeout)
        raise_if_signalled()
        finished = []
        for ref in done:
            cell, attempt, launch = self.inflight.pop(ref)
            result, err = task_result(self.ray, ref)
            if err is not None:  # the node or worker was lost
                text = str(err).strip()
                reason = text.splitlines()[0] if text else type(err).__name__
                if not self.retry_if(cell):
                    finished.append((cell, {"error": f"lost its node or worker ({reason})"}))
                    continue
                if attempt < MAX_ATTEMPTS:
                    self.retried.append({"cell": cell.label, "attempt": attempt,
                                         "error": type(err).__name__, "reason": reason})
                    self.bar.write(f"{cell.label}: lost its node or worker "
                                   f"({type(err).__name__}); retrying on a live node")
                    self.bar.update(retried=1)
                    if self.on_loss is not None:
                        self.on_loss()
                    self.submit(cell, launch, attempt + 1)
                    continue
                result = {"error": f"gave up after {attempt} attempts: {reason}"}
            self.placements.append({"cell": cell.label, "attempt": attempt,
                                    "node": (result.get("node") or {}).get("node"),
                                    "seconds": result.get("seconds")})
            finished.append((cell, result))
        return finished


def task_result(ray, ref) -> tuple[dict[str, Any] | None, BaseException | None]:
    """(result, None) of a finished task (a cell that raised: ``{"error": ...}``, not to be
    retried), or (None, error) when its node or worker was lost and it may run again."""
    try:
        return ray.get(ref), None
    except ray.exceptions.RayTaskError as err:  # a bug in a cell, or a node without our code
        return {"error": task_error(err)}, None
    except ray.exceptions.RayError as err:
        return None, err


def task_error(err: BaseException) -> str:
    """What went wrong in a task, in one line: the error it raised, without Ray's colour
    codes, task header and remote traceback."""
    import re

    from deploy.benchmark import one_line

    cause = getattr(err, "cause", None) or err
    text = re.sub(r"\x1b\[[0-9;]*m", "", one_line(cause))
    return text.split(" traceback: Traceback")[0].split(" Traceback (most recent")[0]
