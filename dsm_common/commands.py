"""The command lines' shared parts: one-line errors, run-directory checks, the ``sample`` command.

Both ``dsm-torch`` and ``dsm-jax`` use these, so the same input gets the same answer on both sides.
"""

from __future__ import annotations

import sys
from dataclasses import fields, is_dataclass
from pathlib import Path
from typing import Any, Callable, Optional, get_type_hints

import numpy as np

from dsm_common.config import SamplerConfig, legacy_option_message
from dsm_common.datasets import Dataset2D, load_dataset
from dsm_common.files import check_writable, clear_run_files, read_status, write_status
from dsm_common.finish import DATA_KEYS, finish_run
from dsm_common.generate import Backend
from dsm_common.registry import OBJECTIVES, SAMPLERS
from dsm_common.transform import check_transform, fingerprint, in_training_space, ungraded_dataset
from dsm_common.validation import DivergedError, DSMInputError, RunInterrupted

__all__ = ["FIT_INTERRUPTED", "SAMPLE_INTERRUPTED", "cli_errors", "check_run_dir",
           "check_sample_dir", "check_legacy_options", "summary_line", "sample_command",
           "check_resume", "dataset_from_config", "grading_dataset", "OneLineErrors", "one_line_parser",
           "parser_error_line", "stored_objective", "stored_sigmas"]


FIT_INTERRUPTED = ("the run folder is marked unfinished (status.json); the same command with --ckpt_path last "
                   "resumes it from its last checkpoint")
SAMPLE_INTERRUPTED = "the output folder is marked unfinished (status.json); the same command with --overwrite=true redoes it"


def cli_errors(prog: str, fn: Callable[[], Any], interrupted: str = "") -> Any:
    """Run ``fn``; turn a DSMInputError into one line on stderr and exit status 2, a DivergedError
    (non-finite loss or samples) into one line and exit status 3, and Ctrl-C (KeyboardInterrupt)
    into one line and exit status 130 (the shell's 128 + SIGINT), with ``interrupted`` saying how
    to go on when a run folder was marked interrupted (RunInterrupted)."""
    try:
        return fn()
    except RunInterrupted:
        print(f"{prog}: interrupted" + (f"; {interrupted}" if interrupted else ""), file=sys.stderr)
        raise SystemExit(130) from None
    except KeyboardInterrupt:
        print(f"{prog}: interrupted before the run started", file=sys.stderr)
        raise SystemExit(130) from None
    except DivergedError as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        raise SystemExit(3) from None
    except DSMInputError as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        raise SystemExit(2) from None


def _owner(run_dir: Path) -> Optional[str]:
    """The framework of the run in ``run_dir`` (its status file, else its weights' metadata)."""
    import json

    from safetensors import safe_open

    status = read_status(run_dir) or {}
    if status.get("framework"):
        return status["framework"]
    weights = run_dir / "weights.safetensors"
    if weights.is_file():
        try:
            with safe_open(str(weights), framework="numpy") as fh:
                return json.loads((fh.metadata() or {}).get("dsm_config", "{}")).get("framework")
        except Exception:
            return None
    return None


