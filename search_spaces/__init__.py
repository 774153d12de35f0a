"""Named studies (presets): one module per study, each defining ``EXPERIMENT``."""

from search_spaces.experiment import Experiment, Resources
from search_spaces.registry import UnknownPresetError, load_experiment, preset_names

__all__ = ["Experiment", "Resources", "UnknownPresetError", "load_experiment", "preset_names"]
