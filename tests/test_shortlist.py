"""The lexical shortlist (fast/shortlist.py): its table from co-occurrence, the words a batch keeps,
search over a shortlist equal to search over the vocabulary when it holds every word, only
shortlisted words otherwise, and what a model without one says."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from attnseq.cli import main
from attnseq.config import load_config
from attnseq.errors import AttnseqError
from attnseq.fast.shortlist import AUTO_MIN_VOCAB, AUTO_PER_WORD, FILE, PER_WORD_MAX, Shortlist, auto_size
from attnseq.tasks.translation import Translator
from attnseq.trainer import Trainer
from tests.conftest import CPU, DATES_CONFIG

SOURCES = ["3 March 2021", "July 4, 1976", "the 9th of May 1999", "Mon, 12 Oct 2020", "5/6/07"]


def test_the_table_ranks_target_words_by_how_often_they_share_a_sentence():
    # source 4 always comes with target 7, sometimes with 8; source 5 with 8 only; 6 with 7 and 9
    src = [[4], [4, 5], [5], [6, 4], [6]]
    tgt = [[7], [7, 8], [8], [9, 7], [9, 7]]
    shortlist = Shortlist.build(src, tgt, 7, 10)
    table = shortlist.table
    assert table.shape == (7, PER_WORD_MAX)
    # Dice: 4-7: 2*3/(3+4) = 0.857, 4-8: 2*1/(3+2) = 0.4, 4-9: 2*1/(3+2) = 0.4 (tie: lower id first)
    assert table[4, :3].tolist() == [7, 8, 9] and table[4, 3:].eq(0).all()
    assert table[5, :2].tolist() == [8, 7]  # 5-8: 2*2/(2+2) = 1.0, 5-7: 2*1/(2+4) = 0.33
    assert table[6, :2].tolist() == [9, 7]  # 6-9: 1.0, 6-7: 2*2/(2+4) = 0.67
    assert shortlist.frequent[:3].tolist() == [7, 8, 9]  # by training frequency: 4, 2, 2 sentences
    # a batch keeps its words' first candidates, the frequent words and the specials, ascending
    assert shortlist.select(torch.tensor([[5, 0]]), per_word=1, frequent=0).tolist() == [0, 1, 2, 3, 8]
    assert shortlist.select(torch.tensor([[5], [6]]), per_word=1, frequent=1).tolist() == [0, 1, 2, 3, 7, 8, 9]
    again = Shortlist.from_bytes(shortlist.to_bytes())
    assert torch.equal(again.table, table) and torch.equal(again.frequent, shortlist.frequent)


@pytest.fixture(scope="module")
def word_run(tmp_path_factory, dates_dir):
    """A small dates model (characters on both sides): its directory holds a shortlist."""
    out = tmp_path_factory.mktemp("shortlist") / "run"
    cfg = load_config(DATES_CONFIG, [
        f"data.train={dates_dir / 'train.tsv'}", f"data.valid={dates_dir / 'valid.tsv'}",
        "model.emb_size=32", "model.enc_hidden_size=32", "model.dec_hidden_size=32",
        "train.batch_size=32", "train.max_epochs=2", "train.max_minutes=0", "train.lr=0.005",
        "decode.precision=fp32",
    ])  # fmt: skip
    Trainer(cfg, out, progress_bar=False).fit()
    return out / "best"


@pytest.mark.parametrize("precision", ["fp32", "int8"])
@pytest.mark.parametrize("beam_size", [1, 3])
def test_a_shortlist_of_every_word_finds_what_the_whole_vocabulary_finds(word_run, precision, beam_size):
    if precision == "int8" and not CPU.int8_engine:
        pytest.skip("no quantized engine runs int8 linear layers on this CPU")
    translator = Translator.from_pretrained(word_run)
    assert (word_run / FILE).is_file() and translator.shortlist is not None
    translator.config.decode.precision = precision
    whole = translator.translate(SOURCES, beam_size=beam_size, n_best=beam_size)
    translator.config.decode.shortlist, translator.config.decode.shortlist_frequent = 1, len(translator.tgt_vocab)
    listed = translator.translate(SOURCES, beam_size=beam_size, n_best=beam_size)
    # greedy search at int8 runs the shortlist's layer in the decoding copy's dtype (not worth
    # quantizing once a batch for one row a sentence): the same words, scores as int8's are
    same_layer = precision == "fp32" or beam_size > 1
    for a, b in zip(whole, listed, strict=True):
        assert [h.output_tokens for h in a.alternatives] == [h.output_tokens for h in b.alternatives]
        scores = [h.score for h in b.alternatives]
        assert [h.score for h in a.alternatives] == pytest.approx(scores, abs=1e-4 if same_layer else 0.2)
        assert b.attention == pytest.approx(a.attention, abs=1e-5 if same_layer else 0.05)


def test_a_short_shortlist_writes_only_its_words(word_run):
    translator = Translator.from_pretrained(word_run)
    translator.config.decode.shortlist, translator.config.decode.shortlist_frequent = 1, 0
    allowed = set()
    for text in SOURCES:  # each decoding batch's shortlist (one batch here) is the union of its words' lists
        ids = [translator.src_vocab.stoi.get(t, translator.src_vocab.unk_id) for t in translator.src_tok.tokenize(text)]
        allowed |= {int(w) for w in translator.shortlist.table[ids, 0]}
    allowed = {translator.tgt_vocab.itos[w] for w in allowed} | {"<unk>", "</s>"}  # specials are always listed
    for beam_size in (1, 3):
        found = translator.translate(SOURCES, beam_size=beam_size)
        written = {t for tr in found for t in tr.output_tokens}
        assert written and written <= allowed, written - allowed


def test_a_model_saved_without_a_shortlist_says_so(word_run, tmp_path, capsys):
    old = tmp_path / "old"
    shutil.copytree(word_run, old)
    (old / FILE).unlink()  # as a model saved before shortlists existed
    config = json.loads((old / "config.json").read_text())
    del config["files"][FILE]
    (old / "config.json").write_text(json.dumps(config))
    translator = Translator.from_pretrained(old)
    assert translator.shortlist is None and translator.translate(SOURCES[:1])[0].output  # decodes as before
    translator.config.decode.shortlist = 10
    with pytest.raises(AttnseqError, match="saved without a shortlist.*decode.shortlist: 0"):
        translator.translate(SOURCES[:1])
    src = tmp_path / "src.txt"
    src.write_text(SOURCES[0] + "\n")
    assert main(["translate", "--model", str(old), "--input", str(src), "--shortlist", "10"]) == 2
    assert "saved without a shortlist" in capsys.readouterr().err


def test_a_shortlist_is_refused_where_it_cannot_apply():
    with pytest.raises(AttnseqError, match="decode.shortlist.*auto or in \\[0, 50\\]"):
        load_config(DATES_CONFIG, ["decode.shortlist=51"])
    with pytest.raises(AttnseqError, match="decode.shortlist.*expected a whole number or auto, got 'all'"):
        load_config(DATES_CONFIG, ["decode.shortlist=all"])
    assert load_config(DATES_CONFIG, ["model.copy=true"]).decode.shortlist == "auto"  # auto asks for none there
    with pytest.raises(AttnseqError, match="model that copies .*set decode.shortlist: 0"):
        load_config(DATES_CONFIG, ["model.copy=true", "decode.shortlist=10"])
    with pytest.raises(AttnseqError, match="text -> text models .*not task classify"):
        load_config(None, ["task=classify", "data.train=x", "data.valid=x", "decode.shortlist=10"])


def test_auto_lists_words_for_large_word_vocabularies_on_a_cpu_only():
    cpu, gpu = torch.device("cpu"), torch.device("cuda")
    assert auto_size(tgt_tokenizer="word", tgt_vocab_size=AUTO_MIN_VOCAB, device=cpu) == AUTO_PER_WORD == 10
    assert auto_size(tgt_tokenizer="word", tgt_vocab_size=AUTO_MIN_VOCAB - 1, device=cpu) == 0  # small output layer
    assert auto_size(tgt_tokenizer="spm", tgt_vocab_size=9762, device=cpu) == 0  # pieces: it cost 0.5 BLEU
    assert auto_size(tgt_tokenizer="char", tgt_vocab_size=9762, device=cpu) == 0
    assert auto_size(tgt_tokenizer="word", tgt_vocab_size=9762, device=gpu) == 0  # measured on CPUs only


def test_auto_resolves_per_model_and_decodes_as_the_size_it_names(word_run, monkeypatch):
    translator = Translator.from_pretrained(word_run)
    assert translator.config.decode.shortlist == "auto"  # the default, saved as such
    listed: list[int] = []  # the size of each decoding batch's shortlist
    cut = translator._shortlisted

    def spy(model, src, per_word, **kw):
        found = cut(model, src, per_word, **kw)
        listed.append(found.ids.numel())
        return found

    monkeypatch.setattr(translator, "_shortlisted", spy)
    assert translator.shortlist_size == 0 and translator.translate(SOURCES) and listed == []  # characters: none
    # the same model as if its target side were words of a large vocabulary: auto lists
    # AUTO_PER_WORD words per source word (here 1, with no frequent words: a 15-symbol vocabulary
    # would be listed whole at 10)
    monkeypatch.setattr(translator.config.data, "tgt_tokenizer", "word")
    monkeypatch.setattr("attnseq.fast.shortlist.AUTO_MIN_VOCAB", len(translator.tgt_vocab))
    monkeypatch.setattr("attnseq.fast.shortlist.AUTO_PER_WORD", 1)
    translator.config.decode.shortlist_frequent = 0
    assert translator.shortlist_size == 1
    auto = translator.translate(SOURCES, beam_size=3)
    assert len(listed) == 1 and listed[0] < len(translator.tgt_vocab)  # one batch, searched over its shortlist
    translator.config.decode.shortlist = 1
    assert [(t.output, t.score) for t in translator.translate(SOURCES, beam_size=3)] == [
        (t.output, t.score) for t in auto
    ]
    assert listed[1] == listed[0]


def test_auto_is_the_whole_vocabulary_for_a_model_without_a_shortlist(word_run, tmp_path, capsys, monkeypatch):
    old = tmp_path / "old"
    shutil.copytree(word_run, old)
    (old / FILE).unlink()
    config = json.loads((old / "config.json").read_text())
    del config["files"][FILE]
    (old / "config.json").write_text(json.dumps(config))
    translator = Translator.from_pretrained(old)
    translator.config.data.tgt_tokenizer = "word"  # a model auto would list words for, had it a table
    monkeypatch.setattr("attnseq.fast.shortlist.AUTO_MIN_VOCAB", len(translator.tgt_vocab))
    assert translator.shortlist is None and translator.shortlist_size == 0  # no error: auto asks for nothing
    assert translator.translate(SOURCES[:1])[0].output
    src = tmp_path / "src.txt"
    src.write_text(SOURCES[0] + "\n")
    assert main(["translate", "--model", str(old), "--input", str(src), "--shortlist", "auto"]) == 0
    capsys.readouterr()
    with pytest.raises(SystemExit) as stop:
        main(["translate", "--model", str(old), "--input", str(src), "--shortlist", "some"])
    assert stop.value.code == 2 and "expected a whole number or auto, got 'some'" in capsys.readouterr().err


def test_a_fused_language_model_reads_the_shortlists_words_by_their_vocabulary_ids(word_run):
    """A short shortlist searches over its positions, not vocabulary ids: the LM's scores must follow
    the words. An LM sure of one listed word (whose id is not its position) makes every output that word."""
    translator = Translator.from_pretrained(word_run)
    translator.config.decode.shortlist, translator.config.decode.shortlist_frequent = 1, 0
    ids = set()
    for text in SOURCES:
        src = [translator.src_vocab.stoi.get(t, translator.src_vocab.unk_id) for t in translator.src_tok.tokenize(text)]
        ids |= {int(w) for w in translator.shortlist.table[src, 0]}
    favourite = max(ids)  # the listed word with the highest id: its position in the shortlist is lower
    size = len(translator.tgt_vocab)
    table = torch.full((size, size), -30.0)
    table[:, favourite] = 0.0

    class SureLM:
        def step(self, tokens, state=None):
            return table[tokens].clone(), tokens.view(1, -1, 1).float()

        def to(self, device):
            return self

        def eval(self):
            return self

    translator.attach_lm("sure", SureLM(), translator.tgt_vocab.itos)
    translator.config.decode.lm, translator.config.decode.lm_weight = "sure", 10.0
    word = translator.tgt_vocab.itos[favourite]
    for tr in translator.translate(SOURCES, beam_size=3):
        assert tr.output_tokens and set(tr.output_tokens) <= {word, "</s>"}, (word, tr.output_tokens)
