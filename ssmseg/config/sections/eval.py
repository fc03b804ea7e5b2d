"""The scoring sections: ``eval``, ``cv`` and ``baseline``."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from ssmseg.config.sections.base import Section


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
        description="Also fit the classical baselines (baseline.*) on the run's training pixels and score them on "
        "the same pixels as the model: the test split's, or with --input the masks' (needs --mask); written under "
        "`baselines` in metrics.json (and per scene).",
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


class CVConfig(Section):
    """k-fold cross-validation."""

    folds: int = Field(3, ge=2, description="Number of folds (at least 2).")
    baselines: bool = Field(
        False,
        description="Segmentation: also fit the classical baselines (baseline.*) per fold on the fold's training "
        "pixels and score them on its held-out pixels; in cv_summary beside the model.",
    )