def check_run_dir(run_dir: str | Path, framework: str, overwrite: bool = False, resume: bool = False) -> Path:
    """Refuse a run directory whose run would be overwritten unasked; clear it when asked to.

    A directory holds a run when it has a ``status.json`` (``dsm_common.files``), a
    ``weights.safetensors`` (runs written before the status file) or a last checkpoint. A finished
    run (status ``complete``) or an interrupted one (any other status: its checkpoint is work
    worth keeping) is refused unless the user resumes it (``resume``, ``--ckpt_path``) or asks to
    replace it (``overwrite``, ``--overwrite=true``), which removes the old run's own files
    (``dsm_common.files.clear_run_files``: weights, samples, metrics, figures, status, checkpoints)
    so nothing of it is left beside the new run. A run of the other framework is refused in every
    case. The folder must be writable.

    Raises:
        DSMInputError: the directory is a file or cannot be written to, holds the other framework's
            run, or holds a run and neither ``overwrite`` nor ``resume`` is set.
    """
    if overwrite and resume:
        raise DSMInputError("--overwrite=true replaces a run and --ckpt_path resumes one: pass one of them, not both")
    run_dir = check_writable(run_dir, "trainer.default_root_dir")
    status = read_status(run_dir)
    checkpoints = [p for p in (run_dir / "checkpoints").glob("last*") if p.suffix in (".ckpt", ".msgpack")]
    weights = (run_dir / "weights.safetensors").is_file()
    if not (status is not None or weights or checkpoints):
        return run_dir
    if not (weights or checkpoints) and (status or {}).get("status") != "complete" and not resume:
        clear_run_files(run_dir)  # stopped before its first checkpoint: nothing of it is worth keeping
        return run_dir
    owner = _owner(run_dir)
    if owner and owner != framework:
        raise DSMInputError(
            f"{run_dir} holds a {owner} run; give this {framework} run its own folder, "
            f"e.g. --trainer.default_root_dir={run_dir}-{framework}"
        )
    if resume:
        return run_dir
    if not overwrite:
        state = (status or {}).get("status", "complete" if weights else "interrupted")
        if state == "complete":
            raise DSMInputError(
                f"{run_dir} holds a finished run (weights.safetensors); pass --overwrite=true to replace it, "
                "--ckpt_path last to resume it, or choose another --trainer.default_root_dir"
            )
        phase = (status or {}).get("phase")
        raise DSMInputError(
            f"{run_dir} holds an unfinished run ({state}{', ' + phase if phase else ''}); pass --ckpt_path last to "
            "resume it from its last checkpoint, --overwrite=true to replace it, or choose another "
            "--trainer.default_root_dir"
        )
    clear_run_files(run_dir)
    return run_dir


def check_resume(path: Path, found: list[int], done: int, expected: list[int], max_epochs: int,
                 ema_found: float | None = None, ema_expected: float | None = None) -> None:
    """What both command lines check of a checkpoint before resuming from it, in the same words:
    its network's layer widths ``found`` against the model's ``expected`` (``[in, h1, …, out]``),
    the epochs it has trained (``done``) against ``trainer.max_epochs``, and the weight average it
    kept (``ema_found``: its ``model.ema_decay``, None for none) against the model's.

    Raises:
        DSMInputError: naming the checkpoint ``path``, and the widths or epochs found and expected.
    """
    if found != expected:
        raise DSMInputError(f"{path}: the checkpoint's network has layer widths {found}, the model expects {expected}; "
                            "resume with the settings it was trained with (its run's config.yaml)")
    if done > max_epochs:
        raise DSMInputError(f"{path}: the checkpoint has trained {done} epochs, more than trainer.max_epochs={max_epochs}; "
                            f"resume with trainer.max_epochs of at least {done}")
    if ema_found != ema_expected:
        raise DSMInputError(f"{path}: the checkpoint was trained with model.ema_decay={ema_found}, the model has "
                            f"model.ema_decay={ema_expected}; resume with the settings it was trained with "
                            "(its run's config.yaml)")


def check_sample_dir(out: Path, overwrite: bool = False) -> Path:
    """Refuse a ``sample --out`` folder that holds a training run (its files are never touched) or,
    unless ``overwrite``, an earlier ``sample`` output (``metrics.json`` or ``status.json``); with
    ``overwrite``, that output's files are removed first.

    Raises:
        DSMInputError: naming the folder and what it holds.
    """
    if out.exists() and not out.is_dir():
        raise DSMInputError(f"--out {out} is a file, not a folder")
    status = read_status(out)
    if (out / "weights.safetensors").is_file() or (out / "checkpoints").is_dir() or \
            (status or {}).get("command", "sample") != "sample":
        raise DSMInputError(f"--out {out} holds a training run; sample into another folder (default: WEIGHTS_DIR/sample)")
    if ((out / "metrics.json").is_file() or status is not None) and not overwrite:
        state = (status or {}).get("status", "complete")
        what = "an earlier sample run (metrics.json)" if state == "complete" else f"an unfinished sample run ({state})"
        raise DSMInputError(f"--out {out} holds {what}; pass --overwrite=true to replace it")
    if overwrite:
        clear_run_files(out)  # nothing of the earlier sample run (a trajectory figure not redrawn) is left
    return out


def _flatten(tree: Any, prefix: str = "") -> list[str]:
    if not isinstance(tree, dict):
        return [prefix]
    out = []
    for k, v in tree.items():
        out += _flatten(v, f"{prefix}.{k}" if prefix else str(k))
    return out


