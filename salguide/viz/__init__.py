"""matplotlib figures (Agg backend, PNG written atomically) for callbacks and reports."""

from salguide.viz.attention import kept_tokens_map, plot_attention_maps, tokens_to_image
from salguide.viz.mask_sparsity import plot_mask_sparsity
from salguide.viz.saliency import plot_accuracy_bars, plot_saliency_overlays
from salguide.viz.samples import plot_sample_grid
from salguide.viz.unlearning import plot_metrics_vs_retrain

__all__ = [
    "plot_mask_sparsity",
    "plot_metrics_vs_retrain",
    "plot_saliency_overlays",
    "plot_accuracy_bars",
    "plot_sample_grid",
    "plot_attention_maps",
    "tokens_to_image",
    "kept_tokens_map",
]
