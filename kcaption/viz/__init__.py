"""Pictures: loss curves, caption grids, embedding scatters."""

from kcaption.viz.captions import caption_grid, objects_right
from kcaption.viz.curves import plot_loss_curves
from kcaption.viz.embeddings import plot_embeddings

__all__ = ["caption_grid", "objects_right", "plot_embeddings", "plot_loss_curves"]