def _option_value(argv: list[str], i: int) -> tuple[str, str | None]:
    """``(option, value)`` of ``argv[i]`` (``--opt=value``, or ``--opt value`` / ``-c value``)."""
    word = argv[i]
    if "=" in word:
        option, value = word.split("=", 1)
        return option, value
    following = argv[i + 1] if i + 1 < len(argv) and not argv[i + 1].startswith("-") else None
    return word, following


def check_legacy_options(argv: list[str], sampler_prefix: str = "model.sampler.") -> None:
    """Refuse, in one line saying what to write instead, an option of the older flat layout
    (``model.sigma``, ``model.num_scales``, ``model.sampler.step_size``, …) on the command line
    or in a YAML file given to ``--config``/``-c`` or to a section (``--model=FILE``), before the
    parser answers it with its whole usage. ``sampler_prefix``: how the sampler's options are
    spelled where the message is read (``sampler.`` for the ``sample`` command).

    Raises:
        DSMInputError: the first such option, with the file (or "command line") it is in.
    """
    import yaml

    def refuse(key: str, where: str) -> None:
        message = legacy_option_message(key, where)
        if message:
            raise DSMInputError(message.replace("model.sampler.", sampler_prefix))

    for i, word in enumerate(argv):
        if not word.startswith("-"):
            continue
        option, value = _option_value(argv, i)
        section = "" if option in ("--config", "-c") else option.lstrip("-")
        if value and value.endswith((".yaml", ".yml")) and Path(value).is_file():
            try:
                tree = yaml.safe_load(Path(value).read_text()) or {}
            except (OSError, yaml.YAMLError):
                continue  # the parser reports a malformed file itself
            for key in _flatten(tree):
                refuse(f"{section}.{key}" if section else key, value)
        elif option.startswith("--"):
            refuse(option[2:], "command line")


def summary_line(m: dict[str, Any]) -> str:
    """One line of a run's headline metrics, for the terminal."""
    keys = ("final_loss", "mode_weights", "gap_mass", "energy_distance", "energy_distance_reference",
            "fisher_divergence", "train_seconds", "sample_seconds", "nfe", "nonfinite_samples",
            "diverged_samples")
    parts = []
    for k in keys:
        v = m.get(k)
        if v is None:  # not measured by this run (e.g. training times after sample): left out
            continue
        if isinstance(v, float):
            v = f"{v:.4g}"
        elif isinstance(v, list):
            v = "[" + ", ".join(f"{a:.3f}" for a in v) + "]"
        parts.append(f"{k}={v}")
    nll = m.get("nll") or {}
    if nll.get("model") is not None:  # score-SDE runs: the ODE's NLL, nats a point, beside its references
        refs = ", ".join(f"{k} {nll[k]:.4g}" for k in ("exact", "kde") if nll.get(k) is not None)
        parts.append(f"nll={nll['model']:.4g} ({refs})")
    return "  ".join(parts)


def dataset_from_config(data: dict[str, Any], override: Optional[str] = None) -> Dataset2D:
    """Reload the training data described by a weight file's ``data`` settings."""
    kw = {k: data.get(k) for k in DATA_KEYS if data.get(k) is not None}
    if override:
        kw["dataset"] = override
    return load_dataset(**kw)


def grading_dataset(stored: dict[str, Any], override: Optional[str], source: str) -> tuple[Dataset2D, Optional[str]]:
    """The data ``sample`` grades against, and why not when it cannot: ``(dataset, note)``.

    A weight file carries its training space (``data_transform``), so samples are always mapped
    to data units with it. They are graded against the training data only when the data can be
    reloaded and are unchanged (same points, same transform: ``points_sha256``); against
    ``override`` (``--data.dataset``) re-expressed in the model's training space; otherwise not at
    all, with ``note`` saying why. Files of the older layout (no ``data_transform``) reload the data
    as they always did.

    Raises:
        DSMInputError: a malformed ``data_transform``; for older files, data that cannot be reloaded.
    """
    transform = stored.get("data_transform")
    data = stored.get("data") or {}
    if transform is None:
        return dataset_from_config(data, override), None
    transform = check_transform(transform, source)
    try:
        ds = dataset_from_config(data, override)
    except DSMInputError as err:
        return ungraded_dataset(transform), f"samples not graded: the training data cannot be read ({err})"
    if override:
        return in_training_space(ds, transform["shift"], transform["scale"]), None
    if fingerprint(ds) != transform.get("points_sha256"):
        return ungraded_dataset(transform), (
            f"samples not graded: {ds.name} is not the data the weights were trained on (its points changed); "
            "--data.dataset=FILE grades against another file")
    return ds, None


