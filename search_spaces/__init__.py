"""Named studies (presets): one module per study, each defining ``EXPERIMENT``."""

from search_spaces.experiment import Experiment, Resources
from search_spaces.registry import UnknownPresetError, load_experiment, preset_names
from search_spaces.sources import Source

__all__ = [
    "Experiment", "Resources", "Source", "UnknownPresetError", "load_experiment", "preset_names",
]
