"""Translation features: sentencepiece subwords saved with the model, beam search through the
Translator and the CLI, evaluation scores, tied embeddings, snapshots, ablation, bad input."""

from __future__ import annotations

import json

import pytest
import torch

from attnseq.checkpoint import tied_keys
from attnseq.cli import main
from attnseq.config import load_config
from attnseq.errors import AttnseqError
from attnseq.fast.frozen import Int8Linear
from attnseq.metrics import score_translations
from attnseq.predict import load_model_dir
from attnseq.tasks.translation import Translator
from attnseq.tokenize import SentencePieceTokenizer, train_sentencepiece
from attnseq.trainer import Trainer
from tests.conftest import CPU, DATES_CONFIG, needs_native_bf16

SENTENCES = [
    "Two young, White males are outside near many bushes.",
    "Several men in hard hats are operating a giant pulley system.",
    "A little girl climbing into a wooden playhouse.",
    "Ein Mann schläft in einem grünen Raum auf einem Sofa.",
    "Une femme avec un grand sac à main marche près d'une porte.",
] * 20


@pytest.mark.parametrize("model_type", ["bpe", "unigram"])
def test_sentencepiece_round_trip(model_type):
    tok = SentencePieceTokenizer(train_sentencepiece(SENTENCES, vocab_size=120, model_type=model_type))
    for text in SENTENCES[:5]:
        pieces = tok.tokenize(text)
        assert len(pieces) > 1 and pieces[0].startswith("\u2581")
        assert tok.detokenize(pieces) == text
    assert tok.tokenize("\u200b") == []  # zero tokens: the Translator turns it into an empty line


def test_bleu_of_a_fixed_pair_is_pinned():
    scores = score_translations(
        ["The cat sat on the mat .", "A dog runs in the park"],
        ["The cat sat on a mat .", "a dog is running in the park"],
    )
    assert scores["bleu"] == pytest.approx(34.8130, abs=1e-3)
    assert scores["bleu_lc_tok"] == pytest.approx(37.0533, abs=1e-3)  # "A"/"a" match once lowercased
    assert scores["chrf"] == pytest.approx(56.4130, abs=1e-3)
    assert scores["bleu_signature"].startswith("nrefs:1|case:mixed|eff:no|tok:13a")
    assert "case:lc" in scores["bleu_lc_tok_signature"]


@pytest.fixture(scope="module")
def spm_run(tmp_path_factory, dates_dir):
    """A small model with sentencepiece on both sides, tied embeddings and a snapshot."""
    out = tmp_path_factory.mktemp("spm") / "run"
    cfg = load_config(DATES_CONFIG, [
        f"data.train={dates_dir / 'train.tsv'}", f"data.valid={dates_dir / 'valid.tsv'}",
        "data.src_tokenizer=spm", "data.tgt_tokenizer=spm", "data.spm_vocab_size=100", "data.spm_type=unigram",
        "model.emb_size=32", "model.enc_hidden_size=32", "model.dec_hidden_size=32", "model.tie_embeddings=true",
        "train.batch_size=32", "train.max_epochs=2", "train.max_minutes=0", "train.snapshot_minutes=0.0001",
        "train.lr=0.005", "decode.beam_size=3",
    ])  # fmt: skip
    Trainer(cfg, out, progress_bar=False).fit()
    return out


def test_sentencepiece_model_travels_with_the_model_directory(spm_run, dates_dir):
    best = spm_run / "best"
    assert (best / "src.spm.model").is_file() and (best / "tgt.spm.model").is_file()
    translator = Translator.from_pretrained(best)
    assert translator.src_tok.name == "spm"
    tr = translator.translate(["3 March 2021"])[0]
    assert tr.tokens and tr.text == translator.tgt_tok.detokenize([t for t in tr.tokens if t != "</s>"])


def test_tied_embeddings_are_one_tensor_after_loading(spm_run):
    model, cfg, _ = load_model_dir(spm_run / "best")
    assert cfg.model.tie_embeddings
    assert model.decoder.W_y.weight.data_ptr() == model.decoder.embedding.weight.data_ptr()
    assert tied_keys(model) == ["decoder.W_y.weight"]


