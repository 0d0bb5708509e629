import pytest
import torch

from trainables.data import Split, iterate_batches, scaled_once


def _split(count: int) -> Split:
    index = torch.arange(count)
    images = (index % 256).to(torch.uint8).view(count, 1, 1, 1).expand(count, 2, 3, 3).contiguous()
    return Split(images=images, labels={"index": index, "double": 2 * index})


@pytest.mark.parametrize("shuffle", [True, False])
@pytest.mark.parametrize("count,batch_size", [(10, 3), (12, 4), (5, 128), (1, 1)])
def test_every_index_exactly_once_per_epoch(shuffle, count, batch_size):
    split = _split(count)
    generator = torch.Generator().manual_seed(0)
    seen, sizes = [], []
    for images, labels in iterate_batches(split, batch_size=batch_size, shuffle=shuffle, generator=generator):
        seen.extend(labels["index"].tolist())
        sizes.append(len(images))
        assert (labels["double"] == 2 * labels["index"]).all()
        # images travel with their labels
        assert torch.equal(images[:, 0, 0, 0], (labels["index"] % 256).float() / 255)
    assert sorted(seen) == list(range(count))
    assert sizes == [batch_size] * (count // batch_size) + ([count % batch_size] if count % batch_size else [])
    if not shuffle:
        assert seen == list(range(count))


def test_images_become_float32_in_unit_range():
    split = Split(images=torch.tensor([0, 255], dtype=torch.uint8).view(2, 1, 1, 1), labels={})
    (images, _), = iterate_batches(split, batch_size=2, shuffle=False)
    assert images.dtype == torch.float32 and images.flatten().tolist() == [0.0, 1.0]
    assert split.images.dtype == torch.uint8  # the stored split stays compact


def test_shuffle_order_follows_the_generator():
    split = _split(50)

    def order(seed: int) -> list[int]:
        generator = torch.Generator().manual_seed(seed)
        return [i for _, labels in iterate_batches(split, batch_size=7, shuffle=True, generator=generator)
                for i in labels["index"].tolist()]

    assert order(1) == order(1)
    assert order(1) != order(2)
    assert order(1) != list(range(50))


def test_a_split_scaled_once_yields_the_batches_scaled_per_batch_bit_for_bit():
    split = Split(images=torch.randint(0, 256, (40, 3, 4, 4), dtype=torch.uint8), labels={"index": torch.arange(40)})
    scaled = scaled_once(split, max_bytes=split.images.nelement() * 4)
    assert scaled.images.dtype == torch.float32 and scaled.labels is split.labels

    def batches(s: Split) -> list[torch.Tensor]:
        generator = torch.Generator().manual_seed(3)
        return [images for images, _ in iterate_batches(s, batch_size=7, shuffle=True, generator=generator)]

    assert all(torch.equal(a, b) for a, b in zip(batches(scaled), batches(split), strict=True))


def test_a_split_over_the_budget_or_already_float_stays_as_it_is():
    split = _split(10)
    assert scaled_once(split, max_bytes=split.images.nelement() * 4 - 1) is split
    floats = Split(images=torch.rand(3, 1, 2, 2), labels={})
    assert scaled_once(floats, max_bytes=10**9) is floats


def test_float_images_pass_through():
    images = torch.rand(4, 1, 2, 2, dtype=torch.float64)
    (batch, _), = iterate_batches(Split(images=images, labels={}), batch_size=4, shuffle=False)
    assert batch.dtype == torch.float32 and torch.allclose(batch, images.float())


@pytest.mark.parametrize("batch_size", [0, -1, 2.5, True])
def test_bad_batch_size(batch_size):
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1, but got"):
        next(iterate_batches(_split(3), batch_size=batch_size, shuffle=False))


def test_a_split_as_a_data_set_loads_it_batches_as_its_tensors_do():
    split = _split(10)
    arrays = Split(images=split.images.numpy(), labels={k: v.numpy() for k, v in split.labels.items()})
    arrays.images.flags.writeable = False  # as from Ray's object store
    batches = [iterate_batches(s, batch_size=4, shuffle=True, generator=torch.Generator().manual_seed(1))
               for s in (arrays, split)]
    for ours, theirs in zip(*batches):
        assert torch.equal(ours[0], theirs[0]) and ours[1].keys() == theirs[1].keys()
        assert all(torch.equal(ours[1][k], theirs[1][k]) for k in ours[1])
