"""Rasters written through rasterio (GDAL) that fail loudly.

GDAL reports a write it could not finish (a full disk, a file-size limit) only as text on stderr, at a block
flush or at close, and leaves a truncated GeoTIFF behind: measured with GDAL 3.10 under a file-size limit,
``rasterio.open(..., "w")``, ``write`` and ``close`` all returned normally. So every GeoTIFF ssmseg writes is
read back whole after it is closed, and one that cannot be read is removed and raised as the ``OSError`` the
write should have raised, naming its path (``outputs.io_error`` turns it into one line).

    with geotiff.written(path), rasterio.open(path, "w", **profile) as dst:
        dst.write(...)
"""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

FULL_BELOW = 1 << 20  # bytes free under which a failed write is put down to a full disk


def failure(path: Path, cause: BaseException | None = None) -> OSError:
    """The OSError of a raster that could not be written: ENOSPC when its disk is (nearly) full, else EIO."""
    try:
        full = shutil.disk_usage(Path(path).parent).free < FULL_BELOW
    except OSError:
        full = False
    code = getattr(cause, "errno", None) or (errno.ENOSPC if full else errno.EIO)
    return OSError(code, os.strerror(code), str(path))


def check(path: Path) -> None:
    """Read every block of every band of ``path`` back; raise ``failure`` when GDAL cannot."""
    import rasterio
    from rasterio.errors import RasterioError

    try:
        with rasterio.open(path) as ds:
            for _, window in ds.block_windows(1):
                ds.read(window=window)
    except (RasterioError, OSError) as exc:
        raise failure(path, exc if isinstance(exc, OSError) and exc.errno else None) from None


@contextmanager
def written(path: Path) -> Iterator[None]:
    """Around the writing of the raster ``path`` (open, write, close inside the block): afterwards it is read back
    whole; a write that failed, inside the block or silently, leaves no file at ``path`` and raises ``failure``.
    Any other exception also removes the unfinished file."""
    from rasterio.errors import RasterioError

    try:
        from rasterio._err import CPLE_BaseError  # what some GDAL calls raise: not an OSError
    except ImportError:  # pragma: no cover - another rasterio layout
        CPLE_BaseError = RasterioError
    path = Path(path)
    try:
        yield
        check(path)
    except (RasterioError, CPLE_BaseError, OSError) as exc:
        path.unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.errno and not isinstance(exc, RasterioError):
            exc.filename = str(path)
            raise
        raise failure(path) from None
    except BaseException:
        path.unlink(missing_ok=True)
        raise
