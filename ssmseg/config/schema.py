"""The one config schema: every command validates a ``Config`` built from defaults, a preset, a YAML file
and ``--set`` overrides (see ``loading.py``). Every field has a description; ``docs/config.md`` is
generated from them."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator


class Section(BaseModel):
    """Base of every section: unknown keys are errors, assignments are validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class TaskConfig(Section):
    """What is being predicted."""

    name: Literal["segmentation", "reconstruction"] = Field(
        "segmentation",
        description="segmentation: per-pixel classes; reconstruction: a dense field from sparse pixels.",
    )


class DataConfig(Section):
    """Where the data comes from and how it is batched."""

    dataset: Path | None = Field(
        None,
        description="Prepared dataset folder (from `ssmseg prep`). Empty: the built-in synthetic dataset.",
    )
    synthetic: Literal["hyperspectral", "rgb", "sinusoids"] = Field(
        "hyperspectral",
        description="Built-in synthetic data used when `dataset` is empty: a hyperspectral or rgb scene "
        "(segmentation), or sinusoid fields (reconstruction; chosen automatically for task.name reconstruction).",
    )
    crop_size: int = Field(
        64,
        ge=8,
        description="Patch side in pixels (a prepared dataset's own size is what runs and is recorded; for "
        "reconstruction, the fields' side).",
    )
    batch_size: int = Field(8, ge=1, description="Patches per optimisation step and process.")
    num_workers: int = Field(0, ge=0, description="DataLoader worker processes (0 loads in the main one).")
    max_patches: int | None = Field(
        None, ge=1, description="Cap on training patches drawn per epoch (the fast mode); empty: all."
    )
    max_val_patches: int | None = Field(
        None,
        ge=1,
        description="Cap on validation patches (fields): one fixed subset, drawn once with seed 0 and used every "
        "epoch, bounds the cost of validation; empty: all.",
    )
    balance: float = Field(
        0.0,
        ge=0,
        le=1,
        description="Segmentation: class-balanced patch sampling. 0: each epoch is a permutation of the training "
        "patches; 1: each draw picks a class uniformly, then a patch in proportion to its pixels of that class "
        "(rare classes seen as often as common ones; with replacement); between: a mixture of the two.",
    )


class SplitConfig(Section):
    """How patches are assigned to train/val/test and to cross-validation folds, without leakage."""

    mode: Literal["blocks", "sources", "random"] = Field(
        "blocks",
        description="blocks: spatial blocks per scene; sources: whole files; random: per patch (warns on overlap).",
    )
    ratios: tuple[float, float, float] = Field((0.6, 0.2, 0.2), description="Train, val and test shares (sum 1).")
    block_size: int | None = Field(
        None, ge=8, description="Side of the spatial blocks in pixels (at least the crop size); empty: 2 crops."
    )
    buffer: int | None = Field(
        None,
        ge=0,
        description="Pixels of a val/test patch within this distance of a training window are ignored; "
        "empty: the overlap in pixels.",
    )
    folds: int = Field(3, ge=2, description="Cross-validation folds assigned over the non-test blocks.")
    seed: int = Field(0, ge=0, description="Seed of the block assignment.")
    test: list[str] = Field(
        [],
        description="Image files or glob patterns whose whole scenes go to the test split (held-out scenes); "
        "the other sources are split as configured.",
    )


class FieldsPrepConfig(Section):
    """`ssmseg prep` for reconstruction (task.name: reconstruction): fields from files or generated sinusoids."""

    size: int | None = Field(
        None,
        ge=8,
        le=1024,
        description="Field side in pixels: files are cut into non-overlapping tiles of this size (edge remainders "
        "dropped); empty: every file holds whole fields of one size (sinusoids: 32).",
    )
    mode: Literal["bands", "channels", "gray"] = Field(
        "bands",
        description="Multi-band images: one field per band (bands), the bands as channels of one field (channels), "
        "or one grayscale field of the luminance 0.299 R + 0.587 G + 0.114 B (gray; RGB photos).",
    )
    key: str | None = Field(None, description="Array name inside .npz/.mat files (empty: the only array).")
    count: int = Field(1000, ge=10, description="Sinusoids: number of generated fields.")
    n_terms: int = Field(4, ge=1, le=64, description="Sinusoids: 2D sinusoids summed per field.")
    max_cycles: float = Field(4.0, gt=0, description="Sinusoids: most cycles of any term across the field.")
    channels: int = Field(1, ge=1, le=16, description="Sinusoids: channels per field.")
    seed: int = Field(0, ge=0, description="Sinusoids: generator seed.")


