"""classifier_config.json: what a trained model needs at prediction, written and read by one pair of functions;
damaged files are one line naming the file, and runs saved before it (label_mapping.json) still load."""

import json

import numpy as np
import pytest

from qlora_helpers.data.text_input import TextInput
from qlora_helpers.errors import UserError
from qlora_helpers.modeling.classifier_config import FILE, ClassifierConfig
from qlora_helpers.tasks import thresholds
from qlora_helpers.tasks.labels import LabelSpace

NAMES = ("anger", "joy", "neutral")


def multi_label_config() -> ClassifierConfig:
    rng = np.random.default_rng(0)
    truth = (rng.uniform(size=(60, 3)) < 0.4).astype(int)
    record = thresholds.tune(truth, np.clip(0.3 * truth + rng.uniform(0, 0.5, truth.shape), 0, 1), list(NAMES))
    return ClassifierConfig(
        "multi_label",
        LabelSpace(NAMES, ("2", "5", "9"), "emotions", ";"),
        TextInput(("question",), "answer"),
        64,
        "head",
        "some/base-model",
        "fp4",
        False,
        True,
        record,
    )


def test_save_and_load_round_trip(tmp_path):
    classifier_config = multi_label_config()
    path = classifier_config.save(tmp_path)
    assert path == tmp_path / FILE and json.loads(path.read_text())["labels"]["delimiter"] == ";"
    again = ClassifierConfig.load(tmp_path)
    assert (
        again == classifier_config
        and again.task.name == "multi_label"
        and again.problem_type == "multi_label_classification"
    )
    assert list(again.decision_thresholds()) == [classifier_config.thresholds["per_label"][n] for n in NAMES]
    scores = ClassifierConfig(
        "regression",
        LabelSpace(("score",), (), "stars", extras={"min": 1.0, "max": 5.0, "bins": [1.0, 3.0, 5.0]}),
        TextInput(("title", "body"), None, " | "),
        128,
        "head_tail",
        "base",
    )
    scores.save(tmp_path / "scores")
    back = ClassifierConfig.load(tmp_path / "scores")
    assert back == scores and back.labels.extras == scores.labels.extras and back.decision_thresholds() is None
    assert back.text_input.separator == " | " and back.task.name == "regression"


def test_a_truncated_file_is_one_line_naming_it(tmp_path):
    path = multi_label_config().save(tmp_path)
    path.write_text(path.read_text()[:200])
    with pytest.raises(UserError) as err:
        ClassifierConfig.load(tmp_path)
    message = str(err.value)
    assert message.startswith(f"{path} is damaged (JSONDecodeError") and "copy it again" in message
    assert "\n" not in message


@pytest.mark.parametrize(
    "change, message",
    [
        ({"per_label": {"anger": 0.3, "joy": 1.5, "neutral": 0.4}}, "thresholds must lie between 0 and 1"),
        ({"mode": "global", "global": -0.2}, "thresholds must lie between 0 and 1 (a probability), but anger=-0.2"),
        ({"per_label": {"anger": 0.3}}, "the saved thresholds lack label(s) ['joy', 'neutral']"),
        ({"mode": "median"}, "threshold mode must be one of"),
    ],
)
def test_bad_thresholds_are_refused_at_load(tmp_path, change, message):
    path = multi_label_config().save(tmp_path)
    record = json.loads(path.read_text())
    record["thresholds"] |= change
    path.write_text(json.dumps(record))
    with pytest.raises(UserError) as err:
        ClassifierConfig.load(tmp_path)
    assert str(err.value).startswith(f"{path}: ") and message in str(err.value) and "\n" not in str(err.value)


def test_a_folder_without_it_names_the_fix(tmp_path):
    with pytest.raises(UserError, match="has no classifier_config.json: it is not the output of a finished `train`"):
        ClassifierConfig.load(tmp_path)
    with pytest.raises(UserError, match="model directory not found"):
        ClassifierConfig.load(tmp_path / "nowhere")
    (tmp_path / FILE).write_text(json.dumps({"task": "single_label"}))  # whole JSON, but not a configuration
    with pytest.raises(UserError, match="is damaged \\(KeyError"):
        ClassifierConfig.load(tmp_path)


def write_legacy_run(directory, multi_label: bool):
    """The files a run saved before classifier_config.json: label_mapping.json, training_config.json and (for
    label sets) thresholds.json, as that version wrote them."""
    directory.mkdir(parents=True, exist_ok=True)
    names = list(NAMES) if multi_label else ["negative", "positive"]
    mapping = {
        "id2label": {str(i): n for i, n in enumerate(names)},
        "label2id": {n: i for i, n in enumerate(names)},
        "label_values": ["2", "5", "9"] if multi_label else [0, 1],
        "label_column": "emotions" if multi_label else "sentiment",
        "text_column": "review",
        "multi_label": multi_label,
        "label_delimiter": ";" if multi_label else ",",
        "label_columns": None,
        "text_columns": ["review"],
        "text_pair_column": None,
        "separator": " [SEP] ",
    }
    (directory / "label_mapping.json").write_text(json.dumps(mapping))
    trained = {"max_length": 48, "truncation": "head", "quant_type": "nf4", "double_quant": True, "lr": 5e-4}
    (directory / "training_config.json").write_text(json.dumps({**trained, "multi_label": multi_label}))
    record = multi_label_config().thresholds
    if multi_label:
        (directory / "thresholds.json").write_text(json.dumps(record))
    return record


@pytest.mark.parametrize("multi_label", [False, True])
def test_a_run_saved_before_classifier_config_still_loads(tmp_path, multi_label):
    record = write_legacy_run(tmp_path, multi_label)
    classifier_config = ClassifierConfig.load(tmp_path)
    assert classifier_config.task_name == ("multi_label" if multi_label else "single_label")
    assert (
        classifier_config.max_length,
        classifier_config.truncation,
        classifier_config.quant_type,
        classifier_config.cudnn_attention,
    ) == (48, "head", "nf4", False)
    assert classifier_config.text_input == TextInput(("review",), None, " [SEP] ")
    if multi_label:
        assert classifier_config.labels == LabelSpace(NAMES, ("2", "5", "9"), "emotions", ";")
        assert classifier_config.thresholds == record and list(classifier_config.decision_thresholds()) == [
            record["per_label"][n] for n in NAMES
        ]
    else:
        assert classifier_config.labels == LabelSpace(("negative", "positive"), (0, 1), "sentiment")
        assert classifier_config.thresholds is None and classifier_config.decision_thresholds() is None
    (tmp_path / "label_mapping.json").write_text('{"id2label": {"0": "a"')
    with pytest.raises(UserError, match=r"holds damaged run files \(JSONDecodeError") as err:
        ClassifierConfig.load(tmp_path)
    assert "\n" not in str(err.value)
