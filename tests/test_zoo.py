"""The model cache: trains once into the cache, then loads the same weights without training (05+)."""

from dataclasses import fields, replace

import pytest
import torch

import minilm.recipes
from minilm.data.batching import char_data
from minilm.models.gpt import GPT, GPTConfig
from minilm.training import zoo
from minilm.training.loop import TrainConfig


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


def test_the_cache_key_covers_every_field_that_shapes_the_weights(tmp_cache):
    """Every TrainConfig field but the bookkeeping ones, every GPTConfig field, and the batch size."""
    tok, _, _ = char_data("tinyshakespeare")
    base = zoo.recipe_for("smoke", tok.vocab_size)
    key = zoo.recipe_key("tinyshakespeare", base, tok)
    changed = {"lr_schedule": "constant", "betas": (0.8, 0.9), "grad_clip": None, "lr_decay_steps": 99,
               "checkpoint_dir": "/elsewhere", "run_name": "x", "resume": True, "progress": False}
    for f in fields(TrainConfig):
        value = changed.get(f.name)
        if value is None and f.name != "grad_clip":
            value = getattr(base.train, f.name) + 1  # every other field is a number
        other = replace(base, train=replace(base.train, **{f.name: value}))
        same = zoo.recipe_key("tinyshakespeare", other, tok) == key
        assert same == (f.name in zoo.NOT_IN_KEY), f"TrainConfig.{f.name}"
    modern = {"norm": "rmsnorm", "position": "rope", "mlp": "swiglu", "mlp_hidden": 100, "n_kv_head": 1}
    for f in fields(GPTConfig):
        value = not getattr(base.model, f.name) if f.type == "bool" else modern.get(f.name)
        value = getattr(base.model, f.name) + 1 if value is None else value
        other = replace(base, model=replace(base.model, **{f.name: value}))
        assert zoo.recipe_key("tinyshakespeare", other, tok) != key, f"GPTConfig.{f.name}"
    assert zoo.recipe_key("tinyshakespeare", replace(base, batch_size=9), tok) != key
    assert zoo.recipe_key("tang", base, tok) != key


def test_every_preset_gpt_is_defined_once():
    for name in minilm.recipes.GPT:
        table = zoo.preset_recipe(name)
        recipe = zoo.recipe_for(name, 65)
        assert recipe.model == zoo.gpt_config_for(name, 65) == zoo.gpt_sizes(name, 65)["medium"]
        assert recipe.model.dropout == table.dropout and recipe.batch_size == table.batch_size
        assert recipe.train == table.train and recipe.train is not table.train  # a copy to change
        assert recipe.train.checkpoint_interval > 0  # first-time training checkpoints
    with pytest.raises(ValueError, match="unknown preset"):
        zoo.recipe_for("laptop", 65)


def test_first_time_training_resumes_after_a_crash(tmp_path, monkeypatch):
    """A disconnect during the zoo's first training: calling pretrained_gpt again continues from the
    last checkpoint and ends with the weights of an uninterrupted run."""
    monkeypatch.setenv("MINILM_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("MINILM_CHECKPOINT_DIR", str(tmp_path / "ckpt"))
    tok, train_data, val_data = char_data("tinyshakespeare")
    recipe = zoo.recipe_for("smoke", tok.vocab_size)
    reference, _ = zoo.train_gpt(recipe, train_data, val_data, "cpu", progress=False)

    real_batch_fn = zoo.batch_fn

    def crashing_batch_fn(*args, **kwargs):
        get, generator = real_batch_fn(*args, **kwargs)
        draws = []

        def get_or_die(split):
            if split == "train" and torch.is_grad_enabled():  # a training step (not an estimate)
                draws.append(1)
                if len(draws) == 25:  # during step 24: the last checkpoint is step 20
                    raise ConnectionError("the runtime disconnected")
            return get(split)

        return get_or_die, generator

    monkeypatch.setattr(zoo, "batch_fn", crashing_batch_fn)
    with pytest.raises(ConnectionError):
        zoo.pretrained_gpt("tinyshakespeare", preset="smoke", device="cpu", progress=False)
    assert not list((tmp_path / "models").glob("*.pt"))  # no model cached from a broken run
    (ckpt,) = (tmp_path / "ckpt").glob("zoo-tinyshakespeare-smoke-*.pt")
    assert torch.load(ckpt, weights_only=True)["step"] == 20
    monkeypatch.setattr(zoo, "batch_fn", real_batch_fn)
    model, _ = zoo.pretrained_gpt("tinyshakespeare", preset="smoke", device="cpu", progress=False)
    for k, v in reference.state_dict().items():
        assert torch.equal(model.state_dict()[k], v), k