class PrepConfig(Section):
    """`ssmseg prep`: from source scenes to a dataset folder of normalised-on-load patches."""

    images: list[str] = Field([], description="Image files or glob patterns (GeoTIFF, TIFF, JPEG/PNG, .mat, .npy).")
    masks: list[str] = Field(
        [],
        description="Mask files or glob patterns, paired with images by file stem; files of the same name in "
        "several folders (tile_1/images/x.jpg, tile_1/masks/x.png) pair by their nearest common folder.",
    )
    pair_pattern: str | None = Field(
        None,
        description="Regex whose groups (joined by '/') are the pairing key; searched in the file name, or in the "
        r"whole path when it contains '/', e.g. '(tile_\d+)/\w+/(.+)\.\w+$'; empty: the file stem.",
    )
    reader: Literal["auto", "rasterio", "tifffile"] = Field(
        "auto", description="TIFF reader: rasterio (GDAL, windowed, georeferenced) or tifffile; auto: rasterio."
    )
    image_key: str | None = Field(None, description="Array name inside .mat files (empty: the only array).")
    mask_key: str | None = Field(None, description="Array name inside mask .mat files (empty: the only array).")
    band_axis: int | None = Field(
        None, description="Band axis of .mat/.npy cubes; empty: the axis that is not one of two equal-sized ones."
    )
    rows_key: str | None = Field(
        None,
        description="Flattened .mat cubes (bands, pixels): name of the scalar holding the row count; empty: "
        "found by name (nRow, nrows, rows, height, lines, ...).",
    )
    cols_key: str | None = Field(
        None, description="Flattened .mat cubes: name of the scalar holding the column count; empty: found by name."
    )
    flat_order: Literal["column", "row"] = Field(
        "column",
        description="Pixel order of flattened cubes: column (MATLAB's column-major, as distributed) or row.",
    )
    labels_from: Literal["values", "argmax"] = Field(
        "values",
        description="values: the mask holds class values; argmax: it holds per-class maps (abundances, "
        "probabilities; (classes, H, W), (H, W, classes) or flattened) and the class is the largest.",
    )
    palette: dict[str, str] | None = Field(
        None, description='RGB masks: colour to class name, e.g. {"#3C1098": building}; in class order.'
    )
    classes: list[str] | None = Field(None, description="Class names for index masks, in class-index order.")
    class_map: dict[int, int] | None = Field(
        None, description="Remap raw mask values to class indices, e.g. {1: 0, 10: 1}; unmapped values are errors."
    )
    ignore_values: list[int] = Field([], description="Raw mask values that become the ignore index.")
    ignore_colors: list[str] = Field([], description="Mask colours that become the ignore index (RGB masks).")
    ignore_index: int = Field(255, ge=0, le=255, description="Label of ignored pixels in the prepared dataset.")
    nodata: float | None = Field(None, description="Image nodata value; empty: the value stored in the raster.")
    overlap: float = Field(
        0.0,
        ge=0,
        description="Overlap between neighbouring crops as a fraction of the crop, in [0, 1) (0.25: a "
        "quarter of the crop); for a number of pixels use prep.overlap_px.",
    )
    overlap_px: int | None = Field(
        None,
        ge=0,
        description="Overlap between neighbouring crops in pixels (instead of prep.overlap); empty: "
        "prep.overlap decides.",
    )
    edge: Literal["pad", "drop"] = Field(
        "pad", description="Crops past the scene edge: pad (reflect; labels ignored) or drop."
    )
    normalize: Literal["minmax", "zscore", "percentile"] = Field(
        "zscore", description="Normalisation applied on load with statistics from training patches only."
    )
    split: SplitConfig = Field(default_factory=SplitConfig, description="Train/val/test split and folds.")
    fields: FieldsPrepConfig = Field(
        default_factory=FieldsPrepConfig, description="Reconstruction datasets: field size, layout, sinusoids."
    )
    out: Path | None = Field(None, description="Dataset folder to write; empty: data.dataset.")


