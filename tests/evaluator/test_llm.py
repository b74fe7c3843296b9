import json

import numpy as np
import pytest
from eval_fixtures import catalogue, tiny_model

from cprec.core.errors import CPRecError
from cprec.core.template import history_prompt
from cprec.evaluator.config import LLMConfig
from cprec.evaluator.methods.llm import (
    PrefixScorer,
    ScoringPool,
    call_ranges,
    end_token_ids,
    load_tokenizer,
    score_forms,
    tokenize_catalogue,
)

TEXTS = [row["text"] for row in catalogue("Garden", 40)]


def scorer(path, end="item_end", batch_size=7) -> PrefixScorer:
    scorer = PrefixScorer(str(path), LLMConfig(batch_size=batch_size, end=end))
    tokens = tokenize_catalogue(scorer.tokenizer, TEXTS)
    scorer.set_catalogue(tokens, end_token_ids(scorer.tokenizer, tokens, end))
    return scorer


@pytest.mark.parametrize("end", ["item_end", "none"])
def test_shared_prefix_scores_equal_one_forward_per_candidate(tiny_lm, end):
    model = scorer(tiny_lm, end)
    assert len(model.end_ids) == (2 if end == "item_end" else 0)  # the separator is a token of its own
    prompt = model.prompt_ids(history_prompt("Garden", TEXTS[:5]))
    items = np.arange(len(TEXTS))
    shared = model.score_prompt(prompt, model.by_length)  # batches of 7, right-padded
    naive = model.naive_score_prompt(prompt, model.by_length)
    np.testing.assert_allclose(shared, naive, rtol=1e-4, atol=1e-4)
    matrix = model.score_prompts([history_prompt("Garden", TEXTS[:5])])
    np.testing.assert_allclose(matrix[0, model.by_length], naive, rtol=1e-4, atol=1e-4)
    subset = model.score_prompts([history_prompt("Garden", TEXTS[:5])], [np.array([3, 1])])
    assert np.isinf(subset[0, items[~np.isin(items, [1, 3])]]).all()
    np.testing.assert_allclose(subset[0, [1, 3]], matrix[0, [1, 3]], rtol=1e-4, atol=1e-4)


def test_shared_prefix_equals_naive_on_qwen2(tmp_path):
    model = scorer(tiny_model(tmp_path / "qwen", TEXTS, arch="qwen2"))
    prompt = model.prompt_ids(history_prompt("Garden", TEXTS[5:9]))
    np.testing.assert_allclose(
        model.score_prompt(prompt, np.arange(12)), model.naive_score_prompt(prompt, np.arange(12)), atol=1e-4
    )


@pytest.mark.parametrize(
    ("arch", "extra", "shared_attention"),
    [
        ("qwen2", {}, True),
        # a sliding window shorter than the prompt: only the KV-cache path (with the model's own masks)
        # gets it right, so models with one must not take the shared-prefix attention
        ("qwen2", {"use_sliding_window": True, "sliding_window": 8, "max_window_layers": 0}, False),
        ("mistral", {"sliding_window": 8}, False),
    ],
)
def test_shared_prefix_equals_naive_on_each_attention_path(tmp_path, arch, extra, shared_attention):
    model = scorer(tiny_model(tmp_path / arch, TEXTS, arch=arch, **extra))
    assert model.shared_attention is shared_attention
    prompt = model.prompt_ids(history_prompt("Garden", TEXTS[5:9]))
    items = model.by_length[:12]
    np.testing.assert_allclose(
        model.score_prompt(prompt, items), model.naive_score_prompt(prompt, items), rtol=1e-4, atol=1e-4
    )


def test_candidates_share_their_common_first_tokens_with_the_prompt(tiny_lm):
    model = scorer(tiny_lm)
    # every candidate is "<separator>[Garden] ...": those tokens are scored once, with the prompt
    assert len(model.common) >= 2
    assert all(tail == full[len(model.common) :] for tail, full in zip(model.tails, model.catalogue))
    assert min(len(t) for t in model.tails) >= 1


