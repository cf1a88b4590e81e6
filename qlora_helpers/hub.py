"""The Hugging Face Hub as a run needs it: is a name a Hub id, does the local cache hold it, does the Hub answer.

Below every stage (it needs no torch), so that the data readers and the start-up checks ask the same questions.
"""

from __future__ import annotations

from pathlib import Path

from qlora_helpers.errors import UserError


def is_hub_id(name: str | None) -> bool:
    """A name only the Hub can resolve: not a path that exists here, and not written as a path."""
    return bool(name) and not name.startswith((".", "/", "~")) and not Path(name).expanduser().exists()


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the Hugging Face Hub answers (False when HF_HUB_OFFLINE is set)."""
    import os
    import urllib.request

    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False"):
        return False
    try:
        urllib.request.urlopen(os.environ.get("HF_ENDPOINT", "https://huggingface.co"), timeout=timeout)
        return True
    except Exception:
        return False


def in_hub_cache(name: str, kind: str) -> bool:
    """Whether the Hub's local cache holds the model or dataset repository `name` (`kind`: model or dataset)."""
    from huggingface_hub import constants

    repo = name.partition(":")[0]  # glue:mrpc: the repository glue, its configuration mrpc
    return (Path(constants.HF_HUB_CACHE) / f"{kind}s--{repo.replace('/', '--')}").is_dir()


def check_hub_sources(model: str, dataset: str | None) -> None:
    """Fail in seconds, not after a minute of retries, when the Hub is needed and cannot be reached: the model or
    dataset is a Hub id that the local cache does not hold. Skipped under HF_HUB_OFFLINE, where the libraries
    already fail at once."""
    import os

    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False"):
        return
    needed = [(n, k) for n, k in ((model, "model"), (dataset, "dataset")) if is_hub_id(n) and not in_hub_cache(n, k)]
    if needed and not hub_reachable():
        names = " and ".join(f"the {k} {n!r}" for n, k in needed)
        raise UserError(
            f"the Hugging Face Hub cannot be reached, and {names} is not in the local cache; pass local files "
            f"(--model DIR, --dataset FILE), or --profile offline (all-MiniLM-L6-v2 and 1,500 reviews shipped with "
            f"the package)"
        )
