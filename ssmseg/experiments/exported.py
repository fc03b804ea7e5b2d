"""Exported models (``ssmseg export``) read back: their metadata, a runner per format, and ``ssmseg eval`` of an
exported file (the same test-split and whole-scene evaluation as a checkpoint, with the file's own runtime).

The files themselves need none of this: an ONNX export runs with onnxruntime alone, a TorchScript export with
``torch.jit.load``; the metadata (``ssmseg`` key) says how to normalise the input and what the classes are.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ssmseg.config import Config
from ssmseg.errors import InputError
from ssmseg.tasks.results import EvalResult

META_KEY = "ssmseg"
FILES = {"onnx": "model.onnx", "torchscript": "model.torchscript.pt"}


def model_file(path: Path) -> Path | None:
    """The exported model ``path`` names (the file, or an export folder holding one), else None."""
    path = Path(path)
    if path.is_dir():
        found = [path / name for name in FILES.values() if (path / name).is_file()]
        return found[0] if found else None
    if path.suffix == ".onnx":
        return path
    if path.is_file() and zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            if any(n.endswith(f"/extra/{META_KEY}") for n in z.namelist()):
                return path
    return None


def _format(path: Path) -> str:
    return "onnx" if path.suffix == ".onnx" else "torchscript"


def _onnxruntime() -> Any:
    try:
        import onnxruntime
    except ImportError:
        raise InputError("running an ONNX export needs onnxruntime: pip install 'ssmseg[export]'") from None
    return onnxruntime


def load_meta(path: Path) -> dict[str, Any]:
    """The metadata an export carries (what ``ssmseg export`` wrote from the checkpoint)."""
    path = Path(path)
    try:
        if _format(path) == "onnx":
            session = _onnxruntime().InferenceSession(str(path), providers=["CPUExecutionProvider"])
            text = session.get_modelmeta().custom_metadata_map.get(META_KEY)
        else:
            extra = {META_KEY: ""}
            torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
            text = extra[META_KEY]
    except InputError:
        raise
    except Exception as exc:
        raise InputError(f"'{path}' is not a readable exported model ({type(exc).__name__}); export it again") from exc
    if not text:
        raise InputError(f"'{path}' carries no ssmseg metadata; give a file written by ssmseg export")
    return json.loads(text)


class OnnxRunner:
    """numpy (N, C, H, W) float32 -> logits, through onnxruntime on the CPU."""

    def __init__(self, path: Path) -> None:
        ort = _onnxruntime()
        options = ort.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.session.run(None, {"image": np.ascontiguousarray(x, dtype=np.float32)})[0]


class TorchScriptRunner:
    """numpy (N, C, H, W) float32 -> logits, through the TorchScript module."""

    def __init__(self, path: Path, device: torch.device | str = "cpu") -> None:
        self.device = torch.device(device)
        self.module = torch.jit.load(str(path), map_location=self.device).eval()

    def __call__(self, x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return (
                self.module(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(self.device)).cpu().numpy()
            )


class ExportedModel(nn.Module):
    """An exported file as a module for eval's inference: tensors in, logits out. A fixed-size export gets
    smaller inputs reflect-padded to its size and the logits cropped back."""

    def __init__(self, path: Path, meta: dict[str, Any], device: torch.device) -> None:
        super().__init__()
        fmt = meta["exported"]["format"]
        self.runner = OnnxRunner(path) if fmt == "onnx" else TorchScriptRunner(path, device)
        size = meta["exported"]["input"]["size"]
        self.size = None if size == "any" else tuple(size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        if self.size is not None:
            if h > self.size[0] or w > self.size[1]:
                raise InputError(
                    f"this export takes inputs of at most {self.size[0]}x{self.size[1]} pixels, got "
                    f"{h}x{w}; set eval.window to {self.size[0]}"
                )
            pad = (0, self.size[1] - w, 0, self.size[0] - h)
            x = nn.functional.pad(x, pad, mode="reflect") if any(pad) else x
        y = torch.from_numpy(self.runner(x.detach().float().cpu().numpy())).to(x.device)
        return y[..., :h, :w]


def load_state(path: Path) -> dict[str, Any]:
    """A checkpoint-like state for eval: the export's metadata, with the file it came from."""
    file = model_file(path)
    if file is None:
        raise InputError(f"'{path}' is not an exported model (model.onnx or model.torchscript.pt)")
    meta = load_meta(file)
    return {**meta, "exported": {**meta["exported"], "path": str(file)}}


def eval_parent(file: Path) -> Path:
    """Where an export's evaluations go by default: its run's ``eval/`` (RUN/export/<fmt>/model.* -> RUN)."""
    folder = Path(file).parent
    return (folder.parent.parent if folder.parent.name == "export" else folder) / "eval"


def evaluate_exported(
    life: Any,
    cfg: Config,
    state: dict[str, Any],
    device: torch.device,
    out: Path,
    inputs: list[Path],
    masks: list[Path],
    dataset: Path | None,
) -> EvalResult:
    """``ssmseg eval`` of an export: the task's evaluation (``TaskLife.evaluate``) with the exported runtime as
    the model."""
    model = ExportedModel(Path(state["exported"]["path"]), state, device)
    size = model.size
    if size is not None and cfg.eval.window != size[0]:  # every window the scene is cut into has this size
        cfg = cfg.model_copy(update={"eval": cfg.eval.model_copy(update={"window": size[0]})})
    return life.evaluate(cfg, state, device, out, inputs, masks, dataset, model=model)
