"""How faithful a heatmap is to the model: does the model's belief live where the map points?

The score (`keep_remove_score`) is the keep-minus-remove probability gap at 20%:

    p(target | only the top 20% of heatmap pixels kept) - p(target | those pixels removed)

"Removed" pixels are set to 0 in the normalised input, i.e. the normalisation mean colour, the
same baseline Score-CAM's masks use. The score lies in [-1, 1]: near 1 when the marked fifth of
the image carries the class on its own and the rest does not, near 0 for a map that points at
nothing in particular, negative for a map that points away from the evidence. It costs one
batched forward pass of two images. `hub.explain.batch.mean_faithfulness` averages it over a folder.
"""
from __future__ import annotations

import torch
from torch import nn

KEEP_FRACTION = 0.2


def keep_remove_score(model: nn.Module, x: torch.Tensor, heatmap: torch.Tensor, target: int,
                      fraction: float = KEEP_FRACTION) -> float:
    """p(target | top `fraction` of `heatmap` kept) - p(target | it removed); 0.0 for a flat map."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"fraction must be between 0 and 1, got {fraction}")
    if heatmap.shape != x.shape[-2:]:
        raise ValueError(f"heatmap {tuple(heatmap.shape)} must match the input's size {tuple(x.shape[-2:])}")
    flat = heatmap.flatten().float()
    if not bool(flat.max() > flat.min()):
        return 0.0  # nothing is ranked above anything else
    k = max(1, int(round(fraction * flat.numel())))
    keep = torch.zeros_like(flat)
    keep[flat.topk(k).indices] = 1.0
    keep = keep.view(1, 1, *heatmap.shape).to(x.device, x.dtype)
    with torch.inference_mode():
        probs = torch.softmax(model(torch.cat([x * keep, x * (1 - keep)])).float(), dim=-1)
    return float(probs[0, target] - probs[1, target])
