"""malv.torch: PyTorch operators on the host, compared with torch on the CPU value by value.

The guest's own torch computes the reference. Element-wise operators match
bit for bit. Operators that reach BLAS (matmul, linear) may differ in the
last bits: the host's OpenBLAS runs the kernels this CPU's features allow
(src/accel/cpu/blas_kernels.h: SkylakeX here), while a Python process
without OPENBLAS_CORETYPE runs the ones OpenBLAS 0.3.21 picks by model
number (Prescott on these machines); those compare within 1e-6.
"""

import copy
import time

import pytest

torch = pytest.importorskip("torch")
import malv  # noqa: E402
import malv.torch  # noqa: E402


@pytest.fixture
def dev(conn):
    return malv.torch.device(conn)


def test_elementwise_operators_match_the_cpu_bit_for_bit(dev):
    torch.manual_seed(1)
    a = torch.randn(4, 5)
    b = torch.randn(4, 5)
    x, y = a.to(dev), b.to(dev)
    assert x.device.type == "privateuseone"
    cases = {
        "add": (x + y, a + b),
        "mul by a Python number": (x * 2.5, a * 2.5),
        "sub with alpha": (torch.sub(x, y, alpha=3), torch.sub(a, b, alpha=3)),
        "relu": (torch.relu(x), torch.relu(a)),
        "exp": (x.exp(), a.exp()),
        "where": (torch.where(x > 0, x, y), torch.where(a > 0, a, b)),
        "softmax": (torch.softmax(x, dim=1), torch.softmax(a, dim=1)),
        "sum over a dim": (x.sum(dim=0), a.sum(dim=0)),
        "transpose then contiguous": (x.t().contiguous(), a.t().contiguous()),
        "a view of a slice": (x[1:3, ::2] * 1.0, a[1:3, ::2] * 1.0),
        "reshape": (x.reshape(10, 2), a.reshape(10, 2)),
        "integer dtype": ((x * 10).to(torch.int64) % 7, (a * 10).to(torch.int64) % 7),
    }
    for what, (got, want) in cases.items():
        got = got.cpu()
        assert got.dtype == want.dtype, what
        assert got.shape == want.shape, what
        assert torch.equal(got, want), f"{what}: {got} != {want}"


def test_operators_without_a_meta_kernel_run_in_the_guest(dev):
    a = torch.tensor([1.0, -2.0, 3.0, -4.0])
    x = a.to(dev)
    before = malv.torch.stats()["operators_in_guest"]
    got = torch.masked_select(x, x > 0)
    assert got.device.type == "privateuseone"
    assert torch.equal(got.cpu(), torch.masked_select(a, a > 0))
    assert torch.equal(torch.nonzero(x).cpu(), torch.nonzero(a))
    assert malv.torch.stats()["operators_in_guest"] >= before + 2


def test_values_read_back(dev):
    x = torch.tensor([1.5, -2.0, 4.25]).to(dev)
    assert x.sum().item() == pytest.approx(3.75)
    assert bool((x > 0).any())
    assert x.argmax().item() == 2
    assert "privateuseone" in str(x)


def test_in_place_operators_write_the_device_tensor(dev):
    a = torch.arange(6, dtype=torch.float32)
    x = a.to(dev)
    x.mul_(3).add_(1)
    x[2:4].zero_()
    a.mul_(3).add_(1)
    a[2:4].zero_()
    assert torch.equal(x.cpu(), a)


def test_mlp_training_matches_the_cpu_parameter_by_parameter(dev):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(20, 64), torch.nn.ReLU(), torch.nn.Linear(64, 10))
    reference = copy.deepcopy(model)
    model = model.to(dev)  # replaces the Parameters: build the optimiser after
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    ref_opt = torch.optim.SGD(reference.parameters(), lr=0.1, momentum=0.9)
    x = torch.randn(32, 20)
    y = torch.randint(0, 10, (32,))
    xd, yd = x.to(dev), y.to(dev)
    for _ in range(5):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(xd), yd)
        loss.backward()
        opt.step()
        ref_opt.zero_grad()
        ref_loss = torch.nn.functional.cross_entropy(reference(x), y)
        ref_loss.backward()
        ref_opt.step()
        assert loss.item() == pytest.approx(ref_loss.item(), rel=1e-6)
    for (name, p), (_, q) in zip(model.named_parameters(), reference.named_parameters()):
        got = p.detach().cpu()
        assert got.shape == q.shape, name
        assert torch.allclose(got, q.detach(), rtol=1e-6, atol=1e-6), \
            f"{name}: max difference {(got - q.detach()).abs().max().item()}"