class BaselineConfig(Section):
    """`ssmseg baseline`: classical per-pixel classifiers on the same split and pixels as eval."""

    methods: list[Literal["majority", "logistic", "random_forest"]] = Field(
        ["majority", "logistic", "random_forest"], min_length=1, description="Baselines to fit and score."
    )
    max_train_pixels: int = Field(
        200_000, ge=100, description="Labelled training pixels drawn at random (without replacement) to fit on."
    )
    windows: list[int] = Field(
        [3, 7], description="random_forest: sides of the windows of local mean and std features (odd, >= 3)."
    )
    context_components: int = Field(
        8,
        ge=1,
        description="random_forest: local statistics are computed on this many principal components of the "
        "spectrum (all bands when there are no more).",
    )
    trees: int = Field(50, ge=1, description="random_forest: number of trees.")
    max_depth: int | None = Field(20, ge=1, description="random_forest: tree depth limit; empty: none.")
    max_iter: int = Field(300, ge=10, description="logistic: solver iterations.")

    @field_validator("windows")
    @classmethod
    def _odd_windows(cls, windows: list[int]) -> list[int]:
        bad = [w for w in windows if w < 3 or w % 2 == 0]
        if bad:
            raise ValueError(f"{bad} must be odd and at least 3, e.g. [3, 7]")
        return windows


class ModelConfig(Section):
    """Which network, and its sizes. Keys a model does not read must stay at their defaults (an error says so)."""

    name: str = Field("ssmu_net", description="Registered model name (`ssmseg models` lists them).")
    width: int = Field(32, ge=4, description="Channels of the first stage; later stages double it.")
    depth: int = Field(3, ge=1, le=6, description="Number of down-sampling stages.")
    d_state: int = Field(16, ge=1, le=256, description="State size N of every selective scan.")
    expand: int = Field(2, ge=1, le=4, description="Inner width factor of the Mamba blocks.")
    d_conv: int = Field(
        3,
        ge=1,
        le=9,
        description="Kernel size of the state-space blocks' convolution (depthwise 2D in SS2D, where it must be "
        "odd; causal 1D in sequence Mamba blocks).",
    )
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="Dropout probability before the classifier.")
    n_filters: int = Field(
        16, ge=1, description="SSMU-Net: number of learnable sinc band-pass filters over the spectrum."
    )
    wavelet: Literal["haar", "db2", "none"] = Field(
        "haar", description="CMT-UNet: wavelet of the wavelet convolution; none: the wavelet convolution left out."
    )
    window: int = Field(8, ge=2, description="CMT-UNet: side of the decoder's attention windows.")
    msa: bool = Field(
        True, description="CMT-UNet: multi-scale attention at the bottleneck; false: left out (ablation)."
    )
    window_attention: bool = Field(
        True,
        description="CMT-UNet: window self-attention after each decoder up-sampling; false: plain up-sampling "
        "(bilinear, concatenation, convolutions) (ablation).",
    )
    ss2d: bool = Field(
        True,
        description="cmt_unet, ssmu_net, field_unet: the SS2D Mamba blocks; false: each replaced by its scan-free "
        "twin, SS2D's "
        "projections around a gated depthwise convolution (local context only) (ablation).",
    )
    sinc: bool = Field(
        True,
        description="SSMU-Net: the sinc band-pass filter bank; false: the raw bands alone feed the embedding "
        "(ablation).",
    )
    spectral_head: bool = Field(
        True,
        description="SSMU-Net: a per-pixel linear classifier on the normalised bands (a 1x1 convolution) whose "
        "logits the spatial path adds to through a learned gate; false: the spatial path's logits alone (ablation).",
    )
    spectral_init: Literal["fit", "random"] = Field(
        "fit",
        description="SSMU-Net's spectral head at the start: fit (the logistic regression of a sample of the "
        "training pixels, as `ssmseg baseline` fits it, so training starts at the linear floor) or random.",
    )
    spectral_train: bool = Field(
        True,
        description="SSMU-Net's spectral head: trained with the rest (true), or, started by `spectral_init: fit`, "
        "kept at the fitted logistic regression (false: the spatial path learns a correction to a fixed floor).",
    )
    spatial_gate: float = Field(
        0.0,
        description="SSMU-Net with the spectral head: initial weight of the spatial logits (0: the model starts as "
        "the linear classifier and spatial context only adds what training finds).",
    )
    linear_epochs: int = Field(
        0,
        ge=0,
        description="SSMU-Net with the spectral head: epochs that train the spectral path alone before the spatial "
        "path joins, so validation can choose the linear classifier (a checkpoint of that phase) when spatial "
        "context does not help on unseen ground; 0: both paths from the start.",
    )
    encoder_weights: Path | None = Field(
        None, description="CMT-UNet: local file of encoder weights to start from (nothing is downloaded)."
    )
    backbone: Literal["mamba", "attention"] = Field(
        "mamba", description="field_flow: sequence blocks over the tokens (Mamba, or attention to compare)."
    )
    order: Literal["hilbert", "rows", "random"] = Field(
        "hilbert", description="field_flow: order of the point tokens fed to the scan (a space-filling curve)."
    )
    n_fourier: int = Field(64, ge=4, le=1024, description="field_flow: learnable Fourier features of coordinates.")
    fourier_scale: float = Field(10.0, gt=0, description="field_flow: initial scale of the Fourier frequencies.")
    heads: int = Field(4, ge=1, le=32, description="field_flow: attention heads (cross-attention and backbone).")
    interp_widths: list[Annotated[float, Field(gt=0, le=16)]] = Field(
        [0.5, 1.0, 2.0],
        max_length=8,
        description="field_unet, field_flow: widths of the normalised convolutions of the observations given as "
        "input, in units of the field's mean observation spacing; the model predicts a correction to the middle one; "
        "empty: none (the correction is to the field's observed mean).",
    )
    bound_margin: float | None = Field(
        0.25,
        ge=0,
        description="field_unet, field_flow: outputs are bounded to each field's observed range widened by this "
        "share of its span on each side; empty: unbounded.",
    )


