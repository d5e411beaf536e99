"""Pictures: loss curves and caption grids."""

from kcaption.viz.captions import caption_grid
from kcaption.viz.curves import plot_loss_curves

__all__ = ["caption_grid", "plot_loss_curves"]
