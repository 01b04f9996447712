"""A model directory: complete, reloadable with nothing else, identical outputs, never unpickled,
never half-written."""

from __future__ import annotations

import json
import os
import shutil
import stat

import pytest
import torch

from attnseq import Translator
from attnseq.checkpoint import save_model_dir
from attnseq.errors import AttnseqError
from attnseq.models.seq2seq import build_model
from attnseq.predict import load_model_dir
from attnseq.tasks.translation import TranslationAssets
from attnseq.tokenize import build_tokenizers
from attnseq.vocab import Vocab

SENTENCES = ["the 3rd of March 2021", "Mar 3, '21", "03.03.2021", ""]


@pytest.fixture
def saved(tmp_path, tiny_config):
    cfg = tiny_config("model.decoder=bahdanau", "model.attention=concat")
    src_vocab = Vocab(["<pad>", "<unk>", "<s>", "</s>", *"0123456789 ,.'/-abcdefghijklmnopqrstuvwxyzMW"])
    tgt_vocab = Vocab(["<pad>", "<unk>", "<s>", "</s>", *"0123456789-"])
    torch.manual_seed(5)
    model = build_model(cfg.model, src_vocab_size=len(src_vocab), tgt_vocab_size=len(tgt_vocab)).eval()
    assets = TranslationAssets(src_vocab, tgt_vocab, build_tokenizers(cfg.data))
    save_model_dir(tmp_path / "model", model=model, config=cfg, assets=assets)
    return tmp_path / "model", Translator(model, cfg, src_vocab, tgt_vocab)


def test_directory_holds_json_and_safetensors_only(saved):
    directory, _ = saved
    assert sorted(p.name for p in directory.iterdir()) == [
        "config.json",
        "model.safetensors",
        "src_vocab.json",
        "tgt_vocab.json",
    ]
    config = json.loads((directory / "config.json").read_text())
    assert config["model"]["decoder"] == "bahdanau" and config["model"]["attention"] == "concat"


def test_save_load_gives_identical_outputs(saved):
    directory, original = saved
    loaded = Translator.from_pretrained(directory)
    for a, b in zip(original.translate(SENTENCES), loaded.translate(SENTENCES)):
        assert a.text == b.text and a.tokens == b.tokens
        assert a.score == b.score
        assert (a.attention == b.attention).all()
    for p, q in zip(original.model.state_dict().values(), loaded.model.state_dict().values()):
        assert torch.equal(p, q)


def test_loading_never_unpickles(saved, monkeypatch):
    directory, _ = saved

    def no_pickle(*args, **kwargs):
        raise AssertionError("torch.load / pickle used while loading a model")

    monkeypatch.setattr(torch, "load", no_pickle)
    monkeypatch.setattr("pickle.load", no_pickle)
    model, cfg, _ = load_model_dir(directory)
    assert cfg.model.decoder == "bahdanau" and not model.training


def test_a_crash_while_saving_leaves_the_old_directory(saved, monkeypatch):
    directory, translator = saved
    before = {p.name: p.read_bytes() for p in directory.iterdir()}

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("attnseq.checkpoint.save_file", crash)
    with torch.no_grad():
        for p in translator.model.parameters():
            p.add_(1.0)
    with pytest.raises(AttnseqError, match=r"model\.safetensors: could not write it \(disk full\); .* is unchanged"):
        save_model_dir(
            directory,
            model=translator.model,
            config=translator.config,
            assets=TranslationAssets(
                translator.src_vocab, translator.tgt_vocab, (translator.src_tok, translator.tgt_tok)
            ),
        )
    assert {p.name: p.read_bytes() for p in directory.iterdir()} == before
    assert sorted(p.name for p in directory.parent.iterdir()) == ["model"]  # no temporary left behind


def test_weights_that_do_not_match_the_config_are_a_clear_error(saved):
    from attnseq.errors import AttnseqError

    directory, _ = saved
    cfg = json.loads((directory / "config.json").read_text())
    cfg["model"]["dec_hidden_size"] = 64
    (directory / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(AttnseqError, match="model.safetensors: does not match config.json"):
        load_model_dir(directory)


def test_saved_files_are_readable_by_others_as_the_umask_allows(saved):
    directory, _ = saved
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(directory.stat().st_mode) == 0o777 & ~mask
    for name in ("config.json", "src_vocab.json", "model.safetensors"):
        assert stat.S_IMODE((directory / name).stat().st_mode) == 0o666 & ~mask


def test_a_sibling_old_directory_never_shadows_the_best_model(saved, tmp_path):
    from attnseq.checkpoint import resolve_model_dir

    directory, _ = saved
    run = tmp_path / "run"
    run.mkdir()
    directory.rename(run / "best")
    shutil.copytree(run / "best", tmp_path / "run.old")  # e.g. a user's backup beside the run
    assert resolve_model_dir(run) == run / "best"
    shutil.rmtree(run / "best")  # a crash between the renames of a swap: best/ missing, best.old there
    shutil.copytree(tmp_path / "run.old", run / "best.old")
    assert resolve_model_dir(run) == run / "best.old"
