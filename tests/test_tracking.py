"""Weights & Biases is optional: one line says which way a run logs, and nothing stops training."""

import os
import sys
import types

from qlora_helpers.train.tracking import choose_report_to


def test_no_key_means_local_only(monkeypatch, tmp_path):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    report_to, line = choose_report_to("auto", tmp_path / "absent.env")
    assert report_to == "none" and line.startswith("logging: local only") and "WANDB_API_KEY" in line


def test_key_from_dotenv_without_wandb_installed(monkeypatch, tmp_path):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    env = tmp_path / ".env"
    env.write_text("WANDB_API_KEY=abc123\n")
    monkeypatch.setitem(sys.modules, "wandb", None)  # import fails as if not installed
    report_to, line = choose_report_to("auto", env)
    assert report_to == "none" and "wandb is not installed: pip install wandb" in line
    import os

    assert os.environ["WANDB_API_KEY"] == "abc123"  # read from the .env file
    monkeypatch.delenv("WANDB_API_KEY")


def test_failed_login_trains_on_locally(monkeypatch, tmp_path):
    monkeypatch.setenv("WANDB_API_KEY", "bad-key")
    fake = types.ModuleType("wandb")

    def login(**kwargs):
        raise ConnectionError("unreachable")

    fake.login = login
    monkeypatch.setitem(sys.modules, "wandb", fake)
    assert choose_report_to("auto", tmp_path / "x.env") == (
        "none",
        "logging: local only - Weights & Biases login failed (ConnectionError)",
    )


def test_working_login_turns_wandb_on(monkeypatch, tmp_path):
    monkeypatch.setenv("WANDB_API_KEY", "good-key")
    monkeypatch.setenv("WANDB_PROJECT", "qlora-bert-text-classification")
    fake = types.ModuleType("wandb")
    seen = {}
    fake.login = lambda **kw: seen.update(kw) or True
    monkeypatch.setitem(sys.modules, "wandb", fake)
    report_to, line = choose_report_to("auto", tmp_path / "x.env")
    assert report_to == "wandb" and seen["key"] == "good-key" and "qlora-bert-text-classification" in line
    assert choose_report_to("none", tmp_path / "x.env")[0] == "none"


def test_offline_mode_needs_no_key(monkeypatch, tmp_path):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    env = tmp_path / ".env"
    env.write_text("WANDB_MODE=offline\n")  # from .env, as .env.example suggests
    monkeypatch.delenv("WANDB_MODE", raising=False)
    fake = types.ModuleType("wandb")
    fake.login = lambda **kw: (_ for _ in ()).throw(AssertionError("offline mode must not log in"))
    monkeypatch.setitem(sys.modules, "wandb", fake)
    report_to, line = choose_report_to("wandb", env)
    assert report_to == "wandb"
    assert (
        line == f"logging: Weights & Biases offline, run files under {tmp_path / 'wandb'} (upload later: wandb sync)"
    )
    monkeypatch.setitem(sys.modules, "wandb", None)
    assert choose_report_to("auto", env) == (
        "none",
        "logging: local only - WANDB_MODE=offline but wandb is not installed: pip install wandb",
    )
    assert choose_report_to("none", env)[0] == "none"
    monkeypatch.delenv("WANDB_MODE")


def test_tensorboard_when_asked_and_a_line_when_it_is_missing(monkeypatch, tmp_path):
    monkeypatch.delenv("TENSORBOARD_LOGGING_DIR", raising=False)
    report_to, line = choose_report_to("tensorboard", tmp_path / "x.env", output_dir=str(tmp_path / "run"))
    where = tmp_path / "run" / "runs"
    assert report_to == "tensorboard" and os.environ["TENSORBOARD_LOGGING_DIR"] == str(where)
    assert line == f"logging: TensorBoard event files under {where} (view them: tensorboard --logdir {where})"
    import transformers.integrations

    monkeypatch.setattr(transformers.integrations, "is_tensorboard_available", lambda: False)
    assert choose_report_to("tensorboard", tmp_path / "x.env", output_dir="out") == (
        "none",
        "logging: local only - report_to=tensorboard but tensorboard is not installed: pip install tensorboard",
    )