@pytest.mark.parametrize("fused", [True, False])
def test_prefix_attention_equals_attention_over_prompt_and_candidate(fused, monkeypatch):
    import torch
    import torch.nn.functional as F

    from cprec.evaluator.methods import prefix_attention

    torch.manual_seed(0)
    batch, heads, kv_heads, width, prompt_len, dim = 5, 4, 2, 6, 9, 8
    query = torch.randn(batch, heads, width, dim)
    key, value = torch.randn(batch, kv_heads, width, dim), torch.randn(batch, kv_heads, width, dim)
    prompt = (torch.randn(kv_heads, prompt_len, dim), torch.randn(kv_heads, prompt_len, dim))
    prefix = prefix_attention.SharedPrefix(layers={0: prompt}, capture=False)

    class Layer:
        layer_idx = 0

    real = prefix_attention.attend_to_prompt
    # fused=False: the matrix-product way a GPU takes
    monkeypatch.setattr(prefix_attention, "attend_to_prompt", lambda *args, **_: real(*args, fused=fused))
    out, _ = prefix_attention.shared_prefix_attention(
        Layer(), query, key, value, None, scaling=dim**-0.5, shared_prefix=prefix
    )
    # the reference: each row's keys are the prompt's then its own, causal on its own part
    keys = torch.cat([prompt[0].expand(batch, -1, -1, -1), key], dim=2).repeat_interleave(2, dim=1)
    values = torch.cat([prompt[1].expand(batch, -1, -1, -1), value], dim=2).repeat_interleave(2, dim=1)
    visible = torch.ones(width, prompt_len + width, dtype=torch.bool)
    visible[:, prompt_len:] = torch.ones(width, width, dtype=torch.bool).tril()
    expected = F.scaled_dot_product_attention(query, keys, values, attn_mask=visible).transpose(1, 2)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)


