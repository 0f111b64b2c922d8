"""A tiny Llama with fixed-seed random weights, and a tokenizer trained for it: the rehearsal's model.

    python -m gpu_rehearsal.make_model OUT_DIR --corpus FILE [--corpus FILE...] [--seed 0]

The rehearsal checks the machinery (conversion, serving, every phase, the report), not answers:
random weights answer nonsense, which is enough. It must be small (the host takes files in 64 MiB
batches, and nothing here is carried: it is made on the host with its own transformers) and shaped
as EXL2 needs: every linear layer's dimensions multiples of 128, a head dimension of 64.

The tokenizer is a byte-level BPE trained on ``--corpus`` (the rehearsal passes exllamav2's own
calibration texts, present wherever exllamav2 is installed), with ChatML's two markers as special
tokens and the runner's ChatML template: the instruct prompts go through the chat endpoint.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

#: the architecture; EXL2 quantizes in groups of 32 input columns and its kernels tile by 128
DIMS = {"vocab_size": 2048, "hidden_size": 256, "intermediate_size": 768, "num_hidden_layers": 4,
        "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 4096}
SPECIAL = ["<s>", "</s>", "<|im_start|>", "<|im_end|>"]  # ids 0..3, in this order
MAX_MB = 60  # the bound on model weights a GPU host can be given


def parameters(dims: dict[str, int] = DIMS) -> int:
    """The model's parameter count (untied embeddings and head, no biases)."""
    h, i, layers, v = dims["hidden_size"], dims["intermediate_size"], dims["num_hidden_layers"], dims["vocab_size"]
    kv = h // dims["num_attention_heads"] * dims["num_key_value_heads"]
    per_layer = 2 * h * h + 2 * h * kv + 3 * h * i + 2 * h  # q, o; k, v; gate, up, down; two norms
    return 2 * v * h + layers * per_layer + h


def chat_template() -> str:
    """The runner's ChatML template (what it gives a GGUF without one), so one template is used everywhere."""
    try:
        from runner.serving.convert import CHATML_TEMPLATE
    except ImportError:  # the runner not importable here: the same text, kept in step by a test
        CHATML_TEMPLATE = (
            "{%- for message in messages -%}\n"
            "  {{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>\\n' -}}\n"
            "{%- endfor -%}\n"
            "{%- if add_generation_prompt -%}\n"
            "  {{- '<|im_start|>assistant\\n' -}}\n"
            "{%- endif -%}")
    return CHATML_TEMPLATE


def make_tokenizer(corpus: list[Path], out: Path, vocab_size: int = DIMS["vocab_size"]) -> int:
    """Train the byte-level BPE on ``corpus``; write tokenizer.json and tokenizer_config.json. Returns its vocab size."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    texts = [path.read_text(encoding="utf-8") for path in corpus]
    tokenizer.train_from_iterator(texts, trainer)
    assert [tokenizer.token_to_id(t) for t in SPECIAL] == list(range(len(SPECIAL)))
    tokenizer.save(str(out / "tokenizer.json"))
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<s>", "eos_token": "<|im_end|>",
        "add_bos_token": True, "add_eos_token": False, "model_max_length": DIMS["max_position_embeddings"],
        "chat_template": chat_template(),
        "added_tokens_decoder": {str(i): {"content": t, "special": True, "lstrip": False, "rstrip": False,
                                          "normalized": False, "single_word": False} for i, t in enumerate(SPECIAL)},
    }
    (out / "tokenizer_config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    return tokenizer.get_vocab_size()


def make_model(out: Path, seed: int) -> None:
    """The Llama with random weights (transformers' own initialisation, seeded), saved in float16."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(**DIMS, rms_norm_eps=1e-5, rope_theta=10000.0, tie_word_embeddings=False,
                         bos_token_id=0, eos_token_id=3, pad_token_id=None, hidden_act="silu")
    model = LlamaForCausalLM(config).to(torch.float16)
    model.save_pretrained(out)
    # every loader reads these as the classic keys; a newer transformers may write others beside them
    path = out / "config.json"
    written = json.loads(path.read_text(encoding="utf-8"))
    written.update({"rope_theta": 10000.0, "torch_dtype": "float16", "architectures": ["LlamaForCausalLM"],
                    "bos_token_id": 0, "eos_token_id": 3})
    path.write_text(json.dumps(written, indent=2), encoding="utf-8")
    (out / "generation_config.json").write_text(json.dumps({"bos_token_id": 0, "eos_token_id": [3, 1]}),
                                                encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make_model", description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--corpus", type=Path, action="append", required=True, help="text to train the tokenizer on")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    missing = [str(p) for p in args.corpus if not p.is_file()]
    if missing:
        print(f"make_model: no corpus file {', '.join(missing)}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    vocab = make_tokenizer(args.corpus, args.out)
    make_model(args.out, args.seed)
    weights = sum(p.stat().st_size for p in args.out.glob("*.safetensors"))
    if not weights:
        print(f"make_model: transformers wrote no .safetensors file in {args.out}", file=sys.stderr)
        return 1
    if weights > MAX_MB * 1e6:
        print(f"make_model: {weights / 1e6:.1f} MB of weights, over {MAX_MB} MB", file=sys.stderr)
        return 1
    print(f"model {args.out}: {parameters() / 1e6:.2f}M parameters, {weights / 1e6:.1f} MB float16, "
          f"tokenizer vocab {vocab} (model {DIMS['vocab_size']}), seed {args.seed}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
