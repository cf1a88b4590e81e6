"""What differs between encoder families (BERT, DistilBERT, RoBERTa/XLM-R, ELECTRA, DeBERTa-v2/v3, ModernBERT...):
the classification head's modules, the layers that take adapters, and where the repeated encoder blocks are.

All of it is derived, not looked up in a table of family names: the head is every module whose weights the
checkpoint lacks (what transformers would initialise anew), and adapters go on every linear layer outside it.
A new family then needs nothing, and the rule follows the checkpoint rather than the architecture: ModernBERT's
`head.dense` comes pretrained from its masked-LM checkpoint (so it is quantized and adapted like the encoder) but
is new, and so trained in full, when a repository holds the bare encoder - a table could not tell the two apart.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch

from qlora_helpers.config import ALL_LINEAR
from qlora_helpers.errors import UserError

HEAD_ATTRIBUTE = "qlora_head_modules"  # set by quantization.load_4bit_model: the head it kept out of 4-bit
PROBLEM_TYPES = ("single_label_classification", "multi_label_classification", "regression")
_WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)


def _checkpoint_file(model_name: str) -> Path:
    """The checkpoint's weights file (or shard index), local or from the Hub cache (the file `from_pretrained`
    downloads anyway)."""
    local = Path(model_name).expanduser()
    if local.is_dir():
        found = [local / name for name in _WEIGHT_FILES if (local / name).is_file()]
    else:
        from transformers.utils import cached_file

        found = []
        for name in _WEIGHT_FILES:
            path = cached_file(model_name, name, _raise_exceptions_for_missing_entries=False)
            if path is not None:
                found.append(Path(path))
                break
    if not found:
        raise OSError(f"no weights file ({', '.join(_WEIGHT_FILES)})")
    return found[0]


def checkpoint_keys(model_name: str) -> set[str]:
    """Names of the tensors `model_name` stores: read from the safetensors header or a shard index, without
    reading any weights (a .bin is unpickled onto the meta device)."""
    path = _checkpoint_file(model_name)
    if path.name.endswith(".index.json"):
        return set(json.loads(path.read_text())["weight_map"])
    if path.suffix == ".safetensors":
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            return set(f.keys())
    return set(torch.load(path, map_location="meta", weights_only=True))


def meta_classifier(model_name: str, num_labels: int = 2, problem_type: str = "single_label_classification"):
    """The sequence-classification model of `model_name`'s config, built on the meta device: names and shapes,
    no memory, no weights read."""
    from transformers import AutoConfig, AutoModelForSequenceClassification

    config = AutoConfig.from_pretrained(model_name, num_labels=num_labels, problem_type=problem_type)
    with torch.device("meta"):
        return AutoModelForSequenceClassification.from_config(config)


def loaded_names(model: torch.nn.Module, keys: set[str]) -> set[str]:
    """The model's state-dict names that checkpoint `keys` fill, renamed as transformers renames them at load
    (legacy LayerNorm gamma/beta, per-family conversions) and with the base-model prefix (`bert.`, `deberta.`)
    added or stripped."""
    expected = model.state_dict()
    try:
        from transformers.conversion_mapping import get_model_conversion_mapping
        from transformers.core_model_loading import WeightConverter, WeightRenaming, rename_source_key
    except ImportError:  # another transformers: the prefix alone
        renamings, converters, rename = [], [], None
    else:
        mapping = get_model_conversion_mapping(model)
        renamings = [m for m in mapping if isinstance(m, WeightRenaming)]
        converters = [m for m in mapping if isinstance(m, WeightConverter)]
        rename = rename_source_key
    prefix = getattr(model, "base_model_prefix", "")
    names = set()
    for key in keys:
        if rename is not None:
            key = rename(key, renamings, converters, prefix, expected)[0]
        elif key not in expected and f"{prefix}.{key}" in expected:
            key = f"{prefix}.{key}"
        elif key.startswith(f"{prefix}.") and key.removeprefix(f"{prefix}.") in expected:
            key = key.removeprefix(f"{prefix}.")
        names.add(key)
    return names


def new_parameter_names(model: torch.nn.Module, keys: set[str]) -> set[str]:
    """The model's tensors that checkpoint `keys` leave to be initialised anew, as transformers' load report
    lists them (its ignore patterns and tied weights taken out)."""
    loaded = loaded_names(model, keys)
    missing = set(model.state_dict()) - loaded
    ignore = getattr(model, "_keys_to_ignore_on_load_missing", None) or set()
    if ignore:
        pattern = re.compile("|".join(f"({p})" for p in ignore))
        missing = {k for k in missing if not pattern.search(k)}
    tied = getattr(model, "all_tied_weights_keys", None) or {}
    return {k for k in missing if not (k in tied and tied[k] in loaded)}


def covering_modules(model: torch.nn.Module, names: set[str]) -> list[str]:
    """The fewest modules that hold exactly the tensors `names`: each the highest module all of whose tensors
    are in `names` (RoBERTa's `classifier` rather than `classifier.dense` and `classifier.out_proj`)."""
    whole = []
    for module_name, module in model.named_modules():
        if not module_name:
            continue
        tensors = {f"{module_name}.{k}" for k in module.state_dict()}
        if tensors and tensors <= names:
            whole.append(module_name)
    return sorted(m for m in whole if not any(m.startswith(f"{other}.") for other in whole))


def head_modules(model_name: str, num_labels: int = 2, problem_type: str = "single_label_classification") -> list[str]:
    """The modules of `model_name`'s classification head: those the checkpoint holds no weights for, found before
    anything is loaded (so they can be kept out of 4-bit), e.g. `classifier` (BERT, RoBERTa, ELECTRA),
    `classifier` + `pre_classifier` (DistilBERT), `classifier` + `pooler` (DeBERTa-v2/v3). A checkpoint that is a
    sequence classifier already has none new; its head is then what lies outside the encoder."""
    model = meta_classifier(model_name, num_labels, problem_type)
    head = covering_modules(model, new_parameter_names(model, checkpoint_keys(model_name)))
    base = getattr(model, "base_model_prefix", "")
    if any(in_modules(base, [h]) for h in head):
        raise UserError(
            f"{model_name} holds none of the weights of {type(model).__name__}'s encoder; pass the checkpoint of a "
            f"BERT-style encoder with --model"
        )
    if not head:  # a classifier fine-tuned already: its head is what lies outside the encoder
        head = sorted(n for n, child in model.named_children() if n != base and any(True for _ in child.parameters()))
    return head


def recorded_head(model: torch.nn.Module) -> list[str]:
    """The head modules `quantization.load_4bit_model` kept out of 4-bit; `classifier` for a model loaded elsewhere."""
    return list(getattr(model, HEAD_ATTRIBUTE, None) or ["classifier"])


def in_modules(name: str, modules: list[str] | tuple[str, ...]) -> bool:
    """Whether module `name` is one of `modules` or inside one."""
    return any(name == m or name.startswith(f"{m}.") for m in modules)


def linear_layers(model: torch.nn.Module, outside: list[str] | tuple[str, ...] = ()) -> dict[str, torch.nn.Module]:
    """The model's linear layers (4-bit ones included) by full name, those in the modules `outside` left out."""
    import bitsandbytes as bnb

    return {
        name: m
        for name, m in model.named_modules()
        if isinstance(m, (torch.nn.Linear, bnb.nn.Linear4bit)) and name and not in_modules(name, outside)
    }


def adapter_targets(model: torch.nn.Module, head: list[str] | tuple[str, ...]) -> list[str]:
    """Short names of every linear layer outside the head: the attention and feed-forward projections (and a
    pretrained pooler), the `target_modules` that `all-linear` stands for."""
    return sorted({name.rsplit(".", 1)[-1] for name in linear_layers(model, head)})


def resolve_targets(model: torch.nn.Module, target_modules, head: list[str] | tuple[str, ...]) -> list[str]:
    """`target_modules` as layer names: `all-linear` expanded, other names checked against the model's own."""
    known = adapter_targets(model, head)
    if list(target_modules) == [ALL_LINEAR]:
        return known
    unknown = sorted(set(target_modules) - set(known))
    if unknown:
        raise UserError(
            f"target module(s) {unknown} not found; this model's linear layers are {known} - pass some of them "
            f"with --target-modules (or {ALL_LINEAR})"
        )
    return list(target_modules)


def repeated_blocks(model: torch.nn.Module) -> torch.nn.ModuleList | None:
    """The encoder's repeated layers: the model's longest list of modules (BERT's `encoder.layer`, ModernBERT's
    `layers`); None when it has none."""
    lists = [m for m in model.modules() if isinstance(m, torch.nn.ModuleList) and len(m)]
    return max(lists, key=len) if lists else None


def first_4bit_layer(model: torch.nn.Module) -> tuple[str, torch.nn.Module]:
    """The first 4-bit linear layer of the first encoder block, with its name: the tutorial's look inside a
    quantized layer (BERT's `encoder.layer.0.attention.self.query`), whatever the family."""
    import bitsandbytes as bnb

    blocks = repeated_blocks(model)
    first = {id(m) for m in blocks[0].modules()} if blocks is not None else None
    layers = [
        (n, m)
        for n, m in model.named_modules()
        if isinstance(m, bnb.nn.Linear4bit) and (first is None or id(m) in first)
    ]
    if not layers:
        raise UserError("this model has no 4-bit linear layer; load it with quantization.load_4bit_model")
    return layers[0]
