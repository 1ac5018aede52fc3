"""Peak memory of one training run, by component, from the model's config.json and the batch shape.

    estimate(Workload(model_dir=…, batch_size=4, seq_len=512), model_shape(model_dir), process_bytes=…)

weights (parameters counted from the architecture) · adapter, gradients and AdamW state ·
activations saved for backward (per token and layer) · logits and loss temporaries · on the CPU,
what glibc's allocator keeps resident on top of the live tensors, the loaded dataset and the
Python process itself. The per-token constants come from the live tensors at the peak of a real
step (the profiler's allocation events, tiny Llama and SmolLM2-135M on CPU, torch 2.13,
transformers 5.24, peft 0.21); `benchmarks/planner_accuracy.py` checks the total against
measured peak RSS.
"""
from __future__ import annotations

import json
import math
import resource
import sys
from dataclasses import dataclass
from pathlib import Path

GB = 10 ** 9
DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
ATTENTION_INPUTS = ("q_proj", "k_proj", "v_proj")
MLP_INPUTS = ("gate_proj", "up_proj")

# Architectures whose parameters and saved activations are modelled exactly: per model type,
# (biases on q/k/v, bias on o, bias on the MLP, per-head RMSNorm on q and k) — each a bool or the
# config key that holds it.
LLAMA_LIKE = {
    "llama": ("attention_bias", "attention_bias", "mlp_bias", False),
    "mistral": (False, False, False, False),
    "qwen2": (True, False, False, False),
    "qwen3": ("attention_bias", "attention_bias", False, True),
}

# --- measured constants (see the module docstring for the setup) ---------------------------------
# The loss path keeps three [tokens × vocab] fp32 tensors alive at once: the lm_head output, the
# contiguous copy `cross_entropy` makes of the transposed `logits[:, :-1]`, and the log-softmax
# output (the step's peak sits in `_log_softmax`: 3.0 copies measured on both models). With a
# 16-bit model the lm_head output is 16-bit and `.float()` adds a fourth, fp32 copy.
LOGIT_COPIES_FP32 = 3
# glibc keeps freed activation chunks resident (the mmap threshold rises to 32 MiB after the first
# large free, so per-layer tensors come from the heap and are not returned): peak RSS above the
# weights and the process was 1.58-1.65 × the live tensor peak after 3 steps (tiny Llama at 1-8 rows,
# SmolLM2 at 1-2 rows of 512) and 1.73-1.86 × after 12-40 steps, as freed chunks fragment further.
CPU_ALLOCATOR_FACTOR = 1.7
# With gradient checkpointing the backward recomputes every layer, and the heap keeps 0.44-0.66 × what
# the activations would take without checkpointing (SmolLM2 at 1-2 rows, tiny 4 × 256 at 8 rows,
# 2-3 steps): the trainer's RSS between steps sits that far above its weights and process.
CPU_CHECKPOINTED_HEAP = 0.55
# PyTorch's CUDA caching allocator rounds blocks and keeps them reserved; not measured here (no GPU).
CUDA_ALLOCATOR_FACTOR = 1.15
CUDA_CONTEXT_BYTES = int(0.5 * GB)  # CUDA context and kernels of a torch process; not measured here
# The dataset in Python lists: train.jsonl rows (60-84 B/token measured) plus packed rows (7-40).
DATA_BYTES_PER_TOKEN = 100
# bitsandbytes NF4 with double quantization: 4 bits per weight plus block scales (~0.13 bit).
NF4_BYTES_PER_PARAM = 0.516


@dataclass(frozen=True, slots=True)
class ModelShape:
    """What the memory model needs from a causal LM's config.json."""
    model_type: str
    vocab: int
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    tied: bool
    biases: tuple[bool, bool, bool] = (False, False, False)  # q/k/v, o, MLP
    qk_norm: bool = False
    attention: str = "sdpa"
    counted_params: int = 0  # for an architecture not in LLAMA_LIKE: its parameters counted on the meta device

    @property
    def exact(self) -> bool:
        return self.model_type in LLAMA_LIKE


@dataclass(frozen=True, slots=True)
class Workload:
    """One micro-batch of one training run: what the planner estimates."""
    model_dir: Path
    device: str = "cpu"  # "cpu" or "cuda"
    dtype: str = "float32"  # compute dtype of the base weights and activations
    method: str = "lora"  # lora | qlora | full
    lora_r: int = 8
    target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj")
    lora_dropout: float = 0.05
    batch_size: int = 4  # rows in a micro-batch (the spec's, or every row when the dataset has fewer)
    grad_accum: int = 1
    seq_len: int = 512  # tokens per row of the widest micro-batch (`collate` pads to the widest row)
    packing: bool = True
    gradient_checkpointing: bool = False
    optimizer: str = "adamw"

    @property
    def tokens(self) -> int:
        return self.batch_size * self.seq_len


