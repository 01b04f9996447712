"""Fuzzing (hypothesis): whatever bytes or values reach the readers, tokenizers, the config loader
and the model loader, the answer is a result or the package's one error type (AttnseqError),
never another exception. The server's payloads are fuzzed against its schema in
tests/test_serve_schema.py (schemathesis)."""

from __future__ import annotations

import io
import json
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from attnseq.errors import AttnseqError

FUZZ = settings(max_examples=150, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])

# text that looks like the files users feed: tabs, newlines, commas, quotes, braces, odd characters
pieces = st.sampled_from(["\t", "\n", "\r\n", ",", '"', "{", "}", ":", "[", "]", " ", "a", "Q", "A", "text",
                          "label", "\ufeff", "\u200b", "é", "한", "\x00", "1", "-", "'", "\\"])  # fmt: skip
file_text = st.lists(pieces | st.text(max_size=5), max_size=40).map("".join)
file_bytes = st.one_of(file_text.map(lambda t: t.encode("utf-8")), st.binary(max_size=200))


def write(data: bytes, name: str) -> Path:
    folder = Path(tempfile.mkdtemp(prefix="attnseq-fuzz-"))
    path = folder / name
    path.write_bytes(data)
    return path


def either_result_or_attnseq_error(call):
    try:
        return call()
    except AttnseqError as exc:
        assert str(exc)  # a message, one line
        assert "\n" not in str(exc).strip()
        return None


@FUZZ
@given(file_bytes)
def test_tsv_and_parallel_readers(data):
    from attnseq.readers import read_parallel, read_tsv

    path = write(data, "pairs.tsv")
    try:
        pairs = either_result_or_attnseq_error(lambda: read_tsv(path))
        assert pairs is None or all(isinstance(a, str) and isinstance(b, str) and a and b for a, b in pairs)
        either_result_or_attnseq_error(lambda: read_parallel(path, path))
    finally:
        shutil.rmtree(path.parent)


@FUZZ
@given(file_bytes, st.sampled_from(["csv", "jsonl"]))
def test_records_reader(data, fmt):
    from attnseq.config import RecordsDataConfig
    from attnseq.readers import read_records

    path = write(data, f"records.{fmt}")
    try:
        either_result_or_attnseq_error(lambda: read_records(path, RecordsDataConfig(format=fmt)))
    finally:
        shutil.rmtree(path.parent)


@FUZZ
@given(file_bytes, st.sampled_from(["tsv", "csv"]))
def test_labelled_reader(data, fmt):
    from attnseq.config import for_task
    from attnseq.tasks.classify import read_labelled

    cfg = for_task("classify")
    cfg.data.format = fmt
    path = write(data, f"labelled.{fmt}")
    try:
        either_result_or_attnseq_error(lambda: read_labelled(path, cfg.data))
    finally:
        shutil.rmtree(path.parent)


@FUZZ
@given(st.text(max_size=60), st.booleans())
def test_tokenizers_invert_or_normalise_any_text(text, lowercase):
    from attnseq.tokenize import CharTokenizer, WordTokenizer

    for tok in (WordTokenizer(lowercase=lowercase), WordTokenizer(split_punctuation=True), CharTokenizer()):
        tokens = tok.tokenize(text)
        assert all(isinstance(t, str) and t for t in tokens)
        assert tok.tokenize(tok.detokenize(tokens)) == tokens  # what it writes, it reads back the same


@pytest.fixture(scope="module")
def spm_tokenizer():
    from attnseq.tokenize import SentencePieceTokenizer, train_sentencepiece

    texts = [f"the {w} sat on the mat number {i}" for i, w in enumerate(["cat", "dog", "bird", "한국어"] * 20)]
    return SentencePieceTokenizer(train_sentencepiece(texts, vocab_size=40, model_type="unigram"))


@FUZZ
@given(st.text(max_size=60))
def test_sentencepiece_tokenizer_on_any_text(spm_tokenizer, text):
    tokens = spm_tokenizer.tokenize(text)
    assert all(isinstance(t, str) for t in tokens)
    assert isinstance(spm_tokenizer.detokenize(tokens), str)


