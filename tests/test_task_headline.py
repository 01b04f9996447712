"""The headline task (SPEC 6.3, summarization): the lead baseline and its tuning, ROUGE through
rouge-score, the recipe's seeded split, and a tiny pointer-generator run on generated news whose
headlines copy words of the description: it must beat the lead baseline, and its attention must
point at the words it copies."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest

import attnseq
from attnseq.cli import main
from attnseq.config import load_config
from attnseq.errors import AttnseqError
from attnseq.metrics import score_summaries
from attnseq.readers import split_records
from attnseq.tasks.headlines import lead, tune_lead
from attnseq.trainer import Trainer

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"

# made-up names: many, each seen rarely, so a headline gets them by copying from its description
NAMES = [a + b for a in ("Ka", "Lo", "Mi", "Ra", "Su", "To", "Ve", "Zi") for b in ("ran", "dell", "mor", "pik", "ston")]
VERBS = "opens closes sells buys wins loses".split()
THINGS = "bakery stadium bridge museum factory library".split()
CITIES = "Paris Lagos Lima Oslo Seoul Quito".split()
OPENERS = ["officials said on monday that", "in a surprise move ,", "after months of talks ,", "reports say"]


def write_news(path: Path, n: int = 500, *, seed: int = 0) -> Path:
    """JSON Lines news records: a description and the headline made of three of its words."""
    rng = random.Random(seed)
    lines = []
    for _ in range(n):
        name, verb, thing, city = rng.choice(NAMES), rng.choice(VERBS), rng.choice(THINGS), rng.choice(CITIES)
        desc = f"{rng.choice(OPENERS)} {name} {verb} the old {thing} in {city} , a decision many welcomed ."
        lines.append(json.dumps({"short_description": desc, "headline": f"{name} {verb} {thing}", "category": "X"}))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def headline_overrides(jsonl: Path, *extra: str) -> list[str]:
    return [
        "task=headline", f"data.files=[{jsonl}]", "data.format=jsonl", "data.src_field=short_description",
        "data.tgt_field=headline", "data.src_tokenizer=word", "data.tgt_tokenizer=word", "data.lowercase=false",
        "model.emb_size=32", "model.enc_hidden_size=32", "model.dec_hidden_size=32", "model.dropout=0.0",
        "model.copy=true", "train.batch_size=16", "train.max_epochs=10", "train.lr=0.01", "train.log_every=100",
        "train.max_minutes=0", "train.patience=0", "train.valid_metric=rougeL", "decode.beam_size=3",
        "decode.max_len_a=0", "decode.max_len_b=8", *extra,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def news_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("news")
    jsonl = write_news(root / "news.jsonl")
    out = root / "run"
    Trainer(load_config(None, headline_overrides(jsonl)), out, progress_bar=False).fit()
    return out, jsonl


def test_lead_takes_the_first_words_and_tuning_picks_the_best_n():
    assert lead("one two  three four", 2) == "one two" and lead("one", 5) == "one"
    pairs = [("alpha beta gamma delta epsilon", "alpha beta gamma"), ("red green blue cyan magenta", "red green blue")]
    assert tune_lead(pairs) == 3
    # a tie goes to the smaller N: nothing past the headline's words scores
    assert tune_lead([("a b", "a b")]) == 2


def test_rouge_is_rouge_score_f1_with_stemming():
    from rouge_score import rouge_scorer

    hyps, refs = ["the cats are running home", "markets fall"], ["cat runs home", "stock markets fall sharply"]
    ours = score_summaries(hyps, refs)
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)
    for name in ("rouge1", "rouge2", "rougeL"):
        expect = 100 * np.mean([scorer.score(r, h)[name].fmeasure for h, r in zip(hyps, refs)])
        assert ours[name] == pytest.approx(expect)
    assert score_summaries(["running"], ["runs"])["rouge1"] == pytest.approx(100.0)  # stemmed: run = run
    with pytest.raises(ValueError):
        score_summaries(["a"], ["a", "b"])


@pytest.mark.skipif(not (SHARED / "news-headlines-huffpost").is_dir(), reason="no shared news-headlines-huffpost")
def test_the_recipe_splits_the_news_8_1_1():
    cfg = load_config(ROOT / "configs" / "headlines.yaml")
    split = split_records(cfg.data)
    assert [len(split[k]) for k in ("train", "valid", "test")] == [7999, 1000, 1000]
    assert all(r.src and r.tgt for k in split for r in split[k])


def test_copy_needs_an_attention_decoder():
    with pytest.raises(AttnseqError, match="model.copy copies through the attention weights"):
        load_config(ROOT / "configs" / "headlines.yaml", ["model.decoder=every-step"])


def test_a_tiny_copy_run_beats_the_lead_baseline(news_run, capsys):
    out, _ = news_run
    assert main(["evaluate", "--model", str(out), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    base = report["baseline"]
    assert base["name"].startswith(f"lead-{base['words']}")
    for name in ("rouge1", "rouge2", "rougeL"):
        assert report[name] >= base[name] + 20, (name, report[name], base[name])
    assert report["rougeL"] > 90
    assert len(report["examples"]) == 5 and report["rouge_settings"] == "rouge-score, F1, use_stemmer=True"


def test_the_attention_points_at_the_words_it_copies(news_run):
    model = attnseq.load(news_run[0])
    (p,) = model.predict(["reports say Miston buys the old bridge in Oslo , a decision many welcomed ."])
    assert p.output == "Miston buys bridge"
    weights = np.asarray(p.attention)
    for row, token in enumerate(p.output_tokens[:3]):
        assert p.input_tokens[int(weights[row].argmax())] == token
    # the share of each written word's probability that copying gave: the rare name is copied
    assert len(p.copied) == len(p.output_tokens) and all(0.0 <= c <= 1.0 for c in p.copied)
    assert p.copied[0] > 0.5, p.copied
    assert p.to_dict()["copied"] == [round(c, 5) for c in p.copied]
    (beam,) = model.predict(["reports say Miston buys the old bridge in Oslo , a decision many welcomed ."],
                            beam_size=3, n_best=2)  # fmt: skip
    assert beam.copied == pytest.approx(p.copied, abs=1e-4) and beam.alternatives[1].copied is None


def test_ablate_runs_on_a_headline_config(news_run, tmp_path):
    _, jsonl = news_run
    sets = [a for o in headline_overrides(jsonl, "train.max_epochs=1") for a in ("--set", o)]
    args = ["ablate", str(ROOT / "configs" / "headlines.yaml"), "--out", str(tmp_path / "abl"), "--only",
            "init,luong-dot"]  # fmt: skip
    assert main([*args, *sets]) == 0
    table = (tmp_path / "abl" / "ablation.md").read_text(encoding="utf-8")
    assert "| variant | params | ROUGE-1 | ROUGE-2 | ROUGE-L |" in table
    assert "| init | skipped: model.copy copies through the attention weights" in table
    rows = json.loads((tmp_path / "abl" / "ablation.json").read_text())
    assert [r["variant"] for r in rows] == ["init", "luong-dot", "baseline"]
    assert rows[1]["rougeL"] > 0 and rows[2]["rougeL"] > 0


def test_the_first_sentence_baseline_and_lead_are_pinned_on_fixed_pairs(monkeypatch):
    from attnseq.tasks import get_task
    from attnseq.tasks.headlines import first_sentence

    assert first_sentence("We use e.g. 3.5 layers. It works.  Well.") == "We use e.g. 3.5 layers."
    assert first_sentence("  one   sentence without a stop ") == "one sentence without a stop"
    task = get_task("headline")
    monkeypatch.setattr(task, "pairs", lambda cfg, split: [("alpha beta gamma delta", "alpha beta")])
    base = task.baseline(None, [("Deep nets learn. They learn fast.", "deep nets learn fast")])
    # lead-2 "Deep nets": unigrams P 2/2, R 2/4; bigrams P 1/1, R 1/3; LCS 2
    assert base["words"] == 2 and base["outputs"] == ["Deep nets"]
    assert (base["rouge1"], base["rouge2"], base["rougeL"]) == pytest.approx((200 / 3, 50.0, 200 / 3))
    # "Deep nets learn.": unigrams P 3/3, R 3/4; bigrams P 2/2, R 2/3; LCS 3
    first = base["first_sentence"]
    assert (first["rouge1"], first["rouge2"], first["rougeL"]) == pytest.approx((600 / 7, 80.0, 600 / 7))


def test_a_pattern_names_several_record_files_and_a_bad_line_is_named(tmp_path):
    for i, rows in enumerate(([("a b", "a")], [("c d", "c"), ("e f", "e")])):
        (tmp_path / f"part-{i}.jsonl").write_text("".join(json.dumps({"s": s, "t": t}) + "\n" for s, t in rows))
    (tmp_path / "valid.jsonl").write_text(json.dumps({"s": "x y", "t": "x"}) + "\n")
    over = [f"data.train={tmp_path}/part-*.jsonl", f"data.valid={tmp_path}/valid.jsonl", "data.src_field=s",
            "data.tgt_field=t"]  # fmt: skip
    cfg = load_config(ROOT / "configs" / "headlines.yaml", [*over, "data.files=[]", "data.format=jsonl"])
    assert [r.src for r in split_records(cfg.data)["train"]] == ["a b", "c d", "e f"]
    with (tmp_path / "part-1.jsonl").open("a") as f:
        f.write('{"s": "g h", "t": \n')
    with pytest.raises(AttnseqError, match=r"part-1\.jsonl:3: "):
        split_records(cfg.data)
    cfg.data.train = f"{tmp_path}/nothing-*.jsonl"
    with pytest.raises(AttnseqError, match=r"nothing-\*\.jsonl: no file matches this pattern"):
        split_records(cfg.data)


def test_the_plot_of_a_copying_model_shows_what_each_word_copied(news_run, tmp_path):
    import matplotlib.image

    text = "reports say Miston buys the old bridge in Oslo , a decision many welcomed ."
    args = ["plot", "--model", str(news_run[0]), text, "--out", str(tmp_path / "copy.png")]
    assert main([*args, "--set", "decode.beam_size=2", "--set", "decode.block_ngram_repeat=1"]) == 0
    pixels = matplotlib.image.imread(tmp_path / "copy.png")[..., :3]
    orange = np.all(np.abs(pixels - np.array([0xE8, 0x87, 0x0E]) / 255) < 0.02, axis=-1)
    assert orange.sum() > 200  # the bars of the copied shares
    from attnseq.plotting import plot_attention

    plain = plot_attention(np.eye(3), ["a", "b", "</s>"], ["a", "b", "</s>"], tmp_path / "plain.png")
    pixels = matplotlib.image.imread(plain)[..., :3]
    assert not np.all(np.abs(pixels - np.array([0xE8, 0x87, 0x0E]) / 255) < 0.02, axis=-1).any()


@pytest.mark.skipif(not (SHARED / "arxiv-titles").is_dir(), reason="no shared arxiv-titles")
def test_the_arxiv_recipe_reads_its_three_splits():
    cfg = load_config(ROOT / "configs" / "arxiv_titles.yaml")
    split = split_records(cfg.data)
    assert [len(split[k]) for k in ("train", "valid", "test")] == [67061, 2136, 2129]
    assert cfg.model.copy and cfg.data.src_truncate > 0


def test_a_model_reads_the_first_src_truncate_tokens_of_any_input(news_run, tmp_path, capsys, monkeypatch):
    import io

    _, jsonl = news_run
    out = tmp_path / "cut"
    cfg = load_config(None, headline_overrides(jsonl, "data.src_truncate=6", "train.max_epochs=1"))
    Trainer(cfg, out, progress_bar=False).fit()
    capsys.readouterr()
    model = attnseq.load(out)
    words = "reports say Miston buys the old bridge in Oslo".split()
    (p,) = model.predict([" ".join(words)])
    assert p.input_tokens == [*words[:6], "</s>"]  # training read the same six
    # a line far over decode.max_src_tokens is read as its first six tokens, not refused
    long_line = " ".join(words * 400)
    monkeypatch.setattr("sys.stdin", io.StringIO(f"{long_line}\n{' '.join(words)}\n"))
    assert main(["translate", "--model", str(out), "--set", "decode.max_src_tokens=100"]) == 0
    printed = capsys.readouterr()
    assert printed.out.splitlines() == [p.output, p.output] and "left empty" not in printed.err
