"""Textual-inversion embeddings (``embedding:name``): files, look-up rules, and what they encode to.

The defining property: an embedding whose vectors are the token-table rows of some words encodes
exactly like those words. Everything else (weights, windows, the pooled end token, SDXL's two
encoders) follows from the same path.
"""
from __future__ import annotations

import pickle

import pytest
import torch
from safetensors.torch import save_file

from nodes.folders import ModelFolders
from nodes.sd.embeddings import EmbeddingError, EmbeddingLibrary, find_embedding, read_embedding
from nodes.sd.text_encoders import build_text_encoder, text_encoder_state_dicts
from nodes.sd.tokenizer import get_tokenizer


@pytest.fixture(scope="module")
def sd1():
    return build_text_encoder("sd1", text_encoder_state_dicts("sd1", seed=11))


@pytest.fixture(scope="module")
def sdxl():
    return build_text_encoder("sdxl", text_encoder_state_dicts("sdxl", seed=12))


def models(root) -> ModelFolders:
    """Model folders with ``root`` as the only root: embeddings live in ``root / "embeddings"``."""
    return ModelFolders(models_dirs=[root], env={}, include_user_dirs=False, include_package=False)


@pytest.fixture
def emb(tmp_path):
    (tmp_path / "embeddings").mkdir()
    return tmp_path / "embeddings"


def rows(encoder, slot: str, words: str) -> torch.Tensor:
    """The token-table rows of ``words`` for one encoder: an embedding that means those words."""
    ids = get_tokenizer().ids(words)
    return encoder.models[slot].token_embedding_weight[ids].detach().clone()


def same(a, b) -> None:
    torch.testing.assert_close(a[0], b[0], rtol=0, atol=1e-6)
    if a[1] is not None or b[1] is not None:
        torch.testing.assert_close(a[1], b[1], rtol=0, atol=1e-6)


@pytest.mark.parametrize("prompt, words", [
    ("a photo of embedding:redcat", "a photo of red cat"),
    ("embedding:redcat on a mat", "red cat on a mat"),
    ("a (embedding:redcat:1.3) on a mat", "a (red cat:1.3) on a mat"),  # weights apply to the vectors
    ("embedding:redcat, blurry", "red cat, blurry"),  # trailing commas are not part of the name
    ("embedding:redcat.safetensors here", "red cat here"),  # the file name with its extension
])
def test_an_embedding_of_word_rows_encodes_like_the_words(tmp_path, emb, sd1, prompt, words):
    save_file({"emb_params": rows(sd1, "l", "red cat")}, str(emb / "redcat.safetensors"))
    library = EmbeddingLibrary(models(tmp_path))
    same(sd1.encode(prompt, embeddings=library), sd1.encode(words))
    assert library.missing == [] and library.mismatched == []


def test_sdxl_takes_each_encoders_own_vectors_and_pools_at_the_end_token(tmp_path, emb, sdxl):
    save_file({"clip_l": rows(sdxl, "l", "green hill"), "clip_g": rows(sdxl, "g", "green hill")},
              str(emb / "hill.safetensors"))
    got = sdxl.encode("a embedding:hill at dawn", embeddings=EmbeddingLibrary(models(tmp_path)))
    same(got, sdxl.encode("a green hill at dawn"))
    assert got[1] is not None  # the pooled output (OpenCLIP-G's end token) is part of the check


def test_an_a1111_pickle_embedding_loads_with_the_weights_only_unpickler(tmp_path, emb, sd1):
    torch.save({"string_to_token": {"*": 265}, "string_to_param": {"*": rows(sd1, "l", "blue dog")},
                "name": "bluedog", "step": 3000}, emb / "bluedog.pt")
    assert read_embedding(emb / "bluedog.pt", "clip_l").shape == (2, sd1.models["l"].config.width)
    same(sd1.encode("embedding:bluedog", embeddings=EmbeddingLibrary(models(tmp_path))), sd1.encode("blue dog"))


def test_a_missing_embedding_is_left_out_and_reported(tmp_path, emb, sd1):
    library = EmbeddingLibrary(models(tmp_path))
    same(sd1.encode("a photo of embedding:nothing here", embeddings=library), sd1.encode("a photo of here"))
    assert library.missing == ["nothing"]
    library = EmbeddingLibrary(models(tmp_path))
    same(sd1.encode("cat embedding:gone, dog", embeddings=library), sd1.encode("cat , dog"))
    assert library.missing == ["gone"]


