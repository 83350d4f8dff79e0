from dataclasses import replace
from pathlib import Path

import pytest

from mtkit.config import Config, config_from_dict, config_to_dict, load_config, save_config
from mtkit.errors import MtkitError


def write(tmp_path, text):
    path = tmp_path / "c.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_and_yaml_overrides(tmp_path):
    cfg = load_config(write(tmp_path, "model:\n  hidden_dim: 64\n  attention:\n    kind: general\n"))
    assert cfg.model.hidden_dim == 64 and cfg.model.attention.kind == "general"
    assert cfg.model.emb_dim == Config().model.emb_dim  # untouched keys keep their dataclass default


def test_set_overrides_are_parsed_and_validated(tmp_path):
    cfg = load_config(write(tmp_path, "seed: 1\n"), ["train.lr=0.01", "length_edges=[5, 10]"])
    assert cfg.train.lr == 0.01 and cfg.length_edges == (5, 10)
    with pytest.raises(MtkitError, match="train.lr"):
        load_config(None, ["train.lr=fast"])


def test_unknown_key_names_path_and_suggests(tmp_path):
    with pytest.raises(MtkitError, match=r"`model.hiden_dim`: unknown key; did you mean `hidden_dim`"):
        load_config(write(tmp_path, "model:\n  hiden_dim: 3\n"))


@pytest.mark.parametrize("text, expected", [
    ("model:\n  dropout: 1.5\n", r"`model.dropout`: got 1.5; must be between"),
    ("model:\n  cell: transformer\n", r"`model.cell`: got 'transformer'; expected one of 'rnn', 'gru', 'lstm'"),
    ("train:\n  epochs: two\n", r"`train.epochs`: got 'two'; expected an integer"),
    ("model: 3\n", r"`model` must be a mapping"),
    ("data:\n  source: text\n", r"`data.src_file` is required"),
    ("model:\n  hidden_dim: [1\n", r"line \d+: not valid YAML"),
])
def test_bad_values_name_key_and_allowed(tmp_path, text, expected):
    with pytest.raises(MtkitError, match=expected):
        load_config(write(tmp_path, text))


def test_missing_file_names_path(tmp_path):
    with pytest.raises(MtkitError, match="nope.yaml: config file not found"):
        load_config(tmp_path / "nope.yaml")


def test_round_trip_through_dict_and_yaml(tmp_path):
    cfg = load_config(None, ["model.cell=lstm", "length_edges=[10, 20]"])
    assert config_from_dict(config_to_dict(cfg)) == cfg
    save_config(cfg, tmp_path / "saved.yaml")
    assert load_config(tmp_path / "saved.yaml") == cfg


def test_config_is_immutable():
    with pytest.raises(Exception):
        Config().model.hidden_dim = 3  # type: ignore[misc]


def test_set_value_that_is_not_yaml_is_a_clear_error():
    with pytest.raises(MtkitError, match=r"--set 'data.src_file=\[': the value is not valid YAML"):
        load_config(None, ["data.src_file=["])


def test_a_bad_model_combination_is_rejected_when_the_config_is_read(tmp_path):
    with pytest.raises(MtkitError, match=r"c.yaml: `model.attention.kind`: dot .* model.dec_hidden_dim \(512\)"):
        load_config(write(tmp_path, "model:\n  hidden_dim: 64\n  attention:\n    kind: dot\n"))


def test_update_checks_each_key_once_as_a_file_would(tmp_path):
    from mtkit.config import update

    cfg = Config()
    assert update(cfg, {"decode.beam": 3, "decode.batch_size": None}).decode == replace(cfg.decode, beam=3)
    with pytest.raises(MtkitError, match="`decode.beam`: got 0; must be at least 1"):
        update(cfg, {"decode.beam": 0})
    with pytest.raises(MtkitError, match="`eval.length_of`: got 'tgt'; expected one of 'src', 'ref'"):
        update(cfg, {"eval.length_of": "tgt"})


def test_passages_and_joined_training_are_off_by_default_and_on_in_the_study():
    data = Config().data
    assert (data.passage_windows, data.join_train_max_k, data.ref_column) == (0, 1, None)
    configs = Path(__file__).resolve().parents[1] / "configs"
    study = [load_config(configs / f"bible_{name}.yaml") for name in ("rnnencdec", "rnnsearch", "transformer")]
    for cfg in study:
        assert cfg.data.passage_windows > 0 and cfg.data.passage_max_k == cfg.data.join_train_max_k == 4, cfg.run_dir
        # one budget principle for all three: the same CPU time, no wall-time or step budget beside it
        assert (cfg.train.max_cpu_minutes, cfg.train.max_minutes, cfg.train.max_steps) == (30, None, None)
    # all three models get exactly the same data
    assert all(cfg.data == study[0].data and cfg.seed == study[0].seed for cfg in study)


@pytest.mark.parametrize("setting, expected", [
    ("data.passage_windows=-1", r"`data.passage_windows`: got -1; must be at least 0"),
    ("data.passage_max_k=7", r"`data.passage_max_k`: got 7; must be between 1 and 6"),
    ("data.join_train_max_k=0", r"`data.join_train_max_k`: got 0; must be between 1 and 6"),
    ("data.ref_column=ref", r"`data.ref_column` names a TSV column; it is read only when `data.source` is 'tsv'"),
])
def test_passage_and_reference_settings_are_checked(setting, expected):
    with pytest.raises(MtkitError, match=expected):
        load_config(None, [setting])
    assert load_config(None, ["data.source=tsv", "data.tsv_file=c.tsv", "data.ref_column=2"]).data.ref_column == 2


def test_every_key_has_a_meaning_and_every_number_a_range_or_a_reason_not_to():
    from mtkit.config import ServeConfig, keys

    listed = list(keys())
    assert [k.key for k in listed[:3]] == ["run_dir", "seed", "length_edges"]
    assert all(k.help for k in listed), [k.key for k in listed if not k.help]
    assert all(k.help for k in keys(ServeConfig))
    beam = next(k for k in listed if k.key == "decode.beam")
    assert (beam.type, beam.default, beam.range) == (int, 5, (1, None))
    assert next(k for k in listed if k.key == "model.attention").default == Config().model.attention


def test_a_range_beside_its_field_is_the_one_load_config_enforces():
    from mtkit.config import keys

    for k in keys():
        if k.range is not None and k.range[0] is not None:
            with pytest.raises(MtkitError, match=f"`{k.key}`: got"):
                load_config(None, [f"{k.key}={k.range[0] - 1}"])


def test_the_edges_older_versions_wrote_in_data_and_eval_are_read_as_length_edges(tmp_path, caplog):
    old = "data:\n  length_edges: [3, 6]\neval:\n  edges: [3, 6]\n  bootstrap: 5\n"
    cfg = load_config(write(tmp_path, old))
    assert cfg.length_edges == (3, 6) and cfg.eval.bootstrap == 5
    assert config_from_dict({"data": {"length_edges": [4]}, "eval": {"edges": [4]}}).length_edges == (4,)
    assert load_config(write(tmp_path, "data:\n  length_edges: [3, 6]\neval:\n  edges: [5]\n")).length_edges == (3, 6)
    assert "one key, `length_edges`" in caplog.text  # they disagreed: the data's edges are kept, and it says so
    with pytest.raises(MtkitError, match="`length_edges`: .*strictly increasing"):
        load_config(None, ["length_edges=[6, 3]"])
