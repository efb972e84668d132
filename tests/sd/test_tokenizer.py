"""The CLIP tokenizer gives transformers' CLIPTokenizer ids on every prompt, agrees with open_clip's
pure-Python SimpleTokenizer except where documented, and lays prompts into ComfyUI's windows."""

import gzip
import importlib.util
import json
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pytest

from nodes.sd.tokenizer import (
    END_TOKEN,
    START_TOKEN,
    VOCAB_PATH,
    VOCAB_SIZE,
    ClipTokenizer,
    get_tokenizer,
    pack_windows,
)

PROMPTS = [
    "",
    " ",
    "a photo of a cat",
    "A Photo Of A CAT",
    "masterpiece, best quality, 1girl, solo, looking at viewer",
    "a photograph of an astronaut riding a horse",
    "portrait of a woman, oil on canvas, by John Singer Sargent",
    "cyberpunk city at night, neon lights, rain, 8k, octane render",
    "it's a dog's life; they're here, we've won, I'm sure, you'll see, he'd go",
    "IT'S LOUD, THEY'RE HERE",
    "don't won't can't shouldn't",
    "hello!!! what?? ... --- *** ###",
    "(masterpiece:1.2), [ugly], {braces}, <angle>, |pipe|",
    "snake_case_words and kebab-case-words and CamelCaseWords",
    "email me at someone@example.com or visit https://example.com/path?q=1&x=2",
    "prices: $100, €200, £300, ¥400, 50% off!",
    "numbers 1234567890 and 3.14159 and -42 and 1e10 and 0x1F",
    "1920x1080 16:9 f/1.8 ISO100 85mm",
    "café crème brûlée naïve résumé façade",
    "Ærøskøbing straße ĳssel œuvre",
    "Ελληνικά κείμενο και ΚΕΦΑΛΑΙΑ",
    "Русский текст: Москва, ЗИМА",
    "東京タワーの夜景, 富士山",
    "中文提示词：一只可爱的猫",
    "한국어 프롬프트 고양이",
    "עברית ועוד العربية",
    "हिन्दी देवनागरी",
    "ภาษาไทย สวัสดี",
    "emoji 🙂🐱🚀 and 👩‍👩‍👧‍👦 family and 🇫🇷 flag",
    "🔥🔥🔥 fire 💯",
    "tabs\tand\nnewlines\r\nand   many    spaces",
    "   leading and trailing whitespace   ",
    "non\u00a0breaking\u2003em\u2009thin spaces",
    "zero\u200bwidth\u200djoiner",
    "decomposed cafe\u0301 vs composed caf\u00e9",
    "Å vs A\u030a angstrom \u212b",
    "ｆｕｌｌｗｉｄｔｈ letters and ﬁ ligature",
    "“curly quotes” and ‘single’ and … ellipsis — dash – en",
    "HTML &amp; entities &lt;3 &quot;quoted&quot; &#39;",
    "<|startoftext|> and <|endoftext|> inside a prompt",
    "<start_of_text> open_clip spelling",
    "math ∑∫√∞≈≠ ± × ÷ ° ²³",
    "ℌ𝔢𝔩𝔩𝔬 𝕎𝕠𝕣𝕝𝕕 mathematical letters",
    "control\x01chars\x7fhere",
    "a" * 120,
    "supercalifragilisticexpialidocious antidisestablishmentarianism",
    "repeated repeated repeated repeated " * 30,
    "masterpiece, best quality, highly detailed, ultra-detailed, intricate details, sharp focus, "
    "studio lighting, bokeh, depth of field, cinematic composition, golden hour, volumetric fog, "
    "trending on artstation, unreal engine 5, ray tracing, global illumination, 8k uhd, hdr, "
    "film grain, fujifilm xt3, 35mm, f/1.4, award winning photograph, national geographic",
    "x" + " y" * 200,
    "a,b,c;d:e!f?g.h",
    "mixed 日本 and english 123 ok",
    "Iİıi ǅ Dž SS ß ẞ",
    "quote's end' 'start",
]


