"""The chat task (SPEC 6.2): records and their seeded split, the retrieval baseline and the reply
metrics on fixed data, sampling on scripted probabilities, a tiny run on generated Korean pairs
that must learn, and `attnseq chat` at a pseudo-terminal (pexpect) and as a batch over a pipe."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import attnseq
from attnseq.cli import main
from attnseq.cli.chat import attention_lines, word_groups
from attnseq.config import load_config
from attnseq.decoding.sampling import Sampler
from attnseq.errors import AttnseqError
from attnseq.metrics import distinct, score_replies
from attnseq.readers import read_records, seeded_split, split_records
from attnseq.tasks.chatbot import Chatbot, retrieval_baseline
from attnseq.trainer import Trainer

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"

FOODS = "사과 바나나 커피 우유 피자 라면 김치 치킨 과자 녹차 맥주 떡볶이".split()
# (question, answer) templates: the answer names the food of the question, the template the verb
TEMPLATES = [("{} 좋아해", "{} 정말 좋아요"), ("{} 먹고 싶어", "{} 먹으러 가요"), ("{} 싫어", "{} 말고 다른 거 어때요")]
OPENERS = ["", "나 ", "오늘 ", "요즘 ", "진짜 "]


def write_chat_csv(path: Path, n: int = 400, *, seed: int = 0) -> Path:
    """A ChatbotData-shaped CSV (Q,A,label) of generated pairs; one answer has a quoted comma."""
    rng = random.Random(seed)
    rows = ["Q,A,label"]
    for _ in range(n):
        food, (q, a) = rng.choice(FOODS), rng.choice(TEMPLATES)
        rows.append(f"{rng.choice(OPENERS)}{q.format(food)},{a.format(food)},0")
    rows.append('뭐 먹을까,"글쎄요, 라면 어때요",0')
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


def chat_overrides(csv: Path) -> list[str]:
    return [
        "task=chat", f"data.files=[{csv}]", "data.format=csv", "data.src_tokenizer=word",
        "data.tgt_tokenizer=word", "model.emb_size=32", "model.enc_hidden_size=32", "model.dec_hidden_size=32",
        "model.dropout=0.0", "train.batch_size=16", "train.max_epochs=12", "train.lr=0.01", "train.log_every=100",
        "train.max_minutes=0", "train.patience=0", "decode.beam_size=3", "decode.max_len_a=0", "decode.max_len_b=8",
    ]  # fmt: skip


@pytest.fixture(scope="module")
def chat_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("chat")
    csv = write_chat_csv(root / "pairs.csv")
    cfg = load_config(None, chat_overrides(csv))
    out = root / "run"
    Trainer(cfg, out, progress_bar=False).fit()
    return out, csv


# ------------------------------------------------------------------------------------ records and split
def test_seeded_split_is_fixed_disjoint_and_complete():
    a, b = seeded_split(101, [0.8, 0.1, 0.1], "0:0"), seeded_split(101, [0.8, 0.1, 0.1], "0:0")
    assert a == b
    assert [len(a[k]) for k in ("train", "valid", "test")] == [81, 10, 10]
    assert sorted(a["train"] + a["valid"] + a["test"]) == list(range(101))
    assert seeded_split(101, [0.8, 0.1, 0.1], "1:0") != a
    # pinned: the same seed gives the same split on every machine and Python version
    assert a["test"] == [12, 28, 32, 35, 73, 74, 75, 86, 93, 100]


@pytest.mark.skipif(not (SHARED / "chatbot-ko" / "ChatbotData.csv").is_file(), reason="no ../shared/data/chatbot-ko")
def test_the_recipe_splits_chatbot_data_9458_1182_1183():
    cfg = load_config(ROOT / "configs" / "chatbot_ko.yaml")
    split = split_records(cfg.data)
    assert [len(split[k]) for k in ("train", "valid", "test")] == [9458, 1182, 1183]
    questions = {k: {r.where for r in split[k]} for k in split}
    assert not (questions["train"] & questions["test"]) and not (questions["valid"] & questions["test"])
    assert split_records(cfg.data)["test"][0] == split["test"][0]  # the same split when read again


def test_read_records_csv_with_quotes_and_empty_sides(tmp_path):
    path = tmp_path / "p.csv"
    path.write_text('Q,A\n안녕,"반가워요, 정말"\n  ,빈 질문\n있어,\n 여러   칸 ,답\n', encoding="utf-8")
    d = load_config(None, ["task=chat", f"data.files=[{path}]"]).data
    records, dropped = read_records(path, d)
    assert [(r.src, r.tgt) for r in records] == [("안녕", "반가워요, 정말"), ("여러 칸", "답")]
    assert dropped == 2 and records[1].where.endswith("p.csv:5")


@pytest.mark.parametrize(
    "text, fmt, message",
    [
        ("Q,B\n안녕,답\n", "csv", r"p\.(csv|jsonl):1: no column 'A' in the header \(Q, B\); set data.src_field"),
        ("Q,A\n안녕,답\n하나,둘,셋\n", "csv", r":3: 3 fields where the header has 2; quote a field that holds a comma"),
        ('Q,A\n안녕,답\n"열린 따옴표,답\n', "csv", r":3: not valid CSV"),
        ('{"Q": "a", "A": "b"}\n{"Q": "a", "A": \n', "jsonl", r":2: not valid JSON .* write one JSON object per line"),
        ('{"Q": "a", "A": "b"}\n[1, 2]\n', "jsonl", r":2: a JSON list, not an object"),
        ('{"Q": "a", "X": "b"}\n', "jsonl", r":1: no key 'A' in the record; set data.src_field / data.tgt_field"),
        ('{"Q": "a", "A": 3}\n', "jsonl", r":1: 'A' is int 3, not a text; write it as a string"),
        ('{"Q": "", "A": "b"}\n', "jsonl", r"no record with both 'Q' and 'A' filled"),
    ],
)
def test_read_records_names_the_file_line_and_fix(tmp_path, text, fmt, message):
    path = tmp_path / f"p.{fmt}"
    path.write_text(text, encoding="utf-8")
    d = load_config(None, ["task=chat", f"data.files=[{path}]", f"data.format={fmt}"]).data
    with pytest.raises(AttnseqError, match=message):
        read_records(path, d)


def test_a_bad_record_stops_training_with_its_line_and_leaves_no_run(tmp_path, capsys):
    csv = write_chat_csv(tmp_path / "pairs.csv", 50)
    lines = csv.read_text(encoding="utf-8").splitlines()
    lines[20] += ",extra"
    csv.write_text("\n".join(lines) + "\n", encoding="utf-8")
    sets = [a for o in chat_overrides(csv) for a in ("--set", o)]
    assert main(["train", str(ROOT / "configs" / "chatbot_ko.yaml"), "--out", str(tmp_path / "run"), *sets]) == 2
    assert f"{csv}:21: 4 fields where the header has 3" in capsys.readouterr().err
    assert not (tmp_path / "run" / "best").exists()


# ------------------------------------------------------------------------------------ baseline and metrics
def test_retrieval_baseline_answers_with_the_nearest_training_question():
    train = [("오늘 날씨 어때", "맑아요"), ("배고파", "밥 먹어요"), ("졸려", "일찍 자요"), ("날씨 좋다", "산책 가요")]
    found = retrieval_baseline(train, ["오늘 날씨 어때요", "너무 배고파요", "졸려 죽겠어", "좋다 날씨"])
    assert found == ["맑아요", "밥 먹어요", "일찍 자요", "산책 가요"]


def test_distinct_counts_distinct_word_ngrams():
    assert distinct(["a b a b", "a b"], 1) == pytest.approx(2 / 6)
    assert distinct(["a b a b", "a b"], 2) == pytest.approx(2 / 4)  # (a b), (b a)
    assert distinct([], 2) == 0.0 and distinct(["a"], 2) == 0.0


def test_reply_scores_use_character_bleu_and_say_so():
    scores = score_replies(["좋아요 정말", "가요"], ["정말 좋아요", "가요"])
    assert "tok:char" in scores["bleu_signature"] and scores["chrf_signature"].startswith("nrefs:1")
    assert 0 < scores["bleu"] < 100 and scores["exact_match"] == 50.0
    assert score_replies(["맛있게 드세요"], ["맛있게 드세요"])["bleu"] == pytest.approx(100.0)


# ------------------------------------------------------------------------------------ sampling
def test_sampler_cuts_to_top_k_and_to_the_nucleus():
    logp = torch.log(torch.tensor([[0.5, 0.25, 0.15, 0.10]]))
    torch.testing.assert_close(Sampler(top_k=2).filtered(logp), torch.tensor([[2 / 3, 1 / 3, 0.0, 0.0]]))
    # top_p 0.7: 0.5 alone is under 0.7, so 0.25 joins; 0.15 is outside (0.75 ranked above it)
    torch.testing.assert_close(Sampler(top_p=0.7).filtered(logp), torch.tensor([[2 / 3, 1 / 3, 0.0, 0.0]]))
    torch.testing.assert_close(Sampler(top_p=0.5).filtered(logp), torch.tensor([[1.0, 0.0, 0.0, 0.0]]))
    torch.testing.assert_close(Sampler().filtered(logp), logp.exp())
    hot = Sampler(temperature=2.0).filtered(logp)
    torch.testing.assert_close(hot, torch.softmax(logp / 2, -1))
    assert hot[0, 3] > logp.exp()[0, 3]  # a higher temperature flattens the distribution


def test_sampler_draws_only_allowed_tokens_and_repeats_under_a_seed():
    logp = torch.log_softmax(torch.randn(64, 10), dim=-1)
    first = Sampler(top_k=3, generator=torch.Generator().manual_seed(7))(logp)
    again = Sampler(top_k=3, generator=torch.Generator().manual_seed(7))(logp)
    assert torch.equal(first[1], again[1])
    allowed = logp.topk(3, dim=-1).indices
    assert (allowed == first[1].unsqueeze(1)).any(dim=1).all()
    torch.testing.assert_close(first[0], logp.gather(1, first[1].unsqueeze(1)).squeeze(1))


# ------------------------------------------------------------------------------------ attention lines
def test_word_groups_join_pieces_into_words():
    tokens = ["▁오늘", "▁날", "씨", "▁", "좋", "다", "</s>"]
    assert word_groups(tokens, pieces=True) == [("오늘", [0]), ("날씨", [1, 2]), ("좋다", [4, 5])]
    assert word_groups(["a", "b", "</s>"], pieces=False) == [("a", [0]), ("b", [1])]


def test_heatmaps_draw_hangul_with_no_missing_glyph(tmp_path):
    import warnings

    import numpy as np

    from attnseq.plotting import font_families, plot_attention

    assert "NanumGothic" in font_families()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        plot_attention(np.eye(3), ["▁오늘", "▁날씨", "</s>"], ["▁좋아요", "!", "</s>"], tmp_path / "ko.png")
    assert not [w for w in caught if "missing from" in str(w.message)]
    assert (tmp_path / "ko.png").read_bytes()[:4] == b"\x89PNG"


# ------------------------------------------------------------------------------------ a tiny run
def test_a_tiny_chat_run_learns_and_reports_beside_retrieval(chat_run):
    out, _ = chat_run
    bot = attnseq.load(out)
    assert isinstance(bot, Chatbot)
    replies = [p.output for p in bot.reply(["사과 좋아해", "오늘 라면 먹고 싶어", "진짜 김치 싫어"])]
    assert replies == ["사과 정말 좋아요", "라면 먹으러 가요", "김치 말고 다른 거 어때요"]


def test_evaluate_json_gives_the_metrics_the_baseline_and_examples(chat_run, capsys):
    out, _ = chat_run
    assert main(["evaluate", "--model", str(out), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    for key in ("bleu", "chrf", "distinct_1", "distinct_2", "bleu_signature", "n", "baseline", "examples"):
        assert key in report
    assert report["chrf"] > 80 and report["distinct_2"] > 0.05
    assert report["baseline"]["name"].startswith("retrieval") and report["baseline"]["chrf"] > 50
    assert len(report["examples"]) == 5 and set(report["examples"][0]) == {"input", "reference", "output", "baseline"}
    # the examples are the test pairs at a fixed stride, the same on every run
    assert main(["evaluate", "--model", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["examples"] == report["examples"]


def test_sampling_replies_repeat_under_a_seed_and_vary_without_one(chat_run):
    bot = attnseq.load(chat_run[0])
    questions = ["사과 좋아해"] * 8
    a = [p.output for p in bot.reply(questions, sample=True, temperature=3.0, seed=5)]
    b = [p.output for p in bot.reply(questions, sample=True, temperature=3.0, seed=5)]
    assert a == b
    assert len(set(a)) > 1  # at temperature 3 the eight draws differ
    greedy = {p.output for p in bot.reply(questions, sample=True, temperature=0.01, seed=5)}
    assert greedy == {"사과 정말 좋아요"}


def test_piped_questions_are_a_batch_with_attention_lines(chat_run):
    out, _ = chat_run
    done = subprocess.run([sys.executable, "-m", "attnseq", "chat", "--model", str(out), "--show-attention"],
                          input="사과 좋아해\n녹차 싫어\n", capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "사과 정말 좋아요"
    assert lines[1].startswith("  사과 <- 사과 (")  # the reply's food word looked at the question's
    assert "녹차 말고 다른 거 어때요" in lines
    done = subprocess.run([sys.executable, "-m", "attnseq", "chat", "--model", str(out), "--json"],
                          input="사과 좋아해\n", capture_output=True, text=True, timeout=120)  # fmt: skip
    (record,) = [json.loads(line) for line in done.stdout.splitlines()]
    assert record["output"] == "사과 정말 좋아요" and len(record["attention"]) == len(record["output_tokens"])


def test_attention_lines_name_the_question_word_each_reply_word_looked_at(chat_run):
    bot = attnseq.load(chat_run[0])
    (p,) = bot.reply(["바나나 먹고 싶어"])
    lines = attention_lines(p, pieces=False)
    assert len(lines) == len(p.output.split()) and lines[0].startswith("  바나나 <- 바나나 (")


# ------------------------------------------------------------------------------------ the prompt
def _spawn(args: list[str]):
    pexpect = pytest.importorskip("pexpect")
    child = pexpect.spawn(sys.executable, args, encoding="utf-8", timeout=60, dimensions=(24, 120))
    child.expect("you> ")
    return pexpect, child


def test_chat_at_a_terminal_replies_and_quits(chat_run):
    pexpect, child = _spawn(["-m", "attnseq", "chat", "--model", str(chat_run[0])])
    child.sendline("사과 좋아해")
    child.expect(r"bot> (.*)\r\n")
    assert child.match.group(1) == "사과 정말 좋아요"
    child.expect("you> ")
    child.sendintr()  # Ctrl-C at the prompt: a fresh prompt, not an exit
    child.expect("you> ")
    child.sendline("/help")
    child.expect("/quit")
    child.expect("you> ")
    child.sendline("/quit")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0


def test_ctrl_d_leaves_the_prompt(chat_run):
    pexpect, child = _spawn(["-m", "attnseq", "chat", "--model", str(chat_run[0])])
    child.sendeof()
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0


def test_ctrl_c_during_a_reply_returns_to_the_prompt(chat_run, tmp_path):
    # a reply that takes long (the first call sleeps), so Ctrl-C lands while it is being made
    script = tmp_path / "slow_chat.py"
    script.write_text(
        textwrap.dedent(f"""
        import sys, time
        from attnseq.tasks.chatbot import Chatbot
        from attnseq.cli import main
        reply, calls = Chatbot.reply, []
        def slow(self, questions, **search):
            calls.append(1)
            if len(calls) == 1:
                print("(thinking)", flush=True)
                time.sleep(60)
            return reply(self, questions, **search)
        Chatbot.reply = slow
        sys.exit(main(["chat", "--model", {str(chat_run[0])!r}]))
    """)
    )
    pexpect, child = _spawn([str(script)])
    child.sendline("사과 좋아해")
    child.expect_exact("(thinking)")
    child.sendintr()
    child.expect_exact("(reply interrupted)")
    child.expect("you> ")
    child.sendline("라면 싫어")  # the prompt still works after the interrupted reply
    child.expect(r"bot> (.*)\r\n")
    assert child.match.group(1) == "라면 말고 다른 거 어때요"
    child.sendline("/quit")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0


# ------------------------------------------------------------------------------------ the CLI's train
def test_train_cli_prints_and_keeps_the_held_out_report_beside_retrieval(tmp_path, capsys):
    csv = write_chat_csv(tmp_path / "pairs.csv", 120)
    sets = [a for o in [*chat_overrides(csv), "train.max_epochs=2"] for a in ("--set", o)]
    assert main(["train", str(ROOT / "configs" / "chatbot_ko.yaml"), "--out", str(tmp_path / "run"), *sets]) == 0
    printed = capsys.readouterr().out
    assert "held-out:" in printed and "baseline: retrieval" in printed and "tok:char" in printed
    report = json.loads((tmp_path / "run" / "test_report.json").read_text(encoding="utf-8"))
    assert report["n"] == 12 and {"bleu", "chrf", "distinct_2"} <= set(report["baseline"])


def test_ablate_runs_on_a_chat_config(tmp_path, capsys):
    csv = write_chat_csv(tmp_path / "pairs.csv", 120)
    sets = [a for o in [*chat_overrides(csv), "train.max_epochs=1"] for a in ("--set", o)]
    args = ["ablate", str(ROOT / "configs" / "chatbot_ko.yaml"), "--out", str(tmp_path / "abl"), "--only",
            "init,luong-general"]  # fmt: skip
    assert main([*args, *sets]) == 0
    table = (tmp_path / "abl" / "ablation.md").read_text(encoding="utf-8")
    assert "| variant | params | BLEU | chrF | distinct-1 | distinct-2 |" in table
    assert "| luong-general |" in table and "| baseline |" in table
    rows = json.loads((tmp_path / "abl" / "ablation.json").read_text())
    assert [r["variant"] for r in rows] == ["init", "luong-general", "baseline"]
    assert all("distinct_2" in r for r in rows)


# ------------------------------------------------------------------------------------ served
def test_the_server_replies_by_beam_or_by_seeded_sampling(chat_run):
    import httpx

    from attnseq.serve import create_app, load_models
    from tests.serving import live_server

    models = load_models([f"bot={chat_run[0]}"], threads=1)
    with live_server(create_app(models)) as url:
        info = httpx.get(f"{url}/v1/models").json()
        assert info["models"][0]["task"] == "chat"
        assert {"sample", "temperature", "top_k", "top_p", "seed"} <= {o["name"] for o in info["models"][0]["search"]}
        body = {"model": "bot", "inputs": ["사과 좋아해"], "search": {"beam_size": 3}}
        (p,) = httpx.post(f"{url}/v1/predict", json=body).json()["predictions"]
        assert p["output"] == "사과 정말 좋아요" and len(p["attention"]) == len(p["output_tokens"])
        body["search"] = {"sample": True, "temperature": 3.0, "seed": 11}
        draws = [httpx.post(f"{url}/v1/predict", json=body).json()["predictions"][0]["output"] for _ in range(2)]
        assert draws[0] == draws[1]
        body["search"] = {"sample": True, "top_p": 1.5}
        refused = httpx.post(f"{url}/v1/predict", json=body)
        assert refused.status_code == 422 and "top_p" in refused.text


def test_records_are_parsed_once_and_again_when_the_file_changes(tmp_path):
    import os

    path = tmp_path / "p.csv"
    path.write_text("Q,A\n안녕,반가워요\n", encoding="utf-8")
    d = load_config(None, ["task=chat", f"data.files=[{path}]"]).data
    first, _ = read_records(path, d)
    again, _ = read_records(path, d)
    assert again == first and again is not first and again[0] is first[0]  # the same parse, a fresh list
    path.write_text("Q,A\n안녕,반가워요\n잘 가,또 봐요\n", encoding="utf-8")
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 1_000_000))
    assert [r.src for r in read_records(path, d)[0]] == ["안녕", "잘 가"]
