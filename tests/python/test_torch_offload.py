"""The host's offload services for device tensors: HostDataset batches land on the
malv device and checkpoints save and restore device tensors, with no byte crossing
to the guest; each compared value by value with the CPU path of the same service."""

import pytest

torch = pytest.importorskip("torch")
import malv  # noqa: E402
import malv.torch  # noqa: E402


@pytest.fixture
def dev(conn):
    return malv.torch.device(conn)


def open_raw(conn, output=None, seed=7):
    return malv.data.HostDataset("small.f32", batch_size=4, seed=seed, output=output,
                                 format="raw-f32", labels="small.labels", dims=3, classes=4,
                                 conn=conn)


def test_device_batches_equal_the_numpy_batches_of_the_same_seed(conn, dev, raw_dataset):
    on_device = open_raw(conn)  # the default once the device serves this connection
    on_cpu = open_raw(conn, output="numpy")
    for _ in range(2):  # two epochs: 4 + 4 + 2 rows each
        for (x, y), (x_ref, y_ref) in zip(on_device, on_cpu, strict=True):
            assert x.device == dev and y.device == dev
            assert x.dtype == torch.float32 and y.dtype == torch.int64
            assert torch.equal(x.cpu(), torch.from_numpy(x_ref))
            assert torch.equal(y.cpu(), torch.from_numpy(y_ref).long())
    assert on_device.position == on_cpu.position == 6


def test_device_batches_feed_a_dataloader_and_a_model(conn, dev, raw_dataset):
    loader = torch.utils.data.DataLoader(open_raw(conn, output="device"), batch_size=None)
    model = torch.nn.Linear(3, 4).to(dev)
    seen = 0
    for x, y in loader:
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        seen += x.shape[0]
    assert seen == 10
    assert torch.isfinite(model.weight.grad.cpu()).all()


def test_device_output_with_another_connection_than_the_devices_is_refused(host, dev,
                                                                          raw_dataset):
    other = malv.connect(socket=host.socket, vm="train-a", token="secret-a")
    try:
        with pytest.raises(malv.InvalidArgument, match="another connection"):
            open_raw(other, output="device")
        with pytest.raises(malv.InvalidArgument, match="another connection"):
            malv.checkpoint.save("other-conn", {"w": torch.ones(3).to(dev)}, conn=other)
    finally:
        other.close()


def test_device_tensors_too_small_or_inside_their_storage_are_refused(conn, dev, raw_dataset):
    ds = open_raw(conn, output="device")
    view = malv.torch.buffer_view
    small = torch.empty(2, dtype=torch.float32, device=dev)  # the batch needs 4 x 3
    labels = torch.empty(4, dtype=torch.int32, device=dev)
    with pytest.raises(malv.InvalidArgument, match="features tensor must start its storage"):
        ds._dataset.next_into(view(small), view(labels))
    inner = torch.empty(16, dtype=torch.float32, device=dev)[2:]  # not at the storage's start
    with pytest.raises(malv.InvalidArgument, match="start its storage"):
        ds._dataset.next_into(view(inner), view(labels))
    with pytest.raises(malv.InvalidArgument, match="buffer view"):
        ds._dataset.next_into(object(), view(labels))
    with pytest.raises(ValueError, match="contiguous tensor of the malv device"):
        view(torch.empty(3))
    # Nothing was taken from the pipeline: the first batch is still the first.
    assert ds.position == 0
    x, y = ds.next_batch()
    assert x.shape == (4, 3) and y.shape == (4,)


def small_model():
    torch.manual_seed(3)
    return torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.BatchNorm2d(4),
                               torch.nn.Flatten(), torch.nn.Linear(4 * 4 * 4, 2))


def test_a_device_state_dict_round_trips_on_the_device_and_to_the_cpu(conn, dev):
    model = small_model().to(dev)
    model(torch.randn(2, 1, 6, 6).to(dev)).sum().backward()  # running stats move
    state = model.state_dict()
    state["odd/view"] = torch.arange(12.0).reshape(3, 4).to(dev).t()  # not contiguous
    state["empty"] = torch.zeros(0, 5).to(dev)
    malv.checkpoint.save("device-state", state, conn=conn)

    back = malv.checkpoint.load("device-state", conn=conn)
    on_cpu = malv.checkpoint.load("device-state", conn=conn, map_location="cpu")
    assert list(back) == list(state) == list(on_cpu)
    for key, value in state.items():
        assert back[key].device == dev and on_cpu[key].device.type == "cpu"
        assert back[key].dtype == value.dtype and back[key].shape == value.shape
        assert torch.equal(back[key].cpu(), value.cpu()), key
        assert torch.equal(on_cpu[key], value.cpu()), key


def test_training_resumed_from_a_device_checkpoint_equals_training_straight_through(conn, dev):
    torch.manual_seed(5)
    inputs = [torch.randn(4, 1, 6, 6) for _ in range(4)]

    def steps(model, optimizer, batches):
        for x in batches:
            optimizer.zero_grad()
            model(x.to(dev)).square().mean().backward()
            optimizer.step()

    straight = small_model().to(dev)
    opt = torch.optim.SGD(straight.parameters(), lr=0.1, momentum=0.9)
    steps(straight, opt, inputs)

    first = small_model().to(dev)
    opt = torch.optim.SGD(first.parameters(), lr=0.1, momentum=0.9)
    steps(first, opt, inputs[:2])
    malv.checkpoint.save("resume-model", first.state_dict(), conn=conn)
    momentum = {f"m{i}": opt.state[p]["momentum_buffer"] for i, p in enumerate(first.parameters())}
    malv.checkpoint.save("resume-optimizer", momentum, conn=conn)

    resumed = small_model().to(dev)
    resumed.load_state_dict(malv.checkpoint.load("resume-model", conn=conn))
    opt = torch.optim.SGD(resumed.parameters(), lr=0.1, momentum=0.9)
    saved = malv.checkpoint.load("resume-optimizer", conn=conn)
    for i, p in enumerate(resumed.parameters()):
        opt.state[p]["momentum_buffer"] = saved[f"m{i}"]
    steps(resumed, opt, inputs[2:])
    for (key, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a.cpu(), b.cpu()), key  # bit for bit: the same operators on the host


def test_a_checkpoint_of_device_tensors_is_loaded_on_the_cpu_without_the_device(conn, dev, host):
    malv.checkpoint.save("for-cpu", {"w": torch.arange(6.0).to(dev)}, conn=conn)
    other = malv.connect(socket=host.socket, vm="train-a", token="secret-a")
    try:  # the device serves `conn`: another connection's load gives CPU tensors
        got = malv.checkpoint.load("for-cpu", conn=other)
        assert got["w"].device.type == "cpu" and torch.equal(got["w"], torch.arange(6.0))
    finally:
        other.close()
