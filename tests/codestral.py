"""Codestral-22B-v0.1's token parity: real SimCoPilot tasks, mistral-common's ids for them, and tiny
random-weight models with Codestral's own vocabulary for the real servers to tokenize with.

The vocabulary is mistral-common's v3 SentencePiece model (``MistralTokenizer.v3()``, the one
Codestral's model card names). The Hugging Face folder gets it as ``tokenizer.model``, a
``tokenizer_config.json`` that lists every control piece (``[INST]``, ``[/INST]``, ``[PREFIX]``,
``[SUFFIX]``, ...) as a special token, and a ``tokenizer.json`` in the layout of Mistral's own HF
conversions (tests/codestral_tokenizer_json.py); the weights are one random layer (the tests read
token ids, never answers). The GGUF is made from that folder by
llama.cpp's own ``convert_hf_to_gguf.py``, from the pinned llama-cpp-python sdist's vendored tree,
run in the vLLM venv (it needs torch): so its token types are the converter's, not ours.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

from runner.paths import cache_dir
from tests.conftest import require

#: one tiny Mistral layer: enough for llama.cpp and vLLM to load and serve the vocabulary
CONFIG = {
    "architectures": ["MistralForCausalLM"], "model_type": "mistral", "vocab_size": 32768,
    "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 1, "num_attention_heads": 2,
    "num_key_value_heads": 1, "head_dim": 32, "max_position_embeddings": 32768, "rms_norm_eps": 1e-5,
    "rope_theta": 1000000.0, "sliding_window": None, "tie_word_embeddings": False, "hidden_act": "silu",
    "bos_token_id": 1, "eos_token_id": 2, "torch_dtype": "float32",
}
_VERSION = "2"  # bump when the folder's recipe changes


def parity_tasks() -> list:
    """Eight real SimCoPilot tasks: both languages, infill and completion, two of each (spread over
    the programs), with the ``simcopilot`` style's system message on every chat prompt."""
    from runner.benchmarks import load_benchmark

    tasks = load_benchmark("simcopilot").available()
    picked = []
    for language in ("python", "java"):
        for mode in ("infill", "completion"):
            group = [t for t in tasks if t.language.value == language and t.mode.value == mode]
            picked += [group[0], group[len(group) * 2 // 3]]
    return picked


@functools.cache
def mistral_tokenizer():
    """mistral-common's v3 tokenizer, the reference (``MistralTokenizer.v3()``, as the model card says)."""
    try:
        from mistral_common.tokens.tokenizers.mistral import MistralTokenizer
    except ImportError:
        require(False, "mistral-common (the test extras: pip install -e '.[test]')")
    return MistralTokenizer.v3()


def reference_chat(messages: list[dict]) -> list[int]:
    """mistral-common's ``encode_chat_completion`` of OpenAI-style messages."""
    from mistral_common.protocol.instruct.messages import AssistantMessage, SystemMessage, UserMessage
    from mistral_common.protocol.instruct.request import ChatCompletionRequest

    kinds = {"system": SystemMessage, "user": UserMessage, "assistant": AssistantMessage}
    request = ChatCompletionRequest(messages=[kinds[m["role"]](content=m["content"]) for m in messages])
    return list(mistral_tokenizer().encode_chat_completion(request).tokens)


def reference_fim(task) -> list[int]:
    """mistral-common's ``encode_fim`` of the prefix and suffix the ``codestral-fim`` style shows
    (the code before the gap and its line end; the newline and code after it, in infill mode only)."""
    from mistral_common.protocol.fim.request import FIMRequest

    prefix = task.before + "\n" if task.before else ""
    suffix = "\n" + task.after if task.mode.value == "infill" and task.after else ""
    return list(mistral_tokenizer().encode_fim(FIMRequest(prompt=prefix, suffix=suffix)).tokens)


def v3_tokenizer_model() -> Path:
    """mistral-common's v3 SentencePiece model file (``MistralTokenizer.v3()`` loads the same)."""
    mistral_tokenizer()  # mistral-common is there
    import mistral_common

    path = Path(mistral_common.__file__).parent / "data" / "mistral_instruct_tokenizer_240323.model.v3"
    require(path.is_file(), f"mistral-common's v3 tokenizer ({path})")
    return path


def _control_pieces(model_file: Path) -> dict[int, str]:
    """The control and unknown pieces of a SentencePiece model, by id (read from its protobuf)."""
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=str(model_file))
    return {i: sp.id_to_piece(i) for i in range(sp.get_piece_size()) if sp.is_control(i) or sp.is_unknown(i)}


def _write_safetensors(path: Path, tensors: dict) -> None:
    """The safetensors format by hand (8-byte header length, JSON header, raw little-endian data)."""
    header, offset, blobs = {}, 0, []
    for name, array in tensors.items():
        data = array.astype("<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(array.shape), "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
        blobs.append(data)
    header["__metadata__"] = {"format": "pt"}
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    with open(path, "wb") as fh:
        fh.write(len(raw).to_bytes(8, "little") + raw)
        for blob in blobs:
            fh.write(blob)


def codestral_hf() -> Path:
    """The Hugging Face folder (built once into the runner's cache)."""
    import numpy as np

    folder = cache_dir() / "test-models" / f"codestral-v3-vocab-hf-{_VERSION}"
    if (folder / ".done").is_file():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    model_file = v3_tokenizer_model()
    (folder / "tokenizer.model").write_bytes(model_file.read_bytes())
    special = {str(i): {"content": piece, "lstrip": False, "normalized": False, "rstrip": False,
                        "single_word": False, "special": True} for i, piece in _control_pieces(model_file).items()}
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "add_bos_token": True, "add_eos_token": False, "added_tokens_decoder": special, "bos_token": "<s>",
        "eos_token": "</s>", "unk_token": "<unk>", "legacy": False, "tokenizer_class": "LlamaTokenizer",
        "clean_up_tokenization_spaces": False, "spaces_between_special_tokens": False,
        "model_max_length": CONFIG["max_position_embeddings"]}, indent=1), encoding="utf-8")
    (folder / "config.json").write_text(json.dumps(CONFIG, indent=1), encoding="utf-8")
    (folder / "generation_config.json").write_text(json.dumps({"bos_token_id": 1, "eos_token_id": 2}),
                                                   encoding="utf-8")
    _tokenizer_json(folder)
    c = CONFIG
    h, inter, vocab, hd = c["hidden_size"], c["intermediate_size"], c["vocab_size"], c["head_dim"]
    rng = np.random.default_rng(0)
    w = lambda *shape: rng.normal(0, 0.02, shape)  # noqa: E731
    layer = "model.layers.0."
    _write_safetensors(folder / "model.safetensors", {
        "model.embed_tokens.weight": w(vocab, h), "lm_head.weight": w(vocab, h), "model.norm.weight": np.ones(h),
        layer + "input_layernorm.weight": np.ones(h), layer + "post_attention_layernorm.weight": np.ones(h),
        layer + "self_attn.q_proj.weight": w(c["num_attention_heads"] * hd, h),
        layer + "self_attn.k_proj.weight": w(c["num_key_value_heads"] * hd, h),
        layer + "self_attn.v_proj.weight": w(c["num_key_value_heads"] * hd, h),
        layer + "self_attn.o_proj.weight": w(h, c["num_attention_heads"] * hd),
        layer + "mlp.gate_proj.weight": w(inter, h), layer + "mlp.up_proj.weight": w(inter, h),
        layer + "mlp.down_proj.weight": w(h, inter),
    })
    (folder / ".done").write_text("")
    return folder


