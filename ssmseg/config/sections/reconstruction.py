"""The reconstruction task's sections: ``reconstruction`` and ``sweep`` (``ssmseg sweep-steps``)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from ssmseg.config.sections.base import Section


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
