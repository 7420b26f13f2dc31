"""Registries of methods by name: training objectives and samplers, the same names in both frameworks.

A method is one entry here (its name, its typed settings class and what the run around it needs
to know) plus one function per framework, registered under the same name in
``torch_dsm/losses.py`` / ``jax_dsm/losses.py`` (objectives) or ``torch_dsm/sampling.py`` /
``jax_dsm/sampling.py`` (samplers). The YAML chooses by name (``model.objective``,
``model.sampler.name``) and gives the settings in a section of the same name; nothing else in the
run changes when a method is added. How to add one: ``docs/methods.md``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Generic, Iterator, TypeVar

import numpy as np

from dsm_common.validation import DSMInputError

__all__ = ["Registry", "ObjectiveSpec", "SamplerSpec", "OBJECTIVES", "SAMPLERS"]

T = TypeVar("T")


class Registry(Generic[T]):
    """Entries by name, in the order registered; an unknown name is a one-line DSMInputError."""

    def __init__(self, kind: str, option: str):
        self.kind, self.option = kind, option
        self._entries: dict[str, T] = {}

    def register(self, name: str, entry: T) -> T:
        """Add ``entry`` under ``name``; a name already taken is a ValueError (a programming error)."""
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is registered already")
        self._entries[name] = entry
        return entry

    def unregister(self, name: str) -> None:
        """Remove ``name`` (for tests that register a toy method)."""
        self._entries.pop(name, None)

    def __call__(self, name: str) -> Callable[[T], T]:
        """Decorator form: ``@REGISTRY("name")`` registers the decorated object."""
        return lambda entry: self.register(name, entry)

    def __getitem__(self, name: str) -> T:
        if name not in self._entries:
            raise DSMInputError(f"{self.option} must be one of {', '.join(self._entries)}, got {name!r}")
        return self._entries[name]

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def names(self) -> list[str]:
        return list(self._entries)


@dataclass(frozen=True)
class ObjectiveSpec:
    """A training objective.

    Attributes:
        settings: its settings dataclass (the ``model.<name>`` section).
        conditioning: what the network is conditioned on: ``none``, ``sigma``, or ``sde`` (σ(t)
            of a score SDE: the network is conditioned on σ, its samplers run in t).
        default_sampler: the sampler a run uses when ``model.sampler.name`` is not given.
        noise_levels: ``(settings, points or None) → (L,) float64`` levels, largest first (an
            objective over a continuum of levels: its largest and smallest, the samplers' range).
        network: ``(settings, points or None) → dict`` of further ``ScoreMLP`` options the
            objective's network takes (EDM: ``preconditioning`` and ``sigma_data``); None: none.
        resolve: ``(settings, points) → settings`` with what the settings leave to the training
            data filled in (score SDEs: VE's σ_max); None: nothing to fill in.
        sde: ``(settings, points or None) → dict`` describing the score SDE (``conditioning``
            ``sde``: ``SDESettings.description``); None: not an SDE model.
    """

    settings: type
    conditioning: str
    default_sampler: str
    noise_levels: Callable[[Any, np.ndarray | None], np.ndarray]
    network: Callable[[Any, np.ndarray | None], dict] | None = None
    resolve: Callable[[Any, np.ndarray], Any] | None = None
    sde: Callable[[Any, np.ndarray | None], dict] | None = None


@dataclass(frozen=True)
class SamplerSpec:
    """A sampler.

    Attributes:
        settings: its settings dataclass (the ``model.sampler.<name>`` section).
        conditioning: the networks it can sample: ``any`` (it scores at σ_L, the smallest level),
            ``sigma`` (it needs a network conditioned on σ, over all levels) or ``sde`` (it needs
            a score-SDE model, and runs in its time t).
        nfe: ``(settings, n_levels) → int``, network evaluations per chain (None: known only
            once it ran, an adaptive solver's; the backend then reports it).
        describe: ``(settings, n_levels) → str``, a label for figures.
        demo: ``(settings, steps, step_size, keep_every, n_levels) → (settings, keep_every)`` of
            the one-chain trajectory demo (``steps`` evaluations of step ``step_size``, every
            ``keep_every``-th state kept where the sampler allows it).
        frames: ``(settings, n_levels, frames) → keep_every`` giving about ``frames`` kept states
            of a full run (the animation; a multi-level sampler keeps states within each level);
            None: every (NFE // frames)-th.
        step_levels: ``(settings, sigmas) → (N,)`` the noise level after each of its N steps, for
            a sampler over a continuum of levels (EDM's: its own schedule, not the model's
            levels); None: a σ-conditional sampler visits the model's levels in equal shares.
        step_times: ``(settings, sde description) → (N,)`` the time t of each of its N steps, for
            a score-SDE sampler (animation labels).
    """

    settings: type
    conditioning: str
    nfe: Callable[[Any, int], int | None]
    describe: Callable[[Any, int], str]
    demo: Callable[[Any, int, float, int, int], tuple[Any, int]]
    frames: Callable[[Any, int, int], int] | None = None
    step_levels: Callable[[Any, np.ndarray], np.ndarray] | None = None
    step_times: Callable[[Any, dict], np.ndarray] | None = None


OBJECTIVES: Registry[ObjectiveSpec] = Registry("objective", "model.objective")
SAMPLERS: Registry[SamplerSpec] = Registry("sampler", "model.sampler.name")
