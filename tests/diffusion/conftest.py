"""The diffusion tests need the ``diffusion`` extra (diffusers, peft)."""

import importlib.util

collect_ignore_glob = (
    [] if importlib.util.find_spec("diffusers") and importlib.util.find_spec("peft") else ["test_*.py"]
)