@dataclass(frozen=True, slots=True)
class Estimate:
    """Peak memory by component, in bytes; the components sum to `total`."""
    parts: tuple[tuple[str, int], ...]
    tokens: int  # tokens in one micro-batch
    notes: tuple[str, ...] = ()

    @property
    def total(self) -> int:
        return sum(v for _, v in self.parts)

    def part(self, name: str) -> int:
        return dict(self.parts)[name]

    def as_dict(self) -> dict:
        return {"total_bytes": self.total, "tokens_per_micro_batch": self.tokens,
                "components": dict(self.parts), "notes": list(self.notes)}


def model_shape(model_dir: Path) -> ModelShape:
    """The shape of the model in `model_dir` from its config.json (nothing is loaded)."""
    cfg = json.loads((Path(model_dir) / "config.json").read_text(encoding="utf-8"))
    cfg = {**cfg.get("text_config", {}), **cfg} if "hidden_size" not in cfg else cfg
    heads = cfg["num_attention_heads"]
    model_type = cfg.get("model_type", "")
    arch = LLAMA_LIKE.get(model_type)
    flags = [cfg.get(f, False) if isinstance(f, str) else f for f in arch] if arch else [False] * 4
    shape = ModelShape(
        model_type=model_type, vocab=cfg["vocab_size"], hidden=cfg["hidden_size"], layers=cfg["num_hidden_layers"],
        heads=heads, kv_heads=cfg.get("num_key_value_heads") or heads,
        head_dim=cfg.get("head_dim") or cfg["hidden_size"] // heads, intermediate=cfg["intermediate_size"],
        tied=bool(cfg.get("tie_word_embeddings", True)), biases=(bool(flags[0]), bool(flags[1]), bool(flags[2])),
        qk_norm=bool(flags[3]), attention=cfg.get("_attn_implementation") or cfg.get("attn_implementation") or "sdpa")
    if arch is None:
        from dataclasses import replace

        shape = replace(shape, counted_params=_count_on_meta(Path(model_dir)))
    return shape


def linear_dims(shape: ModelShape) -> dict[str, tuple[int, int]]:
    """(in, out) features of each linear layer in one decoder layer."""
    h, q, kv, i = shape.hidden, shape.heads * shape.head_dim, shape.kv_heads * shape.head_dim, shape.intermediate
    return {"q_proj": (h, q), "k_proj": (h, kv), "v_proj": (h, kv), "o_proj": (q, h),
            "gate_proj": (h, i), "up_proj": (h, i), "down_proj": (i, h)}


def param_count(shape: ModelShape) -> int:
    """Parameters of the whole model: embeddings, per layer attention + MLP + norms, final norm, lm_head."""
    if shape.counted_params:
        return shape.counted_params
    return _linear_params(shape) + _other_params(shape)


def adapter_params(shape: ModelShape, r: int, targets: tuple[str, ...]) -> int:
    """LoRA parameters: A (r × in) and B (out × r) for every targeted linear in every layer."""
    dims = linear_dims(shape)
    return shape.layers * sum(r * (dims[t][0] + dims[t][1]) for t in targets if t in dims)


def estimate(w: Workload, shape: ModelShape, *, process_bytes: int, data_tokens: int = 0) -> Estimate:
    """Peak memory of training `w` on a model of `shape`, by component.

    Args:
        process_bytes: what the process holds before any model (the Python process with torch and
            transformers imported, measured by `plan.process_baseline`; the CUDA context on a GPU).
        data_tokens: tokens of the training split, held in Python lists by the trainer (CPU only).
    """
    notes = []
    if not shape.exact:
        notes.append(f"architecture `{shape.model_type}` is not modelled exactly: activations use the Llama "
                     f"layout with its sizes")
    act = DTYPE_BYTES[w.dtype]
    params = param_count(shape)
    lora = w.method in ("lora", "qlora")
    trainable = adapter_params(shape, w.lora_r, w.target_modules) if lora else params
    if w.method == "qlora":
        linear = _linear_params(shape)
        weights = int(linear * NF4_BYTES_PER_PARAM) + (params - linear) * 4  # peft casts the rest to fp32
    else:
        weights = params * act
    state = 4 if lora else act  # peft keeps adapters in fp32; full fine-tuning trains the weights' dtype
    tokens = w.tokens
    masked = not w.packing and w.batch_size > 1  # padded batches carry a mask; packed rows run segment attention
    layer = _layer_floats(shape, w, masked)
    logit_bytes = tokens * shape.vocab * (LOGIT_COPIES_FP32 * 4 + (act if act != 4 else 0))
    unchecked = tokens * (shape.layers * layer + _shared_floats(shape, w, masked)) * act
    cpu = w.device == "cpu"
    factor = CPU_ALLOCATOR_FACTOR if cpu else CUDA_ALLOCATOR_FACTOR
    if w.gradient_checkpointing:
        # only each layer's input is kept (and the embedding output's); in backward one layer at a
        # time is recomputed, with its gradient temporaries (2·I + 3·H: measured), after the logits
        # are gone: the peak is the larger of the two phases
        kept = tokens * (shape.layers + 1) * shape.hidden * act
        backward = tokens * (layer + 2 * shape.intermediate + 3 * shape.hidden) * act
        activations = kept + max(0, backward - logit_bytes)
        allocator = CPU_CHECKPOINTED_HEAP * unchecked if cpu else (factor - 1) * (activations + logit_bytes)
    else:
        activations = unchecked
        allocator = (factor - 1) * (activations + logit_bytes)
    parts = (
        ("weights", weights),
        ("adapter", trainable * 4 if lora else 0),
        ("gradients", trainable * state),
        ("optimizer", 2 * trainable * state),  # AdamW: exp_avg and exp_avg_sq
        ("activations", activations),
        ("logits", logit_bytes),
        ("allocator", int(allocator)),
        ("data", data_tokens * DATA_BYTES_PER_TOKEN if cpu else 0),
        ("process", process_bytes),
    )
    return Estimate(parts=tuple((k, int(v)) for k, v in parts), tokens=tokens, notes=tuple(notes))


