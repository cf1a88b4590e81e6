"""The tuner's search space: which recipe settings a study varies, over what ranges, written on the command line
as `low:high` (a range), `a,b,c` (choices) or one value (fixed, not searched).

Ranges are checked once, before a study starts, with the configuration's own validation: every end of a range
and every choice must make a valid `TrainConfig`, so a bad range ends in one line and nothing is written.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from qlora_helpers import tasks
from qlora_helpers.config import ALL_LINEAR, TrainConfig
from qlora_helpers.errors import UserError, require

# the searched settings, with the flag that narrows or widens each and its default (None: from the data)
DEFAULTS: dict[str, str | None] = {
    "lr": "1e-4:2e-3",
    "epochs": None,  # half to 1.5 times the length `epochs: auto` picks for these data
    "lora_r": "8,16,32,64",
    "lora_alpha_ratio": "1,2,4",
    "target_modules": f"{ALL_LINEAR},attention",
    "class_weights": "none,auto",  # classification only
    "max_length": "64,128,256",
    "warmup": "0:0.2",
}
WHAT = {
    "lr": "learning rate (log scale)",
    "epochs": "training length in passes (default: half to 1.5x what --epochs auto picks for these data)",
    "lora_r": "LoRA rank",
    "lora_alpha_ratio": "LoRA alpha as a multiple of the rank (alpha/r; 2 is the recipe's)",
    "target_modules": f"adapted layers: {ALL_LINEAR}, attention (its projections), or layer names joined by +",
    "class_weights": "none and/or auto (classification only)",
    "max_length": "tokens kept per text; the range's top is your cap",
    "warmup": "share of the steps spent warming up",
}
INTEGER = {"lora_r", "max_length"}
LOG_SCALE = {"lr", "max_length"}


@dataclass(frozen=True)
class Param:
    """One searched setting: a float or whole-number range, or a list of choices."""

    name: str
    low: float | None = None
    high: float | None = None
    choices: tuple = ()
    integer: bool = False
    log: bool = False

    @property
    def step(self) -> float | None:
        return 0.01 if self.name == "warmup" and not self.log else None

    def suggest(self, trial) -> Any:
        if self.choices:
            return trial.suggest_categorical(self.name, list(self.choices))
        if self.integer:
            return trial.suggest_int(self.name, int(self.low), int(self.high), log=self.log)
        return trial.suggest_float(self.name, self.low, self.high, log=self.log, step=self.step)

    def distribution(self):
        """The Optuna distribution `suggest` draws from (what a study's storage records for the setting)."""
        from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

        if self.choices:
            return CategoricalDistribution(list(self.choices))
        if self.integer:
            return IntDistribution(int(self.low), int(self.high), log=self.log)
        return FloatDistribution(self.low, self.high, log=self.log, step=self.step)

    def describe(self) -> str:
        if self.choices:
            return f"{self.name} in {{{', '.join(map(str, self.choices))}}}"
        return f"{self.name} {self.low:g}..{self.high:g}" + (" (log)" if self.log else "")


@dataclass
class SearchSpace:
    """The searched parameters and the settings fixed for every trial; `changes` turns a trial's parameters
    into configuration changes (alpha from its ratio, a layer group into layer names)."""

    params: dict[str, Param]
    fixed: dict[str, Any] = field(default_factory=dict)
    layer_groups: dict[str, list[str]] = field(default_factory=dict)

    def suggest(self, trial) -> dict[str, Any]:
        return {name: p.suggest(trial) for name, p in self.params.items()}

    def changes(self, params: dict[str, Any], base: TrainConfig, with_fixed: bool = True) -> dict[str, Any]:
        """Configuration changes for one trial's `params` (and the fixed settings), rounded as they will run."""
        values = {**(self.fixed if with_fixed else {}), **params}
        out: dict[str, Any] = {}
        for name, value in values.items():
            if name == "lora_alpha_ratio":
                continue
            if name == "target_modules":
                out[name] = self.layer_groups.get(value, str(value).split("+"))
            elif name == "lr":
                out[name] = float(f"{value:.2g}")
            elif name == "warmup":
                out[name] = round(float(value), 2)
            elif name == "epochs" and value != "auto":
                out[name] = int(value) if float(value).is_integer() else round(float(value), 2)
            else:
                out[name] = value
        if "lora_alpha_ratio" in values:
            out["lora_alpha"] = float(values["lora_alpha_ratio"]) * out.get("lora_r", base.lora_r)
        return out

    def describe(self) -> str:
        searched = "; ".join(p.describe() for p in self.params.values()) or "nothing"
        fixed = ", ".join(f"{k}={v}" for k, v in self.fixed.items())
        return f"search: {searched}" + (f"; fixed: {fixed}" if fixed else "")


def _number(text: str, flag: str, integer: bool) -> float:
    try:
        value = float(text)
    except ValueError:
        raise UserError(f"{flag}: {text!r} is not a number; write low:high, a,b,c or one value") from None
    require(math.isfinite(value), f"{flag}: {text!r} is not a finite number")
    if integer:
        require(value.is_integer(), f"{flag}: {text!r} is not a whole number")
        return int(value)
    return value


def parse(name: str, text: str, integer: bool = False) -> Param | Any:
    """`low:high` -> a range, `a,b,c` -> choices, one value -> that value (fixed); a one-line error otherwise."""
    flag = "--" + name.replace("_", "-")
    text = str(text).strip()
    require(text != "", f"{flag} is empty; write low:high, a,b,c or one value")
    if ":" in text:
        lo_text, _, hi_text = text.partition(":")
        require(
            lo_text.strip() and hi_text.strip() and ":" not in hi_text,
            f"{flag} {text}: a range is low:high, e.g. 1e-4:1e-3",
        )
        wants_int = integer or (name == "epochs" and "." not in text and "e" not in text.lower())
        low, high = _number(lo_text, flag, wants_int), _number(hi_text, flag, wants_int)
        require(low < high, f"{flag} {text} is an empty range: write low:high with low < high, or one value to fix it")
        log = name in LOG_SCALE
        require(not log or low > 0, f"{flag} {text}: this range is searched on a log scale, so it must start above 0")
        return Param(name, low, high, integer=wants_int, log=log)
    items = [t.strip() for t in text.split(",")]
    require(all(items), f"{flag} {text}: an empty choice; write choices as a,b,c")
    numeric = name not in ("target_modules", "class_weights", "epochs") or (name == "epochs" and "auto" not in items)
    values = [_number(t, flag, integer or name == "epochs" and "." not in t) if numeric else t for t in items]
    values = list(dict.fromkeys(values))
    return values[0] if len(values) == 1 else Param(name, choices=tuple(values), integer=integer)


def layer_groups(model_name: str, num_labels: int, problem_type: str) -> dict[str, list[str]]:
    """The model's adaptable layers, named: all-linear, and attention (its projections: linear layers inside an
    attention block whose short name occurs nowhere else, e.g. BERT's query/key/value), found on the meta device."""
    from qlora_helpers.modeling import (
        encoders,  # torch: only when a study starts, never for the other commands' start-up
    )

    model = encoders.meta_classifier(model_name, num_labels, problem_type)
    head = encoders.head_modules(model_name, num_labels, problem_type)
    layers = encoders.linear_layers(model, head)
    short = lambda n: n.rsplit(".", 1)[-1]  # noqa: E731
    inside = {short(n) for n in layers if "attn" in n.lower() or "attention" in n.lower()}
    outside = {short(n) for n in layers if not ("attn" in n.lower() or "attention" in n.lower())}
    groups = {ALL_LINEAR: [ALL_LINEAR]}
    attention = sorted(inside - outside)
    if attention:
        groups["attention"] = attention
    groups["_known"] = sorted({short(n) for n in layers})
    groups["_smallest"] = [min(min(m.in_features, m.out_features) for m in layers.values())]
    return groups


def build_space(
    given: dict[str, str | None],
    base: TrainConfig,
    task_name: str,
    auto_epochs: float,
    groups: dict[str, list[str]],
    max_positions: int | None = None,
) -> SearchSpace:
    """The search space from the flags the user gave (`given`: name -> text or None for the default), the
    data (`task_name`, the auto length) and the model (`groups`, `max_positions`); every end checked."""
    known = groups.get("_known", [])
    smallest = (groups.get("_smallest") or [None])[0]
    groups = {k: v for k, v in groups.items() if not k.startswith("_")}
    defaults = dict(DEFAULTS)
    defaults["epochs"] = f"{max(1, math.floor(auto_epochs / 2))}:{max(2, math.ceil(auto_epochs * 1.5))}"
    if not tasks.get(task_name).weighable:
        require(
            given.get("class_weights") in (None, "none"),
            f"--class-weights weighs classes or labels; a {task_name} task has none: leave it out",
        )
        defaults.pop("class_weights")
    params: dict[str, Param] = {}
    fixed: dict[str, Any] = {}
    for name, default in defaults.items():
        text = default if given.get(name) is None else given[name]  # an empty value is an error, not the default
        parsed = parse(name, text, integer=name in INTEGER)
        (params if isinstance(parsed, Param) else fixed)[name] = parsed
    for name in ("target_modules",):
        chosen = params[name].choices if name in params else (fixed[name],)
        for choice in chosen:
            if choice in groups:
                continue
            require(
                all(layer in known for layer in str(choice).split("+")),
                f"--target-modules: {choice!r} is neither a group ({', '.join(groups)}) nor layers of this model "
                f"joined by + (its linear layers: {', '.join(known)})",
            )
    ranks = params["lora_r"].choices or (params["lora_r"].high,) if "lora_r" in params else (fixed.get("lora_r"),)
    too_big = [r for r in ranks if r is not None and smallest is not None and r >= smallest]
    require(
        not too_big,
        f"--lora-r {too_big[0] if too_big else ''} is not below this model's smallest adapted layer "
        f"({smallest} wide), so it is not a low-rank update; keep every rank of the space below {smallest}",
    )
    space = SearchSpace(params, fixed, groups)
    _check_ends(space, base, max_positions)
    return space


def _check_ends(space: SearchSpace, base: TrainConfig, max_positions: int | None) -> None:
    """Each fixed value, each end of a range and each choice, one at a time on the base configuration: the
    first invalid one ends in an error naming its flag."""
    values = [(n, v) for n, v in space.fixed.items()]
    values += [(n, v) for n, p in space.params.items() for v in (p.choices or (p.low, p.high))]
    for name, value in values:
        flag = "--" + name.replace("_", "-")
        require(name != "lora_alpha_ratio" or value > 0, f"{flag}: alpha/r must be above 0, got {value}")
        changes = space.changes({name: value}, base, with_fixed=False)
        try:
            base.replace(**changes)
        except UserError as e:
            raise UserError(f"{flag}: {e}") from None
        length = changes.get("max_length", base.max_length)
        require(
            max_positions is None or length <= max_positions,
            f"--max-length: {length} tokens is beyond this model's {max_positions} positions; lower the range's top",
        )


def check_same_space(study, space: SearchSpace, root) -> None:
    """A resumed study keeps each searched setting's kind (range or choices, whole or not, log or not) and its
    choices, as Optuna requires; a change is one line before any trial starts, not Optuna's error mid-study."""
    from optuna.distributions import CategoricalDistribution, check_distribution_compatibility

    recorded: dict[str, Any] = {}
    for trial in study.get_trials(deepcopy=False):
        recorded.update(trial.distributions)
    for name, param in space.params.items():
        if name not in recorded:
            continue
        try:
            check_distribution_compatibility(recorded[name], param.distribution())
            if recorded[name] != param.distribution():  # compatible, yet trials from two spaces in one study
                raise ValueError
        except ValueError:
            old = recorded[name]
            was = (
                "choices " + ",".join(map(str, old.choices))
                if isinstance(old, CategoricalDistribution)
                else f"the range {old.low:g}:{old.high:g}" + (" (log)" if old.log else "")
            )
            raise UserError(
                f"--{name.replace('_', '-')}: the study in {root} searched {was}; --resume keeps a setting's "
                f"choices and kind of range: give the same, or --overwrite to start a new study"
            ) from None
