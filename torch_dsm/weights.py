"""Torch ⇄ canonical weight layout ⇄ ``.safetensors`` (docs/parity.md).

``Linear.weight`` is (out, in); the canonical kernel is (in, out): transposed on the way.
Mirror: ``jax_dsm/weights.py``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from dsm_common.validation import DSMInputError
from dsm_common.weights import check_canonical, check_widths, load_canonical, network_layout, network_options, save_canonical
from torch_dsm.models import ScoreMLP

__all__ = ["to_canonical", "from_canonical", "save_weights", "load_weights"]


def to_canonical(model: ScoreMLP) -> dict[str, np.ndarray]:
    """Canonical float32 numpy arrays ``dense_{i}.kernel`` (in, out) and ``dense_{i}.bias`` (out,)."""
    out = {}
    for i, layer in enumerate(model.dense):
        out[f"dense_{i}.kernel"] = layer.weight.detach().cpu().numpy().T.copy()
        out[f"dense_{i}.bias"] = layer.bias.detach().cpu().numpy().copy()
    return out


def from_canonical(params: Mapping[str, np.ndarray], model: ScoreMLP | None = None,
                   config: Mapping[str, Any] | None = None) -> ScoreMLP:
    """Load canonical arrays into ``model`` (or a new ScoreMLP of the layout ``config`` records,
    ``dsm_common.weights.network_layout``).

    Raises:
        DSMInputError: the arrays are not a canonical MLP, or do not match ``model``'s shapes.
    """
    params = check_canonical(params)
    if model is None:
        hidden, conditional, dim = network_layout(params, config)
        model = ScoreMLP(hidden, conditional=conditional, dim=dim, **network_options(config, conditional))
    check_widths(params, [model.dim + int(model.conditional), *model.hidden_dims, model.dim])
    with torch.no_grad():
        for i, layer in enumerate(model.dense):
            k = params[f"dense_{i}.kernel"]
            layer.weight.copy_(torch.from_numpy(k.T.copy()))
            layer.bias.copy_(torch.from_numpy(params[f"dense_{i}.bias"].copy()))  # a copy: the array may be read-only
    return model


def save_weights(path: str | Path, model: ScoreMLP, config: Mapping[str, Any]) -> Path:
    """Write ``model`` in the canonical layout to a ``.safetensors`` file with ``config`` as metadata."""
    return save_canonical(path, to_canonical(model), config)


def load_weights(path: str | Path) -> tuple[ScoreMLP, dict[str, Any]]:
    """Read a canonical ``.safetensors`` file (from either framework) into a new ScoreMLP.

    Returns:
        ``(model, config)``. Raises DSMInputError on a missing or malformed file.
    """
    params, config = load_canonical(path)
    try:
        return from_canonical(params, config=config).eval(), config
    except DSMInputError as err:  # name the file
        raise DSMInputError(f"{path}: {err}") from None
