"""The one config schema: every command validates a ``Config`` built from defaults, a preset, a YAML file
and ``--set`` overrides (see ``loading.py``). Every field has a description; ``docs/config.md`` is
generated from them."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, model_validator

from ssmseg.config.sections.base import Section
from ssmseg.config.sections.data import DataConfig, FieldsPrepConfig, PrepConfig, SplitConfig, TaskConfig
from ssmseg.config.sections.eval import BaselineConfig, CVConfig, EvalConfig
from ssmseg.config.sections.model import FinetuneConfig, ModelConfig
from ssmseg.config.sections.reconstruction import ReconstructionConfig, SweepConfig
from ssmseg.config.sections.runtime import RuntimeConfig
from ssmseg.config.sections.train import AugmentConfig, LossConfig, OptimConfig, ScheduleConfig, TrainConfig

__all__ = [
    "AugmentConfig",
    "BaselineConfig",
    "CVConfig",
    "Config",
    "DataConfig",
    "EvalConfig",
    "FieldsPrepConfig",
    "FinetuneConfig",
    "LossConfig",
    "ModelConfig",
    "OptimConfig",
    "PrepConfig",
    "ReconstructionConfig",
    "RuntimeConfig",
    "ScheduleConfig",
    "Section",
    "SplitConfig",
    "SweepConfig",
    "TaskConfig",
    "TrainConfig",
]


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
        empty = [
            name
            for name, share, needed in zip(
                ("train", "val", "test"), self.prep.split.ratios, (True, True, not self.prep.split.test), strict=True
            )
            if needed and share <= 0
        ]
        if empty:
            problems.append(
                f"prep.split.ratios: {list(self.prep.split.ratios)} leaves the {' and '.join(empty)} "
                f"split{'s' if len(empty) > 1 else ''} empty; give train, val and test each a share above 0 "
                "(test may be 0 when prep.split.test names held-out files), for example [0.6, 0.2, 0.2]"
            )
        if self.prep.overlap >= 1:
            whole = float(self.prep.overlap).is_integer()
            px = f"prep.overlap_px: {self.prep.overlap:g}" if whole else "prep.overlap_px"
            problems.append(
                f"prep.overlap: {self.prep.overlap:g} is not a fraction of the crop in [0, 1); give a "
                f"fraction (0.25: a quarter of the crop), or pixels with {px}"
            )
        elif self.prep.overlap_px is not None and self.prep.overlap > 0:
            problems.append(
                f"prep.overlap_px: {self.prep.overlap_px} and prep.overlap: {self.prep.overlap:g} are "
                "both set; keep one (set prep.overlap: 0 to give pixels)"
            )
        if self.prep.overlap_px is not None and self.prep.overlap_px >= self.data.crop_size:
            problems.append(
                f"prep.overlap_px: {self.prep.overlap_px} px must be smaller than data.crop_size "
                f"({self.data.crop_size})"
            )
        if self.finetune.freeze and self.finetune.init is None:
            problems.append(
                f"finetune.freeze: {self.finetune.freeze} would keep random weights fixed; give the trained run to "
                "start from (ssmseg train --init RUN) or leave finetune.freeze empty"
            )
        if self.train.select == "last" and (self.train.patience is not None or self.train.min_delta > 0):
            key, fix = (
                ("train.patience", "leave train.patience empty")
                if self.train.patience is not None
                else ("train.min_delta", "set train.min_delta: 0")
            )
            problems.append(
                f"{key} chooses the best epoch, but train.select: last keeps the last one; {fix} or use "
                "train.select: best"
            )
        if self.runtime.precision == "fp16" and self.runtime.device == "cpu":
            problems.append("runtime.precision: fp16 needs CUDA; use bf16 or fp32 on the CPU")
        if problems:
            # One ValueError carrying every rule; loading.py splits it back into lines.
            raise ValueError("\n".join(problems))
        return self
