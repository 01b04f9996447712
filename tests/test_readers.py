"""Readers (TSV / parallel, plain / gzip) with errors that name file:line and the fix; vocabularies,
tokenizers, length-bucketed batches and padding."""

from __future__ import annotations

import gzip
import random
from pathlib import Path

import pytest
import torch

from attnseq.batching import PairDataset, tokenize_pairs
from attnseq.config import DataConfig
from attnseq.errors import AttnseqError
from attnseq.readers import read_pairs, read_parallel, read_tsv
from attnseq.tokenize import SPACE, CharTokenizer, WordTokenizer, build_tokenizer
from attnseq.vocab import BOS, EOS, PAD, SPECIALS, UNK, Vocab


def write_bytes(path: Path, data: bytes) -> Path:
    if path.suffix == ".gz":
        with gzip.open(path, "wb") as f:
            f.write(data)
    else:
        path.write_bytes(data)
    return path


def write_text(path: Path, text: str) -> Path:
    return write_bytes(path, text.encode("utf-8"))


def tsv_error(path: Path) -> str:
    with pytest.raises(AttnseqError) as info:
        read_tsv(path)
    message = str(info.value)
    assert "\n" not in message
    return message


# ------------------------------------------------------------------------------------- readers


@pytest.mark.parametrize("name", ["pairs.tsv", "pairs.tsv.gz"])
def test_read_tsv_plain_and_gzip(tmp_path, name):
    path = write_text(tmp_path / name, "a b\tx y\nc\tz\n  d e \t w\n")
    assert read_tsv(path) == [("a b", "x y"), ("c", "z"), ("  d e ", " w")]
    assert read_tsv(str(path)) == read_tsv(path)


def test_read_tsv_ignores_extra_columns_crlf_and_missing_final_newline(tmp_path):
    path = write_text(tmp_path / "pairs.tsv", "a\tx\tCC-BY attribution\r\nb\ty\textra\tmore\r\nc\tz")
    assert read_tsv(path) == [("a", "x"), ("b", "y"), ("c", "z")]


def test_read_tsv_keeps_utf8(tmp_path):
    path = write_text(tmp_path / "pairs.tsv", "Grüße\tgreetings\n日本\tJapan\n")
    assert read_tsv(path) == [("Grüße", "greetings"), ("日本", "Japan")]


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_read_parallel(tmp_path, suffix):
    src = write_text(tmp_path / f"train.en{suffix}", "a b\nc\n")
    tgt = write_text(tmp_path / f"train.de{suffix}", "x\ty\nz\n")  # a tab is just text here
    assert read_parallel(src, tgt) == [("a b", "x\ty"), ("c", "z")]


def test_read_pairs_chooses_tsv_or_parallel(tmp_path):
    write_text(tmp_path / "p.tsv", "a\tx\n")
    write_text(tmp_path / "p.src", "b\n")
    write_text(tmp_path / "p.tgt", "y\n")
    assert read_pairs(str(tmp_path / "p.tsv"), DataConfig()) == [("a", "x")]
    cfg = DataConfig(src_suffix=".src", tgt_suffix=".tgt")
    assert read_pairs(str(tmp_path / "p"), cfg) == [("b", "y")]


def test_read_pairs_unset_path_names_the_key():
    with pytest.raises(AttnseqError) as info:
        read_pairs("", DataConfig(), key="data.valid")
    assert "'data.valid' is not set" in str(info.value)
    assert "--set data.valid=PATH" in str(info.value)


def test_tsv_line_without_tab(tmp_path):
    path = write_text(tmp_path / "p.tsv", "a\tx\nb y\nc\tz\n")
    msg = tsv_error(path)
    assert msg.startswith(f"{path}:2: no tab in the line")
    assert "separate source and target with a TAB" in msg


def test_tsv_empty_line_in_the_middle(tmp_path):
    path = write_text(tmp_path / "p.tsv", "a\tx\nb\ty\n\nc\tz\n")
    msg = tsv_error(path)
    assert msg.startswith(f"{path}:3: empty line")
    assert "remove it" in msg


def test_tsv_whitespace_only_line_is_empty(tmp_path):
    path = write_text(tmp_path / "p.tsv", "a\tx\n   \n")
    assert tsv_error(path).startswith(f"{path}:2: empty line")


@pytest.mark.parametrize("line, side", [(" \tx", "source"), ("a\t ", "target"), ("a\t\tmore", "target")])
def test_tsv_empty_side(tmp_path, line, side):
    path = write_text(tmp_path / "p.tsv", f"a\tx\n{line}\n")
    msg = tsv_error(path)
    assert msg.startswith(f"{path}:2: the {side} side is empty")
    assert "fill it or drop the line" in msg


