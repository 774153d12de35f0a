"""Video datasets (HMDB51, WLASL) in their real on-disk layouts, decoded with decord.

Nothing heavy is imported here: decord and PyAV are optional extras, imported by the
functions that need them, so listing presets works on a machine without them.
"""
