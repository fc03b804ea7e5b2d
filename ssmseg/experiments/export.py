"""``ssmseg export``: a trained segmentation model as one ONNX or TorchScript file for deployment.

The model is traced on CPU. Traced, ``selective_scan`` runs whatever the backend as ``ssm/traced.py``: a
two-level chunked scan written as TorchScript loops whose trip counts come from the input, so the file takes
any batch and image size. It runs without ssmseg (onnxruntime, or ``torch.jit.load``) and carries in its
metadata what a user needs to feed it (band order, per-band normalisation, nodata, classes, palette). The
fused CPU kernel (a ctypes C library) and mamba-ssm's CUDA kernel cannot be traced; neither is needed.

Before anything is written the export is run beside PyTorch on fixed random inputs of several sizes; its
logits must match within ``TOLERANCE`` (relative to the largest logit, at least absolute). A model whose traced
graph does not generalise over the image size (its attention bakes a sequence length) is exported again for
its training crop size, and the metadata says so.
"""

from __future__ import annotations

import io
import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ssmseg import __version__, outputs
from ssmseg.engine import checkpoint as ckpt
from ssmseg.errors import InputError, SsmsegError, UsageError
from ssmseg.experiments.exported import FILES, META_KEY, OnnxRunner, TorchScriptRunner, load_meta
from ssmseg.progress import info

TOLERANCE = 1e-4  # max |exported - PyTorch| / max(1, max |PyTorch|) over every logit of every checked input
FORMATS = ("onnx", "torchscript")
OPSET = 17
# Checkpoint metadata copied into the file: everything eval needs, no optimiser state, no weights twice.
KEEP = (
    "task",
    "model_name",
    "in_channels",
    "num_classes",
    "classes",
    "palette",
    "ignore_index",
    "labels",
    "band_names",
    "nodata",
    "normalization",
    "class_counts_train",
    "dataset",
    "fold",
    "config",
    "versions",
    "epoch",
    "best",
    "finetune",
    "selected_on",
)


class ExportError(SsmsegError):
    """The model could not be traced into the format (exit 1); nothing is written."""


class ExportMismatchError(ExportError):
    """The exported model's output differs from PyTorch's beyond the tolerance (exit 1); nothing is written."""


@dataclass
class ExportResult:
    out: Path
    file: Path
    meta: dict[str, Any]