@pytest.mark.parametrize("name", ["p.tsv", "p.tsv.gz"])
def test_tsv_undecodable_bytes(tmp_path, name):
    path = write_bytes(tmp_path / name, b"a\tx\nb\ty\nc \xff\xfe\tz\nd\tw\n")
    msg = tsv_error(path)
    assert msg.startswith(f"{path}:3: ")
    assert "byte 3 of the line is not valid UTF-8" in msg
    assert "re-save the file as UTF-8" in msg


@pytest.mark.parametrize("name", ["p.tsv", "p.tsv.gz"])
def test_tsv_empty_file(tmp_path, name):
    path = write_bytes(tmp_path / name, b"")
    msg = tsv_error(path)
    assert msg.startswith(f"{path}: the file is empty")
    assert "SOURCE<TAB>TARGET" in msg


def test_missing_file(tmp_path):
    path = tmp_path / "nope.tsv"
    msg = tsv_error(path)
    assert msg.startswith(f"{path}: file not found")
    assert "check the path" in msg


def test_gz_suffix_on_a_file_that_is_not_gzip(tmp_path):
    path = tmp_path / "p.tsv.gz"
    path.write_bytes(b"a\tx\n")  # plain text behind a .gz name
    msg = tsv_error(path)
    assert msg.startswith(f"{path}: not a readable gzip file")
    assert "re-compress it" in msg


def test_truncated_gzip(tmp_path):
    path = write_text(tmp_path / "p.tsv.gz", "a\tx\n" * 1000)
    path.write_bytes(path.read_bytes()[:-12])
    assert tsv_error(path).startswith(f"{path}: not a readable gzip file")


def test_tsv_utf8_bom_is_not_part_of_the_first_source(tmp_path):
    path = write_bytes(tmp_path / "p.tsv", b"\xef\xbb\xbfa b\tx\n")
    assert read_tsv(path) == [("a b", "x")]


def test_parallel_mismatched_line_counts(tmp_path):
    src = write_text(tmp_path / "p.src", "a\nb\nc\n")
    tgt = write_text(tmp_path / "p.tgt", "x\ny\n")
    with pytest.raises(AttnseqError) as info:
        read_parallel(src, tgt)
    msg = str(info.value)
    assert f"{src} has 3 lines but {tgt} has 2" in msg
    assert "line-aligned" in msg


def test_parallel_empty_line(tmp_path):
    src = write_text(tmp_path / "p.src", "a\nb\nc\n")
    tgt = write_text(tmp_path / "p.tgt", "x\n\nz\n")
    with pytest.raises(AttnseqError) as info:
        read_parallel(src, tgt)
    msg = str(info.value)
    assert msg.startswith(f"{tgt}:2: empty line")
    assert "remove the line here and the same line in the other file" in msg


def test_parallel_undecodable_bytes_and_missing_file(tmp_path):
    src = write_bytes(tmp_path / "p.src", b"a\nb\n\xff\xfe\n")
    tgt = write_text(tmp_path / "p.tgt", "x\ny\nz\n")
    with pytest.raises(AttnseqError, match=":3: byte 1 of the line is not valid UTF-8") as info:
        read_parallel(src, tgt)
    assert str(info.value).startswith(f"{src}:3:")
    with pytest.raises(AttnseqError) as info:
        read_parallel(tgt, tmp_path / "missing.tgt")
    assert str(info.value).startswith(f"{tmp_path / 'missing.tgt'}: file not found")


def test_parallel_empty_file(tmp_path):
    src = write_text(tmp_path / "p.src", "a\n")
    tgt = write_bytes(tmp_path / "p.tgt", b"")
    with pytest.raises(AttnseqError) as info:
        read_parallel(src, tgt)
    assert str(info.value).startswith(f"{tgt}: the file is empty")


# ------------------------------------------------------------------------------------- vocabulary


def test_vocab_specials_frequency_order_and_min_freq():
    seqs = [["b", "a", "c"], ["a", "b", "a"], ["d", "c", "b"], ["e"]]
    v = Vocab.build(seqs, min_freq=2)
    assert v.itos[:4] == [PAD, UNK, BOS, EOS] == list(SPECIALS)
    assert (v.pad_id, v.unk_id, v.bos_id, v.eos_id) == (0, 1, 2, 3)
    assert v.stoi[PAD] == 0 and v.stoi[UNK] == 1 and v.stoi[BOS] == 2 and v.stoi[EOS] == 3
    # a: 3, b: 3 (tie -> alphabetical), c: 2; d and e (1 each) are below min_freq
    assert v.itos[4:] == ["a", "b", "c"]
    assert len(v) == 7


