"""Classifier: a timm model plus what it needs to be used on images (labels, preprocessing, device).

Labels and preprocessing are read from the model itself (config.json -> pretrained_cfg):
`resolve_model_data_config(model)` then `create_transform`, exactly as timm users do.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
from timm.data import create_transform, resolve_model_data_config

from hub.calibration import check_temperature
from hub.device import pick_device
from hub.images import ImageInput, load_image
from hub.model import labels_of

if TYPE_CHECKING:  # the explanation engine sits above this module: imported when explain() is called
    from hub.explain.cam import MaxChannels
    from hub.explain.explanation import Explanation


@dataclass(eq=False)
class Classifier:
    """An eval-mode timm classifier with its labels and eval transform; see `hub.from_pretrained`."""

    model: torch.nn.Module
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    source: str | None = None  # folder or repo id it came from
    revision: str | None = None  # the revision asked for (tag, branch or commit)
    commit: str | None = None  # the 40-hex commit actually loaded, for Hub sources
    # Probabilities are softmax(logits / temperature): config.json's `temperature` (hub.calibration), 1 without one.
    temperature: float = 1.0

    def __post_init__(self) -> None:
        self.temperature = check_temperature(self.temperature)
        self.device = pick_device(self.device)
        self.model = self.model.eval().to(self.device)
        self.labels: list[str] = labels_of(self.model)
        self.data_config: dict = resolve_model_data_config(self.model)
        self.transform = create_transform(**self.data_config)

    def preprocess(self, images: ImageInput | Sequence[ImageInput]) -> torch.Tensor:
        """A batch tensor (N, 3, H, W) on the model's device from one image or a list of them."""
        if not isinstance(images, (list, tuple)):
            images = [images]
        return torch.stack([self.transform(load_image(im)) for im in images]).to(self.device)

    @torch.inference_mode()
    def logits(self, images: ImageInput | Sequence[ImageInput]) -> torch.Tensor:
        """Raw model outputs (N, num_classes) on the CPU, in float32."""
        return self.model(self.preprocess(images)).float().cpu()

    def probabilities(self, images: ImageInput | Sequence[ImageInput]) -> torch.Tensor:
        """Calibrated class probabilities (N, num_classes): softmax(logits / temperature)."""
        return (self.logits(images) / self.temperature).softmax(dim=1)

    def predict(self, image: ImageInput, top_k: int | None = None) -> dict[str, float]:
        """Label -> probability for one image, most likely first (all classes unless top_k)."""
        return self.predict_batch([image], top_k)[0]

    def predict_batch(self, images: Sequence[ImageInput], top_k: int | None = None) -> list[dict[str, float]]:
        """`predict` of several images in one forward pass (the same answers, to float rounding)."""
        answers = []
        for probs in self.probabilities(list(images)).tolist():
            ranked = sorted(zip(self.labels, probs), key=lambda kv: kv[1], reverse=True)
            answers.append(dict(ranked[:top_k] if top_k else ranked))
        return answers

    def explain(self, image: ImageInput, method: str = "scorecam", target: int | str | tuple | None = None,
                max_channels: MaxChannels = "exact", **options) -> Explanation:
        """Heatmap and faithfulness figures of one prediction (hub.explain.explanation); target=(A, B): A, not B."""
        from hub.explain.explanation import explain

        return explain(self.model, load_image(image), method=method, target=target, max_channels=max_channels,
                       transform=self.transform, labels=self.labels, device=self.device,
                       temperature=self.temperature, **options)

    def faithfulness(self, e: Explanation, **options) -> Explanation:
        """`e` (from `explain(..., faithfulness=False)`) with its faithfulness figures measured."""
        from hub.explain.explanation import add_faithfulness

        return add_faithfulness(self.model, e, transform=self.transform, device=self.device, **options)

    def __repr__(self) -> str:
        where = self.source or "model"
        if self.revision:
            where += f"@{self.revision}"
        size = self.data_config["input_size"]
        scaled = f", temperature={self.temperature:g}" if self.temperature != 1.0 else ""
        return f"Classifier({where}, labels={self.labels}, input={size}, device={self.device}{scaled})"
