"""`load_config`: defaults, YAML into typed dataclasses, `--set` overrides, and every user mistake as
an `AttnseqError` whose message names the file, the line or key, and what to do."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from attnseq.config import (
    DataConfig,
    DecodeConfig,
    ModelConfig,
    TrainConfig,
    for_task,
    load_config,
    parse_override,
)
from attnseq.errors import AttnseqError

ROOT = Path(__file__).resolve().parents[1]
DATES_CONFIG = ROOT / "configs" / "dates.yaml"


def write(tmp_path: Path, text: str, name: str = "cfg.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def raises(path, overrides=()) -> str:
    with pytest.raises(AttnseqError) as info:
        load_config(path, overrides)
    message = str(info.value)
    assert "\n" not in message, "a user-facing error is one line"
    return message


# ------------------------------------------------------------------------------------- loading


def test_defaults_load_without_a_file():
    cfg = load_config(None)
    assert cfg == for_task("translate")
    assert isinstance(cfg.data, DataConfig) and isinstance(cfg.model, ModelConfig)
    assert isinstance(cfg.train, TrainConfig) and isinstance(cfg.decode, DecodeConfig)
    assert cfg.model.attention == "general"
    assert cfg.model.bidirectional is True
    assert cfg.train.lr == pytest.approx(1e-3)


def test_empty_file_gives_defaults(tmp_path):
    assert load_config(write(tmp_path, "")) == for_task("translate")


def test_dates_yaml_values_land_in_typed_dataclasses():
    cfg = load_config(DATES_CONFIG)
    assert cfg.data.train == "data/dates/train.tsv"
    assert cfg.data.src_tokenizer == "char" and cfg.data.tgt_tokenizer == "char"
    assert cfg.data.max_src_len == 64 and cfg.data.max_tgt_len == 16
    assert cfg.model.emb_size == 64 and type(cfg.model.emb_size) is int
    assert cfg.model.enc_hidden_size == 128 and cfg.model.dec_hidden_size == 128
    assert cfg.model.dropout == pytest.approx(0.1) and type(cfg.model.dropout) is float
    assert cfg.model.input_feeding is True
    assert cfg.train.lr == pytest.approx(0.003) and type(cfg.train.lr) is float
    assert cfg.train.max_minutes == 0.0 and cfg.train.max_epochs == 5 and cfg.train.num_threads == 1
    assert cfg.train.valid_metric == "exact_match"
    assert cfg.decode.batch_size == 500
    # keys the file does not mention keep their defaults
    assert cfg.model.deep_output is ModelConfig().deep_output
    assert cfg.decode.max_len_b == DecodeConfig().max_len_b


def test_int_is_accepted_where_a_float_is_expected(tmp_path):
    cfg = load_config(write(tmp_path, "train:\n  lr: 1\n  clip: 0\n"))
    assert cfg.train.lr == 1.0 and type(cfg.train.lr) is float
    assert cfg.train.clip == 0.0 and type(cfg.train.clip) is float


def test_null_section_is_allowed(tmp_path):
    assert load_config(write(tmp_path, "model:\ntrain:\n  seed: 7\n")).train.seed == 7


# ------------------------------------------------------------------------------------- --set


@pytest.mark.parametrize(
    "text, expected",
    [
        ("model.attention=concat", ("model.attention", "concat")),
        ("train.lr=0.01", ("train.lr", 0.01)),
        ("model.bidirectional=false", ("model.bidirectional", False)),
        ("model.emb_size=32", ("model.emb_size", 32)),
        (" data.train = a/b.tsv", ("data.train", "a/b.tsv")),
        ("data.train=", ("data.train", "")),
        ("data.train=x=y", ("data.train", "x=y")),
    ],
)
def test_parse_override(text, expected):
    key, value = parse_override(text)
    assert (key, value) == expected
    assert type(value) is type(expected[1])


def test_parse_override_without_equals_says_how():
    with pytest.raises(AttnseqError) as info:
        parse_override("model.attention")
    assert "--set 'model.attention'" in str(info.value)
    assert "expected KEY=VALUE" in str(info.value)
    assert "--set model.attention=concat" in str(info.value)


def test_overrides_apply_on_top_of_the_file():
    cfg = load_config(
        DATES_CONFIG,
        ["model.attention=concat", "train.lr=0.01", "model.bidirectional=false", "model.enc_hidden_size=7"],
    )
    assert cfg.model.attention == "concat"
    assert cfg.train.lr == pytest.approx(0.01)
    assert cfg.model.bidirectional is False
    assert cfg.model.enc_hidden_size == 7  # odd is fine once the encoder is unidirectional
    assert cfg.model.emb_size == 64  # untouched values still come from the file


def test_later_override_wins():
    cfg = load_config(None, ["model.rnn=gru", "model.rnn=rnn"])
    assert cfg.model.rnn == "rnn"


def test_load_config_does_not_share_state_between_calls():
    a = load_config(None, ["model.attention=concat"])
    b = load_config(None)
    assert a.model.attention == "concat" and b.model.attention == "general"
    assert dataclasses.asdict(b) == for_task("translate").to_dict()


def test_override_accepts_exponent_notation():
    assert load_config(None, ["train.lr=1e-3"]).train.lr == pytest.approx(1e-3)


# ------------------------------------------------------------------------------------- mistakes


def test_unknown_section_names_file_line_and_sections(tmp_path):
    path = write(tmp_path, "data:\n  min_freq: 2\nmodle:\n  rnn: gru\n")
    msg = raises(path)
    assert msg.startswith(f"{path}:3: 'modle' is not a config section")
    assert "valid sections: data, model, train, decode" in msg
    assert "did you mean 'model'?" in msg


def test_unknown_key_names_file_line_key_and_suggestion(tmp_path):
    path = write(tmp_path, "# a comment\ndata:\n  min_freq: 2\nmodel:\n  rnn: gru\n  atention: dot\n")
    msg = raises(path)
    assert f"{path}:6:" in msg
    assert "'model.atention' is not a known key" in msg
    assert "did you mean 'attention'?" in msg
    assert "valid keys in 'model':" in msg and "attn_size" in msg and "input_feeding" in msg


def test_unknown_key_without_near_miss_has_no_suggestion(tmp_path):
    path = write(tmp_path, "train:\n  zzzzzz: 1\n")
    msg = raises(path)
    assert f"{path}:2: 'train.zzzzzz' is not a known key" in msg
    assert "did you mean" not in msg


def test_wrong_type_names_file_line_key_and_value(tmp_path):
    path = write(tmp_path, "model:\n  emb_size: big\n")
    msg = raises(path)
    assert msg == f"{path}:2: 'model.emb_size': expected a whole number, got 'big'"


@pytest.mark.parametrize(
    "yaml_text, line, fragment",
    [
        ("model:\n  bidirectional: 1\n", 2, "'model.bidirectional': expected true or false, got 1"),
        ("model:\n  emb_size: 1.5\n", 2, "'model.emb_size': expected a whole number, got 1.5"),
        ("model:\n  emb_size: true\n", 2, "'model.emb_size': expected a whole number, got True"),
        ("train:\n  lr: fast\n", 2, "'train.lr': expected a number, got 'fast'"),
        ("train:\n\n  lr: false\n", 3, "'train.lr': expected a number, got False"),
        ("data:\n  train: [a, b]\n", 2, "'data.train': expected a string, got ['a', 'b']"),
    ],
)
def test_wrong_types(tmp_path, yaml_text, line, fragment):
    path = write(tmp_path, yaml_text)
    assert raises(path) == f"{path}:{line}: {fragment}"


def test_value_outside_choices_lists_valid_choices(tmp_path):
    path = write(tmp_path, "model:\n  decoder: luong\n  attention: foo\n")
    msg = raises(path)
    assert msg.startswith(f"{path}:3: 'model.attention': 'foo' is not allowed")
    assert "choose one of dot, scaled_dot, general, concat, location" in msg


def test_near_miss_choice_gets_a_suggestion(tmp_path):
    path = write(tmp_path, "model:\n  attention: concatt\n")
    assert "did you mean 'concat'?" in raises(path)


def test_section_that_is_not_a_mapping(tmp_path):
    path = write(tmp_path, "model: 5\n")
    assert raises(path) == f"{path}:1: 'model' must be a mapping of keys to values"


def test_top_level_that_is_not_a_mapping(tmp_path):
    path = write(tmp_path, "- data\n- model\n")
    msg = raises(path)
    assert msg.startswith(f"{path}: ")
    assert "data / model / train / decode" in msg


@pytest.mark.parametrize(
    "override, fragment",
    [
        ("model.atention=dot", "--set: 'model.atention' is not a known key (did you mean 'attention'?)"),
        ("model.attention=foo", "--set: 'model.attention': 'foo' is not allowed; choose one of dot,"),
        ("model.emb_size=big", "--set: 'model.emb_size': expected a whole number, got 'big'"),
        ("modl.rnn=gru", "--set: 'modl' is not a config section; valid sections: data, model, train, decode"),
        ("model=gru", "--set: 'model' must be SECTION.KEY, e.g. model.attention"),
    ],
)
def test_bad_overrides(override, fragment):
    assert fragment in raises(DATES_CONFIG, [override])


def test_bad_override_without_equals():
    msg = raises(DATES_CONFIG, ["model.attention"])
    assert msg == "--set 'model.attention': expected KEY=VALUE, e.g. --set model.attention=concat"


def test_invalid_yaml_names_file_and_line(tmp_path):
    path = write(tmp_path, "model:\n  emb_size: 8\n  rnn: gru\n   x: [\n")
    msg = raises(path)
    assert msg.startswith(f"{path}:4: invalid YAML")


def test_invalid_yaml_unclosed_bracket(tmp_path):
    path = write(tmp_path, "data:\n  train: [a, b\nmodel:\n  rnn: gru\n")
    msg = raises(path)
    assert re.match(rf"{re.escape(str(path))}:\d+: invalid YAML \(.+\)$", msg), msg


def test_config_that_is_not_utf8(tmp_path):
    path = tmp_path / "cfg.yaml"
    path.write_bytes(b"model:\n  rnn: \xff\xfe\n")
    msg = raises(path)
    assert str(path) in msg


def test_missing_config_file(tmp_path):
    path = tmp_path / "nope.yaml"
    msg = raises(path)
    assert msg.startswith(f"{path}: config file not found")
    assert "check the path" in msg


def test_a_directory_is_not_a_config_file(tmp_path):
    assert raises(tmp_path).startswith(f"{tmp_path}: config file not found")


# ------------------------------------------------------------------------------------- cross-field


@pytest.mark.parametrize("attention", ["dot", "scaled_dot"])
@pytest.mark.parametrize("decoder", ["luong", "bahdanau"])
def test_dot_attention_needs_equal_hidden_sizes(decoder, attention):
    msg = raises(
        DATES_CONFIG,
        [f"model.decoder={decoder}", f"model.attention={attention}", "model.dec_hidden_size=64"],
    )
    assert msg.startswith(f"--set: '{attention}' attention")  # the value came from --set
    assert "model.dec_hidden_size (64) must equal model.enc_hidden_size (128)" in msg
    assert "use attention 'general' or 'concat'" in msg


def test_dot_attention_with_equal_sizes_is_fine():
    cfg = load_config(DATES_CONFIG, ["model.attention=dot"])
    assert cfg.model.attention == "dot"


def test_dot_attention_mismatch_is_ignored_without_attention():
    cfg = load_config(DATES_CONFIG, ["model.decoder=init", "model.attention=dot", "model.dec_hidden_size=64"])
    assert cfg.model.decoder == "init"


@pytest.mark.parametrize(
    "overrides, fragment",
    [
        (["model.enc_hidden_size=7"], "'model.enc_hidden_size' = 7 must be even with a bidirectional encoder"),
        (["model.emb_size=0"], "'model.emb_size' must be at least 1"),
        (["model.dropout=1.0"], "'model.dropout' must be in [0, 1)"),
        (["train.teacher_forcing=1.5"], "'train.teacher_forcing' must be in [0, 1]"),
        (["train.batch_size=0"], "'train.batch_size' must be at least 1"),
        (["data.src_suffix=.en"], "set both 'data.src_suffix' and 'data.tgt_suffix'"),
    ],
)
def test_cross_field_checks(overrides, fragment):
    msg = raises(DATES_CONFIG, overrides)
    assert msg.startswith("--set: ")  # names where the bad value came from
    assert fragment in msg


def test_range_errors_name_the_line_of_the_file(tmp_path):
    path = write(tmp_path, "model:\n  rnn: gru\n  emb_size: 0\ntrain:\n  lr_factor: 1.5\n")
    assert raises(path) == f"{path}:3: 'model.emb_size' must be at least 1 (got 0)"
    path = write(tmp_path, "train:\n  lr_factor: 1.5\n")
    assert raises(path) == f"{path}:2: 'train.lr_factor' must be in (0, 1) (got 1.5)"
