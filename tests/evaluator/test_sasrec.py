import numpy as np
import torch

from cprec.data_prep.downstream import SplitDataset
from cprec.evaluator.config import EvalConfig, MethodConfig, SASRecConfig
from cprec.evaluator.evaluate import split_metrics
from cprec.evaluator.methods import make_method
from cprec.evaluator.methods.sasrec import SASRec, left_padded


def planted_dataset(n_items=60, n_users=200, seed=0) -> SplitDataset:
    """Every user walks the catalogue in steps of +1 from a random start: pure sequential signal,
    and a flat popularity, so only a sequential model can predict the next item."""
    rng = np.random.default_rng(seed)
    walks = [(rng.integers(n_items) + np.arange(rng.integers(6, 11))) % n_items for _ in range(n_users)]
    return SplitDataset(
        name="planted",
        platform="test",
        domain="Garden",
        item_ids=[f"i{i}" for i in range(n_items)],
        item_texts=[f"[Garden] item {i}" for i in range(n_items)],
        user_ids=[f"u{u}" for u in range(n_users)],
        train=[w[:-2] for w in walks],
        valid=np.array([w[-2] for w in walks]),
        test=np.array([w[-1] for w in walks]),
    )


def test_sasrec_learns_a_planted_sequence_far_above_popularity():
    dataset = planted_dataset()
    config = EvalConfig(
        out_dir="unused",
        datasets=[],
        world="unused",
        sasrec=SASRecConfig(
            hidden=32, max_len=12, epochs=60, eval_every=5, patience=2, batch_size=64, lr=5e-3
        ),
    )
    users = np.arange(dataset.n_users)
    ndcg = {}
    for kind in ("popularity", "sasrec"):
        method = make_method(MethodConfig(kind=kind), config)
        method.fit(dataset)
        ndcg[kind] = split_metrics(method, dataset, "test", users, None, config)[""]["ndcg@10"].mean()
    assert ndcg["popularity"] < 0.15
    assert ndcg["sasrec"] > 0.6, ndcg
    assert method.info()["curve"] and method.info()["best_valid_ndcg@10"] > 0.6


def test_sasrec_is_causal_and_ignores_padding():
    torch.manual_seed(0)
    model = SASRec(n_items=9, hidden=16, max_len=6, blocks=2, heads=2, dropout=0.0).eval()
    sequence = torch.tensor(left_padded([np.array([1, 2, 3, 4])], 6))
    changed_future = sequence.clone()
    changed_future[0, -1] = 8
    with torch.no_grad():
        base, future = model.encode(sequence), model.encode(changed_future)
    # positions before the last do not see the last item
    assert torch.allclose(base[0, :-1], future[0, :-1], atol=1e-6)
    assert not torch.allclose(base[0, -1], future[0, -1])
    assert sequence.tolist() == [[0, 0, 2, 3, 4, 5]]  # 1-based ids, left-padded