def test_operators_the_host_refuses_raise_with_the_reason(dev):
    x = torch.ones(3).to(dev)
    # conftest's host denies aten::cumsum (host.aten_denied).
    with pytest.raises(NotImplementedError, match="does not run aten::cumsum"):
        torch.cumsum(x, 0).cpu()
    # The device goes on working.
    assert torch.equal((x + x).cpu(), torch.full((3,), 2.0))


def test_a_cpu_tensor_in_a_device_operator_is_refused(dev):
    x = torch.ones(3).to(dev)
    with pytest.raises(RuntimeError):
        (x + torch.ones(3)).cpu()


def test_resnet18_training_matches_the_cpu_including_batch_norm_statistics(dev):
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=10)  # random init: nothing downloaded
    reference = copy.deepcopy(model)
    model = model.to(dev)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    ref_opt = torch.optim.SGD(reference.parameters(), lr=0.01, momentum=0.9)
    # Batch 4: with 32x32 images the last batch norms see 4 values a
    # channel; with 2 they amplify rounding differences past 1e-4.
    x = torch.randn(4, 3, 32, 32)
    y = torch.randint(0, 10, (4,))
    xd, yd = x.to(dev), y.to(dev)
    for _ in range(2):
        for m, o, inputs, labels in ((model, opt, xd, yd), (reference, ref_opt, x, y)):
            o.zero_grad()
            torch.nn.functional.cross_entropy(m(inputs), labels).backward()
            o.step()
    got, want = model.state_dict(), reference.state_dict()
    assert list(got) == list(want)
    for name in want:
        g = got[name].cpu()
        assert g.dtype == want[name].dtype, name
        # Convolutions reach BLAS through im2col: last-bit differences add up.
        assert torch.allclose(g.double(), want[name].double(), rtol=1e-5, atol=1e-5), \
            f"{name}: max difference {(g.double() - want[name].double()).abs().max().item()}"
    # The running statistics moved (the host wrote them into the VM's buffers).
    assert not torch.equal(got["bn1.running_mean"].cpu(), torch.zeros(64))
    assert got["bn1.num_batches_tracked"].item() == 2


def test_operators_queued_before_the_program_stops_calling_are_sent_meanwhile(dev):
    # Queued while a batch is in flight, operators are held for the next
    # one; with no further call from the program (it sleeps, or does other
    # work), the device's flusher thread sends them once the host is idle.
    a = torch.randn(128, 128).to(dev)
    acc = torch.zeros(128, 128).to(dev)
    before = malv.torch.stats()
    for _ in range(200):
        acc.add_(a.sin())  # element-wise: equal to the CPU's bit for bit
    deadline = time.monotonic() + 30
    while malv.torch.stats()["operators_held"] > 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    after = malv.torch.stats()
    assert after["operators_held"] == 0
    # The 400 operators went in batches: at least one, at most one each.
    sent = after["operators_sent"] - before["operators_sent"]
    batches = after["batches_sent"] - before["batches_sent"]
    assert sent >= 400 and 1 <= batches <= sent, (sent, batches)
    expected = torch.zeros(128, 128)
    a_cpu = a.cpu()
    for _ in range(200):
        expected.add_(a_cpu.sin())
    assert torch.equal(acc.cpu(), expected)


def test_a_tensor_past_the_vms_quota_raises_quota_exceeded(host):
    # conftest's VM "small" has 1 MiB of device memory.
    small = malv.connect(socket=host.socket, vm="small", token="secret-s")
    try:
        dev = malv.torch.device(small)
        fits = torch.ones(1000).to(dev)
        with pytest.raises(malv.QuotaExceeded, match="quota refuses") as refused:
            torch.ones(1 << 20).to(dev)  # 4 MiB
        # The bytes refused, the VM's quota (1 MiB) and its usage, from the host.
        assert "the VM's quota is 1048576 bytes" in str(refused.value), refused.value
        assert "of them in use" in str(refused.value)
        # The device goes on working, and what was freed comes back.
        assert torch.equal((fits + 1).cpu(), torch.full((1000,), 2.0))
        del fits
        malv.torch.empty_cache()
        assert malv.torch.stats()["cached_bytes"] == 0
    finally:
        small.close()
