"""Tiny local causal LMs for tests: a random Llama and a byte-level BPE trained on stdlib sources.

Two chat templates that differ in structure, so nothing in the dataset stage may assume one:

- `chatml`: `<|im_start|>role\\n…<|im_end|>\\n`, end of turn == EOS, no tool support (calls are folded).
- `llama3`: BOS, `<|start_header_id|>role<|end_header_id|>\\n\\n…<|eot_id|>`, content trimmed,
  native tool calls as JSON, tool results under the `ipython` role, end of turn (`<|eot_id|>`) ≠ EOS.

Built in a few seconds, deterministically (seed 0).
"""
from __future__ import annotations

import glob
import os
import sysconfig
from pathlib import Path

CHATML = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
          "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")

LLAMA3 = ("{{ bos_token }}{% for m in messages %}"
          "{% set role = 'ipython' if m['role'] == 'tool' else m['role'] %}"
          "<|start_header_id|>{{ role }}<|end_header_id|>\n\n"
          "{% if m.get('tool_calls') %}{% for c in m['tool_calls'] %}"
          "{\"name\": \"{{ c['function']['name'] }}\", \"parameters\": {{ c['function']['arguments'] | tojson }}}"
          "{% endfor %}{% else %}{{ m['content'] | trim }}{% endif %}<|eot_id|>{% endfor %}"
          "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}")

# A template that forgets to mark turns: the dataset's mask audit must refuse it.
UNMARKED = ("{% for m in messages %}{{ m['content'] }}\n{% endfor %}")

TEMPLATES = {
    "chatml": (CHATML, {"bos_token": "<|im_start|>", "eos_token": "<|im_end|>", "unk_token": "<|endoftext|>",
                        "pad_token": "<pad>"}),
    "llama3": (LLAMA3, {"bos_token": "<|begin_of_text|>", "eos_token": "<|end_of_text|>",
                        "unk_token": "<|endoftext|>", "pad_token": "<pad>"}),
    "unmarked": (UNMARKED, {"bos_token": "<|im_start|>", "eos_token": "<|im_end|>", "unk_token": "<|endoftext|>",
                            "pad_token": "<pad>"}),
}
SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<pad>", "<|begin_of_text|>", "<|end_of_text|>",
           "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]


def build_tiny(out: Path, template: str = "chatml", *, layers: int = 2, hidden: int = 64) -> Path:
    """Write a tiny random Llama + tokenizer with `template` into `out`; return `out`."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    texts, total = [], 0
    for f in sorted(glob.glob(os.path.join(sysconfig.get_paths()["stdlib"], "*.py"))):
        text = Path(f).read_text(encoding="utf-8", errors="ignore")
        texts.append(text)
        total += len(text)
        if total >= 1_000_000:
            break
    tk = Tokenizer(models.BPE())
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    tk.post_processor = processors.ByteLevel(trim_offsets=False)
    tk.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=2048, show_progress=False, special_tokens=SPECIAL,
                                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    chat_template, special = TEMPLATES[template]
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, model_max_length=2048, **special)
    tok.chat_template = chat_template
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tok), hidden_size=hidden, intermediate_size=hidden * 3,
                         num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=2048, tie_word_embeddings=True, bos_token_id=tok.bos_token_id,
                         eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    LlamaForCausalLM(config).save_pretrained(out)
    tok.save_pretrained(out)
    return out
