"""malv.data.HostDataset: the host's data pipeline equals the dataset read directly."""

import gzip
import os

import numpy as np
import pytest

import malv
from conftest import fashion_mnist_dir

MASK = (1 << 64) - 1


def _splitmix(state):
    state = (state + 0x9E3779B97F4A7C15) & MASK
    z = state
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
    return state, z ^ (z >> 31)


def shuffled_indices(count, seed, epoch):
    """data::shuffled_indices (src/data/dataset.cpp): the documented order of
    an epoch (docs/protocol.md), computed here independently of the host."""
    _, derived = _splitmix((seed ^ ((0xD1B54A32D192ED03 * (epoch + 1)) & MASK)) & MASK)
    state = derived
    order = list(range(count))
    for i in range(count, 1, -1):
        state, r = _splitmix(state)
        j = r % i
        order[i - 1], order[j] = order[j], order[i - 1]
    return order


def open_raw(conn, batch_size=4, seed=7, output="numpy", **kw):
    return malv.data.HostDataset("small.f32", batch_size=batch_size, seed=seed, output=output,
                                 format="raw-f32", labels="small.labels", dims=3, classes=4,
                                 conn=conn, **kw)


def test_each_epoch_is_the_seeded_permutation_of_the_file(conn, raw_dataset):
    features, labels = raw_dataset
    ds = open_raw(conn)
    assert (ds.examples, ds.dims, ds.batch_size, len(ds)) == (10, 3, 4, 3)
    for epoch in range(3):
        batches = list(ds)
        assert [len(y) for _, y in batches] == [4, 4, 2]
        x = np.concatenate([b[0] for b in batches])
        y = np.concatenate([b[1] for b in batches])
        order = shuffled_indices(10, 7, epoch)
        assert x.dtype == np.float32 and y.dtype == np.int32
        np.testing.assert_array_equal(x, features[order])
        np.testing.assert_array_equal(y, labels[order].astype(np.int32))
    assert ds.position == 9
    ds.close()


def test_a_resumed_dataset_continues_the_same_sequence(conn, raw_dataset):
    whole = open_raw(conn)
    batches = [whole.next_batch() for _ in range(5)]
    resumed = open_raw(conn, first_batch=3)
    for expected in batches[3:]:
        got = resumed.next_batch()
        np.testing.assert_array_equal(got[0], expected[0])
        np.testing.assert_array_equal(got[1], expected[1])


def test_torch_output_feeds_a_dataloader_with_batch_size_none(conn, raw_dataset):
    torch = pytest.importorskip("torch")
    features, labels = raw_dataset
    ds = open_raw(conn, output="torch")
    loader = torch.utils.data.DataLoader(ds, batch_size=None)
    xs, ys = [], []
    for x, y in loader:
        assert x.dtype == torch.float32 and y.dtype == torch.int64
        assert x.device.type == "cpu"
        xs.append(x)
        ys.append(y)
    order = shuffled_indices(10, 7, 0)
    assert torch.equal(torch.cat(xs), torch.from_numpy(features[order]))
    assert torch.equal(torch.cat(ys), torch.from_numpy(labels[order].astype(np.int64)))


def test_bad_arguments_are_refused_with_the_reason(conn, raw_dataset):
    with pytest.raises(malv.Unimplemented) as raised:
        open_raw(conn, shuffle=False)
    assert "shuffle" in str(raised.value)
    with pytest.raises(malv.InvalidArgument):
        open_raw(conn, batch_size=0)
    with pytest.raises(malv.InvalidArgument):
        open_raw(conn, output="pandas")
    with pytest.raises(malv.InvalidArgument):
        malv.data.HostDataset("small.f32", format="csv", conn=conn)
    with pytest.raises(malv.NotFound) as raised:
        malv.data.HostDataset("no-such-dataset", conn=conn)
    assert "no-such-dataset" in str(raised.value)
    with pytest.raises(malv.Error):
        malv.data.HostDataset("../../etc", conn=conn)


def test_a_closed_dataset_or_connection_raises_instead_of_crashing(host, raw_dataset):
    conn = malv.connect(socket=host.socket, vm="train-a", token="secret-a")
    ds = open_raw(conn)
    ds.close()
    with pytest.raises(malv.FailedPrecondition):
        ds.next_batch()
    other = open_raw(conn)
    conn.close()
    with pytest.raises(malv.Disconnected):
        other.next_batch()


def _idx(path, magic):
    with gzip.open(path, "rb") as f:
        data = f.read()
    assert int.from_bytes(data[:4], "big") == magic
    if magic == 0x803:
        count, rows, cols = (int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(3))
        return np.frombuffer(data, np.uint8, offset=16).reshape(count, rows * cols)
    return np.frombuffer(data, np.uint8, offset=8)


@pytest.mark.skipif(fashion_mnist_dir() is None,
                    reason="dataset-fashion-mnist is not installed (scripts/install-deps.sh)")
def test_fashion_mnist_batches_equal_the_files_read_directly(conn):
    root = fashion_mnist_dir()
    images = _idx(os.path.join(root, "t10k-images-idx3-ubyte.gz"), 0x803)
    labels = _idx(os.path.join(root, "t10k-labels-idx1-ubyte.gz"), 0x801)
    ds = malv.data.HostDataset("fashion-mnist", batch_size=1000, seed=3,
                               format="fashion-mnist-test", conn=conn)
    assert (ds.examples, ds.dims) == (10000, 784)
    order = shuffled_indices(10000, 3, 0)
    x = np.concatenate([b[0] for b in [ds.next_batch() for _ in range(3)]])
    expected = images[order[:3000]].astype(np.float32) / np.float32(255.0)
    np.testing.assert_array_equal(x, expected)
    ds2 = malv.data.HostDataset("fashion-mnist", batch_size=1000, seed=3,
                                format="fashion-mnist-test", conn=conn)
    y = np.concatenate([ds2.next_batch()[1] for _ in range(3)])
    np.testing.assert_array_equal(y, labels[order[:3000]].astype(np.int32))


def test_a_forked_process_is_refused_and_leaves_the_parents_session_alone(conn, raw_dataset):
    import gc
    features, labels = raw_dataset
    ds = open_raw(conn)
    other = open_raw(conn)
    pid = os.fork()
    if pid == 0:  # the child: every use refused, what it drops is only forgotten
        code = 0
        try:
            ds.next_batch()
            code = 1
        except malv.FailedPrecondition as e:
            code = 0 if "forked" in str(e) else 2
        try:
            conn.ping()
            code = 3
        except malv.FailedPrecondition:
            pass
        del other
        gc.collect()
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.WEXITSTATUS(status) == 0
    # The parent's session, datasets and sequence are untouched.
    conn.ping()
    order = shuffled_indices(10, 7, 0)
    for ds_ in (ds, other):
        x, y = ds_.next_batch()
        np.testing.assert_array_equal(x, features[order[:4]])


def test_a_dataloader_with_workers_says_to_use_none(conn, raw_dataset):
    torch = pytest.importorskip("torch")
    ds = open_raw(conn, output="torch")
    loader = torch.utils.data.DataLoader(ds, batch_size=None, num_workers=1)
    with pytest.raises(malv.FailedPrecondition) as raised:
        list(loader)
    assert "num_workers=0" in str(raised.value)
    assert len(list(torch.utils.data.DataLoader(ds, batch_size=None))) == 3  # then it works