yaml_keys = st.sampled_from(["data", "model", "train", "decode", "task", "emb_size", "lr", "attention", "x",
                             "train.lr", "batch_size", "src_tokenizer", "beam_size"])  # fmt: skip
words = st.sampled_from(["dot", "concat", "translate", "classify", "1e9"])
yaml_scalars = st.one_of(st.integers(-10**12, 10**12), st.floats(allow_nan=True), st.booleans(), st.none(),
                         st.text(max_size=8), words)  # fmt: skip
yaml_values = st.recursive(yaml_scalars, lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(yaml_keys, inner, max_size=4), max_leaves=12)  # fmt: skip


@FUZZ
@given(st.one_of(file_text, yaml_values.map(lambda v: json.dumps(v))))
def test_config_loader_on_any_yaml(text):
    from attnseq.config import load_config

    path = write(text.encode("utf-8", "surrogatepass"), "config.yaml")
    try:
        either_result_or_attnseq_error(lambda: load_config(path))
    finally:
        shutil.rmtree(path.parent)


@FUZZ
@given(st.lists(st.text(max_size=30), max_size=4))
def test_config_overrides_of_any_text(overrides):
    from attnseq.config import load_config

    either_result_or_attnseq_error(lambda: load_config(None, overrides))


@FUZZ
@given(st.one_of(yaml_values, st.dictionaries(yaml_keys, yaml_values, max_size=6)))
def test_saved_config_loader_on_any_json(value):
    from attnseq.config import load_config_json

    path = write(json.dumps(value).encode(), "config.json")
    try:
        either_result_or_attnseq_error(lambda: load_config_json(path))
    finally:
        shutil.rmtree(path.parent)


@FUZZ
@given(st.one_of(yaml_values, file_bytes.map(lambda b: b.decode("latin-1"))))
def test_vocabulary_loader_on_any_json(value):
    from attnseq.vocab import Vocab

    data = json.dumps(value).encode() if not isinstance(value, str) else value.encode("utf-8")
    path = write(data, "vocab.json")
    try:
        either_result_or_attnseq_error(lambda: Vocab.load(path))
    finally:
        shutil.rmtree(path.parent)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, dates_dir):
    from attnseq.config import load_config
    from attnseq.trainer import Trainer
    from tests.conftest import DATES_CONFIG

    out = tmp_path_factory.mktemp("fuzz_model") / "run"
    cfg = load_config(DATES_CONFIG, [f"data.train={dates_dir / 'valid.tsv'}", f"data.valid={dates_dir / 'valid.tsv'}",
                                     "model.emb_size=8", "model.enc_hidden_size=16", "model.dec_hidden_size=16",
                                     "train.max_steps=1", "train.num_threads=1"])  # fmt: skip
    Trainer(cfg, out, progress_bar=False).fit()
    return out / "best"


@settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(st.sampled_from(["config.json", "model.safetensors", "src_vocab.json", "tgt_vocab.json"]),
       st.one_of(file_bytes, st.integers(0, 4000)))  # fmt: skip
def test_model_loader_on_damaged_directories(model_dir, name, damage):
    """A file of a model directory replaced by other bytes, or cut short: loading answers with an
    AttnseqError (checksums, strict config), or, where the bytes happen to be the same, works."""
    import attnseq

    folder = Path(tempfile.mkdtemp(prefix="attnseq-fuzz-")) / "model"
    shutil.copytree(model_dir, folder)
    try:
        path = folder / name
        path.write_bytes(path.read_bytes()[:damage] if isinstance(damage, int) else damage)
        translator = either_result_or_attnseq_error(lambda: attnseq.load(folder))
        if translator is not None:
            assert translator.translate(["Mar 3, 2021"])[0].output is not None
    finally:
        shutil.rmtree(folder.parent)


@FUZZ
@given(st.binary(max_size=200))
def test_standard_input_of_any_bytes(data):
    from attnseq.readers import decode_lines

    lines = either_result_or_attnseq_error(lambda: list(decode_lines(io.BytesIO(data), "stdin")))
    if lines is not None:  # decodable: every line is text, numbered from 1
        assert [n for n, _ in lines] == list(range(1, len(lines) + 1))
