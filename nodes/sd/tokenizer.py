"""CLIP's tokenizer: text → token ids, and prompts → weighted 77-token windows for the text encoders.

The vocabulary is OpenAI CLIP's byte-pair encoding (``data/bpe_simple_vocab_16e6.txt.gz``, MIT,
see ``data/LICENSE-open_clip-bpe.txt``): 256 byte symbols, the same 256 marked as word ends
(``</w>``), 48,894 merges, then ``<|startoftext|>`` = 49406 and ``<|endoftext|>`` = 49407. The
`tokenizers` library runs it, set up the way transformers' ``CLIPTokenizer`` sets it up, and our
output is tested to be identical to that class's (which is what ComfyUI and diffusers use):

- text is NFC-normalised, every run of whitespace becomes one space, and it is lower-cased;
- it is cut into words by CLIP's pattern (contractions ``'s 't 're 've 'm 'll 'd``, runs of letters,
  single digits, runs of other non-space characters), and each word is byte-pair encoded with
  ``</w>`` on its last symbol;
- the literal strings ``<|startoftext|>`` and ``<|endoftext|>`` in a prompt become the special ids.

Where this differs from the original CLIP / open_clip ``SimpleTokenizer`` (pure Python), and why we
follow transformers: ComfyUI (for every SD family) and diffusers tokenise with it, so matching it
keeps images seed-for-seed equal to theirs.

1. ``SimpleTokenizer`` first runs ``ftfy.fix_text``, which repairs mojibake (``cafÃ©`` → ``café``),
   folds character width (``ｆｕｌｌ`` → ``full``, ``：`` → ``:``), splits Latin ligatures (``ﬁ`` → ``fi``,
   ``ĳ`` → ``ij``), straightens curly quotes (``’`` → ``'``) and deletes control characters. We do
   not: the text is tokenised as typed.
2. ``SimpleTokenizer`` unescapes HTML entities twice (``&amp;`` → ``&``, ``&lt;3`` → ``<3``). We do
   not: ``&amp;`` stays five characters.
3. ``SimpleTokenizer`` spells its special tokens ``<start_of_text>`` / ``<end_of_text>`` and
   recognises those inside a prompt; we (like transformers) recognise ``<|startoftext|>`` /
   ``<|endoftext|>``.
For plain prompts (the overwhelming majority) the two agree id for id; the tests check both the
agreement and each documented difference. Note that ComfyUI on transformers 4.x used the slow
Python ``CLIPTokenizer``, which cleans text with ftfy when it is installed (differences 1 apply)
and otherwise with BERT's ``BasicTokenizer`` (which also splits CJK ideographs into separate
words); prompts with such characters can tokenise differently there.

Prompts become windows the way ComfyUI's ``SDTokenizer.tokenize_with_weights`` makes them: the
weighted pieces of :mod:`nodegraph.prompt_weights` are tokenised one by one; each piece's tokens
stay together in one window of ``start + 75 tokens + end`` unless the piece has 8 tokens or more, in
which case it fills the current window and carries on in the next; the last window is closed
with the end token and padded to 77 with the model's pad token (49407 for CLIP-L, 0 for OpenCLIP).
``embedding:name`` (textual inversion, :mod:`nodes.sd.embeddings`) starts a new piece, as in ComfyUI:
given a lookup, the named file's vectors become the piece's tokens (tensors in place of ids) and
any text after the name on that piece is tokenised as usual; a name with no file is left out and
reported. Without a lookup the words are tokenised as ordinary text.
"""

from __future__ import annotations

import gzip
import re
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

import torch
from tokenizers import AddedToken, Regex, Tokenizer, normalizers, pre_tokenizers
from tokenizers.models import BPE

from nodegraph.prompt_weights import parse_prompt_weights

VOCAB_PATH = Path(__file__).parent / "data" / "bpe_simple_vocab_16e6.txt.gz"
VOCAB_SIZE = 49408
START_TOKEN = 49406
END_TOKEN = 49407
CONTEXT_LENGTH = 77
N_MERGES = VOCAB_SIZE - 2 * 256 - 2  # 48894: the file holds more lines than CLIP uses
START_TEXT, END_TEXT = "<|startoftext|>", "<|endoftext|>"
WORD_END = "</w>"
BIG_PIECE = 8  # pieces with at least this many tokens may be split across windows (ComfyUI's rule)

_WORDS = (
    r"<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"
)
Token = int | torch.Tensor  # a vocabulary id, or an embedding's vector
EMBEDDING_PREFIX = "embedding:"
_EMBEDDING_BREAK = re.compile(r"(?<=[ \n])(?=embedding:)")  # where ComfyUI starts a new piece


def byte_symbols() -> list[tuple[int, str]]:
    """Each byte 0..255 with the printable character that stands for it (GPT-2/CLIP byte-level BPE).

    Bytes that are printable Latin-1 characters stand for themselves; the others (control
    characters, space, soft hyphen) are mapped in byte order onto U+0100 and up. The list is in
    CLIP's vocabulary order: the self-standing bytes first, then the remapped ones.
    """
    kept = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    moved = [b for b in range(256) if b not in kept]
    return [(b, chr(b)) for b in kept] + [(b, chr(256 + i)) for i, b in enumerate(moved)]


def read_vocabulary(path: Path = VOCAB_PATH) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """Token → id table and the ranked merge list, built from CLIP's gzipped BPE file."""
    with gzip.open(path, "rt", encoding="utf-8") as f:
        lines = f.read().split("\n")
    merges = [tuple(line.split()) for line in lines[1:N_MERGES + 1]]  # line 0 is a version header
    if len(merges) != N_MERGES or any(len(m) != 2 for m in merges):
        raise ValueError(f"{path}: not CLIP's BPE vocabulary (expected {N_MERGES} merge lines of two symbols)")
    symbols = [s for _, s in byte_symbols()]
    tokens = symbols + [s + WORD_END for s in symbols] + ["".join(m) for m in merges] + [START_TEXT, END_TEXT]
    return {token: i for i, token in enumerate(tokens)}, merges


