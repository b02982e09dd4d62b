"""malv.checkpoint: state_dicts through the host's checkpoint service."""

import collections
import os

import numpy as np
import pytest

import malv


def resnet50_names_and_shapes():
    """torchvision's resnet50().state_dict() keys and shapes, in order
    (used when torchvision is not importable)."""
    out = [("conv1.weight", (64, 3, 7, 7))]

    def bn(prefix, n):
        out.extend([(f"{prefix}.weight", (n,)), (f"{prefix}.bias", (n,)),
                    (f"{prefix}.running_mean", (n,)), (f"{prefix}.running_var", (n,)),
                    (f"{prefix}.num_batches_tracked", ())])

    bn("bn1", 64)
    inplanes = 64
    for layer, (blocks, planes) in enumerate([(3, 64), (4, 128), (6, 256), (3, 512)], start=1):
        for b in range(blocks):
            p = f"layer{layer}.{b}"
            out.append((f"{p}.conv1.weight", (planes, inplanes if b == 0 else planes * 4, 1, 1)))
            bn(f"{p}.bn1", planes)
            out.append((f"{p}.conv2.weight", (planes, planes, 3, 3)))
            bn(f"{p}.bn2", planes)
            out.append((f"{p}.conv3.weight", (planes * 4, planes, 1, 1)))
            bn(f"{p}.bn3", planes * 4)
            if b == 0:
                out.append((f"{p}.downsample.0.weight", (planes * 4, inplanes, 1, 1)))
                bn(f"{p}.downsample.1", planes * 4)
        inplanes = planes * 4
    out += [("fc.weight", (1000, 2048)), ("fc.bias", (1000,))]
    return out


def resnet50_state_dict(torch):
    try:
        import torchvision
        torch.manual_seed(0)
        return torchvision.models.resnet50(weights=None).state_dict(), "torchvision"
    except ImportError:
        g = torch.Generator().manual_seed(0)
        sd = collections.OrderedDict()
        for name, shape in resnet50_names_and_shapes():
            if name.endswith("num_batches_tracked"):
                sd[name] = torch.tensor(7, dtype=torch.int64)
            else:
                sd[name] = torch.randn(shape, generator=g)
        return sd, "synthetic"


def test_a_resnet50_state_dict_round_trips_bit_for_bit(conn, host):
    torch = pytest.importorskip("torch")
    sd, source = resnet50_state_dict(torch)
    assert len(sd) == 320, source
    assert max(len(k) for k in sd) > 39  # past the old 39-byte names
    size = malv.checkpoint.save("resnet50", sd, conn=conn)
    assert size > sum(t.numel() * t.element_size() for t in sd.values())
    assert os.path.getsize(os.path.join(host.checkpoint_dir, "train-a", "resnet50")) == size
    back = malv.checkpoint.load("resnet50", conn=conn)
    assert list(back) == list(sd)
    for key, value in sd.items():
        assert back[key].dtype == value.dtype, key
        assert back[key].shape == value.shape, key
        assert torch.equal(back[key], value), key


def test_a_model_loads_its_state_in_a_new_session(host):
    torch = pytest.importorskip("torch")
    torch.manual_seed(1)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3),
                                torch.nn.Linear(3, 2))
    model(torch.randn(5, 4))  # running statistics move
    with malv.connect(socket=host.socket, vm="train-a", token="secret-a") as conn:
        malv.checkpoint.save("small-model", model.state_dict(), conn=conn)
    other = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3),
                                torch.nn.Linear(3, 2))
    with malv.connect(socket=host.socket, vm="train-a", token="secret-a") as conn:
        other.load_state_dict(malv.checkpoint.load("small-model", conn=conn))
    for (k, a), (_, b) in zip(model.state_dict().items(), other.state_dict().items()):
        assert torch.equal(a, b), k