def check_sizes(state: dict[str, Any]) -> list[tuple[int, int]]:
    """Input sizes the export is checked at: the training crop, an odd rectangle and the eval window."""
    cfg = state.get("config", {})
    crop = int(cfg.get("data", {}).get("crop_size", 64))
    window = int(cfg.get("eval", {}).get("window", crop))
    sizes = [(crop, crop), (max(8, crop // 2 + 3), crop + 5)]
    return sizes + ([(window, window)] if window not in (crop, crop + 5) else [])


def _trace(model: torch.nn.Module, fmt: str, sample: torch.Tensor, path: Path, dynamic: bool) -> None:
    fastpath = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)  # its fused attention op has no ONNX form
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer warnings about shape checks turned constants
            buffer = io.BytesIO()  # serialised in memory: a full disk is a Python OSError, not a C++ abort
            if fmt == "torchscript":
                torch.jit.save(torch.jit.trace(model, (sample,), check_trace=False), buffer)
            else:
                axes = {0: "batch", 2: "height", 3: "width"} if dynamic else {0: "batch"}
                torch.onnx.export(
                    model,
                    (sample,),
                    buffer,
                    dynamo=False,
                    opset_version=OPSET,
                    input_names=["image"],
                    output_names=["logits"],
                    dynamic_axes={"image": axes, "logits": axes},
                )
    except Exception as exc:
        raise ExportError(
            f"{type(model).__name__} cannot be exported to {fmt}: {type(exc).__name__}: "
            f"{str(exc).splitlines()[0][:300]}"
        ) from exc
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)
    outputs.write_bytes(path, buffer.getvalue())


def _attach(path: Path, fmt: str, meta: dict[str, Any]) -> None:
    """Write the metadata into the file: ONNX metadata_props, or a TorchScript extra file."""
    text = json.dumps(meta, default=str)
    if fmt == "torchscript":
        module, buffer = torch.jit.load(str(path)), io.BytesIO()
        torch.jit.save(module, buffer, _extra_files={META_KEY: text})
        outputs.write_bytes(path, buffer.getvalue())
        return
    import onnx

    proto = onnx.load(str(path))
    fields = {
        META_KEY: text,
        "normalization": json.dumps(meta["normalization"]),
        "classes": json.dumps(meta["classes"]),
        "band_names": json.dumps(meta.get("band_names")),
    }
    for key, value in fields.items():
        proto.metadata_props.add(key=key, value=value)
    proto.doc_string = f"ssmseg {meta['model_name']}: image (N, {meta['in_channels']}, H, W) normalised per band"
    outputs.write_bytes(path, proto.SerializeToString())


def _compare(model: torch.nn.Module, runner: Any, sizes: list[tuple[int, int]], bands: int) -> dict[str, Any]:
    """Largest difference of the exported model from PyTorch on fixed random inputs, per size."""
    gen = torch.Generator().manual_seed(0)
    worst, agree, total, scale = 0.0, 0, 0, 1.0
    for h, w in sizes:
        x = torch.randn(2, bands, h, w, generator=gen)  # normalised inputs are about N(0, 1)
        with torch.no_grad():
            ref = model(x).float().numpy()
        got = runner(x.numpy())
        if got.shape != ref.shape:
            raise ExportMismatchError(f"exported output {got.shape} for input {(2, bands, h, w)}, PyTorch {ref.shape}")
        worst = max(worst, float(np.abs(got - ref).max()))
        scale = max(scale, float(np.abs(ref).max()))
        agree += int((got.argmax(1) == ref.argmax(1)).sum())
        total += ref.shape[0] * h * w
    return {
        "sizes": [list(s) for s in sizes],
        "max_abs_diff": worst,
        "max_abs_logit": scale,
        "relative_diff": worst / scale,
        "tolerance": TOLERANCE,
        "argmax_agreement": agree / total,
    }


def _runner(path: Path, fmt: str) -> Any:
    return OnnxRunner(path) if fmt == "onnx" else TorchScriptRunner(path)


def export_model(source: Path, fmt: str, out: Path | None = None) -> ExportResult:
    """Export the checkpoint (or run folder) ``source`` as ``fmt`` into ``out`` (default: the run's
    ``export/<fmt>``, then ``-2``, ...), checked against PyTorch before it is published."""
    from ssmseg.tasks import life_of

    if fmt not in FORMATS:
        raise UsageError(f"--format {fmt}: choose {' or '.join(FORMATS)}")
    if fmt == "onnx":
        _need_onnx()
    state = ckpt.load(source)
    model = life_of(state).export_model(state, source)  # a task that cannot be exported says why
    path = ckpt.resolve(source)
    run = path.parent.parent if path.parent.name == "checkpoints" else path.parent
    key = {"checkpoint": str(path.resolve()), "epoch": state.get("epoch"), "format": fmt}
    out = Path(out) if out is not None else outputs.pick_name(run / "export", fmt, "export", key)
    if out.exists():
        outputs.claim(out, "export", key)
    with outputs.staged(out) as tmp:
        file = tmp / FILES[fmt]
        sizes, bands = check_sizes(state), int(state["in_channels"])
        crop = sizes[0]
        sample = torch.randn(2, bands, *crop, generator=torch.Generator().manual_seed(1))
        info(f"exporting to {fmt}: tracing the model, then checking it against PyTorch at {len(sizes)} sizes")
        _trace(model, fmt, sample, file, dynamic=True)
        input_size, why = None, None
        try:
            check = _compare(model, _runner(file, fmt), sizes, bands)
            if not check["relative_diff"] <= TOLERANCE:
                why = f"differs by {check['max_abs_diff']:.3g} at sizes other than the traced one"
        except Exception as exc:  # any failure of a runtime at another size
            why = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
        if why is not None:  # a graph that does not generalise over the image size: export for the crop size
            _trace(model, fmt, sample, file, dynamic=False)
            try:
                check, input_size = _compare(model, _runner(file, fmt), [crop], bands), list(crop)
            except Exception as exc:
                raise ExportError(
                    f"the {fmt} export of {type(model).__name__} does not run ({type(exc).__name__}: "
                    f"{str(exc).splitlines()[0][:300]}); nothing was written"
                ) from exc
            check["any_size_failed"] = why
        if not check["relative_diff"] <= TOLERANCE:
            raise ExportMismatchError(
                f"the {fmt} export differs from PyTorch by {check['max_abs_diff']:.3g} (largest logit "
                f"{check['max_abs_logit']:.3g}; tolerance {TOLERANCE:g} relative); nothing was written"
            )
        meta = {k: state[k] for k in KEEP if k in state}
        meta["exported"] = {
            "format": fmt,
            "file": FILES[fmt],
            "from": str(path),
            "ssmseg": __version__,
            "torch": str(torch.__version__),
            "opset": OPSET if fmt == "onnx" else None,
            "input": {
                "name": "image",
                "layout": "NCHW float32",
                "size": input_size or "any",
                "normalised": "(raw - offset) / scale per band, nodata pixels 0",
            },
            "output": {"name": "logits", "layout": "NCHW float32 (classes on axis 1)"},
            "check": check,
            "scan": "two-level chunked loops (ssm/traced.py)",
        }
        _attach(file, fmt, meta)
        load_meta(file)  # what eval will read back
        (tmp / "export.json").write_text(json.dumps(meta, indent=1, default=str), encoding="utf-8")
        published = outputs.publish(tmp, out, "export", key, about=f"ssmseg export of {path}", force=True)
    return ExportResult(published, published / FILES[fmt], meta)


def _need_onnx() -> None:
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        raise InputError(
            "ONNX export needs onnx and onnxruntime: pip install 'ssmseg[export]' (or use "
            "--format torchscript, which needs only torch)"
        ) from None