def test_vocab_max_size_keeps_the_most_frequent():
    seqs = [["x"] * 5, ["y"] * 4, ["z"] * 3, ["w"] * 2]
    v = Vocab.build(seqs, max_size=2)
    assert v.itos[4:] == ["x", "y"]
    assert len(v) == 6
    assert Vocab.build(seqs, max_size=0).itos[4:] == ["x", "y", "z", "w"]


def test_vocab_never_counts_specials_as_tokens():
    v = Vocab.build([["<unk>", "</s>", "a"]])
    assert v.itos == [*SPECIALS, "a"]


def test_vocab_encode_decode_round_trip_with_unk():
    v = Vocab.build([["the", "cat", "sat"]])
    ids = v.encode(["the", "dog", "sat"])
    assert ids[1] == v.unk_id and ids[0] == v.stoi["the"] and ids[2] == v.stoi["sat"]
    assert v.decode(ids) == ["the", UNK, "sat"]
    assert v.decode(v.encode(["cat", "sat"])) == ["cat", "sat"]
    # decode skips <pad> / <s> and stops at </s>, unless told to keep specials
    framed = [v.bos_id, *v.encode(["cat"]), v.eos_id, v.stoi["the"], v.pad_id]
    assert v.decode(framed) == ["cat"]
    assert v.decode(framed, strip_specials=False) == [BOS, "cat", EOS, "the", PAD]


@pytest.mark.parametrize("seqs, min_freq", [([], 1), ([[], []], 1), ([["a", "b"]], 2)])
def test_empty_vocabulary_is_a_user_error(seqs, min_freq):
    with pytest.raises(AttnseqError) as info:
        Vocab.build(seqs, min_freq=min_freq, source="train.tsv")
    msg = str(info.value)
    assert msg.startswith("train.tsv: the vocabulary is empty")
    assert "lower data.min_freq" in msg


def test_vocab_save_load_round_trip(tmp_path):
    v = Vocab.build([["ä", "b", "b"]])
    v.save(tmp_path / "v.json")
    assert Vocab.load(tmp_path / "v.json").itos == v.itos
    with pytest.raises(AttnseqError, match="vocabulary file not found"):
        Vocab.load(tmp_path / "missing.json")


# ------------------------------------------------------------------------------------- tokenizers


def test_char_tokenizer_round_trip_with_spaces():
    tok = CharTokenizer()
    tokens = tok.tokenize("3 Mar 2021")
    assert tokens == ["3", SPACE, "M", "a", "r", SPACE, "2", "0", "2", "1"]
    assert tok.detokenize(tokens) == "3 Mar 2021"
    # runs of whitespace and the ends are normalised, then the text round-trips
    assert tok.detokenize(tok.tokenize("  a \t b  ")) == "a b"
    assert CharTokenizer(lowercase=True).tokenize("AB") == ["a", "b"]


def test_word_tokenizer_and_lowercase():
    assert WordTokenizer().tokenize("The  Cat\tsat ") == ["The", "Cat", "sat"]
    assert WordTokenizer(lowercase=True).tokenize("The  CAT sat") == ["the", "cat", "sat"]
    assert WordTokenizer().detokenize(["a", "b"]) == "a b"


def test_build_tokenizer():
    assert isinstance(build_tokenizer("char"), CharTokenizer)
    tok = build_tokenizer("word", lowercase=True)
    assert isinstance(tok, WordTokenizer) and tok.tokenize("A") == ["a"]
    with pytest.raises(ValueError, match="unknown tokenizer 'bpe'"):
        build_tokenizer("bpe")


# ------------------------------------------------------------------------------------- batching


def make_dataset(pairs, **kwargs) -> PairDataset:
    tok = WordTokenizer()
    src_vocab = Vocab.build(tok.tokenize(s) for s, _ in pairs)
    tgt_vocab = Vocab.build(tok.tokenize(t) for _, t in pairs)
    return PairDataset(tokenize_pairs(pairs, tok, tok), src_vocab=src_vocab, tgt_vocab=tgt_vocab, **kwargs)


@pytest.fixture
def mixed():
    """200 pairs of lengths 1..30, in random order."""
    rng = random.Random(0)
    pairs = []
    for _ in range(200):
        n, m = rng.randint(1, 30), rng.randint(1, 30)
        pairs.append(
            (" ".join(f"s{rng.randint(0, 9)}" for _ in range(n)), " ".join(f"t{rng.randint(0, 9)}" for _ in range(m)))
        )
    return make_dataset(pairs)


