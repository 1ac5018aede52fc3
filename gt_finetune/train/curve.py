"""The loss curve as a PNG, redrawn at each checkpoint and at the end of a run."""
from __future__ import annotations

from pathlib import Path

from ..png import Canvas

INK, GRID, LINE, SMOOTH = (40, 40, 40), (225, 225, 225), (150, 180, 230), (20, 80, 200)
WIDTH, HEIGHT, LEFT, RIGHT, TOP, BOTTOM = 640, 360, 64, 16, 28, 36


def draw_loss_curve(rows: list[dict], path: Path, *, title: str = "training loss") -> None:
    """Loss per step (light) and its running mean over 10 steps (dark); axes labelled with the
    step range and the loss range."""
    points = [(r["step"], r["loss"]) for r in rows if "loss" in r]
    canvas = Canvas(WIDTH, HEIGHT)
    canvas.text(LEFT, 8, title, INK, 1)
    if len(points) < 2:
        canvas.text(LEFT, HEIGHT // 2, "not enough steps yet", INK, 1)
        canvas.save(path)
        return
    steps, losses = [p[0] for p in points], [p[1] for p in points]
    lo, hi = min(losses), max(losses)
    hi = hi if hi > lo else lo + 1.0
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def xy(step: float, loss: float) -> tuple[int, int]:
        x = LEFT + round((step - steps[0]) / max(steps[-1] - steps[0], 1) * plot_w)
        return x, TOP + round((hi - loss) / (hi - lo) * plot_h)

    for k in range(5):
        y = TOP + round(k * plot_h / 4)
        canvas.rect(LEFT, y, plot_w, 1, GRID)
        canvas.text(4, y - 3, f"{hi - k * (hi - lo) / 4:.3f}", INK, 1)
    canvas.rect(LEFT, TOP, 1, plot_h, INK)
    canvas.rect(LEFT, TOP + plot_h, plot_w, 1, INK)
    canvas.text(LEFT, HEIGHT - 20, f"step {steps[0]}", INK, 1)
    label = f"step {steps[-1]}"
    canvas.text(WIDTH - RIGHT - len(label) * 6, HEIGHT - 20, label, INK, 1)
    smooth = [sum(losses[max(0, k - 9):k + 1]) / len(losses[max(0, k - 9):k + 1]) for k in range(len(losses))]
    for series, color in ((losses, LINE), (smooth, SMOOTH)):
        for k in range(1, len(steps)):
            _line(canvas, xy(steps[k - 1], series[k - 1]), xy(steps[k], series[k]), color)
    canvas.save(path)


def _line(canvas: Canvas, a: tuple[int, int], b: tuple[int, int], color) -> None:
    (x0, y0), (x1, y1) = a, b
    n = max(abs(x1 - x0), abs(y1 - y0), 1)
    for k in range(n + 1):
        canvas.rect(round(x0 + (x1 - x0) * k / n), round(y0 + (y1 - y0) * k / n), 2, 2, color)
