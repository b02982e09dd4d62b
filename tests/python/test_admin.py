"""malv.admin.Client: the host's admin API as Python objects."""

import pytest

import malv


@pytest.fixture
def admin(host):
    return malv.admin.Client(host.admin_socket)


def test_health_names_the_backend(admin):
    health = admin.health()
    assert health.status == "ok"
    assert health.backend == "cpu"


def test_vms_carry_their_settings_and_live_stats(admin, conn):
    vms = {vm.name: vm for vm in admin.vms()}
    assert {"train-a", "small"} <= set(vms)
    vm = admin.vm("train-a")
    assert vm.name == "train-a" and vm.origin == "config"
    assert vm.stats.sessions >= 1  # the conn fixture's session
    assert admin.stats("train-a").sessions == vm.stats.sessions
    assert admin.stats()["train-a"].sessions >= 1
    assert vms["small"].memory_limit == 1 << 20


def test_create_update_set_quota_and_delete_a_vm(admin, host):
    vm = admin.create_vm("py-vm", token="py-token", memory_bytes=8 << 20, weight=2.0)
    assert (vm.name, vm.memory_limit, vm.weight) == ("py-vm", 8 << 20, 2.0)
    with malv.connect(socket=host.socket, vm="py-vm", token="py-token") as conn:
        conn.ping()
    assert admin.update_vm("py-vm", weight=3.0).weight == 3.0
    assert admin.set_quota("py-vm", memory_bytes=16 << 20).memory_limit == 16 << 20
    assert admin.vm("py-vm").origin == "admin"
    admin.delete_vm("py-vm")
    with pytest.raises(malv.NotFound):
        admin.vm("py-vm")
    with pytest.raises(malv.Unauthenticated):
        malv.connect(socket=host.socket, vm="py-vm", token="py-token")


def test_errors_are_malv_exceptions_with_the_hosts_message(admin):
    with pytest.raises(malv.NotFound) as raised:
        admin.vm("no-such-vm")
    assert "no-such-vm" in raised.value.message
    with pytest.raises(malv.InvalidArgument) as raised:
        admin.create_vm("typo-vm", memroy_bytes=1)
    assert "memroy_bytes" in raised.value.message
    admin.create_vm("twice")
    with pytest.raises(malv.AlreadyExists):
        admin.create_vm("twice")
    admin.delete_vm("twice")
    with pytest.raises(malv.InvalidArgument):
        admin.update_vm("train-a")  # nothing to change
    with pytest.raises(malv.Disconnected):
        malv.admin.Client(admin.socket + ".missing").health()


def test_policy_selection_and_the_guests_allow_list(admin, conn):
    choice = admin.select_policy("train-a", "gpu_sched", "builtin/fifo")
    assert choice.policy == "builtin/fifo"
    assert admin.vm("train-a").policies.gpu_sched == "builtin/fifo"
    with pytest.raises(malv.NotFound):
        admin.select_policy("train-a", "gpu_sched", "no-such-policy")
    modules = admin.policies()
    assert any(m.module == "builtin" for m in modules)
    # The guest may select only what the admin allows.
    admin.allow_policies("train-a", "gpu_sched", ["builtin/fifo"])
    other = next(f"{m.module}/{p.name}" for m in modules for p in m.policies
                 if p["class"] == "gpu_sched" and f"{m.module}/{p.name}" != "builtin/fifo")
    with pytest.raises(malv.PermissionDenied):
        conn.select_policy(f"gpu_sched={other}")
    conn.select_policy("gpu_sched=builtin/fifo")
    admin.allow_policies("train-a", "gpu_sched", None)  # any
    conn.select_policy(f"gpu_sched={other}")
    assert admin.vm("train-a").policies.gpu_sched == other


def test_metrics_are_parsed_samples(admin, conn):
    metrics = admin.metrics()
    assert "malv_vm_sessions" in metrics.names()
    assert metrics.value("malv_vm_sessions", vm="train-a") >= 1
    assert metrics.value("malv_vm_memory_limit_bytes", vm="small") == 1 << 20
    with pytest.raises(KeyError):
        metrics.value("malv_vm_sessions", vm="no-such-vm")