class FinetuneConfig(Section):
    """Fine-tuning: a new run that starts from a trained run's weights (`ssmseg train --init RUN`), with named
    parts frozen; the rest trains with this run's `optim.lr`. Unlike `--resume`, nothing else carries over."""

    init: Path | None = Field(
        None,
        description="Run folder (its best.pt, else latest.pt) or checkpoint whose matching weights start this run; "
        "every layer whose name and shape match is loaded, the rest is listed with the reason. A new classifier "
        "head when the classes differ; a different band count reinitialises the first layer (with a warning). "
        "Empty: random initialisation. `ssmseg train --init` sets it.",
    )
    freeze: list[Literal["encoder", "ssm", "spectral", "decoder", "head"]] = Field(
        [],
        description="Parts kept fixed: encoder (the CNN encoder, without its SS2D blocks), ssm (every SS2D/Mamba "
        "block), spectral (the spectral front end: ssmu_net's sinc bank and embedding, the first convolution "
        "of cmt_unet and unet), decoder, head (the classifier). Needs finetune.init.",
    )


class OptimConfig(Section):
    """The optimiser."""

    name: Literal["adamw", "sgd"] = Field("adamw", description="Optimiser.")
    lr: float = Field(1e-3, gt=0, description="Peak learning rate.")
    weight_decay: float = Field(1e-4, ge=0, description="Decoupled weight decay (not applied to norms and biases).")
    momentum: float = Field(0.9, ge=0, lt=1, description="SGD momentum.")
    betas: tuple[float, float] = Field((0.9, 0.999), description="AdamW betas.")
    grad_clip: float | None = Field(1.0, gt=0, description="Clip the global gradient norm to this; empty: off.")
    accumulate: int = Field(1, ge=1, description="Micro-batches accumulated per optimiser step.")


class ScheduleConfig(Section):
    """Learning-rate schedule, stepped once per epoch after an optional linear warmup."""

    name: Literal["cosine", "cosine_restarts", "poly", "plateau", "constant"] = Field(
        "cosine", description="Schedule after warmup."
    )
    warmup_epochs: int = Field(
        0,
        ge=0,
        description="Epochs of linear warmup; a run shorter than this warms up for train.epochs - 1 epochs (with a "
        "warning), and its config.yaml records that.",
    )
    warmup_start_factor: float = Field(0.1, gt=0, le=1, description="Warmup starts at this fraction of `optim.lr`.")
    min_lr: float = Field(1e-6, ge=0, description="Floor of cosine and polynomial schedules.")
    t0: int = Field(10, ge=1, description="cosine_restarts: epochs of the first cycle (T_0).")
    t_mult: int = Field(1, ge=1, description="cosine_restarts: cycle length multiplier (T_mult).")
    power: float = Field(0.9, gt=0, description="poly: exponent.")
    plateau_factor: float = Field(0.5, gt=0, lt=1, description="plateau: factor applied to the lr.")
    plateau_patience: int = Field(5, ge=0, description="plateau: epochs without improvement before a cut.")


