"""TrainConfig: every knob of a training run, frozen, plus the named recipes.

A recipe is a set of overrides of the defaults; command-line flags override the recipe.
argparse lives in `train/__main__.py` only; everything here is plain data and validation.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from hub.errors import ConfigError
from hub.model import GLOBAL_POOLS, PICKLE_SUFFIXES

OPTIMIZERS = ("adam", "adamw", "sgd")
SPLITS = ("random", "ordered", "group")
DEVICES = ("auto", "cpu", "cuda", "mps")
INIT_HEADS = ("keep", "reset")
INTERPOLATIONS = ("bicubic", "bilinear", "nearest")
# Names of ResNet children that --unfreeze may list ("all" trains everything).
UNFREEZABLE = ("conv1", "bn1", "layer1", "layer2", "layer3", "layer4", "fc")


@dataclass(frozen=True)
class TrainConfig:
    """A fully resolved training run. Paths are strings so the config serialises as JSON."""

    data: str = ""
    val_data: str | None = None
    test_data: str | None = None
    val_split: float = 0.15              # 0: a final fit on all of --data (needs --test-data, --patience 0)
    split: str = "random"                # how --val-split is drawn: random, ordered or group (train/splits.py)
    group_pattern: str | None = None     # --split group: regex on the relative path; group = first capture
    group_csv: str | None = None         # --split group: CSV path,group (flag --groups)
    leakage_check: bool = True           # near-duplicates across splits in metrics.json and the card
    recipe: str = "her2"
    arch: str = "resnet50"
    # Which ImageNet weights `--pretrained` fetches through timm (hf-hub: timm/<arch>.<tag>).
    pretrained_tag: str = "a1_in1k"
    pretrained: bool = True
    # A model folder, "org/repo[@rev]" (a retrain: head rows carried over by label name, preprocessing
    # kept) or a .safetensors file (backbone weights only).
    init: str | None = None
    init_head: str = "keep"              # reset: a fresh head even when the classes match
    epochs: int = 20
    img_size: int | None = 224           # None: the initial model's own input size (a retrain keeps it)
    mean: tuple[float, ...] | None = None  # None: the initial model's normalisation and interpolation
    std: tuple[float, ...] | None = None
    interpolation: str | None = None
    batch_size: int = 32
    optimizer: str = "adam"
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 1e-4
    min_lr: float = 1e-6
    unfreeze: tuple[str, ...] = ("layer3", "layer4", "fc")
    class_weights: str = "none"
    dropout: float = 0.3
    patience: int = 5
    hflip: bool = True
    rotation: float = 20.0
    color_jitter: float = 0.2
    scale_min: float = 1.0               # < 1: timm's random-resized-crop over (scale_min, 1) of the image
    intensity: float = 0.0               # > 0: random gain and gamma exp(U(-s, s)) per image (train.intensity)
    label_smoothing: float = 0.0
    mixup: float = 0.0                   # Mixup alpha (timm.data.Mixup); 0 = off
    cutmix: float = 0.0                  # CutMix alpha; 0 = off
    ema_decay: float = 0.0               # timm ModelEmaV3 decay (e.g. 0.999); the EMA weights are evaluated and saved
    warmup_epochs: int = 0               # linear warmup from lr/100 before the cosine schedule
    tta: bool = False                    # evaluate the mean of each image's and its mirror's probabilities
    # Temperature scaling of the published probabilities (hub.calibration): "auto" fits it on the validation
    # block (none without one), "none" leaves them raw, a number or a model folder (its fitted temperature)
    # carries a value chosen on validation into a final fit.
    temperature: str = "auto"
    # Expert regions (YOLO/COCO boxes, masks: hub.annotations) of --data images: training grounds the decision
    # in them (train.grounding) with weight guide_weight; validation images' regions give validation figures.
    annotations: str | None = None
    test_annotations: str | None = None  # regions of --test-data images, read once at the end (card table)
    guide_weight: float = 1.0
    counterfactual: float = 0.0          # share of annotated training images shown with the region hidden, "no class"
    context_swap: float = 0.0            # share of annotated training images shown in another image's context
    # The network's build that is not in its weights; None (a retrain's default): the --init model's.
    output_stride: int | None = 32       # 16: the last stage dilated, a 2x finer map (8x8 at 128 px) for 1.2x time
    # The head's pooling of the last stage (timm's global_pool): "avg" (timm's default) makes a logit the mean of
    # the cells' logits, so a grounded model's evidence is diluted by the lesion's area; "max" is not, "avgmax" half.
    global_pool: str | None = "avg"
    seed: int = 0
    workers: int = 0
    device: str = "auto"
    amp: bool = False
    out: str = "model"
    resume: bool = False
    push_to: str | None = None
    tag: str | None = None
    # Optional metadata for the model card.
    license: str = "apache-2.0"
    dataset_id: str | None = None
    homepage: str | None = None          # the project link in the card; none unless given
    tags: tuple[str, ...] = ()           # card tags added to the generic ones (e.g. medical-imaging)

    def __post_init__(self) -> None:
        problems = list(self._problems())
        if problems:
            raise ConfigError("; ".join(problems))

    def _problems(self):
        if not self.data:
            yield "--data is required: a folder with one sub-folder of images per class"
        if self.epochs < 1:
            yield f"--epochs must be at least 1 (got {self.epochs})"
        if self.img_size is not None and self.img_size < 32:
            yield f"--img-size must be at least 32 pixels for a ResNet (got {self.img_size})"
        if self.batch_size < 1:
            yield f"--batch-size must be at least 1 (got {self.batch_size})"
        if not self.lr > 0:
            yield f"--lr must be positive (got {self.lr})"
        if self.weight_decay < 0:
            yield f"--weight-decay must not be negative (got {self.weight_decay})"
        if not 0.0 < self.scale_min <= 1.0:
            yield f"--scale-min must be in (0, 1] (got {self.scale_min})"
        if not 0.0 <= self.intensity <= 1.0:
            yield f"--intensity must be in [0, 1] (got {self.intensity}); 0.2 is a gain and gamma of 0.82-1.22"
        if not 0.0 <= self.label_smoothing < 1.0:
            yield f"--label-smoothing must be in [0, 1) (got {self.label_smoothing})"
        if self.mixup < 0 or self.cutmix < 0:
            yield f"--mixup and --cutmix are Beta alphas >= 0 (got {self.mixup}, {self.cutmix})"
        if not 0.0 <= self.ema_decay < 1.0:
            yield f"--ema-decay must be in [0, 1), 0 = off (got {self.ema_decay})"
        if not 0 <= self.warmup_epochs < max(self.epochs, 1):
            yield f"--warmup-epochs must be >= 0 and below --epochs (got {self.warmup_epochs})"
        if not 0.0 <= self.dropout < 1.0:
            yield f"--dropout must be in [0, 1) (got {self.dropout})"
        if not 0.0 <= self.val_split < 1.0 and self.val_data is None:
            yield (f"--val-split must be in [0, 1): a share of --data for validation, or 0 to train on all of it "
                   f"(got {self.val_split})")
        if not self.validates:
            # A final fit: every image of --data is trained on, so the epoch count must be chosen beforehand
            # (on a run with validation) and the only figures are on --test-data.
            if self.patience:
                yield ("--val-split 0 leaves no validation images to stop early on: pass --patience 0 "
                       "(the epoch count, chosen on a run with validation, is final)")
            if self.test_data is None:
                yield ("--val-split 0 leaves nothing to evaluate: pass --test-data DIR (held-out images, other "
                       "patients) so metrics.json and the model card have figures")
            if self.group_pattern or self.group_csv:
                yield "--val-split 0 makes no split: drop --group-pattern / --groups"
        if self.patience < 0:
            yield f"--patience must be 0 (off) or more (got {self.patience})"
        yield from self._annotation_problems()
        if (problem := self._temperature_problem()) is not None:
            yield problem
        if self.workers < 0:
            yield f"--workers must not be negative (got {self.workers})"
        if self.optimizer not in OPTIMIZERS:
            yield f"--optimizer must be one of {', '.join(OPTIMIZERS)} (got {self.optimizer!r})"
        if self.device not in DEVICES:
            yield f"--device must be one of {', '.join(DEVICES)} (got {self.device!r})"
        if self.class_weights not in ("balanced", "none"):
            yield f"--class-weights must be 'balanced' or 'none' (got {self.class_weights!r})"
        bad = [u for u in self.unfreeze if u not in UNFREEZABLE + ("all",)]
        if bad or not self.unfreeze:
            yield (f"--unfreeze takes 'all' or a comma list of {','.join(UNFREEZABLE)} "
                   f"(got {','.join(self.unfreeze) or 'nothing'})")
        yield from self._init_problems()
        for name in ("mean", "std"):
            value = getattr(self, name)
            if value is not None and (len(value) != 3 or (name == "std" and min(value) <= 0)):
                yield (f"--{name} takes three comma-separated numbers, one per RGB channel"
                       f"{', all positive' if name == 'std' else ''} (got {','.join(map(str, value))})")
        if self.interpolation is not None and self.interpolation not in INTERPOLATIONS:
            yield f"--interpolation must be one of {', '.join(INTERPOLATIONS)} (got {self.interpolation!r})"
        if self.homepage is not None and not self.homepage.startswith(("https://", "http://")):
            yield f"--homepage must be an http(s) URL (got {self.homepage!r})"
        bad_tags = [t for t in self.tags if not t or not all(c.isalnum() or c in "-_." for c in t)]
        if bad_tags:
            yield f"--tags takes a comma list of letters, digits, '-', '_' and '.' (got {','.join(self.tags)!r})"
        if self.split not in SPLITS:
            yield f"--split must be one of {', '.join(SPLITS)} (got {self.split!r})"
        if (self.group_pattern or self.group_csv) and self.split != "group":
            yield "--group-pattern and --groups only apply with --split group"
        if self.group_pattern and self.group_csv:
            yield "give either --group-pattern or --groups, not both"
        if self.tag is not None and self.push_to is None:
            yield "--tag only makes sense with --push-to REPO_ID"

    def _temperature_problem(self) -> str | None:
        from hub.calibration import check_temperature

        if self.temperature in ("auto", "none"):
            return None
        try:
            float(self.temperature)
        except ValueError:
            return None  # a model folder: read (and refused) before --out is touched, in train.run
        try:
            check_temperature(self.temperature, "--temperature")
        except ValueError as exc:
            return f"{exc}; or pass auto (fit it on the validation block), none, or a validated run's model folder"
        return None

    def _annotation_problems(self):
        inherits = self.init_is_model  # None: the parent's, which only a retrain has
        if self.output_stride not in (8, 16, 32) and not (inherits and self.output_stride is None):
            yield f"--output-stride must be 8, 16 or 32 (got {self.output_stride})"
        if self.global_pool not in GLOBAL_POOLS and not (inherits and self.global_pool is None):
            yield f"--global-pool must be one of {', '.join(GLOBAL_POOLS)} (got {self.global_pool!r})"
        if not 0.0 <= self.counterfactual < 1.0:
            yield f"--counterfactual must be in [0, 1) (got {self.counterfactual})"
        if self.counterfactual and not self.annotations:
            yield "--counterfactual needs --annotations: it hides the annotated regions"
        if not 0.0 <= self.context_swap < 1.0:
            yield f"--context-swap must be in [0, 1) (got {self.context_swap})"
        if self.context_swap and not self.annotations:
            yield "--context-swap needs --annotations: it moves the annotated regions into other images"
        if self.counterfactual + self.context_swap > 1.0:
            yield (f"--counterfactual {self.counterfactual:g} and --context-swap {self.context_swap:g} add up to more "
                   "than 1: each annotated image is shown at most one of the two ways; lower one of them")
        if self.guide_weight < 0:
            yield f"--guide-weight must not be negative (got {self.guide_weight})"
        if self.annotations and (self.mixup or self.cutmix):
            yield "--annotations cannot be combined with --mixup or --cutmix (a mixed image has no single region)"
        if self.test_annotations and not self.test_data:
            yield "--test-annotations needs --test-data: they are the regions of its images"

    def _init_problems(self):
        if self.init_head not in INIT_HEADS:
            yield (f"--init-head must be 'keep' (carry the head over by label name) or 'reset' (a fresh head), "
                   f"got {self.init_head!r}")
        elif self.init_head != "keep" and self.init is None:
            yield f"--init-head {self.init_head} needs --init MODEL (a folder, org/repo[@rev] or a .safetensors file)"
        if self.init is None:
            return
        from hub.loading import is_repo_id, split_revision

        source, _ = split_revision(self.init)
        if self.init.lower().endswith(PICKLE_SUFFIXES):
            yield (f"--init {self.init}: pickled checkpoints are never loaded (unpickling runs arbitrary code); "
                   "pass a model folder, org/repo[@rev] or a .safetensors file")
        elif not (self.init_is_file or Path(source).is_dir() or is_repo_id(source)):
            yield (f"--init {self.init}: not a model folder, a .safetensors file or a Hub repo id; "
                   "pass a model folder, org/repo[@rev] (tag, branch or commit) or a .safetensors file")

    @property
    def validates(self) -> bool:
        """False for a final fit (--val-split 0 without --val-data): no validation split, all of --data trains."""
        return self.val_data is not None or self.val_split > 0

    @property
    def init_is_file(self) -> bool:
        """--init names a bare .safetensors file (backbone weights, no labels or preprocessing)."""
        return is_weights_file(self.init)

    @property
    def init_is_model(self) -> bool:
        """--init names a model (folder or Hub revision): a retrain that keeps what it can of it."""
        return self.init is not None and not self.init_is_file

    @property
    def model_name(self) -> str:
        """timm name of the initial weights, e.g. resnet50.a1_in1k."""
        return f"{self.arch}.{self.pretrained_tag}" if self.pretrained_tag else self.arch

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready view (tuples become lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


def is_weights_file(init: str | None) -> bool:
    """True when --init names a bare .safetensors file rather than a model folder or Hub revision."""
    return init is not None and init.endswith(".safetensors")


RECIPES: dict[str, dict[str, Any]] = {
    # HER2 patches: ImageNet init, train layer3, layer4 and the head
    # (Dropout(0.3) + Linear), Adam 1e-3 wd 1e-4, 20 epochs cosine to 1e-6, batch 32,
    # flip/rotate/colour-jitter, early stopping patience 5 on val loss.
    "her2": dict(pretrained=True, epochs=20, img_size=224, batch_size=32, optimizer="adam",
                 lr=1e-3, weight_decay=1e-4, min_lr=1e-6, unfreeze=("layer3", "layer4", "fc"),
                 class_weights="none", dropout=0.3, patience=5, hflip=True, rotation=20.0,
                 color_jitter=0.2),
    # Brain MRI: global-average-pool head straight into Linear, every layer trained, class-balanced
    # cross-entropy. Ordered split: MRI sets number one patient's slices consecutively, and a random split put
    # a near-copy in train for 16-18% of the validation images of the shared figshare set
    # (python -m bench.leakage) against 0.2% for the ordered split.
    # The rest was chosen on that patient-safe validation split, from scratch on the figshare set at 128 px
    # (python -m bench.quality; table in docs/mri.md): AdamW 1e-3, wd 0.05 beat SGD 1e-2 by 7 points of
    # validation accuracy (0.735 vs 0.663) at 24 epochs; timm's random-resized crop (0.6-1), label
    # smoothing 0.1, 2 warmup epochs, EMA 0.995 and flip TTA are in both; mixup 0.2 was not adopted
    # (validation AUC 0.890 vs 0.909); nor was colour jitter: brightness/contrast jitter 0.4 (meant to hide
    # the scanners' intensity differences) scored 0.34-0.50 validation accuracy over epochs 4-11, where the
    # recipe had 0.67-0.76, and that run was stopped. Validation accuracy was highest at the end of the cosine
    # schedule, so there is no early stopping: the epoch count is the schedule. 128 px and --amp (bf16 +
    # channels_last) keep a from-scratch run on 2 CPU cores under an hour; on a GPU, raise --img-size
    # (160 px: validation accuracy 0.796 vs 0.735 at 1.6x the time, not adopted until its final fit is measured).
    # --intensity 0.25 (random gain and gamma) was not adopted either: it cut the answers that change with brightness
    # from 16% to 4% of the validation slices, but validation accuracy fell 0.884 -> 0.803, and the earlier
    # acquisition's test block scored 0.714 with it against 0.751 without (128 px; docs/lesion-mri.md).
    # From scratch (pretrained=False): every figure above was measured so; the ImageNet variant is unmeasured.
    "mri": dict(pretrained=False, split="ordered", epochs=24, img_size=128, batch_size=32, optimizer="adamw",
                lr=1e-3, weight_decay=0.05, min_lr=1e-6, unfreeze=("all",), class_weights="balanced",
                dropout=0.0, patience=0, hflip=True, rotation=10.0, color_jitter=0.0, scale_min=0.6,
                label_smoothing=0.1, warmup_epochs=2, ema_decay=0.995, tta=True, amp=True),
}


def build_config(recipe: str = "her2", **overrides: Any) -> TrainConfig:
    """Recipe defaults, then every override that is not None."""
    if recipe not in RECIPES:
        raise ConfigError(f"unknown --recipe {recipe!r}; choose from {', '.join(RECIPES)}")
    known = {f.name for f in fields(TrainConfig)}
    unknown = set(overrides) - known
    if unknown:
        raise ConfigError(f"unknown option(s): {', '.join(sorted(unknown))}")
    given = {k: v for k, v in overrides.items() if v is not None}
    values = {**RECIPES[recipe], **given}
    if "init" in given and not is_weights_file(given["init"]):
        # a retrain keeps its parent's input size and network build unless a flag says otherwise
        values.update({k: None for k in ("img_size", "output_stride", "global_pool") if k not in given})
    return TrainConfig(recipe=recipe, **values)
