"""Train / validation / test splits, stratified by what the task says a row's kind is, with a fixed seed."""

from __future__ import annotations

import math

import pandas as pd

from qlora_helpers.errors import UserError


def stratified_sample(df: pd.DataFrame, n: int, seed: int, strata: pd.Series) -> pd.DataFrame:
    """`n` rows in the proportions of `strata` (a plain random sample where a stratum is too small)."""
    from sklearn.model_selection import train_test_split

    if n >= len(df):
        return df
    try:
        part, _ = train_test_split(df, train_size=n, stratify=strata, random_state=seed)
    except ValueError:
        part = df.sample(n=n, random_state=seed)
    return part.reset_index(drop=True)


def carve(df: pd.DataFrame, fraction: float, seed: int, task) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(rest, carved): `fraction` of the rows split off, stratified."""
    from sklearn.model_selection import train_test_split

    carved = math.ceil(fraction * len(df))  # sklearn's rounding: each side needs a row of every stratum
    strata = task.strata(df["label"], most=min(carved, len(df) - carved))
    try:
        rest, part = train_test_split(df, test_size=fraction, stratify=strata, random_state=seed)
    except ValueError as e:
        raise UserError(
            f"cannot make a stratified split of {len(df)} rows: {e}; use more rows or fewer classes"
        ) from None
    return rest.reset_index(drop=True), part.reset_index(drop=True)


def three_way(df: pd.DataFrame, val_fraction: float, test_fraction: float, seed: int, task, space, hint="") -> dict:
    """Train/validation/test with each stratum in the same proportion (80/10/10 by default)."""
    task.check_splittable(df["label"], space, hint)
    rest, test = carve(df, test_fraction, seed, task)
    train, val = carve(rest, val_fraction / (1 - test_fraction), seed, task)
    return {"train": train, "validation": val, "test": test}


def make_splits(
    pool: pd.DataFrame, own: dict[str, pd.DataFrame], settings, task, space, hint: str = ""
) -> tuple[dict, str]:
    """The three splits and a phrase saying where they came from: the dataset's own validation/test splits
    when it has them, else carved from `pool` (train, or the whole table)."""
    seed = settings.seed
    if "validation" in own and "test" in own:
        return {"train": pool, "validation": own["validation"], "test": own["test"]}, "the dataset's own splits"
    if own:
        have = next(iter(own))
        need = "test" if have == "validation" else "validation"
        fraction = settings.test_fraction if need == "test" else settings.val_fraction
        train, carved = carve(pool, fraction, seed, task)
        origin = f"the {have} split given; {need} carved from train ({fraction:.0%}, stratified, seed {seed})"
        return {"train": train, have: own[have], need: carved}, origin
    splits = three_way(pool, settings.val_fraction, settings.test_fraction, seed, task, space, hint)
    share = 1 - settings.val_fraction - settings.test_fraction
    return (
        splits,
        f"stratified {share:.0%}/{settings.val_fraction:.0%}/{settings.test_fraction:.0%} split, seed {seed}",
    )
