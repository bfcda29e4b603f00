"""Bucket assignment worked out by hand, and the distributed, resumable batch sampler."""

import pytest

from javisdit.datasets.bucket import Bucket
from javisdit.datasets.sampler import VariableVideoBatchSampler
from javisdit.errors import ConfigError

CONFIG = {"144p": {51: (1.0, 4), 17: (1.0, 8)}, "240p": {51: (1.0, 2)}}


@pytest.mark.parametrize(
    "thw, bucket",
    [
        ((60, 144, 256), ("144p", 51, "0.56")),   # 144p: 60 > 51
        ((30, 144, 256), ("144p", 17, "0.56")),   # 30 is not > 51, but > 17
        ((17, 144, 256), None),                   # lengths must be strictly longer
        ((60, 240, 426), ("240p", 51, "0.56")),   # the largest resolution it reaches comes first
        ((60, 200, 200), ("144p", 51, "1.00")),   # 40000 px < 0.8·102240, >= 0.8·36864; square
        ((60, 100, 100), None),                   # too small for every resolution
        ((60, 480, 854), ("240p", 51, "0.56")),   # bigger clips go down to the largest bucket
    ],
)
def test_bucket_by_hand(thw, bucket):
    assert Bucket(CONFIG).get_bucket_id(*thw, seed=0) == bucket


def test_probabilities():
    never = Bucket({"240p": {51: (0.0, 2)}, "144p": {51: (1.0, 4)}})
    assert never.get_bucket_id(60, 240, 426, seed=3) == ("144p", 51, "0.56")  # 240p refused: falls to 144p
    no_long = Bucket({"144p": {102: ((1.0, 0.0), 2), 51: (1.0, 4)}})
    assert no_long.get_bucket_id(200, 144, 256, seed=3) == ("144p", 51, "0.56")  # length 102 refused
    half = Bucket({"144p": {51: (0.5, 4)}})
    kept = sum(half.get_bucket_id(60, 144, 256, seed=s) is not None for s in range(400))
    assert 150 < kept < 250


def test_bucket_config_errors():
    with pytest.raises(ConfigError, match=r"unknown resolution\(s\) \['300p'\]; valid: 64, 144p"):
        Bucket({"300p": {51: (1.0, 2)}})
    with pytest.raises(ConfigError, match="must be \\(probability, batch_size\\)"):
        Bucket({"144p": {51: 1.0}})


SIZES = [(60, 144, 256)] * 20 + [(30, 144, 256)] * 19 + [(60, 240, 426)] * 7


def _epoch(sampler):
    return [batch for batch in sampler]


def test_two_ranks_cover_disjoint_complete_batches():
    one = VariableVideoBatchSampler(SIZES, CONFIG, num_replicas=1, rank=0, seed=5)
    ranks = [VariableVideoBatchSampler(SIZES, CONFIG, num_replicas=2, rank=r, seed=5) for r in (0, 1)]
    batches = [_epoch(s) for s in ranks]
    rows = [[item[0] for batch in b for item in batch] for b in batches]
    assert not set(rows[0]) & set(rows[1])
    all_rows = sorted(rows[0] + rows[1])
    assert len(all_rows) == len(set(all_rows))
    # complete batches only: 20 -> 5 of 4, 19 -> 2 of 8 (3 dropped), 7 -> 3 of 2 (1 dropped); 10 batches, 5 per rank
    assert len(batches[0]) == len(batches[1]) == 5 == len(ranks[0])
    single = sorted(item[0] for batch in _epoch(one) for item in batch)
    assert all_rows == single
    for batch in batches[0] + batches[1]:
        assert len({item[1:4] for item in batch}) == 1  # one size per batch
        T, H, W = batch[0][1:4]
        assert len(batch) == {51: {144: 4, 240: 2}, 17: {144: 8}}[T][H]


def test_resume_mid_epoch_gives_exactly_the_rest():
    full = _epoch(VariableVideoBatchSampler(SIZES, CONFIG, num_replicas=2, rank=1, seed=5))
    sampler = VariableVideoBatchSampler(SIZES, CONFIG, num_replicas=2, rank=1, seed=5)
    state = sampler.state_dict(num_steps=2)
    resumed = VariableVideoBatchSampler(SIZES, CONFIG, num_replicas=2, rank=1, seed=0)
    resumed.load_state_dict(state)
    assert len(resumed) == len(full) - 2
    assert _epoch(resumed) == full[2:]
    assert _epoch(resumed) == full  # the next pass is a whole epoch again


def test_epochs_differ_and_repeat():
    s = VariableVideoBatchSampler(SIZES, CONFIG, num_replicas=1, rank=0, seed=5)
    e0 = _epoch(s)
    s.set_epoch(1)
    assert _epoch(s) != e0
    s.set_epoch(0)
    assert _epoch(s) == e0


def test_no_complete_batch_is_an_error():
    sampler = VariableVideoBatchSampler([(60, 144, 256)] * 3, {"144p": {51: (1.0, 4)}}, num_replicas=1, rank=0)
    with pytest.raises(ValueError, match="admits no complete batch of 3 clips"):
        list(sampler)