def test_snapshot_keeps_the_best_model_at_that_time(spm_run):
    snap = spm_run / "best_at_0.0001min"
    assert (snap / "model.safetensors").is_file()
    records = [json.loads(line) for line in (spm_run / "metrics.jsonl").read_text().splitlines()]
    first_valid = next(r for r in records if r["event"] == "valid")
    assert first_valid["step"] == 1  # taken after the first step, before any end-of-epoch validation
    a, _, _ = load_model_dir(snap)
    b, _, _ = load_model_dir(spm_run / "best")
    improved_later = any(r["improved"] for r in records if r["event"] == "valid" and r["step"] > 1)
    same = all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert same != improved_later  # best/ moved on exactly when a later validation improved


def test_translator_beam_search_n_best(spm_run):
    translator = Translator.from_pretrained(spm_run)
    greedy = translator.translate(["3 March 2021", "July 4, 1976"], beam_size=1)
    beam = translator.translate(["3 March 2021", "July 4, 1976"], beam_size=3, n_best=3)
    for tr in beam:
        assert len(tr.n_best) == 3 and tr.n_best[0] is tr
        ranks = [h.rank_score for h in tr.n_best]
        assert ranks == sorted(ranks, reverse=True)
        assert tr.attention.shape == (len(tr.tokens), len(tr.src_tokens))
    assert all(len(g.n_best) == 1 for g in greedy)


@pytest.mark.parametrize("precision", ["fp32", pytest.param("bf16", marks=needs_native_bf16)])
def test_the_decoding_copy_is_kept_until_refresh(spm_run, precision):
    """A predictor decodes with the copy it made once (no per-call checks of the weights); after
    the model's weights change, `refresh` makes the next search copy them anew."""
    translator = Translator.from_pretrained(spm_run)
    translator.config.decode.precision = precision
    first = translator._decoding_model()
    assert first is translator._decoding_model()
    assert first.decoder.W_y.weight.dtype == (torch.bfloat16 if precision == "bf16" else torch.float32)
    before = [t.text for t in translator.translate(["3 March 2021"], beam_size=1)]
    W_y = translator.model.decoder.W_y
    optimizer = torch.optim.Adam([W_y.bias], lr=100.0, fused=True)  # moves no version counter
    W_y.bias.grad = torch.zeros_like(W_y.bias)
    W_y.bias.grad[translator.tgt_vocab.eos_id] = -1.0  # Adam's first step moves it by lr: </s> first
    optimizer.step()
    assert translator._decoding_model() is first
    assert [t.text for t in translator.translate(["3 March 2021"], beam_size=1)] == before
    translator.refresh()
    second = translator._decoding_model()
    assert second is not first
    assert torch.equal(second.decoder.W_y.bias.float(), W_y.bias.to(second.decoder.W_y.bias.dtype).float())
    assert before != [t.text for t in translator.translate(["3 March 2021"], beam_size=1)] == [""]


def test_int8_decoding_quantizes_the_output_layer(spm_run):
    translator = Translator.from_pretrained(spm_run)
    sources = ["3 March 2021", "July 4, 1976", "the 9th of May 1999"]
    reference = translator.translate(sources, beam_size=1)
    translator.config.decode.precision = "int8"
    quantized = translator._decoding_model()
    assert isinstance(quantized.decoder.W_y, Int8Linear)  # the output layer in int8
    assert quantized.decoder.W_y.engine == CPU.int8_engine
    # the rest in bfloat16 where this CPU runs it natively, else in float32
    assert quantized.decoder.W_c.weight.dtype == (torch.bfloat16 if CPU.bf16 else torch.float32)
    # and in a float32 copy the recurrent product of the tabulated gates is int8 as well
    assert isinstance(quantized.decoder.recurrent, Int8Linear) == (not CPU.bf16)
    assert translator.model.decoder.W_y.weight.dtype == torch.float32  # the model itself is untouched
    found = translator.translate(sources, beam_size=1)
    assert [t.text for t in found] == [t.text for t in reference]
    for fast, ref in zip(found, reference, strict=True):
        assert fast.score == pytest.approx(ref.score, abs=0.2)
        assert fast.attention.sum(-1) == pytest.approx(1.0, abs=1e-5)


