"""The model cache: trains once into the cache, then loads the same weights without training (05+)."""

import pytest
import torch

from minilm import zoo
from minilm.batching import char_data
from minilm.models.gpt import GPT


@pytest.fixture(scope="module")
def tmp_cache(tmp_path_factory):
    """One cache for the module, so the smoke model is trained once."""
    path = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MINILM_CACHE_DIR", str(path))
        yield path


def test_trains_once_then_loads_identical_weights(tmp_cache, monkeypatch):
    model, tok = zoo.pretrained_gpt("tinyshakespeare", preset="smoke", device="cpu", progress=False)
    assert isinstance(model, GPT) and not model.training
    assert tok.vocab_size == 65 and model.config.vocab_size == 65
    files = list((tmp_cache / "models").glob("tinyshakespeare-smoke-*.pt"))
    assert len(files) == 1 and not list((tmp_cache / "models").glob(".*tmp"))

    def no_training(*args, **kwargs):
        raise AssertionError("the second call must load from the cache, not train")

    monkeypatch.setattr(zoo, "train_gpt", no_training)
    again, tok2 = zoo.pretrained_gpt("tinyshakespeare", preset="smoke", device="cpu", progress=False)
    assert tok2.chars == tok.chars
    sd, sd2 = model.state_dict(), again.state_dict()
    assert sd.keys() == sd2.keys()
    assert all(torch.equal(sd[k], sd2[k]) for k in sd)
    assert again.lm_head.weight is again.transformer.wte.weight  # tying survives the round trip
    idx = torch.tensor([tok.encode("ROMEO:")])
    torch.testing.assert_close(again(idx)[0], model(idx)[0])


def test_training_learns_something(tmp_cache):
    ckpt = torch.load(next((tmp_cache / "models").glob("*.pt")), weights_only=True)
    val = ckpt["history"]["val_loss"]
    assert val[-1] < val[0] < 4.3  # from ~ln(65) = 4.17 downwards


def test_a_changed_recipe_gets_another_file(tmp_cache):
    tok, _, _ = char_data("tinyshakespeare")
    r = zoo.recipe_for("smoke", tok.vocab_size)
    a = zoo.model_path("tinyshakespeare", "smoke", r, tok)
    r.train.max_steps += 1
    assert zoo.model_path("tinyshakespeare", "smoke", r, tok) != a
    assert a.parent == tmp_cache / "models"


def test_train_gpt_reproduces_the_cached_model_and_save_pretrained(tmp_cache, tmp_path, monkeypatch):
    """Notebook 05 trains by the recipe itself and stores the result with save_pretrained."""
    tok, train_data, val_data = char_data("tinyshakespeare")
    recipe = zoo.recipe_for("smoke", tok.vocab_size)
    model, history = zoo.train_gpt(recipe, train_data, val_data, "cpu", progress=False)
    cached, _ = zoo.pretrained_gpt("tinyshakespeare", preset="smoke", device="cpu", progress=False)
    for k, v in cached.state_dict().items():
        assert torch.equal(v, model.state_dict()[k]), k  # seeded: the same weights
    monkeypatch.setenv("MINILM_CACHE_DIR", str(tmp_path))  # a fresh, empty cache
    path = zoo.save_pretrained(model, history, "tinyshakespeare", "smoke")
    assert path.parent == tmp_path / "models"
    monkeypatch.setattr(zoo, "train_gpt", None)  # loading must not train
    loaded, _ = zoo.pretrained_gpt("tinyshakespeare", preset="smoke", device="cpu", progress=False)
    assert torch.equal(loaded.transformer.wte.weight, model.transformer.wte.weight)
    with pytest.raises(ValueError, match="preset"):
        zoo.save_pretrained(GPT(zoo.gpt_config_for("smoke", 65, "large")), history, preset="smoke")