def _tokenizer_json(folder: Path) -> None:
    """``tokenizer.json`` as Mistral's HF conversions lay it out (tests/codestral_tokenizer_json.py,
    run in the vLLM venv, where tokenizers lives)."""
    from runner.runtimes.vllm import installed, vllm_python

    require(installed(), "the vLLM venv (tokenizers, to write the folder's tokenizer.json)")
    script = Path(__file__).with_name("codestral_tokenizer_json.py")
    done = subprocess.run([str(vllm_python()), str(script), str(folder)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]


def llama_cpp_source() -> Path:
    """The pinned llama-cpp-python sdist's vendored llama.cpp tree (its converter), unpacked once."""
    from runner.runtimes.llamacpp import LLAMA_CPP_PYTHON_VERSION

    root = cache_dir() / "llama.cpp" / f"src-{LLAMA_CPP_PYTHON_VERSION}"
    tree = root / f"llama_cpp_python-{LLAMA_CPP_PYTHON_VERSION}" / "vendor" / "llama.cpp"
    if (tree / "convert_hf_to_gguf.py").is_file():
        return tree
    env_src = os.environ.get("LLAMA_CPP_SRC")  # as scripts/build-llama-server.sh: a tree carried to the host
    if env_src and (Path(env_src) / "convert_hf_to_gguf.py").is_file():
        return Path(env_src)
    root.mkdir(parents=True, exist_ok=True)
    done = subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:",
                           f"llama-cpp-python=={LLAMA_CPP_PYTHON_VERSION}", "-d", str(root)],
                          capture_output=True, text=True)
    sdist = root / f"llama_cpp_python-{LLAMA_CPP_PYTHON_VERSION}.tar.gz"
    require(done.returncode == 0 and sdist.is_file(), f"the llama-cpp-python {LLAMA_CPP_PYTHON_VERSION} sdist "
            f"(pip download: {done.stderr.strip()[-300:]})")
    with tarfile.open(sdist) as archive:
        archive.extractall(root, filter="data")
    return tree


def codestral_gguf() -> Path:
    """The folder converted by llama.cpp's ``convert_hf_to_gguf.py`` (F32), once into the runner's cache."""
    from runner.runtimes.vllm import installed, vllm_python

    out = cache_dir() / "test-models" / f"codestral-v3-vocab-{_VERSION}.gguf"
    if out.is_file():
        return out
    require(installed(), "the vLLM venv (torch for llama.cpp's converter)")
    folder = codestral_hf()
    tree = llama_cpp_source()
    partial = out.with_suffix(".partial")
    done = subprocess.run([str(vllm_python()), str(tree / "convert_hf_to_gguf.py"), str(folder),
                           "--outfile", str(partial), "--outtype", "f32"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    partial.rename(out)
    return out
