"""Simulation tasks: one (method, seed) run each, executed in worker processes and kept in a run cache.

A :class:`Task` names everything a result depends on besides the cost profile and the settings: the stream context
(spec, unit, cameras, duration), the method, the seed and the method's overrides. :func:`run_tasks` runs a list of
them, ``jobs`` at a time in spawned worker processes of one torch thread each (a worker keeps one context's
features and one edge model), and returns results in task order. With a run cache, each finished result is kept
as JSON under :func:`task_key`, which also covers a digest of the code that shapes results
(:func:`code_digest`), so an interrupted evaluation resumes and a changed method, cost, setting or trainer reruns.
"""

from __future__ import annotations

import ast
import concurrent.futures as cf
import dataclasses
import functools
import hashlib
import json
import multiprocessing
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from edgesync_ros import paths
from edgesync_ros.data.recorded import RecordedStream
from edgesync_ros.data.stream import StreamSpec
from edgesync_ros.eval import report
from edgesync_ros.eval.cost import CostProfile
from edgesync_ros.eval.features import CameraFeatures, load_stream_features
from edgesync_ros.eval.methods import EvalSettings, make_method
from edgesync_ros.eval.simulator import Simulation
from edgesync_ros.models.edge import EdgeModel, EdgeModelConfig


@dataclasses.dataclass(frozen=True)
class Context:
    """Which stream, cameras, unit and duration a task runs on (everything that selects cached features)."""

    spec: StreamSpec | RecordedStream
    unit: str = "region"
    cameras: tuple[str, ...] | None = None
    duration_s: float | None = None

    def key(self) -> str:
        """Return a hashable description (worker cache key)."""
        return f"{self.spec.digest()}|{self.unit}|{self.cameras}|{self.duration_s}"


@dataclasses.dataclass(frozen=True)
class Task:
    """One (method, seed) run."""

    context: Context
    method: str
    seed: int
    overrides: tuple[tuple[str, Any], ...] = ()
    tag: str = ""


# ------------------------------------------------------------------------------------------------------------
# One process's state: the current context's features and the edge model
# ------------------------------------------------------------------------------------------------------------
_WORKER: dict[str, Any] = {}


def worker_init(threads: int) -> None:
    """Set up a worker process: ``threads`` torch threads (runs in parallel processes, not threads)."""
    torch.set_num_threads(max(1, threads))


def context_cameras(ctx: Context) -> dict[str, CameraFeatures]:
    """Return the cameras' cached features of ``ctx`` (truncated to its duration); one context is kept at a time."""
    cached = _WORKER.get(ctx.key())
    if cached is None:
        sf = load_stream_features(ctx.spec, unit=ctx.unit, cameras=ctx.cameras, progress=False,
                                  duration_s=ctx.duration_s)
        cams = dict(sf.cameras)
        if ctx.duration_s is not None:
            cams = {n: c.truncated(ctx.duration_s) for n, c in cams.items()}
        cached = {"cams": cams}
        _WORKER.clear()  # one context at a time: feature arrays are large
        _WORKER[ctx.key()] = cached
    return dict(cached["cams"])


def edge_model() -> EdgeModel:
    """Return this process's edge model on the CPU (built once per context, shared by its runs)."""
    if "model" not in _WORKER:
        _WORKER["model"] = EdgeModel(EdgeModelConfig(device="cpu", warmup=False))
    model: EdgeModel = _WORKER["model"]
    return model


def run_task(task: Task, cost: CostProfile, settings: EvalSettings) -> dict[str, Any]:
    """Run one task (in this process); return its metrics (JSON-safe, with timeline and update log)."""
    cams = context_cameras(task.context)
    sim = Simulation(cams, edge_model(), cost, seed=task.seed, update_dtype=settings.update_dtype)
    try:
        method = make_method(task.method, settings, **dict(task.overrides))
        result = sim.run(method)
        metrics = result.metrics(cams)
    finally:
        sim.close()
    metrics.update(key=task.method, name=method.name, tag=task.tag, cameras=list(cams))
    return metrics


def _run_one(args: tuple[Task, CostProfile, EvalSettings]) -> dict[str, Any]:
    return run_task(*args)


# ------------------------------------------------------------------------------------------------------------
# The run cache's key
# ------------------------------------------------------------------------------------------------------------
#: Modules whose code shapes a simulated result, relative to the package: the simulator, its scoring rule, its
#: cost model, the methods, the features it reads and how a task builds a simulation, and what they call -- the core
#: (Algorithm 1's filter, Algorithm 2's training, the bank, urgency, fleet, heads), the edge model's head and the
#: labelling path that makes the features.
RESULT_MODULES = ("eval/simulator.py", "eval/scoring.py", "eval/cost.py", "eval/methods.py", "eval/features.py",
                  "eval/tasks.py", "core/*.py", "models/edge.py", "models/labelling.py")  # fmt: skip


