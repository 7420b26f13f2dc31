"""The canonical, framework-neutral weight layout and its ``.safetensors`` file (docs/parity.md).

An MLP of ``n`` dense layers is a flat dict of float32 numpy arrays::

    dense_0.kernel  (in, h1)     dense_0.bias  (h1,)
    dense_1.kernel  (h1, h2)     dense_1.bias  (h2,)
    ...
    dense_{n-1}.kernel (h, out)  dense_{n-1}.bias (out,)

Kernels are (in, out), as Flax stores them; torch's ``Linear.weight`` is (out, in) and is
transposed on the way in and out. The file's metadata records the model's settings as JSON
under ``"dsm_config"`` so a file alone is enough to rebuild the model and sample from it.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from dsm_common.files import atomic_path
from dsm_common.validation import DSMInputError

__all__ = ["FORMAT", "check_canonical", "check_widths", "network_layout", "network_options", "stored_sde", "save_canonical",
           "load_canonical", "layer_dims"]

FORMAT = "dsm-canonical-mlp-v1"


def layer_dims(params: Mapping[str, np.ndarray]) -> list[int]:
    """Widths ``[in, h1, …, out]`` of a checked canonical MLP."""
    n = len(params) // 2
    return [params["dense_0.kernel"].shape[0]] + [params[f"dense_{i}.kernel"].shape[1] for i in range(n)]


def check_canonical(params: Mapping[str, Any], source: str = "weights") -> dict[str, np.ndarray]:
    """Check names, chained shapes and finiteness of a canonical MLP; return float32 numpy copies.

    Raises:
        DSMInputError: a missing or extra tensor, a kernel that is not 2-D, a bias whose length
            is not its kernel's output width, widths that do not chain, or a NaN/infinite value;
            the message names the tensor and the shapes found.
    """
    # Layers from the highest index named (not len // 2), so a missing tensor is reported as missing.
    layers = [int(k[6:].split(".")[0]) for k in params if k.startswith("dense_") and k[6:].split(".")[0].isdigit()]
    n = max(layers) + 1 if layers else 0
    expected = {f"dense_{i}.{k}" for i in range(n) for k in ("kernel", "bias")}
    if set(params) != expected or n == 0:
        missing = sorted(expected - set(params))
        extra = sorted(set(params) - expected)
        raise DSMInputError(
            f"{source}: not a canonical MLP layout (missing {missing or 'none'}, unexpected {extra or 'none'})"
        )
    out: dict[str, np.ndarray] = {}
    prev = None
    for i in range(n):
        k = np.asarray(params[f"dense_{i}.kernel"], dtype=np.float32)
        b = np.asarray(params[f"dense_{i}.bias"], dtype=np.float32)
        if k.ndim != 2:
            raise DSMInputError(f"{source}: dense_{i}.kernel must be 2-D (in, out), got shape {k.shape}")
        if b.shape != (k.shape[1],):
            raise DSMInputError(
                f"{source}: dense_{i}.bias has shape {b.shape}, expected ({k.shape[1]},) to match kernel {k.shape}"
            )
        if prev is not None and k.shape[0] != prev:
            raise DSMInputError(
                f"{source}: dense_{i}.kernel has {k.shape[0]} inputs but dense_{i - 1} has {prev} outputs"
            )
        for name, arr in ((f"dense_{i}.kernel", k), (f"dense_{i}.bias", b)):
            if not np.isfinite(arr).all():
                raise DSMInputError(f"{source}: {name} holds {int(np.sum(~np.isfinite(arr)))} values that are not "
                                    "finite (NaN or ±inf); these weights cannot score anything")
        prev = k.shape[1]
        out[f"dense_{i}.kernel"], out[f"dense_{i}.bias"] = np.ascontiguousarray(k), b
    return out


def check_widths(params: Mapping[str, np.ndarray], expected: list[int]) -> None:
    """Raise DSMInputError unless checked canonical ``params`` have the layer widths ``expected``
    (``[in, h1, …, out]`` of the model they are loaded into); the same message on both sides."""
    dims = layer_dims(params)
    if dims != list(expected):
        raise DSMInputError(f"weights have layer widths {dims}, the model expects {list(expected)}")


def network_layout(params: Mapping[str, np.ndarray], config: Mapping[str, Any] | None = None,
                   source: str = "weights") -> tuple[list[int], bool, int]:
    """``(hidden_dims, conditional, dim)`` of the network checked canonical ``params`` belong to.

    What the network is conditioned on comes from the file's metadata (``conditioning``:
    ``none`` or ``sigma``); files without it (the older layout) are read by their widths (an input
    one wider than the output takes log σ)."""
    dims = layer_dims(params)
    if dims[-1] != 2 or dims[0] not in (2, 3):
        raise DSMInputError(f"{source} have layer widths {dims}: a score network of {dims[-1]}-D data "
                            "(in: x or (x, log σ), out: the score); this project models 2-D points")
    conditioning = (config or {}).get("conditioning")
    if conditioning is None:
        conditional = dims[0] == dims[-1] + 1
    elif conditioning in ("none", "sigma"):
        conditional = conditioning == "sigma"
    else:
        raise DSMInputError(f"{source} metadata: conditioning must be none or sigma, got {conditioning!r}")
    return dims[1:-1], conditional, dims[-1]


def network_options(config: Mapping[str, Any] | None, conditional: bool, source: str = "weights") -> dict[str, Any]:
    """The ``ScoreMLP`` preconditioning a weight file's metadata records: ``{"preconditioning":
    "edm", "sigma_data": σ_d}`` from its ``preconditioning`` entry (``{"name": "edm", "sigma_data":
    …}``), or ``{}`` (none: the older files and the unpreconditioned networks).

    Raises:
        DSMInputError: an unknown name, a σ_data that is not a positive number, or ``edm`` on a
            network not conditioned on σ.
    """
    entry = (config or {}).get("preconditioning")
    if entry is None or entry == "none" or (isinstance(entry, dict) and entry.get("name") == "none"):
        return {}
    if not isinstance(entry, dict) or entry.get("name") != "edm":
        raise DSMInputError(f"{source} metadata: preconditioning must be none or edm, got {entry!r}")
    sigma_data = entry.get("sigma_data")
    if isinstance(sigma_data, bool) or not isinstance(sigma_data, (int, float)) or not math.isfinite(sigma_data) \
            or sigma_data <= 0:
        raise DSMInputError(f"{source} metadata: preconditioning.sigma_data must be a positive number, got {sigma_data!r}")
    if not conditional:
        raise DSMInputError(f"{source} metadata: preconditioning edm needs a network conditioned on σ")
    return {"preconditioning": "edm", "sigma_data": float(sigma_data)}


def stored_sde(config: Mapping[str, Any] | None, source: str = "weights") -> dict[str, Any] | None:
    """The score SDE a weight file's metadata records (``sde``: ``SDESettings.description``), checked,
    or None (not a score-SDE model). ``unscaled`` (absent in older files: false) must agree with
    the network's ``preconditioning`` entry.

    Raises:
        DSMInputError: an unknown kind, a parameter that is missing or not a positive number, or an
            ``unscaled`` that is not a bool or disagrees with the network.
    """
    entry = (config or {}).get("sde")
    if entry is None:
        return None
    if not isinstance(entry, dict) or entry.get("kind") not in ("ve", "vp", "subvp"):
        raise DSMInputError(f"{source} metadata: sde must name kind ve, vp or subvp, got {entry!r}")
    needed = ("sigma_min", "sigma_max", "eps") if entry["kind"] == "ve" else ("beta_min", "beta_max", "eps")
    for key in needed:
        v = entry.get(key)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
            raise DSMInputError(f"{source} metadata: sde.{key} must be a positive number, got {v!r}")
    unscaled = entry.get("unscaled", False)  # files written before the key existed: a network fed σ(t)
    if not isinstance(unscaled, bool):
        raise DSMInputError(f"{source} metadata: sde.unscaled must be true or false, got {unscaled!r}")
    preconditioned = bool(network_options(config, True, source))  # "none" or {"name": "none"}: not preconditioned
    if unscaled != preconditioned:
        raise DSMInputError(f"{source} metadata: sde.unscaled is {str(unscaled).lower()} but the network is "
                            f"{'' if preconditioned else 'not '}EDM-preconditioned; the two go together")
    return dict(entry, unscaled=unscaled)


def save_canonical(path: str | Path, params: Mapping[str, np.ndarray], config: Mapping[str, Any]) -> Path:
    """Write canonical ``params`` and the model ``config`` (JSON-able) to a ``.safetensors`` file."""
    from safetensors.numpy import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    params = check_canonical(params, str(path))
    with atomic_path(path) as tmp:  # a run killed mid-write leaves the old file or none, never half of one
        save_file(params, str(tmp), metadata={"format": FORMAT, "dsm_config": json.dumps(dict(config))})
    return path


def load_canonical(path: str | Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Read a ``.safetensors`` file written by ``save_canonical``.

    Returns:
        ``(params, config)``: float32 arrays in the canonical layout and the stored settings.

    Raises:
        DSMInputError: missing file, a file that is not safetensors, metadata that is not a JSON
            object, or not a finite canonical MLP.
    """
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise DSMInputError(f"weights file not found: {path}")
    try:
        with safe_open(str(path), framework="numpy") as fh:
            meta = fh.metadata() or {}
            params = {k: fh.get_tensor(k) for k in fh.keys()}
    except Exception as err:  # safetensors raises several types for a corrupt header
        raise DSMInputError(f"{path}: not a readable .safetensors file ({err})") from None
    try:
        config = json.loads(meta.get("dsm_config", "{}"))
    except ValueError as err:
        raise DSMInputError(f"{path}: its dsm_config metadata is not valid JSON ({err})") from None
    if not isinstance(config, dict):
        raise DSMInputError(f"{path}: its dsm_config metadata must be a JSON object, got {type(config).__name__}")
    params = check_canonical(params, str(path))
    network_layout(params, config, f"{path}: weights")  # a network this project can run, named by its file
    return params, config