def load_open_clip_tokenizer_module():
    """open_clip's tokenizer.py alone (importing the package would pull in timm and model code)."""
    origin = importlib.util.find_spec("open_clip").submodule_search_locations[0]
    spec = importlib.util.spec_from_file_location("open_clip_tokenizer", os.path.join(origin, "tokenizer.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def simple():
    """open_clip's independent pure-Python implementation, on our shipped vocabulary file."""
    return load_open_clip_tokenizer_module().SimpleTokenizer(str(VOCAB_PATH))


@pytest.fixture(scope="module")
def hf(simple, tmp_path_factory):
    """transformers' CLIPTokenizer loaded the way checkpoints ship it: vocab.json + merges.txt.

    vocab.json is open_clip's token table (its own construction, not ours) with transformers'
    spelling of the two special tokens.
    """
    from transformers import CLIPTokenizer

    folder = tmp_path_factory.mktemp("clip_tokenizer")
    vocab = dict(simple.encoder)
    vocab["<|startoftext|>"] = vocab.pop("<start_of_text>")
    vocab["<|endoftext|>"] = vocab.pop("<end_of_text>")
    (folder / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    with gzip.open(VOCAB_PATH, "rt", encoding="utf-8") as f:
        merges = f.read().split("\n")[1:48894 + 1]
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    return CLIPTokenizer.from_pretrained(str(folder))


def test_there_are_at_least_fifty_varied_prompts():
    assert len(set(PROMPTS)) == len(PROMPTS) >= 50


@pytest.mark.parametrize("prompt", PROMPTS)
def test_ids_equal_transformers_clip_tokenizer(hf, prompt):
    assert get_tokenizer().encode(prompt) == hf(prompt)["input_ids"]


def test_vocabulary_layout_and_special_tokens(hf):
    tok = get_tokenizer()
    assert tok.vocab_size == VOCAB_SIZE == len(hf.get_vocab()) == 49408
    assert tok.encode("") == [START_TOKEN, END_TOKEN] == [49406, 49407]
    assert tok.tokens(tok.ids("a photo of a cat")) == ["a</w>", "photo</w>", "of</w>", "a</w>", "cat</w>"]
    assert tok.ids("a photo of a cat") == [320, 1125, 539, 320, 2368]
    assert tok.tokens([0, 255, 256, 511]) == ["!", "Ń", "!</w>", "Ń</w>"]


def test_decode_gives_back_normalised_text():
    tok = get_tokenizer()
    assert tok.decode(tok.encode("A  Photo of a CAT, café 東京 🙂")) == "a photo of a cat , café 東京 🙂"


def test_the_tokenizer_is_built_once_per_process():
    assert get_tokenizer() is get_tokenizer()


# ---------------------------------------------------------------- agreement with open_clip's SimpleTokenizer

PLAIN = [p for p in PROMPTS if p.isascii() and "&" not in p and "<" not in p and "\x01" not in p] + [
    "café crème brûlée", "東京タワーの夜景", "Русский текст", "emoji 🙂🐱🚀", "한국어 프롬프트",
]


@pytest.mark.parametrize("prompt", PLAIN)
def test_plain_prompts_agree_with_open_clip_simple_tokenizer(simple, prompt):
    assert get_tokenizer().ids(prompt) == simple.encode(prompt)


@pytest.mark.parametrize(("prompt", "ours", "open_clip"), [
    # ftfy (open_clip only): character width, ligatures, curly quotes, control characters, mojibake.
    ("ｆｕｌｌ", [171, 121, 228, 171, 121, 243, 171, 121, 234, 171, 121, 490], "full"),
    ("a：b", [320, 171, 120, 504, 321], "a:b"),
    ("ﬁne", [171, 105, 223, 1422], "fine"),
    ("ĳ", [128, 367], "ij"),
    ("it’s", [585, 728, 503, 338], "it's"),  # it, ’ as three bytes, s
    ("“hi”", [728, 506, 1883, 728, 507], '"hi"'),
    ("a\x01b", [320, 445, 321], "ab"),
    ("cafÃ©", [3471, 127, 352, 5811], "café"),  # UTF-8 read as Latin-1, tokenised as typed
    # HTML entities are unescaped (twice) by open_clip only.
    ("&amp;", [261, 6259, 282], "&"),
    ("&lt;3", [261, 3333, 282, 274], "<3"),
])
def test_documented_difference_ftfy_and_html_are_not_applied(simple, prompt, ours, open_clip):
    tok = get_tokenizer()
    assert tok.ids(prompt) == ours
    assert simple.encode(prompt) == simple.encode(open_clip) != ours


def test_documented_difference_special_token_spelling(simple):
    tok = get_tokenizer()
    assert tok.ids("<|endoftext|>") == [END_TOKEN]
    assert simple.encode("<|endoftext|>") != [END_TOKEN]
    assert simple.encode("<end_of_text>") == [END_TOKEN]
    assert END_TOKEN not in tok.ids("<end_of_text>")


# ------------------------------------------------------------------------------ ComfyUI's windows

def test_a_short_prompt_is_one_window_padded_with_the_models_pad_token():
    tok = get_tokenizer()
    ids = tok.ids("a photo of a cat")
    for pad in (END_TOKEN, 0):
        (window,) = tok.tokenize_weighted("a photo of a cat", pad)
        assert [t for t, _ in window] == [START_TOKEN, *ids, END_TOKEN] + [pad] * (77 - 7)
        assert all(w == 1.0 for _, w in window)


def test_a_long_prompt_splits_into_77_token_windows_each_framed():
    tok = get_tokenizer()
    text = "a castle on a hill at sunset, " * 12  # one piece of 96 tokens: split at 75
    ids = tok.ids(text)
    windows = tok.tokenize_weighted(text, 0)
    assert len(ids) == 96 and len(windows) == 2
    first, second = ([t for t, _ in w] for w in windows)
    assert first == [START_TOKEN, *ids[:75], END_TOKEN]
    assert second == [START_TOKEN, *ids[75:], END_TOKEN] + [0] * (77 - 23)


def test_a_piece_shorter_than_eight_tokens_moves_whole_to_the_next_window():
    tok = get_tokenizer()
    filler = "cat " * 73  # 73 tokens
    windows = tok.tokenize_weighted(filler + "(big red dog:1.2)", END_TOKEN)
    first, second = windows
    assert [t for t, _ in first] == [START_TOKEN] + [2368] * 73 + [END_TOKEN] + [END_TOKEN] * 2
    assert [(t, w) for t, w in second[1:4]] == [(1205, 1.2), (736, 1.2), (1929, 1.2)]
    assert second[4] == (END_TOKEN, 1.0)


def test_a_piece_of_eight_tokens_or_more_fills_the_window_and_carries_on():
    tok = get_tokenizer()
    windows = tok.tokenize_weighted("cat " * 73 + "(one two three four five six seven eight:1.2)", END_TOKEN)
    words = tok.ids("one two three four five six seven eight")
    first, second = ([t for t, _ in w] for w in windows)
    assert first == [START_TOKEN] + [2368] * 73 + words[:2] + [END_TOKEN]
    assert second[:8] == [START_TOKEN] + words[2:] + [END_TOKEN]


def test_pack_windows_on_exact_fits():
    full = [[(7, 1.0)] * 75]
    (window,) = pack_windows(full, 0)
    assert len(window) == 77 and window[-1] == (END_TOKEN, 1.0)
    two = pack_windows([[(7, 1.0)] * 75, [(8, 1.0)]], 0)
    assert [len(w) for w in two] == [77, 77] and two[1][:3] == [(START_TOKEN, 1.0), (8, 1.0), (END_TOKEN, 1.0)]


def test_weights_reach_their_tokens_and_special_tokens_weigh_one():
    tok = get_tokenizer()
    (window,) = tok.tokenize_weighted("a (red:1.5) [cat] \\(dog\\)", END_TOKEN)
    assert [t for t, _ in window[:8]] == [START_TOKEN, 320, 736, 2368, 263, 1929, 264, END_TOKEN]  # a red cat ( dog )
    assert [w for _, w in window[:8]] == pytest.approx([1.0, 1.0, 1.5, 1 / 1.1, 1.0, 1.0, 1.0, 1.0])


def test_square_brackets_can_be_read_as_text_like_comfyui():
    tok = get_tokenizer()
    (window,) = tok.tokenize_weighted("[cat]", END_TOKEN, square_brackets=False)
    assert window[:5] == [(START_TOKEN, 1.0), (314, 1.0), (2368, 1.0), (316, 1.0), (END_TOKEN, 1.0)]


def test_embedding_syntax_is_tokenised_as_text_without_error():
    tok = get_tokenizer()
    (window,) = tok.tokenize_weighted("a photo embedding:my_style, cat", END_TOKEN)
    assert [t for t, _ in window[1:-1] if t != END_TOKEN] == tok.ids("a photo embedding:my_style, cat")


def test_embedding_syntax_starts_a_new_piece_for_window_packing():
    tok = get_tokenizer()
    text = "cat " * 72 + "embedding:x"  # 72 + 4 tokens: as one piece it would be split at 75
    first, second = ([t for t, _ in w] for w in tok.tokenize_weighted(text, 0))
    assert first[73:] == [END_TOKEN, 0, 0, 0]
    assert second[:6] == [START_TOKEN, *tok.ids("embedding:x"), END_TOKEN]


def test_a_fresh_tokenizer_reads_the_shipped_vocabulary():
    assert ClipTokenizer().encode("hello world") == get_tokenizer().encode("hello world")