def stored_objective(stored: dict[str, Any]) -> str:
    """The objective of a weight file: its ``model.objective``, or (files of the older flat layout)
    ``ncsn`` for several noise levels and ``dsm`` for one."""
    objective = (stored.get("model") or {}).get("objective")
    if objective:
        return objective
    return "ncsn" if len(stored.get("sigmas") or [0]) > 1 else "dsm"


def _sampler_options(cls=SamplerConfig, prefix: str = "sampler") -> list[tuple[str, Any]]:
    """``(dotted name, type)`` of every leaf option of ``SamplerConfig`` (nested sections included)."""
    out = []
    hints = get_type_hints(cls)
    for f in fields(cls):
        kind = hints[f.name]
        if is_dataclass(kind):
            out += _sampler_options(kind, f"{prefix}.{f.name}")
        else:
            out.append((f"{prefix}.{f.name}", kind))
    return out


def _set(tree: dict, dotted: str, value: Any) -> None:
    *path, leaf = dotted.split(".")
    for k in path:
        tree = tree.setdefault(k, {})
    tree[leaf] = value


def sample_command(prog: str, argv: list[str], load: Callable[[str], tuple[Backend, dict[str, Any]]]) -> dict[str, Any]:
    """``PROG sample``: sample from a weight file written by either framework.

    Args:
        prog: program name for messages.
        argv: the arguments after ``sample``.
        load: the framework's loader, ``path → (backend, stored settings)``.

    Sampler settings not given on the command line come from the ones stored with the weights
    (translated when the file has the older flat layout).
    """
    parser = one_line_parser()(prog=f"{prog} sample", description="Sample from saved weights (either framework).")
    parser.add_argument("--weights", type=str, required=True, help="a weights.safetensors file (either framework)")
    parser.add_argument("--out", type=Optional[str], default=None, help="output folder (default: WEIGHTS_DIR/sample)")
    parser.add_argument("--data.dataset", type=Optional[str], default=None,
                        help="grade against this data set instead of the one stored with the weights")
    parser.add_argument("--overwrite", type=bool, default=False, help="replace an earlier sample run in --out")
    parser.add_argument("--quiet", type=bool, default=False, help="print warnings and errors only: no progress bars, "
                                                                 "notes or summary")
    options = _sampler_options()
    for dotted, kind in options:
        parser.add_argument(f"--{dotted}", type=Optional[kind], default=None, help=f"override the stored {dotted}")
    check_legacy_options(["--model." + w[2:] if w.startswith("--sampler.") else w for w in argv], "sampler.")
    args = parser.parse_args(argv)
    backend, stored = load(args.weights)
    default = OBJECTIVES[stored_objective(stored)].default_sampler
    tree = {"sampler": SamplerConfig.from_dict(stored.get("sampler") or {}, default).to_dict()}
    for dotted, _ in options:
        if args.get(dotted) is not None:
            _set(tree, dotted, args.get(dotted))
    cfg = SamplerConfig.from_dict(tree["sampler"])
    try:
        cfg.validate()
    except DSMInputError as err:  # in this command's spelling, and where the value came from
        option = str(err).split()[0].replace("model.sampler.", "sampler.")
        given = next((d for d, _ in options if option == d), None)
        source = "" if given and args.get(given) is not None else f" (a setting stored in {args.weights})"
        raise DSMInputError(str(err).replace("model.sampler.", "--sampler.") + source) from None
    name = cfg.name or default
    need, sde = SAMPLERS[name].conditioning, getattr(backend, "sde", None)
    if need == "sigma" and not backend.conditional:  # in the words of this command
        raise DSMInputError(f"--sampler.name={name} needs a network conditioned on σ, and {args.weights} holds one "
                            "that is not (objective dsm); use --sampler.name=langevin")
    if need == "sigma" and sde:
        raise DSMInputError(f"--sampler.name={name} needs a network trained over σ levels, and {args.weights} holds "
                            "a score-SDE model; use --sampler.name=pc or ode")
    if need == "sde" and not sde:
        raise DSMInputError(f"--sampler.name={name} needs a score-SDE model, and {args.weights} holds one of "
                            f"objective {stored_objective(stored)}")
    dataset, note = grading_dataset(stored, args.get("data.dataset"), args.weights)
    out = check_sample_dir(Path(args.out) if args.out else Path(args.weights).resolve().parent / "sample", args.overwrite)
    check_writable(out, "--out")
    if note and not args.quiet:
        print(f"{prog}: note: {note}", file=sys.stderr)
    backend.progress = not args.quiet
    write_status(out, "running", "sampling", framework=backend.framework, command="sample")
    info = {"epochs": stored.get("epochs"), "weights_from": str(args.weights), "trained_with": stored.get("framework"),
            "graded": note is None, "grading_note": note}
    metrics = finish_run(out, backend, name, stored.get("model") or {}, stored.get("data") or {}, dataset, cfg, info)
    if not args.quiet:
        print(f"run directory: {out.resolve()}")
        print(summary_line(metrics))
    return metrics