def test_cli_translate_n_best_and_json(spm_run, tmp_path, capsys):
    src = tmp_path / "src.txt"
    src.write_text("3 March 2021\n\u200b\nJuly 4, 1976\n", encoding="utf-8")
    assert main(["translate", "--model", str(spm_run), "--input", str(src), "--beam-size", "3", "--n-best", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(" ||| ")[0] for line in lines] == ["1", "1", "2", "3", "3"]  # the empty source: one line
    assert lines[2] == "2 |||  ||| 0.0000"
    assert main(["translate", "--model", str(spm_run), "--input", str(src), "--json", "--beam-size", "2",
                 "--n-best", "2"]) == 0  # fmt: skip
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(records) == 3 and records[1]["output"] == "" and len(records[0]["alternatives"]) == 2


def test_cli_evaluate_json_keys(spm_run, dates_dir, tmp_path, capsys):
    pairs = [line.split("\t") for line in (dates_dir / "test.tsv").read_text().splitlines()[:30]]
    (tmp_path / "s.txt").write_text("".join(s + "\n" for s, _ in pairs))
    (tmp_path / "r.txt").write_text("".join(r + "\n" for _, r in pairs))
    args = ["evaluate", "--model", str(spm_run), "--src", str(tmp_path / "s.txt"), "--ref", str(tmp_path / "r.txt")]
    assert main([*args, "--json", "--beam-size", "2", "--output", str(tmp_path / "hyp.txt")]) == 0
    scores = json.loads(capsys.readouterr().out)
    assert {"bleu", "chrf", "bleu_lc_tok", "bleu_signature", "sent_s"} <= set(scores)
    assert scores["beam_size"] == 2 and scores["sentences"] == 30 and scores["shortlist"] == 0
    assert len((tmp_path / "hyp.txt").read_text().splitlines()) == 30
    assert main([*args, "--json", "--shortlist", "3"]) == 0  # the setting is reported with the scores
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["shortlist"] == 3
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "BLEU" in text and "chrF" in text and "tok:13a" in text and "beam 3" in text


@pytest.mark.parametrize(
    "src_text,ref_text,message",
    [
        ("a\nb\nc\n", "x\ny\n", "has 3 lines but"),
        ("", "x\n", "the file is empty"),
        ("a\n\nc\n", "x\ny\nz\n", ":2: empty line"),
    ],
)
def test_cli_evaluate_bad_files(spm_run, tmp_path, capsys, src_text, ref_text, message):
    (tmp_path / "s.txt").write_text(src_text)
    (tmp_path / "r.txt").write_text(ref_text)
    args = ["evaluate", "--model", str(spm_run), "--src", str(tmp_path / "s.txt"), "--ref", str(tmp_path / "r.txt")]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err and err.startswith("attnseq: error: ") and "Traceback" not in err


def test_cli_search_options_are_checked(spm_run, capsys):
    assert main(["translate", "--model", str(spm_run), "--beam-size", "2", "--n-best", "3"]) == 2
    assert "decode.n_best = 3 is more than decode.beam_size = 2" in capsys.readouterr().err
    assert main(["translate", "--model", str(spm_run), "--beam-size", "0"]) == 2
    assert "decode.beam_size" in capsys.readouterr().err


def test_config_checks_for_translation_keys(tmp_path):
    with pytest.raises(AttnseqError, match="tie_embeddings needs model.emb_size"):
        load_config(DATES_CONFIG, ["model.tie_embeddings=true", "model.emb_size=16", "model.dec_hidden_size=32"])
    with pytest.raises(AttnseqError, match="'data.spm_type'"):
        load_config(DATES_CONFIG, ["data.spm_type=wordpiece"])
    missing = tmp_path / "nope.model"
    cfg = load_config(DATES_CONFIG, ["data.src_tokenizer=spm", f"data.src_spm_model={missing}"])
    from attnseq.tokenize import fit_tokenizers

    with pytest.raises(AttnseqError, match="sentencepiece model not found"):
        fit_tokenizers(cfg.data, ["a"], ["b"])
    (tmp_path / "bad.model").write_bytes(b"not a model")
    cfg = load_config(DATES_CONFIG, ["data.src_tokenizer=spm", f"data.src_spm_model={tmp_path / 'bad.model'}"])
    with pytest.raises(AttnseqError, match="not a sentencepiece model"):
        fit_tokenizers(cfg.data, ["a"], ["b"])


def test_ablate_writes_table_chart_and_json(dates_dir, tmp_path, capsys):
    out = tmp_path / "abl"
    args = ["ablate", str(DATES_CONFIG), "--out", str(out), "--only", "init,luong-general,bahdanau-dot"]
    overrides = [f"data.train={dates_dir / 'valid.tsv'}", f"data.valid={dates_dir / 'valid.tsv'}",
                 f"data.test={dates_dir / 'valid.tsv'}", "model.emb_size=8", "model.enc_hidden_size=8",
                 "model.dec_hidden_size=16", "train.max_steps=3", "train.max_minutes=0"]  # fmt: skip
    assert main([*args, *[a for o in overrides for a in ("--set", o)]]) == 0
    table = (out / "ablation.md").read_text()
    assert "| init |" in table and "| luong-general |" in table
    assert "| bahdanau-dot | skipped:" in table  # dot needs equal encoder / decoder sizes
    rows = json.loads((out / "ablation.json").read_text())
    assert [r["variant"] for r in rows] == ["init", "luong-general", "bahdanau-dot"]
    assert all(r["train_tok_s"] > 0 for r in rows if not r["skipped"])
    assert (out / "ablation.png").read_bytes()[:4] == b"\x89PNG"
    assert main([*args, "--only", "luong-typo"]) == 2
    assert "unknown variant(s) luong-typo" in capsys.readouterr().err


def test_pairs_that_tokenize_to_nothing_are_skipped_and_counted(dates_dir, tmp_path):
    rows = (dates_dir / "valid.tsv").read_text(encoding="utf-8").splitlines()[:20]
    rows[3] = "\u200b\t2021-03-03"  # a zero-width space: not blank, but sentencepiece keeps nothing of it
    (tmp_path / "train.tsv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    cfg = load_config(DATES_CONFIG, [
        f"data.train={tmp_path / 'train.tsv'}", f"data.valid={dates_dir / 'valid.tsv'}",
        "data.src_tokenizer=spm", "data.tgt_tokenizer=spm", "data.spm_vocab_size=80",
    ])  # fmt: skip
    trainer = Trainer(cfg, tmp_path / "run", progress_bar=False)
    assert trainer.data.train.skipped == 1 and len(trainer.data.train) == 19