class TrainConfig(Section):
    """The training loop."""

    epochs: int = Field(50, ge=1, description="Number of epochs.")
    monitor: str | None = Field(
        None,
        description="Metric for best.pt and early stopping, e.g. val/miou; empty: the task's own "
        "(segmentation val/miou, reconstruction val/psnr). Checked against the task's metrics before training.",
    )
    mode: Literal["max", "min"] | None = Field(
        None, description="Whether the monitored metric should go up or down; empty: the task's own."
    )
    patience: int | None = Field(None, ge=1, description="Early-stopping patience in epochs; empty: off.")
    min_delta: float = Field(
        0.0,
        ge=0,
        description="Smallest change of the monitored metric that counts as an improvement, for best.pt (the "
        "epoch cv and eval use) and for early stopping: a later epoch replaces the best one only if it beats it by "
        "more than this, so selection keeps the earlier (simpler) model unless a later one is better by more than "
        "validation noise. 0: any improvement. history.json records it.",
    )
    save_interval: int = Field(1, ge=1, description="Write latest.pt every this many epochs.")
    time_limit: float | None = Field(
        None,
        gt=0,
        description="Minutes of training for this command (from the first epoch): the run stops at the first epoch "
        "boundary past it, keeps best.pt and latest.pt, and history.json says stop_reason: time_limit; "
        "--resume continues it (with a new budget). Empty: no limit.",
    )
    fit_schedule_to_time_limit: bool = Field(
        False,
        description="With train.time_limit and a cosine or poly schedule: after the first epoch, lower train.epochs "
        "to the epochs that fit in the limit at that epoch's pace, so the schedule ends instead of being cut; "
        "config.yaml and history.json record the fitted count.",
    )
    extend_schedule: Literal["continue", "restart"] = Field(
        "continue",
        description="A finished cosine or poly run resumed with a larger train.epochs: continue: the added epochs "
        "keep the final learning rate; restart: they follow `schedule` anew (warmup, then the decay from "
        "optim.lr) over the added epochs. history.json's schedule record lists each stage.",
    )


class LossConfig(Section):
    """The loss: segmentation losses by name; reconstruction trains by flow matching (`tv_weight` applies)."""

    name: Literal["ce", "dice", "ce_dice", "focal"] = Field("ce_dice", description="Loss function.")
    dice_weight: float = Field(1.0, ge=0, description="ce_dice: weight of the Dice term.")
    label_smoothing: float = Field(0.0, ge=0, lt=1, description="Cross-entropy label smoothing.")
    focal_gamma: float = Field(2.0, ge=0, description="focal: focusing exponent.")
    class_weights: Literal["auto"] | list[float] | None = Field(
        None, description="Cross-entropy class weights: a list, `auto` (from class counts), or empty."
    )
    tv_weight: float = Field(
        0.0, ge=0, description="Reconstruction: total-variation penalty on the one-step clean estimate; 0: off."
    )


class AugmentConfig(Section):
    """Batched augmentation on the model's device, valid for any number of bands."""

    flips: bool = Field(True, description="Random horizontal and vertical flips.")
    rot90: bool = Field(True, description="Random 90-degree rotations.")
    scale_jitter: float = Field(0.0, ge=0, lt=1, description="Random zoom of ±this fraction; 0: off.")
    brightness: float = Field(0.0, ge=0, description="Per-band additive jitter of ±this (normalised units).")
    contrast: float = Field(0.0, ge=0, lt=1, description="Per-band multiplicative jitter of ±this fraction.")
    noise_std: float = Field(0.0, ge=0, description="Gaussian noise standard deviation (normalised units).")


