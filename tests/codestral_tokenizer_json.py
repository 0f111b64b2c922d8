"""Write FOLDER/tokenizer.json from FOLDER/tokenizer.model, in the layout of Mistral's own Hugging Face
conversions of its v3 SentencePiece models: a byte-fallback BPE whose merges are ordered by the
SentencePiece scores, Metaspace with the boundary prepended to the first text only, every control
piece a special token, and a post-processor that adds <s>.

Run as a script in the vLLM venv (tokenizers and transformers live there): ``python THIS FOLDER``.
Without a tokenizer.json, transformers (5.19) builds its own BPE from tokenizer.model, which splits
runs of spaces otherwise than SentencePiece does (tests/runtimes/test_codestral_tokens.py).
"""

from __future__ import annotations

import sys
from pathlib import Path


def main(folder: Path) -> None:
    import sentencepiece as spm
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers.convert_slow_tokenizer import generate_merges

    sp = spm.SentencePieceProcessor(model_file=str(folder / "tokenizer.model"))
    vocab = {sp.id_to_piece(i): i for i in range(sp.get_piece_size())}
    scores = {sp.id_to_piece(i): sp.get_score(i) for i in range(sp.get_piece_size())}
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=generate_merges(vocab, scores), unk_token="<unk>",
                                     fuse_unk=True, byte_fallback=True))
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first", split=False)
    tokenizer.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(),
                                           decoders.Strip(" ", 1, 0)])
    tokenizer.add_special_tokens([AddedToken(sp.id_to_piece(i), special=True, normalized=False)
                                  for i in range(sp.get_piece_size()) if sp.is_control(i) or sp.is_unknown(i)])
    tokenizer.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B",
                                                             special_tokens=[("<s>", sp.bos_id())])
    tokenizer.save(str(folder / "tokenizer.json"))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
