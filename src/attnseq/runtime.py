"""What this device runs natively (`capabilities`, `resolve_precision`), and the process-wide
settings that the `attnseq` command applies before it works (`keep_freed_memory`).

`keep_freed_memory`: a decoding step allocates several vocabulary-wide temporaries (logits,
log-probabilities: 12.5 MB each for 320 beam rows over a 9,762-word vocabulary). glibc's malloc
serves blocks that large with fresh memory maps by default and hands them back to the system on
free (or trims them off its heap), so every step pays page faults and the kernel zeroing each page
again. Telling malloc to keep freed memory for reuse removes that cost: beam-5 decoding ran about
25% faster on the 2-core bench machine (docs/performance.md). Memory the process once used stays
with it until it exits, as with PyTorch's GPU caching allocator.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
from collections.abc import Callable
from dataclasses import dataclass

# mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_KEEP = 1 << 30  # bytes: blocks below this come from the heap, and the heap is trimmed only above it


def tune_process() -> dict[str, bool]:
    """The process-wide settings the `attnseq` command applies before it works, in one call, for
    Python users who want the command's speed (`attnseq.tune_process()`): today glibc's malloc
    keeping freed memory (`keep_freed_memory`). Returns what took effect."""
    return {"keep_freed_memory": keep_freed_memory()}


@functools.cache
def keep_freed_memory() -> bool:
    """Make glibc's malloc reuse freed memory instead of returning it to the system (see the module
    docstring). Returns whether the setting took; on a C library without `mallopt` (macOS, musl)
    nothing changes. Applies to the whole process, once."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, _KEEP)) and bool(mallopt(_M_TRIM_THRESHOLD, _KEEP))


@contextlib.contextmanager
def torch_threads(count: int):
    """Run the block with `count` torch CPU threads (0: leave torch's setting), then restore it."""
    import torch

    before = torch.get_num_threads()
    if count:
        torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


# ------------------------------------------------------------------------------ what this device runs

INT8_ENGINES = ("onednn", "x86", "fbgemm")  # tried in this order; onednn's kernels were the fastest where native


@dataclass(frozen=True)
class Capabilities:
    """What a device runs natively, decided from the library's own checks and confirmed by running
    each kernel once on a tiny input (`capabilities`).

    Attributes:
        device: "cpu" or "cuda".
        isa: the CPU's vector instruction set as ATen dispatches it (`torch.backends.cpu.
            get_cpu_capability()`: DEFAULT, AVX2, AVX512, ...), or the GPU's name.
        bf16: bfloat16 matrix products and RNNs run natively (CPU: AVX512-BF16 or AMX through
            oneDNN; CUDA: `torch.cuda.is_bf16_supported()`).
        bf16_missing: what is missing when `bf16` is False ("" otherwise), for error messages.
        packed: dtypes whose linear weights oneDNN can reorder once for decoding (`PackedLinear`).
        int8_engine: the quantized engine whose dynamic int8 linear layer runs here, or "".
    """

    device: str
    isa: str
    bf16: bool
    bf16_missing: str
    packed: tuple[str, ...]
    int8_engine: str

    def summary(self) -> str:
        """One line for logs and the bench: `cpu AVX2: bf16 no (...), packed fp32, int8 onednn`."""
        bf16 = "yes" if self.bf16 else f"no ({self.bf16_missing})"
        packed, int8 = "/".join(self.packed) or "none", self.int8_engine or "none"
        return f"{self.device} {self.isa}: native bf16 {bf16}; oneDNN-packed linear {packed}; int8 {int8}"


def _runs(kernel: Callable[[], object]) -> str:
    """ "" when `kernel` runs, else the first line of what it raised."""
    try:
        kernel()
    except Exception as exc:  # the library says no by raising: any kind means "not here"
        return str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
    return ""


def _bf16_rnn_and_matmul(device: str) -> None:
    import torch

    lstm = torch.nn.LSTM(8, 8, batch_first=True).to(device)
    x = torch.randn(2, 3, 8, device=device, requires_grad=True)
    with torch.autocast(torch.device(device).type, dtype=torch.bfloat16):  # "cuda:1" -> "cuda"
        out, _ = lstm(x)
        y = out @ torch.randn(8, 4, device=device)
    if out.dtype != torch.bfloat16 or y.dtype != torch.bfloat16:
        raise RuntimeError(f"autocast ran the LSTM in {out.dtype}")
    y.float().sum().backward()


def _packed_linear(dtype) -> None:
    import torch

    weight = torch.randn(4, 8).to(dtype)
    packed = torch.ops.mkldnn._reorder_linear_weight(weight)
    torch.ops.mkldnn._linear_pointwise(torch.randn(2, 8).to(dtype), packed, None, "none", [], "")


def _int8_linear(engine: str) -> None:
    import torch

    quantize_dynamic_linear(torch.nn.Linear(8, 4), engine=engine)(torch.randn(2, 8))