class EvalConfig(Section):
    """Whole-scene sliding-window inference and the metric protocol (eval and cv scoring)."""

    window: int = Field(128, ge=8, description="Window side in pixels.")
    overlap: float = Field(0.25, ge=0, lt=1, description="Fraction of the window shared by neighbours.")
    blend: Literal["gaussian", "cosine", "mean"] = Field("gaussian", description="Weight that blends windows.")
    tta: bool = Field(False, description="Average predictions over flips and 90-degree rotations.")
    batch_size: int = Field(8, ge=1, description="Windows per forward pass.")
    save_png: bool = Field(False, description="Also write each scene's prediction as a colour PNG.")
    baselines: bool = Field(
        False,
        description="Test-split eval: also fit the classical baselines (baseline.*) on the run's training pixels and "
        "score them on the same test pixels; written under `baselines` in metrics.json.",
    )
    exclude_classes: list[str] = Field(
        [],
        description="Class names left out of the macro means (mIoU, mean F1), e.g. [clutter] as ISPRS does; they "
        "stay in OA, kappa and the per-class rows. Recorded in metrics.json's protocol.",
    )
    boundary_ignore: int = Field(
        0,
        ge=0,
        le=64,
        description="Eroded-boundary evaluation: pixels within this many pixels of a boundary between two classes "
        "in the truth are left out of every metric (within each patch for the test split); 0: off.",
    )


class ReconstructionConfig(Section):
    """Sparse-field reconstruction by flow matching (task.name: reconstruction)."""

    observed: float | tuple[float, float] = Field(
        0.1,
        description="Share of pixels observed per field in training: one fraction, or a [low, high] range drawn "
        "per field (one model for several densities); each in (0, 1).",
    )
    val_solver: Literal["euler", "midpoint", "heun", "rk4", "dopri5"] = Field(
        "euler", description="ODE solver of the validation solve and of `ssmseg eval`."
    )
    val_steps: int = Field(8, ge=1, le=1000, description="Steps of the validation solve and of `ssmseg eval`.")
    eval_fractions: list[float] = Field(
        [0.05, 0.1, 0.2], min_length=1, description="Observed fractions `ssmseg eval` reports, each in (0, 1)."
    )
    seed: int = Field(
        0, ge=0, description="Seed of the fixed observed pixels, noise and times of validation and test fields."
    )
    samples: int = Field(
        8, ge=1, le=256, description="K samples per field that `ssmseg eval` draws (one sample and their mean)."
    )
    t_zero: float = Field(
        0.0,
        ge=0,
        le=1,
        description="Share of training fields drawn at t = 0 (pure noise), where the model's estimate is the "
        "one-step (posterior-mean) reconstruction; the others draw t uniformly in [0, 1).",
    )
    field_loss: Literal["mse", "log_mse"] = Field(
        "mse",
        description="How fields of a batch are pooled in the clean-estimate loss (field_unet, field_flow): mse, the "
        "mean of each field's MSE in its own units (sparse fields, with the largest errors, dominate); log_mse, the "
        "mean of log(MSE + 1e-4), i.e. mean PSNR, so a field observed at 20% weighs as much as one at 5%.",
    )

    @model_validator(mode="after")
    def _fractions_in_range(self) -> ReconstructionConfig:
        obs = self.observed if isinstance(self.observed, tuple) else (self.observed,)
        bad = [f for f in (*obs, *self.eval_fractions) if not 0 < f < 1]
        if bad:
            raise ValueError(f"observed fractions must lie strictly between 0 and 1, got {bad}; e.g. 0.1")
        if isinstance(self.observed, tuple) and self.observed[0] > self.observed[1]:
            raise ValueError(f"observed range {list(self.observed)} is reversed; give [low, high]")
        return self


class CVConfig(Section):
    """k-fold cross-validation."""

    folds: int = Field(3, ge=2, description="Number of folds (at least 2).")
    baselines: bool = Field(
        False,
        description="Segmentation: also fit the classical baselines (baseline.*) per fold on the fold's training "
        "pixels and score them on its held-out pixels; in cv_summary beside the model.",
    )


