"""Dequantize a GGUF file into a Hugging Face folder that vLLM can serve.

The work runs in the vLLM virtual environment (torch, transformers, gguf, accelerate live
there, not in the runner's own), by running this file as a script: everything above
``_convert`` therefore imports only the standard library at module level.

What makes the copy answer like the GGUF it came from (checked by ``tests/test_convert.py``
against llama.cpp on the same file):

- the weights are the GGUF's dequantized values, kept in float32 so that no second rounding
  is added; the server's ``--dtype`` chooses the compute precision;
- transformers' GGUF loader leaves a ``quantization_config`` (GGUF) on the model that makes
  vLLM try to load GGUF tensors from a safetensors folder: it is dropped;
- ``generation_config.json`` stops on every end-of-generation token llama.cpp stops on
  (``<eos>`` and, for Gemma, ``<end_of_turn>``), not only the GGUF's single ``eos_token_id``;
- the tokenizer adds BOS when the GGUF says so (``tokenizer.ggml.add_bos_token``): transformers'
  GGUF tokenizer drops it, and Gemma without its ``<bos>`` answers only newlines;
- the chat template is the GGUF's own; a GGUF without one (such as the base Gemma 3 270M)
  gets the template llama.cpp falls back to (ChatML), with the BOS in front, because vLLM
  adds no special tokens to a rendered chat prompt while llama.cpp does: both then see the
  same token ids.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

log = logging.getLogger(__name__)

#: files a finished conversion holds; their presence (and the done mark) means "complete"
_DONE_MARK = ".runner-gguf-to-hf.json"
_REQUIRED = ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json")

#: llama.cpp's fallback when a GGUF carries no chat template (common/chat.cpp, CHATML_TEMPLATE_SRC)
CHATML_TEMPLATE = (
    "{%- for message in messages -%}\n"
    "  {{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>\\n' -}}\n"
    "{%- endfor -%}\n"
    "{%- if add_generation_prompt -%}\n"
    "  {{- '<|im_start|>assistant\\n' -}}\n"
    "{%- endif -%}"
)
_BOS_FIRST = "{{- bos_token -}}\n"
#: token texts llama.cpp treats as end of generation besides the GGUF's eos (llama-vocab.cpp)
_EOG_TEXTS = ("<end_of_turn>", "<|eot_id|>", "<|im_end|>", "<|end|>", "<|endoftext|>", "<EOT>", "<|end_of_text|>")


def _tied():
    from runner.infra.lifetime import tied  # the runner's side only: this module also runs alone in vLLM's venv

    return tied()


def is_complete(out_dir: Path) -> bool:
    """Whether ``out_dir`` holds a finished conversion (weights, config, tokenizer, done mark)."""
    out_dir = Path(out_dir)
    return ((out_dir / _DONE_MARK).is_file() and all((out_dir / name).is_file() for name in _REQUIRED)
            and any(out_dir.glob("*.safetensors")))


def gguf_to_hf(gguf: Path, out_dir: Path) -> Path:
    """Write ``gguf`` dequantized as a Hugging Face folder in ``out_dir`` (reused when complete)."""
    from runner.errors import UserError
    from runner.runtimes.vllm import ensure_vllm

    gguf, out_dir = Path(gguf), Path(out_dir)
    if not gguf.is_file():
        raise UserError(f"{gguf}: no such GGUF file; prepare the model first (`runner models prepare`)")
    if is_complete(out_dir):
        return out_dir
    python = ensure_vllm()
    partial = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.parent.mkdir(parents=True, exist_ok=True)
    log_path = out_dir.with_name(out_dir.name + ".convert.log")
    started = time.monotonic()
    with open(log_path, "w", encoding="utf-8") as fh:
        # -P: do not put runner/ on sys.path, where its module names could shadow libraries
        done = subprocess.run([str(python), "-P", str(Path(__file__).resolve()), str(gguf), str(partial)],
                              stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, preexec_fn=_tied(),
                              env={**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_VERBOSITY": "warning",
                                   "TQDM_DISABLE": "1"})
    if done.returncode != 0 or not is_complete(partial):
        tail = " | ".join(log_path.read_text(encoding="utf-8", errors="replace").splitlines()[-4:])
        raise UserError(f"converting {gguf} to a Hugging Face folder failed (exit {done.returncode}; "
                        f"log {log_path}): {tail}")
    shutil.rmtree(out_dir, ignore_errors=True)
    os.replace(partial, out_dir)
    log.info("converted %s to %s in %.0fs", gguf.name, out_dir, time.monotonic() - started)
    return out_dir


def _gguf_metadata(gguf: Path) -> dict:
    from gguf import GGUFReader

    reader = GGUFReader(str(gguf))

    def field(key):
        value = reader.fields.get(key)
        return None if value is None else value.contents()

    return {"chat_template": field("tokenizer.chat_template"), "eos": field("tokenizer.ggml.eos_token_id"),
            "architecture": field("general.architecture"), "add_bos": field("tokenizer.ggml.add_bos_token")}


def _convert(gguf: Path, out: Path) -> None:
    """In the vLLM venv: load the GGUF with transformers, drop its quantization, save it."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    t0 = time.monotonic()
    meta = _gguf_metadata(gguf)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    print(f"tokenizer loaded in {time.monotonic() - t0:.1f}s", flush=True)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    print(f"weights dequantized in {time.monotonic() - t0:.1f}s", flush=True)
    # The values are plain float32 now; the GGUF quantizer left on the model would make the
    # saved config claim GGUF tensors.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.config.dtype = torch.float32
    model.save_pretrained(out, safe_serialization=True)

    add_bos = bool(meta["add_bos"]) if meta["add_bos"] is not None else False
    tokenizer.add_bos_token = add_bos  # rebuilds the post-processor that puts <bos> first
    tokenizer.chat_template = meta["chat_template"] or ((_BOS_FIRST if add_bos else "") + CHATML_TEMPLATE)
    tokenizer.save_pretrained(out)
    config_path = out / "tokenizer_config.json"
    config = json.loads(config_path.read_text(encoding="utf-8"))
    config["add_bos_token"] = add_bos  # said explicitly, for loaders that read it rather than the post-processor
    config_path.write_text(json.dumps(config, indent=2), encoding="utf-8")
    vocab = tokenizer.get_vocab()
    eos = [int(meta["eos"]) if meta["eos"] is not None else tokenizer.eos_token_id]
    eos += [vocab[text] for text in _EOG_TEXTS if text in vocab and vocab[text] not in eos]
    generation = GenerationConfig(bos_token_id=tokenizer.bos_token_id, eos_token_id=eos,
                                  pad_token_id=tokenizer.pad_token_id)
    generation.save_pretrained(out)
    (out / _DONE_MARK).write_text(json.dumps({"gguf": str(gguf), "gguf_size": gguf.stat().st_size,
                                              "architecture": meta["architecture"], "eos_token_ids": eos,
                                              "add_bos_token": add_bos,
                                              "chat_template": "gguf" if meta["chat_template"] else "chatml"}),
                                  encoding="utf-8")
    for path in out.iterdir():
        path.chmod(0o644)  # safetensors are written 0600; a container's server user must read them
    print(f"saved {out} in {time.monotonic() - t0:.1f}s", flush=True)


if __name__ == "__main__":
    _convert(Path(sys.argv[1]), Path(sys.argv[2]))
