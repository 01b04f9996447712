"""Speed only. Each piece computes what a reference in `modules/` computes, names the SPEC
equation it reproduces, and is held equal to it by a test:

- fused.py: Luong attention with input feeding (SPEC 2, 2.6) under teacher forcing as one
  hand-differentiated autograd node; tests/test_fast_paths.py compares outputs and gradients with
  the step-by-step `LuongDecoder._step`.
- loss.py: label-smoothed cross-entropy (SPEC 1.4's training loss), and the output layer W_y fused
  with it in row chunks so (N, V) logits are never kept; tests/test_fast_paths.py against
  `torch.nn.functional.cross_entropy`.
- frozen.py: oneDNN-packed and int8 linear layers for decoding copies.
- decoding.py: the decoding copy of a model (weights cast once, word gates tabulated, linear
  layers packed); tests/test_fast_paths.py and tests/test_translation.py.
"""