class SweepConfig(Section):
    """`ssmseg sweep-steps`: reconstruction quality against ODE solver and step count, beside classical baselines."""

    solvers: list[Literal["euler", "midpoint", "heun", "rk4", "dopri5"]] = Field(
        ["euler", "midpoint"],
        min_length=1,
        description="ODE solvers to compare: fixed-step ones run every step count of `steps`; dopri5 (adaptive) "
        "runs once, with `atol`/`rtol`. The default is a small grid that finishes in minutes on 2 cores; "
        "`sweep-steps --full` runs every solver.",
    )
    steps: list[Annotated[int, Field(ge=1, le=10000)]] = Field(
        [1, 2, 4, 8],
        min_length=1,
        description="Step counts of the fixed-step solvers (time grid linspace(0, 1, steps + 1)); each at least 1. "
        "`sweep-steps --full`: 1 to 200.",
    )
    atol: float = Field(1e-5, gt=0, description="dopri5's absolute tolerance (normalised units).")
    rtol: float = Field(1e-5, gt=0, description="dopri5's relative tolerance.")
    reference_atol: float | None = Field(
        None,
        gt=0,
        description="Absolute tolerance of the dopri5 reference solve each solve's solver error is "
        "measured against (same starting noise); empty: `atol` when dopri5 is among the solvers (its row is the "
        "reference), else 1e-3 (a few times cheaper than 1e-5, and far below the error of a few fixed steps).",
    )
    reference_rtol: float | None = Field(
        None, gt=0, description="Relative tolerance of the dopri5 reference solve; empty: as `reference_atol`."
    )
    samples: int = Field(8, ge=1, le=1000, description="Samples K drawn per field (`--samples`).")
    baselines: list[Literal["mean", "nearest", "linear", "cubic", "rbf", "gp"]] = Field(
        ["mean", "nearest", "linear", "cubic", "rbf", "gp"],
        description="Classical baselines reconstructed from the same observed pixels; empty: none.",
    )
    observed: float | tuple[float, float] | None = Field(
        None,
        description="Share of pixels observed per test field: one fraction or a [low, high] range drawn per field; "
        "empty: the run's reconstruction.observed.",
    )
    max_fields: int | None = Field(
        16, ge=1, description="Test fields used (the first ones); empty: all. `sweep-steps --full`: 100."
    )
    batch_size: int = Field(16, ge=1, description="Fields per solve (every one of the K samples is solved apart).")
    examples: int = Field(3, ge=0, le=16, description="Fields shown in the examples panel.")

    @field_validator("observed")
    @classmethod
    def _observed_in_range(cls, value: float | tuple[float, float] | None) -> float | tuple[float, float] | None:
        obs = () if value is None else value if isinstance(value, tuple) else (value,)
        if not all(0 < f < 1 for f in obs):
            raise ValueError(f"observed fractions must lie strictly between 0 and 1, got {list(obs)}; e.g. 0.1")
        if isinstance(value, tuple) and value[0] > value[1]:
            raise ValueError(f"observed range {list(value)} is reversed; give [low, high]")
        return value


class RuntimeConfig(Section):
    """Device, precision, seeds and where outputs go."""

    device: str = Field("auto", pattern=r"^(auto|cpu|cuda(:\d+)?)$", description="auto, cpu, cuda or cuda:N.")
    precision: Literal["fp32", "bf16", "fp16", "auto"] = Field(
        "fp32",
        description="Autocast dtype; auto: bf16 (or fp16 with a grad scaler) on CUDA, fp32 on the CPU. "
        "The scan state always stays float32.",
    )
    seed: int = Field(0, ge=0, description="Seed of every random generator.")
    deterministic: bool = Field(False, description="Use deterministic algorithms (exact resume on CPU).")
    scan_backend: Literal["auto", "cuda", "cpu", "torch", "reference"] = Field(
        "auto",
        description="Selective-scan backend; auto picks per call from the tensors' device and what imports.",
    )
    threads: Literal["auto"] | int | None = Field(
        "auto",
        description="CPU threads for torch and the scan. auto: what this process may really use (its affinity mask "
        "and cgroup CPU quota, at most the physical cores) less what other work holds (the load average at the "
        "start; runtime.deterministic leaves the load out); a number: exactly that; empty: torch's default. The run "
        "header and `ssmseg doctor` say what was chosen and why.",
    )
    out_dir: Path = Field(Path("runs"), description="Folder that holds run folders.")
    name: str | None = Field(None, description="Run folder name; empty: the model name and a timestamp.")

    @field_validator("threads")
    @classmethod
    def _threads_positive(cls, v: int | str | None) -> int | str | None:
        if isinstance(v, int) and v < 1:
            raise ValueError("must be at least 1, or auto")
        return v


