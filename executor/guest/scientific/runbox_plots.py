"""matplotlib's backend in the runbox sandbox (`MPLBACKEND=module://runbox_plots`,
set by `runbox_run.main`): Agg, the raster backend, with a `show()` that
saves every open figure as a PNG file in the working directory
(`figure-1.png`, `figure-2.png`, …) and closes it, so the usual
`plt.plot(...); plt.show()` returns its plot in the response's files.
Figures still open when the program ends are saved the same way.

Caps: at most `MAX_FIGURES` figures per run, each at most `MAX_PIXELS`
pixels (width × height at its dpi); a figure past either is closed unsaved
with a note on stderr. A figure the program saves itself (`savefig`) is the
program's file, under the run's memory and file quotas like any other.
"""

import os
import sys

from matplotlib.backend_bases import FigureManagerBase
from matplotlib.backends.backend_agg import FigureCanvasAgg

import runbox_run

MAX_FIGURES = 16
MAX_PIXELS = 4096 * 4096

FigureCanvas = FigureCanvasAgg
FigureManager = FigureManagerBase

_saved = 0


def _free_name() -> str:
    """The next `figure-N.png` not already in the working directory."""
    n = _saved + 1
    while os.path.exists(os.path.join(runbox_run.WORKDIR, f"figure-{n}.png")):
        n += 1
    return os.path.join(runbox_run.WORKDIR, f"figure-{n}.png")


def save_open_figures() -> None:
    """Saves and closes every open figure, in number order."""
    global _saved
    pyplot = sys.modules.get("matplotlib.pyplot")
    if pyplot is None:
        return
    for num in pyplot.get_fignums():
        figure = pyplot.figure(num)
        try:
            width, height = (figure.get_size_inches() * figure.dpi).tolist()
            if _saved >= MAX_FIGURES:
                runbox_run.note(f"figure {num} not saved: a run saves at most {MAX_FIGURES} figures")
            elif not (width * height <= MAX_PIXELS):
                runbox_run.note(
                    f"figure {num} not saved: {width:.0f}×{height:.0f} pixels is more than "
                    f"{MAX_PIXELS} (figsize × dpi)"
                )
            else:
                figure.savefig(_free_name(), format="png")
                _saved += 1
        except Exception as e:  # noqa: BLE001 - a quota, the program's artists
            runbox_run.note(f"figure {num} not saved: {type(e).__name__}: {e}")
        finally:
            pyplot.close(figure)


def show(*args, **kwargs) -> None:
    """`plt.show()`: saves the open figures (see the module's docstring)."""
    save_open_figures()