def stored_sigmas(stored: dict[str, Any]) -> np.ndarray:
    """(L,) float64 noise levels of a weight file (older single-level files: ``model.sigma``)."""
    return np.asarray(stored.get("sigmas") or [(stored.get("model") or {}).get("sigma", 3.0)], dtype=np.float64)


_TYPE_WORDS = {"float": "a finite number", "int": "an integer", "bool": "true or false", "str": "a string"}


def parser_error_line(message: str) -> str:
    """jsonargparse's (often many-line) parse error as one line naming the option and the value.

    ``Parser key "model.sampler": … NestedArg(key='langevin.step_size', val='abc')`` becomes
    ``--model.sampler.langevin.step_size: expected a finite number, got 'abc'``; jsonargparse's
    float type refuses ``nan`` and ``inf`` the same way. Messages of another shape keep their first line.
    """
    import re

    key = re.search(r'Parser key "([^"]+)"', message)
    nested = re.search(r"NestedArg\(key='([^']+)', val='((?:[^'\\]|\\.)*)'\)", message)
    expected = re.search(r"Expected a (.+?)\. Got value: (.*)", message)
    if expected is None:  # an Optional[...] option: the non-None type, and the value given
        kinds = [k for k in re.findall(r"Expected a (<class '\w+'>|typing\.Literal\[.*?\])", message)
                 if k != "<class 'NoneType'>"]
        given = re.search(r"Given value: (?!NestedArg)(.*)", message)
        if kinds and given:
            expected = re.match(r"(.+)\x00(.*)", f"{kinds[0]}\x00{given.group(1).strip()}")
    unexpected = re.search(r"Option '[^']+' is not accepted|unrecognized arguments", message)
    if key:
        option = key.group(1) + (f".{nested.group(1)}" if nested else "")
        if unexpected:
            return f"no option --{option}" + (f" (given {nested.group(2)!r})" if nested else "")
        if expected:
            kind = expected.group(1)
            literal = re.fullmatch(r"typing\.Literal\[(.*)\]", kind)
            name = re.fullmatch(r"<class '(\w+)'>", kind)
            what = ("one of " + literal.group(1).replace("'", "")) if literal else \
                _TYPE_WORDS.get(name.group(1), f"a {name.group(1)}") if name else kind
            value = nested.group(2) if nested else expected.group(2).strip()
            return f"--{option} must be {what}, got {value!r}"
    lines = [ln.strip() for ln in message.strip().splitlines() if ln.strip()]
    return " ".join(lines[:1] + [ln for ln in lines[1:2] if not ln.startswith(("Subtypes", "Errors"))])


class OneLineErrors:
    """Mixin for jsonargparse parsers: no abbreviated options, in nested sections too (jsonargparse
    builds their parsers from the top one's class), and a parse error is one line on stderr,
    ``PROG: error: …`` (:func:`parser_error_line`), with exit status 2 instead of the usage dump."""

    def __init__(self, *args, **kwargs):
        kwargs["allow_abbrev"] = False
        super().__init__(*args, **kwargs)

    def error(self, message: str, ex: Exception | None = None):
        if not self.exit_on_error:  # an inner parser: its parent reports
            return super().error(message, ex)
        prog = self.prog.replace(" [options]", "")
        print(f"{prog}: error: {parser_error_line(message)} (see {prog} --help)", file=sys.stderr)
        raise SystemExit(2)


def one_line_parser():
    """A jsonargparse ``ArgumentParser`` class with :class:`OneLineErrors`."""
    from jsonargparse import ArgumentParser

    global _OneLineParser
    if _OneLineParser is None:
        _OneLineParser = type("OneLineArgumentParser", (OneLineErrors, ArgumentParser), {"__module__": __name__})
    return _OneLineParser


_OneLineParser = None