class Config(BaseModel):
    """The whole configuration of one command."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)
    # Dotted keys the user set (--config, --set, options), as opposed to defaults, presets and saved configs;
    # filled by config.loading.build_config, not part of the dump.
    _user_keys: frozenset[str] = PrivateAttr(default_factory=frozenset)

    def set_by_user(self, key: str) -> bool:
        """Whether the dotted ``key`` came from --config, --set or an option."""
        return key in self._user_keys

    task: TaskConfig = Field(default_factory=TaskConfig, description="What is being predicted.")
    data: DataConfig = Field(default_factory=DataConfig, description="Data source and batching.")
    prep: PrepConfig = Field(default_factory=PrepConfig, description="Dataset preparation (`ssmseg prep`).")
    model: ModelConfig = Field(default_factory=ModelConfig, description="Network and sizes.")
    finetune: FinetuneConfig = Field(
        default_factory=FinetuneConfig, description="Start from a trained run's weights; freeze parts."
    )
    optim: OptimConfig = Field(default_factory=OptimConfig, description="Optimiser.")
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig, description="Learning-rate schedule.")
    train: TrainConfig = Field(default_factory=TrainConfig, description="Training loop.")
    loss: LossConfig = Field(default_factory=LossConfig, description="Loss function.")
    augment: AugmentConfig = Field(default_factory=AugmentConfig, description="Augmentation.")
    eval: EvalConfig = Field(default_factory=EvalConfig, description="Sliding-window evaluation.")
    cv: CVConfig = Field(default_factory=CVConfig, description="Cross-validation.")
    reconstruction: ReconstructionConfig = Field(
        default_factory=ReconstructionConfig, description="Sparse-field reconstruction."
    )
    sweep: SweepConfig = Field(default_factory=SweepConfig, description="Solver and step sweep.")
    baseline: BaselineConfig = Field(
        default_factory=BaselineConfig, description="Classical baselines (`ssmseg baseline`)."
    )
    runtime: RuntimeConfig = Field(default_factory=RuntimeConfig, description="Device, precision, outputs.")

    @model_validator(mode="after")
    def _cross_field_rules(self) -> Config:
        problems = []
        if self.eval.window < self.data.crop_size // 2:
            problems.append(
                f"eval.window: {self.eval.window} is under half of data.crop_size ({self.data.crop_size}); "
                "use a window at least that large"
            )
        if abs(sum(self.prep.split.ratios) - 1.0) > 1e-6:
            problems.append(
                f"prep.split.ratios: {list(self.prep.split.ratios)} sum to {sum(self.prep.split.ratios):g}; "
                "make train, val and test shares sum to 1"
            )
        empty = [name for name, share, needed in zip(("train", "val", "test"), self.prep.split.ratios,
                                                     (True, True, not self.prep.split.test), strict=True)
                 if needed and share <= 0]  # fmt: skip
        if empty:
            problems.append(
                f"prep.split.ratios: {list(self.prep.split.ratios)} leaves the {' and '.join(empty)} "
                f"split{'s' if len(empty) > 1 else ''} empty; give train, val and test each a share above 0 "
                "(test may be 0 when prep.split.test names held-out files), for example [0.6, 0.2, 0.2]"
            )
        if self.prep.overlap >= 1:
            whole = float(self.prep.overlap).is_integer()
            px = f"prep.overlap_px: {self.prep.overlap:g}" if whole else "prep.overlap_px"
            problems.append(f"prep.overlap: {self.prep.overlap:g} is not a fraction of the crop in [0, 1); give a "
                            f"fraction (0.25: a quarter of the crop), or pixels with {px}")  # fmt: skip
        elif self.prep.overlap_px is not None and self.prep.overlap > 0:
            problems.append(f"prep.overlap_px: {self.prep.overlap_px} and prep.overlap: {self.prep.overlap:g} are "
                            "both set; keep one (set prep.overlap: 0 to give pixels)")  # fmt: skip
        if self.prep.overlap_px is not None and self.prep.overlap_px >= self.data.crop_size:
            problems.append(f"prep.overlap_px: {self.prep.overlap_px} px must be smaller than data.crop_size "
                            f"({self.data.crop_size})")  # fmt: skip
        if self.finetune.freeze and self.finetune.init is None:
            problems.append(
                f"finetune.freeze: {self.finetune.freeze} would keep random weights fixed; give the trained run to "
                "start from (ssmseg train --init RUN) or leave finetune.freeze empty"
            )
        if self.runtime.precision == "fp16" and self.runtime.device == "cpu":
            problems.append("runtime.precision: fp16 needs CUDA; use bf16 or fp32 on the CPU")
        if problems:
            # One ValueError carrying every rule; loading.py splits it back into lines.
            raise ValueError("\n".join(problems))
        return self
