"""Text tables of a search for the log: every trial in order, and the online-profiling comparison."""

from __future__ import annotations

from collections.abc import Sequence

from edgesync_ros.core.hpo import Trial
from edgesync_ros.hpo.compare import WindowScore, summarize


def fmt(v: float | int) -> str:
    """Format a hyperparameter value: integers as they are, floats to four significant digits."""
    return str(v) if isinstance(v, int) else f"{v:.4g}"


def trials_table(trials: Sequence[Trial], names: Sequence[str]) -> str:
    """Return the trials as a fixed-width text table, in the order they ran."""
    cols = {"lr": "lr", "momentum": "momentum", "weight_decay": "wd", "batch_size": "batch"}
    head = f"{'#':>3} {'stage':<9} {'rd':>2} {'segment':<32} " + " ".join(f"{cols[n]:>9}" for n in names)
    lines = [head + f" {'val_acc':>7} {'s':>5}"]
    for i, t in enumerate(trials, 1):
        seg = t.segment if len(t.segment) <= 32 else t.segment[:29] + "..."
        vals = " ".join(f"{fmt(t.params[n]):>9}" for n in names)
        lines.append(f"{i:>3} {t.stage:<9} {t.round:>2} {seg:<32} {vals} {t.score:>7.4f} {t.seconds:>5.1f}")
    return "\n".join(lines)


def comparison_table(scores: Sequence[WindowScore]) -> str:
    """Return the per-window rows and the per-method means of an online-profiling comparison."""
    lines = [f"{'window':<22} {'method':<9} {'val_acc':>7} {'next_acc':>8} {'profile_s':>9} {'train_s':>7}"]
    for s in scores:
        lines.append(f"{s.window:<22} {s.method:<9} {s.val_accuracy:>7.4f} {s.next_accuracy:>8.4f} "
                     f"{s.profile_seconds:>9.1f} {s.train_seconds:>7.1f}")
    for method, m in summarize(scores).items():
        lines.append(f"{'mean':<22} {method:<9} {m['val_accuracy']:>7.4f} {m['next_accuracy']:>8.4f} "
                     f"{m['profile_seconds']:>9.1f} {m['train_seconds']:>7.1f}")
    return "\n".join(lines)
