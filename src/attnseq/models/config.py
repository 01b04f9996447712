"""The model sections of a config: the hyperparameters of a `Seq2Seq` model (SPEC 1-4) and of an
attention-pooling classifier (SPEC 5). Tasks name them in `Task.sections`; the models read them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from attnseq.errors import AttnseqError
from attnseq.modules.attention import COVERAGE_KINDS
from attnseq.schema import (
    A_SHARE,
    AT_LEAST_1,
    NOT_NEGATIVE,
    AttentionKind,
    DecoderKind,
    PoolingKind,
    Range,
    RNNKind,
    shortlist_requested,
)


@dataclass
class ModelConfig:
    """The network: SPEC 1 (init / every-step), 2 (luong) and 4 (bahdanau) with SPEC 3's scores."""

    rnn: RNNKind = "lstm"  # cell of encoder and decoder (SPEC 1.1)
    emb_size: int = 128  # token embedding size, both sides
    enc_hidden_size: int = 256  # encoder output size h_i; each direction gets half if bidirectional
    dec_hidden_size: int = 256  # decoder state size s_t
    enc_layers: int = 1
    dec_layers: int = 1
    bidirectional: bool = True  # encoder reads both ways; final states of both directions are joined
    dropout: float = 0.2  # on embeddings, between RNN layers and before the output layer
    decoder: DecoderKind = "luong"  # init (SPEC 1.2) | every-step (1.3) | luong (2) | bahdanau (4)
    attention: AttentionKind = "general"  # score function (SPEC 3); ignored by init / every-step
    attn_size: int = 0  # concat / location_aware attention's hidden size (W_b, W_c rows); 0 = dec_hidden_size
    attn_filters: int = 10  # location_aware attention: filters F convolving the previous step's weights
    attn_kernel: int = 31  # location_aware attention: width of those filters in source positions (odd)
    max_src_len: int = 128  # location attention: W_a has one output per source position up to this
    input_feeding: bool = True  # luong: feed s~_{t-1} with e(y_{t-1}) (SPEC 2.6)
    deep_output: bool = True  # bahdanau: predict from tanh(W_o [s_t; a_t; e(y_{t-1})]), else s_t
    tie_embeddings: bool = False  # W_y shares the target embedding matrix (needs emb_size == dec_hidden_size)
    param_init: float = 0.0  # > 0: every weight uniform in [-x, x] (OpenNMT-py's param_init); 0: PyTorch's defaults
    # pointer-generator (See et al. 2017): the output distribution mixes the vocabulary softmax with
    # the attention weights over the source tokens, gated by a learned p_gen (luong / bahdanau only)
    copy: bool = False
    # coverage (See et al. 2017): the score also reads c^t, the sum of past attention weights
    # (attention concat or location_aware), and training adds coverage_loss * sum_i min(alpha^t_i, c^t_i)
    coverage: bool = False
    coverage_loss: float = 1.0

    ranges: ClassVar[dict[str, Range]] = {
        "emb_size": AT_LEAST_1,
        "enc_hidden_size": AT_LEAST_1,
        "dec_hidden_size": AT_LEAST_1,
        "enc_layers": AT_LEAST_1,
        "dec_layers": AT_LEAST_1,
        "dropout": A_SHARE,
        "attn_size": NOT_NEGATIVE,
        "attn_filters": AT_LEAST_1,
        "attn_kernel": (lambda v: v >= 1 and v % 2 == 1, "an odd number (the filters centre on a position)"),
        "param_init": NOT_NEGATIVE,
        "coverage_loss": NOT_NEGATIVE,
        "max_src_len": AT_LEAST_1,
    }