def test_without_a_library_the_words_are_plain_text(sd1):
    tokens = sd1.tokenize("embedding:redcat")["l"][0]
    assert [t for t, _ in tokens[1:6]] == get_tokenizer().ids("embedding:redcat")


def test_vectors_of_another_width_are_left_out_and_reported(tmp_path, emb, sd1):
    width = sd1.models["l"].config.width
    save_file({"emb_params": torch.ones(2, width + 8)}, str(emb / "wide.safetensors"))
    library = EmbeddingLibrary(models(tmp_path))
    same(sd1.encode("a embedding:wide cat", embeddings=library), sd1.encode("a cat"))
    assert library.missing == [] and len(library.mismatched) == 1 and library.mismatched[0].startswith("wide (")


def test_names_are_found_in_sub_folders_and_never_outside_the_folder(tmp_path):
    folder = tmp_path / "embeddings"
    (folder / "negative").mkdir(parents=True)
    save_file({"emb_params": torch.ones(1, 4)}, str(folder / "negative" / "badhands.safetensors"))
    save_file({"emb_params": torch.ones(1, 4)}, str(tmp_path / "secret.safetensors"))
    assert find_embedding("badhands", models(tmp_path)) == folder / "negative" / "badhands.safetensors"
    assert find_embedding("negative/badhands", models(tmp_path)) == folder / "negative" / "badhands.safetensors"
    assert find_embedding("../secret", models(tmp_path)) is None
    assert find_embedding(str(tmp_path / "secret"), models(tmp_path)) is None
    assert find_embedding("badhands", models(tmp_path / "no-such-root")) is None


class _Boom:
    def __reduce__(self):
        return (exec, ("raise SystemExit('pwned')",))


def test_a_pickle_that_needs_code_is_refused_naming_the_file(tmp_path):
    path = tmp_path / "evil.pt"
    with open(path, "wb") as f:
        pickle.dump({"string_to_param": {"*": _Boom()}}, f)
    with pytest.raises(EmbeddingError, match=r"evil\.pt: refused"):
        read_embedding(path, "clip_l")


def test_a_file_without_a_vector_tensor_is_an_error_naming_it(tmp_path):
    save_file({"emb_params": torch.zeros(2, 3, 4)}, str(tmp_path / "cube.safetensors"))
    with pytest.raises(EmbeddingError, match=r"cube\.safetensors: not a textual-inversion embedding.*\(2, 3, 4\)"):
        read_embedding(tmp_path / "cube.safetensors", "clip_l")


def test_an_edited_file_is_read_again(tmp_path, emb):
    import os

    path = emb / "e.safetensors"
    save_file({"emb_params": torch.ones(1, 4)}, str(path))
    library = EmbeddingLibrary(models(tmp_path))
    assert torch.equal(library.vectors("e", None), torch.ones(1, 4))
    save_file({"emb_params": torch.full((2, 4), 2.0)}, str(path))
    os.utime(path, (1, 1))  # a different modification time, whatever the clock's resolution
    assert torch.equal(library.vectors("e", None), torch.full((2, 4), 2.0))


def test_sdxl_reads_an_embedding_file_once_for_both_encoders(tmp_path, emb, sdxl, monkeypatch):
    from nodes.sd import embeddings

    save_file({"clip_l": rows(sdxl, "l", "hill"), "clip_g": rows(sdxl, "g", "hill")}, str(emb / "hill.safetensors"))
    reads = []
    original = embeddings.load_embedding_file
    monkeypatch.setattr(embeddings, "load_embedding_file", lambda path: reads.append(path) or original(path))
    sdxl.encode("embedding:hill", embeddings=EmbeddingLibrary(models(tmp_path)))
    assert reads == [emb / "hill.safetensors"]


def test_a_name_in_the_folder_itself_wins_over_one_in_a_sub_folder(tmp_path, emb):
    (emb / "old").mkdir()
    save_file({"emb_params": torch.ones(1, 4)}, str(emb / "old" / "style.safetensors"))
    save_file({"emb_params": torch.ones(1, 4)}, str(emb / "style.safetensors"))
    assert find_embedding("style", models(tmp_path)) == emb / "style.safetensors"
