"""The one place that chooses a model's fast training forms: `accelerate(model)`.

`modules/` and `models/` compute the reference; a `Seq2Seq` calls a fast form where one is
installed on it (its hooks `fast_features`, `fast_loss`, `fast_logits_loss`). This function installs
every form the model's pieces have, each held equal to the reference it replaces by
tests/test_fast_paths.py (outputs and gradients):

- `fast_features`: Luong with input feeding over a one-layer LSTM with a score that has a
  `ScoreForm` runs as one hand-differentiated node (`fast.fused.luong_lstm_features`), in place of
  `decoder.features` (SPEC 2.1-2.4, 2.6);
- `fast_loss`: the output layer W_y fused with the label-smoothed cross-entropy
  (`fast.loss.readout_loss`), in place of `decoder.loss` (SPEC 1.4 / 2.5 with `label_smoothed_nll`);
- `fast_logits_loss`: the label-smoothed cross-entropy of logits as one node
  (`fast.loss.cross_entropy_sum`), in place of `label_smoothed_nll(log_softmax(logits))`.

Call it once on a freshly built model, before training or loading weights into it; the forms read
the model's parameters at every call, so `.to()`, loading and copies keep them right. It draws
nothing from the random stream and adds no parameters.
"""

from __future__ import annotations

from torch import nn

from attnseq.fast.fused import luong_lstm_features_for
from attnseq.fast.loss import cross_entropy_sum, readout_loss
from attnseq.models.seq2seq import Seq2Seq


def accelerate(model: nn.Module) -> nn.Module:
    """Install the fast forms a model has (see the module's docstring) and return it; a model
    without any (a classifier) comes back as it was."""
    if not isinstance(model, Seq2Seq):
        return model
    model.fast_features = luong_lstm_features_for(model.decoder)
    model.fast_loss = readout_loss
    model.fast_logits_loss = cross_entropy_sum
    return model
