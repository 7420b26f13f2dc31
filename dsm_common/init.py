"""Initial weights: the two frameworks' default laws, by name, so either side can start like the other.

``model.init`` chooses the law of the score MLP's initial weights on both sides:

* ``flax``: Flax's ``nn.Dense`` default. Kernel entries from ``lecun_normal`` (a normal of
  standard deviation s = √(1/fan_in) / 0.8796…, truncated at ±2s, so that the truncated law has
  standard deviation √(1/fan_in)); biases zero.
* ``torch``: torch's ``nn.Linear`` default (``kaiming_uniform_`` with a = √5). Kernel entries
  uniform on [−b, b] with b = 1/√fan_in; bias entries uniform on the same interval.
* ``native``: the framework's own default: ``torch`` in ``torch_dsm``, ``flax`` in ``jax_dsm``.

``fan_in`` is the layer's input width (3 for the first layer of a noise-conditional network).
Both sides draw from their own random streams (torch's global generator, seeded by
``seed_everything``; the JAX initialisation key), so the values differ but the laws are the same
(tested per tensor in ``parity_tests/test_init.py``). The notebook the project reproduces builds
its network with Flax, so ``flax`` is its start. The method and its laws: ``docs/method.md``.

:func:`init_law` gives the exact law of one tensor's entries as a frozen ``scipy.stats``
distribution, for tests that compare each side with the law itself.
"""

from __future__ import annotations

import math

from dsm_common.validation import check_choice

__all__ = ["INIT_LAWS", "TRUNCATED_NORMAL_STD", "resolve_init", "init_law"]

INIT_LAWS = ("native", "flax", "torch")

# Standard deviation of a standard normal truncated to [−2, 2] (the constant jax.nn.initializers uses).
TRUNCATED_NORMAL_STD = 0.87962566103423978


def resolve_init(init: str, framework: str) -> str:
    """``flax`` or ``torch``: ``init`` with ``native`` replaced by ``framework``'s own default.

    Args:
        init: ``native``, ``flax`` or ``torch`` (the ``model.init`` option).
        framework: ``torch`` or ``jax``, the package asking.

    Raises:
        DSMInputError: ``init`` is not one of :data:`INIT_LAWS`.
    """
    check_choice("model.init", init, INIT_LAWS)
    if init == "native":
        return "torch" if framework == "torch" else "flax"
    return init


def init_law(init: str, tensor: str, fan_in: int):
    """The exact law of every entry of one initial tensor (entries are independent).

    Args:
        init: ``flax`` or ``torch`` (resolved, see :func:`resolve_init`).
        tensor: ``kernel`` or ``bias``.
        fan_in: the layer's input width.

    Returns:
        A frozen ``scipy.stats`` distribution, or None for the zero biases of ``flax``.
    """
    from scipy import stats  # here, not at the top: importing scipy.stats costs every command ~0.3 s

    if init == "flax":
        if tensor == "bias":
            return None
        scale = math.sqrt(1.0 / fan_in) / TRUNCATED_NORMAL_STD
        return stats.truncnorm(-2.0, 2.0, loc=0.0, scale=scale)
    if init == "torch":
        bound = 1.0 / math.sqrt(fan_in)
        return stats.uniform(loc=-bound, scale=2 * bound)
    raise ValueError(f"init_law takes flax or torch, got {init!r}")
