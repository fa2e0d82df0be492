"""How far a job has come, read from the command's own report (``--status-file``, ``compute/cli/status.py``): a
fraction for the progress bar, a caption saying what it is doing now, and a smoothed estimate of the time left.

The estimate is fitted to the report's ``samples`` (``[time, done]`` at the stage's start and at each advance): an
exponentially weighted mean of the seconds per item over the completed steps (each step weighted by its item count,
so a batch of 8 counts as 8 items), minus the time since the last step. A plain "elapsed × left / done" swings with
every batch (it grows while a batch renders, drops when it lands) and carries the first batch's warm-up for ever."""

import math
import time

# Weight of one item's duration in the running mean: the last ~1/ALPHA items (20: a few batches) dominate. On a
# recorded edit job (tests/test_dashboard_monitor.py) 0.05 is as accurate as the old estimate and rises a third less.
ALPHA = 0.05
# What each stage of a command is doing, for the caption (stages without counted items show the time so far).
STAGES = {"starting": "starting Python and loading the libraries", "loading": "loading the model",
          "editing": "loading the model and computing the edit", "evaluating": "edit saved; before/after images",
          "sweeping": "window images", "tracing": "traced images", "localizing": "attention contributions",
          "interrupted": "interrupted", "failed": "failed"}
# Where a counted stage starts on the bar (an edit is its first tenth, the evaluation the rest).
STAGE_START = {"evaluating": 0.1}


def _count(report: dict, key: str) -> int:  # the report is a file in the root: read numbers defensively
    value = report.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def _moment(report: dict, key: str) -> float | None:
    value = report.get(key)
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    return float(value) if ok else None


def samples_of(report: dict) -> list[tuple[float, int]]:
    """The report's well-formed ``[time, done]`` samples, from the last time ``done`` went down (a new pass)."""
    found = []
    for sample in report.get("samples") or []:
        if (isinstance(sample, list) and len(sample) == 2 and all(isinstance(v, (int, float)) and not isinstance(
                v, bool) and math.isfinite(v) for v in sample)):
            if found and sample[1] < found[-1][1]:
                found = []
            found.append((float(sample[0]), int(sample[1])))
    return found


def seconds_per_item(samples: list[tuple[float, int]], alpha: float = ALPHA) -> float | None:
    """The exponentially weighted mean duration of one item over the steps between ``samples``; None before the
    first completed step."""
    rate = None
    for (t0, d0), (t1, d1) in zip(samples, samples[1:]):
        if d1 <= d0 or t1 < t0:
            continue
        per_item = (t1 - t0) / (d1 - d0)
        weight = 1 - (1 - alpha) ** (d1 - d0)
        rate = per_item if rate is None else rate + weight * (per_item - rate)
    return rate


def time_left(samples: list[tuple[float, int]], total: int, now: float, alpha: float = ALPHA) -> float | None:
    """Seconds left until ``total`` items are done: the items left times ``seconds_per_item``, less the time the
    step under way has already run (never below 0); None before the first completed step."""
    rate = seconds_per_item(samples, alpha)
    if rate is None:
        return None
    last_time, last_done = samples[-1]
    return max(rate * (total - last_done) - max(now - last_time, 0.0), 0.0)


def duration(value: float) -> str:
    """Seconds as '40 s', '3 min' or '1 h 05 min'."""
    if value < 90:
        return f"{value:.0f} s"
    if value < 90 * 60:
        return f"{value / 60:.0f} min"
    return f"{int(value // 3600)} h {int(value % 3600 // 60):02d} min"


def progress(report: dict, now: float | None = None) -> tuple[float, str]:
    """(fraction for a progress bar, one line saying what the job is doing) from ``Job.report()``."""
    now = time.time() if now is None else now
    stage, done, total = report.get("stage"), _count(report, "done"), _count(report, "total")
    if stage == "finished":
        return 1.0, "finished"
    what = STAGES.get(stage or "starting", str(stage))
    started = _moment(report, "stage_started_at") or _moment(report, "started_at")
    so_far = f" · {duration(max(now - started, 0.0))} so far" if started is not None else ""
    if not total:
        return 0.05, what + so_far
    start = STAGE_START.get(stage, 0.05)
    text = f"{what} {min(done, total)} of {total}{so_far}"
    if done >= total:
        text += ", scoring and saving"
    else:
        left = time_left(samples_of(report), total, now)
        text += f", about {duration(left)} left" if left is not None else ", estimating the time left"
    return start + (1 - start) * min(done / total, 1.0), text
