"""Patch arrays in ``.npy`` files, written and read patch by patch with plain file I/O.

Memory-mapping a multi-GB array while filling it keeps every touched page resident; sequential writes
and positional reads keep prep's memory bounded by one patch, whatever the scene size. The files are
ordinary ``.npy`` arrays that ``np.load(..., mmap_mode="r")`` opens for training.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from numpy.lib import format as npy_format


class NpyWriter:
    """Append patches of one shape to a new ``.npy`` file of ``count`` patches."""

    def __init__(self, path: Path, dtype: str | np.dtype, count: int, patch_shape: tuple[int, ...]) -> None:
        self.dtype = np.dtype(dtype)
        self.path = Path(path)
        self.f = open(self.path, "wb")  # noqa: SIM115 - closed in close()
        header = {
            "descr": npy_format.dtype_to_descr(self.dtype),
            "fortran_order": False,
            "shape": (count, *patch_shape),
        }
        npy_format.write_array_header_1_0(self.f, header)
        self.offset = self.f.tell()
        self.patch_bytes = int(np.prod(patch_shape)) * self.dtype.itemsize

    def append(self, patch: np.ndarray) -> None:
        self.f.write(np.ascontiguousarray(patch, dtype=self.dtype).tobytes())

    def close(self) -> None:
        self.f.close()


class NpyPatches:
    """Random access to patch i of a ``.npy`` file by positional reads (no mapping)."""

    def __init__(self, path: Path) -> None:
        with open(path, "rb") as f:
            version = npy_format.read_magic(f)
            read_header = npy_format.read_array_header_1_0 if version == (1, 0) else npy_format.read_array_header_2_0
            shape, fortran, dtype = read_header(f)
            self.offset = f.tell()
        if fortran:
            raise ValueError(f"{path} is Fortran-ordered")
        self.shape, self.dtype = shape, np.dtype(dtype)
        self.patch_shape = shape[1:]
        self.patch_bytes = int(np.prod(self.patch_shape)) * self.dtype.itemsize
        self.fd = os.open(path, os.O_RDWR)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, i: int) -> np.ndarray:
        return self.read(i)

    def __setitem__(self, i: int, patch: np.ndarray) -> None:
        self.write(i, patch)

    def read(self, i: int) -> np.ndarray:
        raw = os.pread(self.fd, self.patch_bytes, self.offset + i * self.patch_bytes)
        return np.frombuffer(raw, self.dtype).reshape(self.patch_shape).copy()

    def write(self, i: int, patch: np.ndarray) -> None:
        os.pwrite(self.fd, np.ascontiguousarray(patch, dtype=self.dtype).tobytes(), self.offset + i * self.patch_bytes)

    def close(self) -> None:
        os.close(self.fd)