def padding(ds: PairDataset, batches: list[list[int]]) -> int:
    total = 0
    for b in batches:
        lengths = [len(ds.src_ids[i]) for i in b]
        total += max(lengths) * len(lengths) - sum(lengths)
    return total


@pytest.mark.parametrize("seed", [None, 0, 7])
@pytest.mark.parametrize("batch_size", [1, 16, 64, 500])
def test_batch_indices_cover_every_index_once(mixed, seed, batch_size):
    batches = mixed.batch_indices(batch_size, seed=seed)
    flat = [i for b in batches for i in b]
    assert sorted(flat) == list(range(len(mixed)))
    assert all(1 <= len(b) <= batch_size for b in batches)
    assert len(batches) == -(-len(mixed) // batch_size)


def test_bucketed_batches_pad_less_than_random_batches(mixed):
    bucketed = mixed.batch_indices(16, seed=3)
    order = list(range(len(mixed)))
    random.Random(3).shuffle(order)
    shuffled = [order[i : i + 16] for i in range(0, len(order), 16)]
    assert padding(mixed, bucketed) < padding(mixed, shuffled) / 4
    for b in bucketed:  # within a batch the source lengths are sorted
        lengths = [len(mixed.src_ids[i]) for i in b]
        assert lengths == sorted(lengths)


def test_batch_indices_without_seed_are_sorted_in_order(mixed):
    batches = mixed.batch_indices(16)
    lengths = [len(mixed.src_ids[i]) for b in batches for i in b]
    assert lengths == sorted(lengths)
    assert batches == mixed.batch_indices(16)


def test_batch_indices_seeded(mixed):
    a, b, c = mixed.batch_indices(16, seed=1), mixed.batch_indices(16, seed=1), mixed.batch_indices(16, seed=2)
    assert a == b
    assert a != c
    assert sorted(i for batch in c for i in batch) == list(range(len(mixed)))


def test_batch_indices_do_not_touch_the_global_rng(mixed):
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    mixed.batch_indices(16, seed=9)
    assert torch.equal(torch.rand(3), expected)


def test_collate_frames_and_pads(mixed):
    index = mixed.batch_indices(8, seed=0)[0][:5] + [0, 1, 2]
    batch = mixed.collate(index)
    sv, tv = mixed.src_vocab, mixed.tgt_vocab
    assert batch.index == index
    assert batch.src.dtype == torch.long and batch.tgt_in.shape == batch.tgt_out.shape
    assert batch.src.shape == (len(index), max(len(mixed.src_ids[i]) for i in index))
    assert batch.tgt_in.shape[1] == max(len(mixed.tgt_ids[i]) for i in index) + 1
    for row, i in enumerate(index):
        s_len = len(mixed.src_ids[i])
        assert int(batch.src_lengths[row]) == s_len
        assert batch.src[row, :s_len].tolist() == mixed.src_ids[i]
        assert int(batch.src[row, s_len - 1]) == sv.eos_id
        assert (batch.src[row, s_len:] == sv.pad_id).all()
        t = mixed.tgt_ids[i]
        assert int(batch.tgt_in[row, 0]) == tv.bos_id
        assert batch.tgt_in[row, : len(t) + 1].tolist() == [tv.bos_id, *t]
        assert batch.tgt_out[row, : len(t) + 1].tolist() == [*t, tv.eos_id]
        assert (batch.tgt_in[row, len(t) + 1 :] == tv.pad_id).all()
        assert (batch.tgt_out[row, len(t) + 1 :] == tv.pad_id).all()
        assert int(batch.tgt_lengths[row]) == len(t) + 1
    assert batch.n_tgt_tokens == sum(len(mixed.tgt_ids[i]) + 1 for i in index)


def test_dataset_encodes_unknowns_and_skips_long_pairs():
    train = make_dataset([("a b", "x"), ("a b c d", "y"), ("a", "x y z w")], max_src_len=3, max_tgt_len=3)
    assert len(train) == 1 and train.skipped == 2
    assert train.src_text == ["a b"] and train.tgt_text == ["x"]
    v = train.src_vocab
    tok = WordTokenizer()
    other = PairDataset(tokenize_pairs([("a q", "x")], tok, tok), src_vocab=v, tgt_vocab=train.tgt_vocab)
    assert other.src_ids == [[v.stoi["a"], v.unk_id, v.eos_id]]
    assert other.tgt_ids == [[train.tgt_vocab.stoi["x"]]]