def test_bad_model_paths_and_tokenizer_mismatch(tiny_lm, tmp_path):
    with pytest.raises(CPRecError, match="does not exist"):
        load_tokenizer(str(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(CPRecError, match="cannot load"):
        load_tokenizer(str(tmp_path / "empty"))
    shrunk = tmp_path / "shrunk"
    shrunk.mkdir()
    for file in tiny_lm.iterdir():
        (shrunk / file.name).write_bytes(file.read_bytes())
    config = json.loads((shrunk / "config.json").read_text())
    config["vocab_size"] = 50
    (shrunk / "config.json").write_text(json.dumps(config))
    with pytest.raises(CPRecError, match="tokenizer mismatch"):
        load_tokenizer(str(shrunk))


def test_ray_actor_pool_matches_in_process_scores(tiny_lm, ray_local):
    prompts = [history_prompt("Garden", TEXTS[i : i + 3]) for i in range(5)]
    local = ScoringPool(str(tiny_lm), LLMConfig(num_actors=0))
    local.set_catalogue(TEXTS)
    remote = ScoringPool(str(tiny_lm), LLMConfig(num_actors=2, cpus_per_actor=0.5, users_per_task=2))
    try:
        counts = remote.set_catalogue(TEXTS)
        np.testing.assert_allclose(remote.score(prompts), local.score(prompts), atol=1e-4)
        assert (counts == local.local.token_counts()).all()
    finally:
        remote.close()


def test_users_are_spread_evenly_over_the_actors():
    assert call_ranges(40, 2, 16) == [(0, 10), (10, 20), (20, 30), (30, 40)]
    assert call_ranges(5, 2, 16) == [(0, 3), (3, 5)]
    assert call_ranges(1, 2, 16) == [(0, 1)]
    assert call_ranges(0, 2, 16) == []
    assert all(j - i <= 7 for i, j in call_ranges(100, 3, 7))


def test_the_scoring_actors_take_one_model_after_another(tiny_lm, ray_local, tmp_path):
    other = tiny_model(tmp_path / "other", TEXTS, arch="qwen2")
    prompts = [history_prompt("Garden", TEXTS[i : i + 3]) for i in range(3)]
    expected = {}
    for path in (tiny_lm, other):
        local = ScoringPool(str(path), LLMConfig(num_actors=0))
        local.set_catalogue(TEXTS)
        expected[path] = local.score(prompts)
    remote = ScoringPool(str(tiny_lm), LLMConfig(num_actors=1, cpus_per_actor=0.5))
    try:
        remote.set_catalogue(TEXTS)
        actor = remote.actors[0]
        np.testing.assert_allclose(remote.score(prompts), expected[tiny_lm], atol=1e-4)
        remote.load(str(other))
        remote.set_catalogue(TEXTS)
        assert remote.actors == [actor]  # the model changed, not the actor
        np.testing.assert_allclose(remote.score(prompts), expected[other], atol=1e-4)
        remote.close()  # between datasets; the next call starts an actor with the current model
        remote.set_catalogue(TEXTS)
        np.testing.assert_allclose(remote.score(prompts), expected[other], atol=1e-4)
    finally:
        remote.close()


def test_a_dead_scoring_actor_is_replaced_and_its_call_redone(tiny_lm, ray_local, caplog):
    prompts = [history_prompt("Garden", TEXTS[i : i + 3]) for i in range(4)]
    local = ScoringPool(str(tiny_lm), LLMConfig(num_actors=0))
    local.set_catalogue(TEXTS)
    remote = ScoringPool(
        str(tiny_lm), LLMConfig(num_actors=1, cpus_per_actor=0.5, users_per_task=2, actor_restarts=1)
    )
    try:
        remote.set_catalogue(TEXTS)
        ray_local.kill(remote.actors[0], no_restart=True)
        # the fresh actor must get the catalogue again, or the scores would fail or differ
        np.testing.assert_allclose(remote.score(prompts), local.score(prompts), atol=1e-4)
        assert "starting the actors afresh (0 restarts left)" in caplog.text
        ray_local.kill(remote.actors[0], no_restart=True)
        with pytest.raises(ray_local.exceptions.RayActorError):
            remote.score(prompts)
    finally:
        remote.close()


def test_a_model_on_object_storage_scores_as_its_local_copy(tiny_lm, s3, ray_local, tmp_path):
    import pyarrow.fs as pafs

    from cprec.core import storage

    uri = f"{s3.bucket('eval')}/{tmp_path.name}/model"
    fs, path = storage.filesystem(uri)
    pafs.copy_files(str(tiny_lm), path, source_filesystem=pafs.LocalFileSystem(), destination_filesystem=fs)
    prompts = [history_prompt("Garden", TEXTS[i : i + 3]) for i in range(2)]
    local = ScoringPool(str(tiny_lm), LLMConfig(num_actors=0))
    local.set_catalogue(TEXTS)
    remote = ScoringPool(uri, LLMConfig(num_actors=1, cpus_per_actor=0.5))  # its actor reads the model too
    try:
        remote.set_catalogue(TEXTS)
        np.testing.assert_allclose(remote.score(prompts), local.score(prompts), atol=1e-4)
    finally:
        remote.close()
    with pytest.raises(CPRecError, match=f"^model not found at {uri}-missing$"):
        load_tokenizer(uri + "-missing")


def test_a_popularity_prior_is_added_to_every_form():
    sums = np.array([[-10.0, -12.0, -9.0]])
    tokens, prior, log_popularity = np.array([2.0, 4.0, 3.0]), np.array([-8.0, -9.0, -5.0]), np.log1p([0, 20, 0])
    forms = score_forms(sums, tokens, prior, ["sum", "mean", "pmi"], log_popularity, [0.5, 2.0])
    assert sorted(forms) == sorted(["sum", "mean", "pmi"] + [f"{f}+pop{w}" for f in ("sum", "mean", "pmi") for w in ("0.5", "2")])
    np.testing.assert_allclose(forms["sum+pop2"], sums + 2 * log_popularity)
    np.testing.assert_allclose(forms["mean+pop0.5"], sums / tokens + 0.5 * log_popularity)
    np.testing.assert_allclose(forms["pmi+pop2"], sums - prior + 2 * log_popularity)
    # item 1 (20 training events) overtakes item 2, which the model alone prefers
    assert forms["sum"][0].argmax() == 2 and forms["sum+pop2"][0].argmax() == 1
    assert set(score_forms(sums, tokens, prior, ["sum"])) == {"sum"}