class ClipTokenizer:
    """CLIP's BPE tokenizer (see the module docstring for its exact rules)."""

    def __init__(self, path: Path = VOCAB_PATH):
        vocab, merges = read_vocabulary(path)
        model = BPE(vocab=vocab, merges=merges, continuing_subword_prefix="", end_of_word_suffix=WORD_END,
                    fuse_unk=False, unk_token=END_TEXT, dropout=None)
        tok = Tokenizer(model)
        tok.normalizer = normalizers.Sequence(
            [normalizers.NFC(), normalizers.Replace(Regex(r"\s+"), " "), normalizers.Lowercase()])
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(_WORDS), behavior="removed", invert=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False),
        ])
        tok.add_special_tokens([AddedToken(START_TEXT, special=True), AddedToken(END_TEXT, special=True)])
        self._tokenizer = tok
        self._id_to_token = {i: t for t, i in vocab.items()}
        self._byte_of = {s: b for b, s in byte_symbols()}

    @property
    def vocab_size(self) -> int:
        return VOCAB_SIZE

    def ids(self, text: str) -> list[int]:
        """Token ids of ``text`` without start and end tokens."""
        return self._tokenizer.encode(text, add_special_tokens=False).ids

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` framed by the start and end tokens, unpadded and untruncated
        (what ``transformers.CLIPTokenizer(text)["input_ids"]`` returns)."""
        return [START_TOKEN, *self.ids(text), END_TOKEN]

    def tokens(self, ids: list[int]) -> list[str]:
        """The vocabulary strings of ``ids`` (e.g. ``'cat</w>'``)."""
        return [self._id_to_token[i] for i in ids]

    def decode(self, ids: list[int]) -> str:
        """Text of ``ids``, special tokens dropped, words separated by single spaces."""
        text = "".join(t for t in self.tokens(ids) if t not in (START_TEXT, END_TEXT))
        words = text.split(WORD_END)
        raw = b" ".join(bytes(self._byte_of[c] for c in w) for w in words)
        return raw.decode("utf-8", errors="replace").strip()

    def tokenize_weighted(self, text: str, pad_token: int, square_brackets: bool = True,
                          max_length: int = CONTEXT_LENGTH,
                          embeddings: Callable[[str], torch.Tensor | None] | None = None,
                          missing: Callable[[str], None] | None = None) -> list[list[tuple[Token, float]]]:
        """``text`` as ComfyUI's windows of ``(token, weight)``: ``start + up to 75 + end``, the last
        window padded with ``pad_token`` to ``max_length``. Brackets weigh their tokens
        (:func:`nodegraph.prompt_weights.parse_prompt_weights`); special tokens weigh 1.0.

        ``embeddings`` maps an ``embedding:name`` to its vectors ``[n, width]`` (None: no such file,
        reported through ``missing``); each vector is then one token, a 1-D tensor.
        """
        pieces: list[list[tuple[Token, float]]] = []
        for segment, weight in parse_prompt_weights(text, square_brackets):
            for part in _EMBEDDING_BREAK.split(segment):
                if embeddings is not None and part.startswith(EMBEDDING_PREFIX):
                    name, vectors, part = _resolve_embedding(part[len(EMBEDDING_PREFIX):], embeddings)
                    if vectors is None:
                        if missing is not None and name:
                            missing(name)
                    elif len(vectors):
                        pieces.append([(v, weight) for v in vectors])
                if part:
                    pieces.append([(t, weight) for t in self.ids(part)])
        return pack_windows(pieces, pad_token, max_length)


def _resolve_embedding(text: str, lookup: Callable[[str], torch.Tensor | None]
                       ) -> tuple[str, torch.Tensor | None, str]:
    """(name, its vectors or None, the text left to tokenise) for what follows ``embedding:``.

    The name is the first word; if no file has it, its trailing commas are dropped and tried again,
    the commas going back to the text (ComfyUI's rule)."""
    words = text.split()
    if not words:
        return "", None, ""
    name, rest = words[0], " ".join(words[1:])
    vectors = lookup(name)
    if vectors is None:
        stripped = name.rstrip(",")
        if stripped and len(stripped) < len(name):
            return stripped, lookup(stripped), f"{name[len(stripped):]} {rest}"
    return name, vectors, rest


def pack_windows(pieces: list[list[tuple[Token, float]]], pad_token: int,
                 max_length: int = CONTEXT_LENGTH) -> list[list[tuple[Token, float]]]:
    """Lay weighted token pieces into ``max_length`` windows by ComfyUI's rule (module docstring)."""
    window = [(START_TOKEN, 1.0)]
    windows = [window]
    for piece in pieces:
        splittable = len(piece) >= BIG_PIECE
        while piece:
            room = max_length - 1 - len(window)
            if len(piece) <= room:
                window += piece
                break
            if splittable:
                window += piece[:room]
                piece = piece[room:]
                window.append((END_TOKEN, 1.0))
            else:
                window += [(END_TOKEN, 1.0)] + [(pad_token, 1.0)] * room
            window = [(START_TOKEN, 1.0)]
            windows.append(window)
    window.append((END_TOKEN, 1.0))
    window += [(pad_token, 1.0)] * (max_length - len(window))
    return windows


@lru_cache(maxsize=1)
def get_tokenizer() -> ClipTokenizer:
    """The process-wide CLIP tokenizer over the shipped vocabulary (built once, ~0.2 s)."""
    return ClipTokenizer()
