import numpy as np

from train.batching import LengthBucketSampler, nonpad_share, use_packing


def _lognormal(n=2000, seed=0):
    rng = np.random.default_rng(seed)
    return np.clip(rng.lognormal(np.log(400), 0.9, n), 20, 8192).astype(int).tolist()


def test_every_sample_once_per_epoch_and_the_order_depends_only_on_seed_and_epoch():
    lengths = _lognormal(101)
    a = LengthBucketSampler(lengths, 8, seed=3)
    first = list(a)
    assert sorted(first) == list(range(101))
    b = LengthBucketSampler(lengths, 8, seed=3)
    assert list(b) == first, "a resumed run must see the same order"
    b.set_epoch(1)
    assert sorted(b) == list(range(101)) and list(b) != first


def test_buckets_leave_almost_no_padding_where_megabatches_leave_more():
    lengths = _lognormal()
    sampler = LengthBucketSampler(lengths, 8, seed=0)
    assert nonpad_share(lengths, sampler.batches()) > 0.97
    rng = np.random.default_rng(1)
    order = rng.permutation(len(lengths)).tolist()
    random_batches = [order[i:i + 8] for i in range(0, len(order), 8)]
    assert nonpad_share(lengths, random_batches) < 0.6


def test_packing_auto_is_off_without_flash_attention():
    assert use_packing(True, False) and not use_packing(False, True)
    assert use_packing("auto", False) is False and use_packing("auto", True) is True  # auto: on flash-attention