@functools.cache
def capabilities(device: str = "cpu") -> Capabilities:
    """What `device` ("cpu", "cuda", "cuda:1") runs natively; probed once per process and device.

    The probes draw from torch's random number generator inside `torch.random.fork_rng`, so the
    caller's random stream is left as it was, and the quantized engine is restored afterwards.
    """
    import torch

    kind = torch.device(device).type
    with torch.random.fork_rng(devices=[]):
        if kind == "cuda":
            name = torch.cuda.get_device_name(torch.device(device))
            if not torch.cuda.is_bf16_supported():
                missing = f"{name} has no native bf16 (it needs compute capability 8.0 or newer)"
            else:
                failed = _runs(lambda: _bf16_rnn_and_matmul(device))
                missing = f"the bf16 LSTM kernel failed here: {failed}" if failed else ""
            return Capabilities("cuda", name, not missing, missing, (), "")
        isa = torch.backends.cpu.get_cpu_capability()
        mkldnn = torch.backends.mkldnn.is_available()
        onednn_bf16 = mkldnn and torch.ops.mkldnn._is_mkldnn_bf16_supported()
        # oneDNN also says yes on AVX-512 CPUs without bf16 instructions, where it emulates them slowly
        native = (
            getattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)()
            or getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)()
        )
        if not onednn_bf16:
            missing = f"oneDNN runs no bf16 kernels on this CPU (instruction set {isa}; bf16 needs AVX512-BF16 or AMX)"
        elif not native:
            missing = f"this CPU has no AVX512-BF16 or AMX instructions (instruction set {isa}; bf16 would be emulated)"
        else:
            failed = _runs(lambda: _bf16_rnn_and_matmul("cpu"))
            missing = f"the bf16 LSTM kernel failed here: {failed}" if failed else ""
        packed = tuple(
            name
            for name, dtype in ((name, getattr(torch, d)) for name, d in PACKED_DTYPE_NAMES.items())
            if mkldnn
            and hasattr(torch.ops.mkldnn, "_linear_pointwise")
            and (name == "fp32" or not missing)
            and not _runs(lambda dtype=dtype: _packed_linear(dtype))
        )
        engines = [e for e in INT8_ENGINES if e in torch.backends.quantized.supported_engines]
        int8 = next((e for e in engines if not _runs(lambda e=e: _int8_linear(e))), "")
        return Capabilities("cpu", isa, not missing, missing, packed, int8)


def resolve_precision(requested: str, *, stage: str, device: str = "cpu", where: str = "") -> str:
    """The precision to run: `requested` itself when this device runs it natively, or what `auto`
    means here. Training (stage "train"): bf16 where native, else fp32. Decoding ("decode"): on a
    CPU int8 (the output layer W_y in int8, the rest of the decoding copy in bf16 where native,
    else fp32) where an int8 engine runs, else bf16 where native, else fp32; on a GPU fp32 (bf16
    decoding measured no faster there).

    Raises:
        AttnseqError: an explicit precision this device cannot run natively; the message names the
            missing capability and suggests auto. `where` names the setting (e.g. "train.precision").
    """
    from attnseq.errors import AttnseqError

    caps = capabilities(device)
    if requested == "auto":
        if stage == "train":
            return "bf16" if caps.bf16 else "fp32"
        if caps.int8_engine:
            return "int8"
        return "bf16" if caps.bf16 and caps.device == "cpu" else "fp32"
    setting = where or f"{stage} precision"
    if requested == "bf16" and not caps.bf16:
        here = resolve_precision("auto", stage=stage, device=device)
        raise AttnseqError(f"{setting} bf16: {caps.bf16_missing}; use auto (here: {here}) or fp32")
    if requested == "int8" and not caps.int8_engine:
        lacks = "int8 decoding runs on the CPU only" if caps.device == "cuda" else "no quantized engine runs here"
        raise AttnseqError(f"{setting} int8: {lacks}; use auto or fp32")
    return requested


def resolve_device(name: str):
    """A torch device from a user's string, or an AttnseqError saying what to use instead."""
    import torch

    from attnseq.errors import AttnseqError

    if name.startswith("cuda") and not torch.cuda.is_available():
        raise AttnseqError(f"device {name!r} asked for, but no CUDA GPU is visible; use cpu")
    try:
        return torch.device(name)
    except RuntimeError:
        raise AttnseqError(f"{name!r} is not a device; use cpu or cuda") from None


def autocast(device, precision: str):
    """The autocast context for a config's precision: bf16 runs matrix products and RNNs in
    bfloat16 with fp32 weights; fp32 changes nothing."""
    import torch

    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


# the dtypes whose oneDNN-packed linear kernels `capabilities` probes: the name it reports -> torch's name
PACKED_DTYPE_NAMES = {"fp32": "float32", "bf16": "bfloat16"}


def quantize_dynamic_linear(linear, *, engine: str):
    """`linear` with int8 weights packed by the quantized `engine` (onednn, x86, fbgemm), its input
    quantized at every call. The process's quantized engine is restored afterwards; the packed
    weight keeps the engine it was built with. Draws nothing from the RNG."""
    import warnings

    import torch
    from torch import nn

    fp32 = nn.utils.skip_init(nn.Linear, linear.in_features, linear.out_features, bias=linear.bias is not None)
    state = {"weight": linear.weight.detach().float()}
    if linear.bias is not None:
        state["bias"] = linear.bias.detach().float()
    fp32.load_state_dict(state)
    fp32.qconfig = torch.ao.quantization.default_dynamic_qconfig
    before = torch.backends.quantized.engine
    torch.backends.quantized.engine = engine
    try:
        with warnings.catch_warnings():  # the eager-mode API warns that it is moving to torchao
            warnings.simplefilter("ignore")
            return torch.ao.nn.quantized.dynamic.Linear.from_float(fp32)
    finally:
        torch.backends.quantized.engine = before
