"""Framework-neutral pieces shared by ``torch_dsm`` and ``jax_dsm``: data sets, exact scores,
metrics, figures, the canonical weight file and input checks. numpy/scipy only: importing this
package imports neither torch nor JAX."""

from dsm_common.validation import DSMInputError

__all__ = ["DSMInputError"]