def code_digest(package: Path) -> str:
    """Digest of the code under ``package`` that shapes a result: the syntax trees without docstrings or comments.

    Editing documentation does not invalidate finished runs; any change to what the code does does (a change to
    ``core/training.py`` must not be answered with a result the old trainer computed).
    """
    files = sorted({f for pattern in RESULT_MODULES for f in package.glob(pattern)})
    h = hashlib.sha256()
    for path in files:
        h.update(path.relative_to(package).as_posix().encode())
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if not isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            first = node.body[0] if node.body else None
            doc = isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant)
            if doc and isinstance(first.value.value, str):  # type: ignore[union-attr]
                node.body = node.body[1:] or [ast.Pass()]
        h.update(ast.dump(tree, include_attributes=False).encode())
    return h.hexdigest()[:16]


@functools.lru_cache(maxsize=1)
def package_code_digest() -> str:
    """Return :func:`code_digest` of this package (parsed once: the code cannot change under a running process)."""
    return code_digest(Path(__file__).resolve().parent.parent)


def task_key(task: Task, cost: CostProfile, settings: EvalSettings) -> str:
    """Return a content key of a task's result: stream context, method, seed, options, costs, settings, code."""
    payload = {
        "context": task.context.key(), "method": task.method, "seed": task.seed, "overrides": list(task.overrides),
        "cost": cost.to_dict(), "settings": settings.to_dict(), "code": package_code_digest(),
    }  # fmt: skip
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:24]


def default_run_cache() -> Path:
    """Return where finished runs are kept by default (``<cache>/eval/runs``)."""
    return paths.cache_dir() / "eval" / "runs"


# ------------------------------------------------------------------------------------------------------------
# Running many tasks
# ------------------------------------------------------------------------------------------------------------
#: Method-key prefixes from the most to the least simulation work (AMS trains 2,000 samples every 10 s per camera;
#: EdgeSync and its variants after every ready window, the upper bound after every window; the per-condition
#: static head per segment; Ekya once per 200 s window).
_COST_ORDER = ("ams", "upper_bound", "edgesync", "static_head", "ekya", "one_time")


def _expected_cost_rank(method: str) -> int:
    return next((i for i, p in enumerate(_COST_ORDER) if method.startswith(p)), len(_COST_ORDER))


@dataclasses.dataclass
class _Batch:
    """Results of a task list being filled in, and where each finished one is kept."""

    tasks: Sequence[Task]
    keys: list[str]
    cache_dir: Path | None
    results: list[dict[str, Any] | None]

    def cached(self) -> list[int]:
        """Fill in every result the run cache holds; return the indices still to run."""
        todo = []
        for i, k in enumerate(self.keys):
            path = self.cache_dir / f"{k}.json" if self.cache_dir is not None else None
            if path is not None and path.is_file():
                self.results[i] = report.restore_nans(json.loads(path.read_text(encoding="utf-8")))
            else:
                todo.append(i)
        return todo

    def done(self, i: int, result: dict[str, Any]) -> None:
        """Record task ``i``'s result (and keep it in the run cache)."""
        self.results[i] = result
        if self.cache_dir is not None:
            report.write_json(self.cache_dir / f"{self.keys[i]}.json", result)


def run_tasks(
    tasks: Sequence[Task], cost: CostProfile, settings: EvalSettings, jobs: int = 1, progress: bool = True,
    desc: str = "runs", cache_dir: Path | None = None,
) -> list[dict[str, Any]]:  # fmt: skip
    """Run tasks (``jobs`` worker processes, one torch thread each); results come back in task order.

    With ``cache_dir``, each finished task's metrics are kept as JSON named by :func:`task_key`, so an
    interrupted evaluation resumes where it stopped and a changed method, cost or setting reruns.
    """
    batch = _Batch(tasks, [task_key(t, cost, settings) for t in tasks], cache_dir, [None] * len(tasks))
    todo = batch.cached()
    bar = tqdm(total=len(tasks), initial=len(tasks) - len(todo), desc=desc, unit="run", disable=not progress,
               file=sys.stderr)  # fmt: skip
    if jobs <= 1 or len(todo) <= 1:
        _run_here(batch, todo, cost, settings, bar)
    else:
        _run_in_pool(batch, todo, cost, settings, jobs, bar)
    bar.close()
    return [r for r in batch.results if r is not None]


def _run_here(batch: _Batch, todo: list[int], cost: CostProfile, settings: EvalSettings, bar: Any) -> None:
    worker_init(1)
    for i in todo:
        t = batch.tasks[i]
        bar.set_postfix_str(f"{t.method} seed {t.seed}{' ' + t.tag if t.tag else ''}")
        batch.done(i, run_task(t, cost, settings))
        bar.update(1)


def _run_in_pool(
    batch: _Batch, todo: list[int], cost: CostProfile, settings: EvalSettings, jobs: int, bar: Any
) -> None:
    ctx = multiprocessing.get_context("spawn")  # torch + fork is unsafe; spawn gives clean workers
    with cf.ProcessPoolExecutor(max_workers=jobs, mp_context=ctx, initializer=worker_init, initargs=(1,)) as pool:
        # Longest first (LPT): the pool's makespan is not set by a long run started last.
        order = sorted(todo, key=lambda i: _expected_cost_rank(batch.tasks[i].method))
        futures = {pool.submit(_run_one, (batch.tasks[i], cost, settings)): i for i in order}
        for fut in cf.as_completed(futures):
            i = futures[fut]
            batch.done(i, fut.result())
            bar.set_postfix_str(f"{batch.tasks[i].method} seed {batch.tasks[i].seed}")
            bar.update(1)