def test_numpy_arrays_of_every_kind_round_trip(conn):
    sd = collections.OrderedDict([
        ("f64", np.linspace(0, 1, 12).reshape(3, 4)),
        ("i8", np.arange(-5, 5, dtype=np.int8)),
        ("bool", np.array([True, False, True])),
        ("scalar", np.array(3.5, dtype=np.float32)),
        ("empty", np.zeros((0, 3), np.float32)),
        ("strided", np.arange(20, dtype=np.int32).reshape(4, 5)[:, ::2]),
        ("c64", np.array([1 + 2j, 3 - 4j], dtype=np.complex64)),
        ("x" * 1000, np.ones(2, np.uint16)),  # a 1000-byte key
    ])
    malv.checkpoint.save("arrays", sd, conn=conn)
    back = malv.checkpoint.load("arrays", conn=conn)
    assert list(back) == list(sd)
    for key, value in sd.items():
        assert isinstance(back[key], np.ndarray)
        assert back[key].dtype == value.dtype and back[key].shape == value.shape, key
        np.testing.assert_array_equal(back[key], value)


def test_torch_dtypes_numpy_lacks_round_trip(conn):
    torch = pytest.importorskip("torch")
    sd = {"bf16": torch.randn(3, 2).to(torch.bfloat16), "half": torch.randn(4).half(),
          "t": torch.arange(6).reshape(2, 3).t(), "grad": torch.ones(2, requires_grad=True)}
    malv.checkpoint.save("dtypes", sd, conn=conn)
    back = malv.checkpoint.load("dtypes", conn=conn)
    for key, value in sd.items():
        assert back[key].dtype == value.dtype, key
        assert torch.equal(back[key], value.detach()), key


def test_a_manifest_past_the_metadata_limit_is_kept_in_an_entry(conn):
    sd = {f"block{i}.attention.in_projection.weight": np.full(2, i, np.float32)
          for i in range(2000)}
    malv.checkpoint.save("many", sd, conn=conn)
    back = malv.checkpoint.load("many", conn=conn)
    assert list(back) == list(sd)
    assert all(np.array_equal(back[k], v) for k, v in sd.items())


def test_saving_again_replaces_the_checkpoint(conn):
    malv.checkpoint.save("again", {"a": np.zeros(3)}, conn=conn)
    malv.checkpoint.save("again", {"b": np.ones(2)}, conn=conn)
    back = malv.checkpoint.load("again", conn=conn)
    assert list(back) == ["b"]


def test_bad_input_is_refused_with_the_reason(conn):
    with pytest.raises(malv.InvalidArgument) as raised:
        malv.checkpoint.save("bad", {"step": 7}, conn=conn)
    assert "'step'" in str(raised.value)
    with pytest.raises(malv.InvalidArgument):
        malv.checkpoint.save("bad", [np.zeros(1)], conn=conn)
    with pytest.raises(malv.InvalidArgument):
        malv.checkpoint.save("bad", {1: np.zeros(1)}, conn=conn)
    with pytest.raises(malv.InvalidArgument):
        malv.checkpoint.save("bad", {"__malv__.index": np.zeros(1)}, conn=conn)
    with pytest.raises(malv.InvalidArgument):
        malv.checkpoint.save("bad", {"k" * 1025: np.zeros(1)}, conn=conn)
    with pytest.raises(malv.InvalidArgument):
        malv.checkpoint.save("../escape", {"a": np.zeros(1)}, conn=conn)
    with pytest.raises(malv.InvalidArgument):
        malv.checkpoint.save("n" * 64, {"a": np.zeros(1)}, conn=conn)
    with pytest.raises(malv.NotFound) as raised:
        malv.checkpoint.load("never-saved", conn=conn)
    assert "never-saved" in str(raised.value)
    conn.ping()  # the session still works
    malv.checkpoint.save("fine", {"a": np.zeros(1)}, conn=conn)


def test_a_damaged_file_is_data_loss(conn, host):
    malv.checkpoint.save("damaged", {"a": np.arange(100, dtype=np.float32)}, conn=conn)
    path = os.path.join(host.checkpoint_dir, "train-a", "damaged")
    with open(path, "r+b") as f:
        f.seek(os.path.getsize(path) // 2)
        byte = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([byte[0] ^ 0x40]))
    with pytest.raises(malv.DataLoss):
        malv.checkpoint.load("damaged", conn=conn)


def test_a_state_past_the_vms_memory_quota_is_quota_exceeded(host):
    with malv.connect(socket=host.socket, vm="small", token="secret-s") as conn:
        with pytest.raises(malv.QuotaExceeded) as raised:
            malv.checkpoint.save("big", {"w": np.zeros(1 << 20, np.float32)}, conn=conn)
        assert raised.value.code == "resource_exhausted"
        assert "4194304 bytes" in str(raised.value)  # what was asked for
        conn.ping()