def test_resume_keeps_the_sentencepiece_models(dates_dir, tmp_path):
    overrides = [
        f"data.train={dates_dir / 'valid.tsv'}", f"data.valid={dates_dir / 'valid.tsv'}",
        "data.src_tokenizer=spm", "data.tgt_tokenizer=char", "data.spm_vocab_size=80",
        "model.emb_size=8", "model.enc_hidden_size=8", "model.dec_hidden_size=8", "train.batch_size=16",
    ]  # fmt: skip
    Trainer(load_config(DATES_CONFIG, [*overrides, "train.max_steps=2"]), tmp_path / "run", progress_bar=False).fit()
    first = (tmp_path / "run" / "last" / "src.spm.model").read_bytes()
    assert not (tmp_path / "run" / "last" / "tgt.spm.model").exists()  # char target: nothing to save
    resumed = Trainer(load_config(DATES_CONFIG, [*overrides, "train.max_steps=4"]), tmp_path / "run", resume=True,
                      progress_bar=False)  # fmt: skip
    assert resumed.data.assets.tokenizers[0].model_proto == first
    resumed.fit()
    assert (tmp_path / "run" / "last" / "src.spm.model").read_bytes() == first


def test_a_vocabulary_too_small_for_the_characters_is_a_clear_error():
    with pytest.raises(AttnseqError, match=r"data.spm_vocab_size = 10: .*Vocabulary size is smaller"):
        train_sentencepiece(SENTENCES, vocab_size=10, model_type="bpe")


def test_int8_decoding_without_native_bf16_quantizes_the_recurrent_product(spm_run, monkeypatch):
    from tests.test_precision import NO_BF16, force

    if not CPU.int8_engine:
        pytest.skip("no quantized engine runs int8 linear layers on this CPU")
    force(monkeypatch, bf16=False, bf16_missing=NO_BF16)  # as an AVX2-only CPU answers
    translator = Translator.from_pretrained(spm_run)
    sources = ["3 March 2021", "July 4, 1976", "the 9th of May 1999"]
    translator.config.decode.precision = "fp32"
    reference = translator.translate(sources, beam_size=3)
    translator.config.decode.precision = "int8"
    quantized = translator._decoding_model()
    assert isinstance(quantized.decoder.recurrent, Int8Linear) and isinstance(quantized.decoder.W_y, Int8Linear)
    assert quantized.decoder.word_gates.dtype == torch.float32
    found = translator.translate(sources, beam_size=3)
    assert [t.text for t in found] == [t.text for t in reference]
    for fast, ref in zip(found, reference, strict=True):
        assert fast.score == pytest.approx(ref.score, abs=0.2)
