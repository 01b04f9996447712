"""Speed only. Each piece computes what a reference in `modules/` (or `models/`) computes, names
the SPEC equation it reproduces, and is held equal to it by a test; nothing in `modules/` or
`models/` imports this package. The code that builds a model chooses the fast forms:

- accelerate.py: `accelerate(model)`, the one place that installs a model's fast training forms
  (fused loop, fused loss) on it; tests/test_fast_paths.py::test_accelerate_installs_what_the_model_has.
- fused.py: Luong attention with input feeding over a one-layer LSTM (SPEC 2.1-2.4, 2.6) under
  teacher forcing as one hand-differentiated autograd node; tests/test_fast_paths.py::
  test_fused_input_feeding_equals_autograd_through_steps compares outputs and gradients with the
  step-by-step `LuongDecoder._step`.
- loss.py: `label_smoothed_nll` of the softmax (modules/loss.py; SPEC 1.4 / 2.5's training loss),
  alone and fused with the output layer W_y in row chunks so (N, V) logits are never kept;
  tests/test_fast_paths.py::test_fused_losses_equal_the_reference (value and gradients).
- decoding.py: the decoding copy of a model (weights cast once, word gates tabulated, the LSTM
  cell in float32 for bf16, linear layers packed, int8 output layer); tests/test_fast_paths.py
  (the copy's steps against the model's) and tests/test_translation.py.
- frozen.py: oneDNN-packed and int8 linear layers for decoding copies (SPEC 1.4 / 2.5 / 3's linear
  maps); tests/test_fast_paths.py::test_packed_linear_equals_linear and
  tests/test_translation.py::test_int8_decoding_quantizes_the_output_layer.
- shortlist.py: W_y (SPEC 1.4 / 2.5) over a lexical shortlist of the target vocabulary; with every
  word listed search finds what it finds without one (tests/test_shortlist.py).
"""