@dataclass
class ClassifierConfig:
    """task: classify. SPEC 5: a (bi)LSTM reads the text; attention pooling (or an ablation)
    makes one vector; Dense(head_size, relu) -> Dropout -> Dense(1, sigmoid) or Dense(K, softmax)."""

    rnn: RNNKind = "lstm"
    emb_size: int = 128
    hidden_size: int = 128  # RNN output size; each direction gets half if bidirectional
    layers: int = 1
    bidirectional: bool = True
    dropout: float = 0.3  # on the embeddings and between RNN layers
    word_dropout: float = 0.0  # training: each token is read as <unk> with this probability
    spatial_dropout: float = 0.0  # training: each embedding feature of a text is dropped at all its positions
    state_dropout: float = 0.0  # training: each feature of a text's RNN states (and query) is dropped at all positions
    pooling: PoolingKind = "attention"  # SPEC 5.2 | mean | max | last (the final state, no pooling)
    units: int = 64  # attention pooling's W1 / W2 output size (the notes' `units`)
    head_size: int = 20  # the hidden Dense layer of the head
    head_dropout: float = 0.5
    # e.g. [2] or [2, 3]: each position also reads a hashed embedding of the n-gram of tokens that
    # starts there, for each n listed (2 to 5; modules/ngrams.py); [] = tokens only
    ngrams: list[int] = field(default_factory=list)
    ngram_buckets: int = 32768  # rows of each order's hashed n-gram table
    # > 1: an ensemble of this many such classifiers, trained side by side on the same batches (each
    # its own initial weights and dropout draws); a prediction averages their probabilities and weights
    members: int = 1

    ranges: ClassVar[dict[str, Range]] = {
        "emb_size": AT_LEAST_1,
        "hidden_size": AT_LEAST_1,
        "layers": AT_LEAST_1,
        "dropout": A_SHARE,
        "units": AT_LEAST_1,
        "head_size": AT_LEAST_1,
        "ngram_buckets": AT_LEAST_1,
        "members": AT_LEAST_1,
        "head_dropout": A_SHARE,
        "word_dropout": A_SHARE,
        "spatial_dropout": A_SHARE,
        "state_dropout": A_SHARE,
    }


def check_seq2seq_model(cfg, at) -> None:
    """The rules across a `ModelConfig`'s keys (every task with a Seq2Seq model calls it from its
    `Task.check`); `at(*keys)` names where their values came from."""
    m = cfg.model
    if m.copy and m.decoder not in ("luong", "bahdanau"):
        raise AttnseqError(
            f"{at('model.copy', 'model.decoder')}: model.copy copies through the attention weights; it needs "
            f"model.decoder luong or bahdanau (got {m.decoder})"
        )
    if m.coverage and (m.decoder not in ("luong", "bahdanau") or m.attention not in COVERAGE_KINDS):
        raise AttnseqError(
            f"{at('model.coverage', 'model.decoder', 'model.attention')}: model.coverage adds the sum of past "
            f"attention weights inside an additive score; it needs model.decoder luong or bahdanau and model.attention "
            f"{' or '.join(COVERAGE_KINDS)} (got {m.decoder} / {m.attention})"
        )
    if m.bidirectional and m.enc_hidden_size % 2:
        raise AttnseqError(
            f"{at('model.enc_hidden_size')}: 'model.enc_hidden_size' = {m.enc_hidden_size} must be even with a "
            "bidirectional encoder (each direction gets half)"
        )
    attends = m.decoder in ("luong", "bahdanau")
    if attends and m.attention in ("dot", "scaled_dot") and m.enc_hidden_size != m.dec_hidden_size:
        raise AttnseqError(
            f"{at('model.attention', 'model.dec_hidden_size', 'model.enc_hidden_size')}: "
            f"'{m.attention}' attention compares s_t with h_i directly, so "
            f"model.dec_hidden_size ({m.dec_hidden_size}) must equal model.enc_hidden_size "
            f"({m.enc_hidden_size}); make them equal or use attention 'general' or 'concat'"
        )
    if m.tie_embeddings and m.emb_size != m.dec_hidden_size:
        raise AttnseqError(
            f"{at('model.tie_embeddings', 'model.emb_size', 'model.dec_hidden_size')}: model.tie_embeddings needs "
            f"model.emb_size ({m.emb_size}) equal to model.dec_hidden_size ({m.dec_hidden_size}), since W_y reads "
            "decoder states; make them equal or set model.tie_embeddings: false"
        )
    if shortlist_requested(cfg.decode.shortlist) and getattr(m, "copy", False):
        raise AttnseqError(f"{at('decode.shortlist', 'model.copy')}: a model that copies (model.copy) writes "
                           "source words that no shortlist holds; set decode.shortlist: 0")  # fmt: skip


ATTENTIONS = ("dot", "scaled_dot", "general", "concat", "location")


def wiring_variants(m: ModelConfig, *, max_src_len: int) -> list[tuple[str, list[str]]]:
    """`init`, `every-step` and each of luong / bahdanau with each score function (SPEC 1-4), as
    (name, --set overrides) of `m`; location attention covers sources of `max_src_len` tokens and </s>."""
    variants: list[tuple[str, list[str]]] = [(d, [f"model.decoder={d}"]) for d in ("init", "every-step")]
    for decoder in ("luong", "bahdanau"):
        for attention in ATTENTIONS:
            sets = [f"model.decoder={decoder}", f"model.attention={attention}"]
            if attention == "location":  # one score per source position
                sets.append(f"model.max_src_len={max(m.max_src_len, max_src_len + 1)}")
            variants.append((f"{decoder}-{attention}", sets))
    return variants
