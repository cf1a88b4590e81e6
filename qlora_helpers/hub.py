"""The Hugging Face Hub as a run needs it: is a name a Hub id, does the local cache hold it, does the Hub answer,
which Hub id a local base model came from, and the upload of a finished output folder.

Below every stage (it needs no torch), so that the data readers and the start-up checks ask the same questions.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from qlora_helpers.errors import UserError, require


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


def base_model_hub_id(model: str) -> str | None:
    """The Hub id a base model is known by, for a model card: the name itself; for a local folder, the repository a
    Hub-cache snapshot was downloaded from (models--ORG--NAME/snapshots/...), else a Hub id its config.json keeps
    in `_name_or_path`; None where nothing says (a model built or saved here)."""
    if is_hub_id(model):
        return model
    path = Path(model).expanduser().resolve()
    for part in path.parts:
        if part.startswith("models--"):
            return part.removeprefix("models--").replace("--", "/")
    config = path / "config.json"
    try:
        named = json.loads(config.read_text()).get("_name_or_path", "") if config.is_file() else ""
    except (OSError, ValueError):
        return None
    return named if isinstance(named, str) and HUB_ID.fullmatch(named) and is_hub_id(named) else None


HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?")  # NAME or NAMESPACE/NAME
UPLOAD_SKIPS = ["checkpoints/*", "runs/*"]  # resumable checkpoints and TensorBoard events stay on this machine


def upload_folder(directory: str | Path, repo_id: str, private: bool = False, api=None) -> str:
    """Upload a `train`, `merge` or `export` output (weights, tokenizer, classifier_config.json and its model card)
    to the Hub repository `repo_id`, created if it does not exist; its URL. `api`: a `huggingface_hub.HfApi`."""
    directory = Path(directory)
    require(
        (directory / "classifier_config.json").is_file(),
        f"{directory} is not a train, merge or export output (it has no classifier_config.json); pass the folder "
        f"one of those commands wrote",
    )
    require(
        "/" in repo_id and HUB_ID.fullmatch(repo_id) is not None,
        f"--repo-id {repo_id!r} must be NAMESPACE/NAME, e.g. your-user/imdb-qlora-bert",
    )
    if api is None:
        from huggingface_hub import HfApi

        api = HfApi()
    import httpx
    from huggingface_hub.errors import HfHubHTTPError, LocalTokenNotFoundError, OfflineModeIsEnabled

    try:
        url = api.create_repo(repo_id, private=private, exist_ok=True)
        api.upload_folder(
            repo_id=repo_id,
            folder_path=str(directory),
            ignore_patterns=UPLOAD_SKIPS,
            commit_message=f"Upload {directory.name} (qlora-bert)",
        )
    except (HfHubHTTPError, LocalTokenNotFoundError) as e:  # the Hub answered: no token, or not this one's to write
        raise UserError(
            f"the upload to {repo_id} failed ({type(e).__name__}: {first_line(e)}); log in with `hf auth login` or "
            f"set HF_TOKEN to a token that may write to {repo_id.split('/')[0]}"
        ) from e
    except (OfflineModeIsEnabled, httpx.HTTPError, OSError) as e:  # no answer at all
        raise UserError(
            f"the Hugging Face Hub cannot be reached ({type(e).__name__}: {first_line(e)}); nothing was uploaded. "
            f"Upload from a machine with network access (and without HF_HUB_OFFLINE set)"
        ) from e
    return str(url)


def first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0][:200] if text else ""
