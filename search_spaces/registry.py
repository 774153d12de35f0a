"""Presets by name, and loading a user's own preset file."""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import os
import traceback
from pathlib import Path

from search_spaces.experiment import Experiment

# name -> module defining EXPERIMENT. Modules are imported lazily: `list` stays fast.
PRESETS: dict[str, str] = {
    "mnist_attention": "search_spaces.mnist_attention",
    "cifar10_cnntention": "search_spaces.cifar10_cnntention",
    "vgg16_attention": "search_spaces.vgg16_attention",
    "spatial_attention_cosine": "search_spaces.spatial_attention_cosine",
    "fsdd_attention": "search_spaces.fsdd_attention",
    "hmdb51_ablation": "search_spaces.hmdb51_ablation",
    "wlasl_temporal": "search_spaces.wlasl_temporal",
}


class UnknownPresetError(LookupError):
    """The name is neither a preset nor a preset file; the message suggests the closest."""


class PresetFileError(Exception):
    """A user's preset file failed to import; the one-line message names the file, the line
    in it and the exception, so the CLI can print it without a traceback."""


def preset_names() -> list[str]:
    return sorted(PRESETS)


def load_experiment(name_or_path: str) -> Experiment:
    """A registered preset by name, or a Python file that defines ``EXPERIMENT``."""
    if name_or_path in PRESETS:
        return _experiment_of(importlib.import_module(PRESETS[name_or_path]), name_or_path)
    path = Path(name_or_path)
    if path.suffix == ".py":
        if not path.is_file():
            raise UnknownPresetError(f"preset file {path} does not exist")
        spec = importlib.util.spec_from_file_location(f"user_preset_{path.stem}", path)
        module = importlib.util.module_from_spec(spec)
        try:
            spec.loader.exec_module(module)
        except (Exception, SystemExit) as err:  # whatever the file raises, not Ctrl-C
            raise PresetFileError(
                f"preset file {path} failed to import: {_import_failure(err, path)}; fix it "
                f"(`python {path}` shows the full traceback)") from err
        return _experiment_of(module, str(path))
    close = difflib.get_close_matches(name_or_path, PRESETS, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    raise UnknownPresetError(
        f"unknown preset {name_or_path!r}; {hint}run `python -m orchestrator list` to see them all"
    )


def _import_failure(err: BaseException, path: Path) -> str:
    """``line N: Type: message`` with N the line of ``path`` that raised (or failed to parse)."""
    target = os.path.realpath(path)
    line, origin = None, None
    frames = [f for f in traceback.extract_tb(err.__traceback__)
              if not f.filename.startswith("<")]  # importlib's own frames say nothing here
    for frame in frames:
        # The innermost frame in the preset file: for an error raised in a module it
        # imports, the import line, which is the line the user can change.
        if os.path.realpath(frame.filename) == target:
            line = frame.lineno
    if isinstance(err, SyntaxError) and err.filename:
        if os.path.realpath(err.filename) == target:
            line = err.lineno
        else:
            origin = f"{err.filename} line {err.lineno}"
    elif frames and os.path.realpath(frames[-1].filename) != target:
        origin = f"{frames[-1].filename} line {frames[-1].lineno}"
    text = err.msg if isinstance(err, SyntaxError) else str(err)
    lines = text.strip().splitlines()
    detail = f"{type(err).__name__}: {lines[0]}" if lines else type(err).__name__
    if origin:
        detail += f" (raised in {origin})"
    return f"line {line}: {detail}" if line is not None else detail


def _experiment_of(module, where: str) -> Experiment:
    experiment = getattr(module, "EXPERIMENT", None)
    if not isinstance(experiment, Experiment):
        raise UnknownPresetError(f"{where} does not define EXPERIMENT = Experiment(...)")
    return experiment