def _layer_floats(shape: ModelShape, w: Workload, masked: bool) -> int:
    """Values per token one decoder layer keeps for backward (from the live tensors at the peak)."""
    h, i, t = shape.hidden, shape.intermediate, w.seq_len
    q, kv = shape.heads * shape.head_dim, shape.kv_heads * shape.head_dim
    mlp = 3 * i  # gate and up outputs, silu(gate): saved by silu and by the product
    stream = 3 * h  # the two residual sums and the rotated queries
    norms = 2  # rsqrt of each RMSNorm
    grouped = shape.kv_heads < shape.heads
    if w.packing:
        # segment attention: sdpa per example with GQA and no mask saves its keys, values, output
        # and logsumexp (their concatenation, o_proj's input, is saved only by a LoRA on o_proj)
        attention = 2 * kv + q + shape.heads
    elif shape.attention == "eager":
        # repeat_kv'd keys and values, and the softmax probabilities (heads × seq per token)
        attention = (2 * q if grouped else 2 * kv) + shape.heads * t
    else:
        # sdpa: with a mask, transformers repeats k/v to every head (GQA only without a mask); the
        # kernel saves its output and logsumexp; on the CPU it turns the boolean mask into a float
        # one per layer (`where`, saved)
        repeated = grouped and masked and shape.attention == "sdpa"
        attention = (2 * q if repeated else 2 * kv) + q + shape.heads
        attention += t if masked and shape.attention == "sdpa" else 0
    if w.method == "full":
        # every linear saves its input: q/k/v share the normed input, gate/up too, down the product
        # (o_proj's is the attention output, already kept); both norms save the normalised input
        # for their weight's gradient (measured on the tiny model: 4·I + 10·H + seq per layer)
        return mlp + stream + norms + attention + (h + h + i) + 2 * h
    dims = linear_dims(shape)
    targets = [m for m in w.target_modules if m in dims]
    adapters = w.lora_r * len(targets)  # lora_A outputs, saved by lora_B
    if w.lora_dropout > 0:
        # each target's dropout output (saved by lora_A) and its float noise (saved by the product)
        adapters += sum(2 * dims[m][0] for m in targets)
    else:
        # lora_A saves its input: shared by q/k/v and by gate/up; o_proj's is the attention
        # output, which the attention kernel keeps anyway
        inputs = {"attn" if m in ATTENTION_INPUTS else "mlp" if m in MLP_INPUTS else m: dims[m][0]
                  for m in targets if m != "o_proj"}
        adapters += sum(inputs.values())
    return mlp + stream + norms + attention + adapters


def _shared_floats(shape: ModelShape, w: Workload, masked: bool) -> int:
    """Values per token kept once, not per layer: the attention mask (bool on sdpa, float on eager)."""
    if not masked:
        return 0
    return w.seq_len if shape.attention == "eager" else math.ceil(w.seq_len / DTYPE_BYTES[w.dtype])


def _linear_params(shape: ModelShape) -> int:
    dims = linear_dims(shape)
    qkv_bias, o_bias, mlp_bias = shape.biases
    per_layer = sum(a * b for a, b in dims.values())
    per_layer += qkv_bias * sum(dims[m][1] for m in ATTENTION_INPUTS) + o_bias * shape.hidden
    per_layer += mlp_bias * (2 * shape.intermediate + shape.hidden)
    return shape.layers * per_layer


def _other_params(shape: ModelShape) -> int:
    """Embeddings, norms (two per layer, the final one, per-head q/k norms) and an untied lm_head."""
    norms = shape.layers * (2 * shape.hidden + (2 * shape.head_dim if shape.qk_norm else 0)) + shape.hidden
    return shape.vocab * shape.hidden * (1 if shape.tied else 2) + norms


def _count_on_meta(model_dir: Path) -> int:
    """Parameters of an architecture the planner does not model, from an empty (meta) model."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(model_dir, local_files_only=True))
    return sum(p.numel() for p in model.parameters())


def peak_rss() -> int:
    """This process's peak RSS in bytes. Linux keeps `ru_maxrss` across fork and exec, so a child
    started by a big parent reports the parent's peak as its own; the address space's high-water
    mark (`VmHWM`, new at exec) is the child's alone."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss if sys.platform == "darwin" else rss * 1024
