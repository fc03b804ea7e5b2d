"""Classical reconstructions of a field from its observed pixels: the bars a learned model must beat.

    mean      every unobserved pixel gets the mean of the observed values (per channel)
    nearest   the nearest observed pixel's value (scipy griddata, "nearest")
    linear    piecewise-linear on the Delaunay triangulation (griddata "linear")
    cubic     Clough-Tocher piecewise cubic (griddata "cubic")
    rbf       thin-plate spline with a linear polynomial term (scipy RBFInterpolator, no smoothing)
    gp        Gaussian process regression (scikit-learn): a least-squares plane as the mean function and a
              Matern(nu=1.5) * constant + white-noise kernel on the residuals, hyperparameters fitted per
              field and channel by maximum likelihood

linear and cubic fill pixels outside the observed pixels' convex hull with the nearest observed value.
Every method works per channel on pixel coordinates, and observed pixels always keep their values.

Cost caps (stated, and what they change):
- gp: hyperparameters are fitted on at most ``GP_FIT_POINTS`` observed pixels (a fixed random subset), one
  L-BFGS-B start of at most ``GP_FIT_ITERATIONS`` iterations; the fitted GP then conditions on every
  observed pixel, up to ``GP_MAX_POINTS`` (beyond that a fixed random subset: an O(n^3) solve).
- rbf: an exact global solve up to ``RBF_GLOBAL_POINTS`` observed pixels (20% of 96x96 = 1843 fits);
  beyond that the RBF uses the ``RBF_NEIGHBORS`` nearest observed pixels for each prediction.
Fewer than 3 observed pixels, or all on one line (no triangulation or plane), fall back to nearest.
"""

from __future__ import annotations

import warnings

import numpy as np

from ssmseg.errors import ConfigError, InputError

BASELINES = ("mean", "nearest", "linear", "cubic", "rbf", "gp")
GP_FIT_POINTS = 200
GP_FIT_ITERATIONS = 40
GP_MAX_POINTS = 2500
RBF_GLOBAL_POINTS = 2500
RBF_NEIGHBORS = 64
SEED = 0


def predict(name: str, values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The full field reconstructed by baseline ``name`` from ``values`` at pixels where ``mask`` is True.

    values (C, H, W) or (H, W) (only observed pixels are read); mask (H, W) bool. Returns float64 of
    values' shape, equal to ``values`` at observed pixels."""
    if name not in BASELINES:
        raise ConfigError(f"unknown baseline '{name}'; choose one of {', '.join(BASELINES)}")
    values = np.asarray(values)
    mask = np.asarray(mask, dtype=bool)
    field = values[None] if values.ndim == 2 else values
    if field.ndim != 3 or mask.shape != field.shape[1:]:
        raise InputError(
            f"baseline input: values {values.shape} and mask {mask.shape} must be (C, H, W) or (H, W) and (H, W)"
        )
    if not mask.any():
        raise InputError("baseline input: no observed pixel; a reconstruction needs at least one")
    h, w = mask.shape
    points = np.argwhere(mask).astype(np.float64)  # (n, 2) row, col
    observed = field[:, mask].T.astype(np.float64)  # (n, C)
    query = np.argwhere(~mask).astype(np.float64)
    out = field.astype(np.float64).copy()
    if len(query):
        out[:, ~mask] = _fill(name, points, observed, query, (h, w)).T
    return out[0] if values.ndim == 2 else out


def _fill(name: str, points: np.ndarray, observed: np.ndarray, query: np.ndarray, shape: tuple) -> np.ndarray:
    """(m, C) predictions at the query pixels."""
    from scipy.interpolate import griddata

    if name == "mean":
        return np.broadcast_to(observed.mean(0), (len(query), observed.shape[1])).copy()
    if name == "nearest" or len(points) < 3 or _collinear(points):
        return griddata(points, observed, query, method="nearest")
    if name in ("linear", "cubic"):
        out = griddata(points, observed, query, method=name)
        outside = np.isnan(out).any(1)
        if outside.any():
            out[outside] = griddata(points, observed, query[outside], method="nearest")
        return out
    scale = float(max(shape))  # coordinates in [0, 1]: kernels and tolerances independent of the size
    if name == "rbf":
        from scipy.interpolate import RBFInterpolator

        neighbors = None if len(points) <= RBF_GLOBAL_POINTS else RBF_NEIGHBORS
        rbf = RBFInterpolator(points / scale, observed, kernel="thin_plate_spline", degree=1, neighbors=neighbors)
        return rbf(query / scale)
    return np.stack([_gp(points / scale, observed[:, c], query / scale) for c in range(observed.shape[1])], 1)


def _collinear(points: np.ndarray) -> bool:
    centred = points - points.mean(0)
    return bool(np.linalg.matrix_rank(centred, tol=1e-9) < 2)


def _gp(points: np.ndarray, y: np.ndarray, query: np.ndarray) -> np.ndarray:
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.gaussian_process import GaussianProcessRegressor
    from sklearn.gaussian_process.kernels import ConstantKernel, Matern, WhiteKernel

    design = np.column_stack([np.ones(len(points)), points])
    coef, *_ = np.linalg.lstsq(design, y, rcond=None)  # the plane: the GP's mean function
    resid = y - design @ coef
    trend = np.column_stack([np.ones(len(query)), query]) @ coef
    spread = resid.std()
    if spread <= 1e-12 * max(1.0, np.abs(y).max()):  # residuals all zero: the plane is the answer
        return trend
    kernel = ConstantKernel(1.0, (1e-3, 1e3)) * Matern(0.1, (1e-3, 10.0), nu=1.5) + WhiteKernel(1e-4, (1e-8, 1.0))
    rng = np.random.default_rng(SEED)
    fit_idx = rng.choice(len(points), min(len(points), GP_FIT_POINTS), replace=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        gp = GaussianProcessRegressor(kernel, optimizer=_lbfgsb, random_state=SEED)
        gp.fit(points[fit_idx], resid[fit_idx] / spread)
    if len(points) > len(fit_idx):
        use = np.arange(len(points)) if len(points) <= GP_MAX_POINTS else rng.choice(len(points), GP_MAX_POINTS, False)
        gp = GaussianProcessRegressor(gp.kernel_, optimizer=None).fit(points[use], resid[use] / spread)
    return trend + spread * gp.predict(query)


def _lbfgsb(objective, theta0, bounds):  # sklearn's default optimizer with an iteration cap
    from scipy.optimize import minimize

    result = minimize(
        objective, theta0, method="L-BFGS-B", jac=True, bounds=bounds, options={"maxiter": GP_FIT_ITERATIONS}
    )
    return result.x, result.fun
