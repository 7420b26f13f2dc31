"""Flax ⇄ canonical weight layout ⇄ ``.safetensors`` (docs/parity.md).

Flax's ``Dense`` kernel is already (in, out), as in the canonical layout.
Mirror: ``torch_dsm/weights.py``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import jax.numpy as jnp
import numpy as np

from dsm_common.validation import DSMInputError
from dsm_common.weights import (
    check_canonical,
    check_widths,
    layer_dims,
    load_canonical,
    network_layout,
    network_options,
    save_canonical,
)
from jax_dsm.models import ScoreMLP

__all__ = ["to_canonical", "from_canonical", "save_weights", "load_weights"]


def to_canonical(variables: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Canonical float32 numpy arrays from Flax variables ``{"params": {"dense_i": {...}}}``."""
    params = variables["params"]
    out = {}
    for i in range(len(params)):
        out[f"dense_{i}.kernel"] = np.asarray(params[f"dense_{i}"]["kernel"], dtype=np.float32)
        out[f"dense_{i}.bias"] = np.asarray(params[f"dense_{i}"]["bias"], dtype=np.float32)
    return out


def from_canonical(
    params: Mapping[str, np.ndarray], model: ScoreMLP | None = None, config: Mapping[str, Any] | None = None
) -> tuple[ScoreMLP, dict[str, Any]]:
    """Flax variables from canonical arrays, with ``model`` (or a new ScoreMLP of the layout
    ``config`` records, ``dsm_common.weights.network_layout``).

    Returns:
        ``(model, variables)``.

    Raises:
        DSMInputError: the arrays are not a canonical MLP, or do not match ``model``'s widths.
    """
    params = check_canonical(params)
    dims = layer_dims(params)
    if model is None:
        hidden, conditional, dim = network_layout(params, config)
        model = ScoreMLP(tuple(hidden), conditional=conditional, dim=dim, **network_options(config, conditional))
    check_widths(params, [model.dim + int(model.conditional), *model.hidden_dims, model.dim])
    variables = {
        "params": {
            f"dense_{i}": {"kernel": jnp.asarray(params[f"dense_{i}.kernel"]), "bias": jnp.asarray(params[f"dense_{i}.bias"])}
            for i in range(len(dims) - 1)
        }
    }
    return model, variables


def save_weights(path: str | Path, variables: Mapping[str, Any], config: Mapping[str, Any]) -> Path:
    """Write Flax ``variables`` in the canonical layout to a ``.safetensors`` file with ``config``."""
    return save_canonical(path, to_canonical(variables), config)


def load_weights(path: str | Path) -> tuple[ScoreMLP, dict[str, Any], dict[str, Any]]:
    """Read a canonical ``.safetensors`` file (from either framework).

    Returns:
        ``(model, variables, config)``. Raises DSMInputError on a missing or malformed file.
    """
    params, config = load_canonical(path)
    try:
        model, variables = from_canonical(params, config=config)
    except DSMInputError as err:  # name the file
        raise DSMInputError(f"{path}: {err}") from None
    return model, variables, config
