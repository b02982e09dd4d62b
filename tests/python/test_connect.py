"""malv.connect(): transports, the environment, and errors as malv exceptions."""

import pytest

import malv


def test_connect_over_the_unix_socket_pings_and_reports_the_device(host, clean_env):
    with malv.connect(socket=host.socket, vm="train-a", token="secret-a") as conn:
        conn.ping()
        info = conn.device_info()
        assert info["backend"] == "cpu"
        assert info["total_memory"] > 0
        assert conn.vm == "train-a"
    assert conn.closed


def test_connect_reads_socket_vm_and_token_from_the_environment(host, clean_env):
    clean_env.setenv("MALV_SOCKET", host.socket)
    clean_env.setenv("MALV_VM", "train-a")
    clean_env.setenv("MALV_TOKEN", "secret-a")
    with malv.connect() as conn:
        assert conn.vm == "train-a"
        conn.ping()


def test_explicit_arguments_win_over_the_environment(host, clean_env):
    clean_env.setenv("MALV_SOCKET", "/nonexistent/malv.sock")
    clean_env.setenv("MALV_VM", "nobody")
    clean_env.setenv("MALV_TOKEN", "wrong")
    with malv.connect(socket=host.socket, vm="train-a", token="secret-a") as conn:
        conn.ping()


def test_a_wrong_token_is_permission_denied_with_the_hosts_message(host, clean_env):
    with pytest.raises(malv.PermissionDenied) as raised:
        malv.connect(socket=host.socket, vm="train-a", token="not-the-token")
    error = raised.value
    assert isinstance(error, malv.Unauthenticated)
    assert isinstance(error, malv.Error)
    assert error.code == "unauthenticated"
    assert error.code_value == 8
    assert error.message  # the host's reason, not empty
    assert "train-a" in str(error) or "token" in str(error)


def test_a_wrong_token_from_the_environment_is_refused_too(host, clean_env):
    clean_env.setenv("MALV_SOCKET", host.socket)
    clean_env.setenv("MALV_VM", "train-a")
    clean_env.setenv("MALV_TOKEN", "wrong")
    with pytest.raises(malv.Unauthenticated):
        malv.connect()


def test_a_missing_socket_is_not_found_naming_the_path(clean_env, tmp_path):
    path = str(tmp_path / "no.sock")
    with pytest.raises(malv.NotFound) as raised:
        malv.connect(socket=path)
    assert path in str(raised.value)


@pytest.mark.parametrize("address", ["localhost", "localhost:0", "localhost:99999", ":7070",
                                     "localhost:x"])
def test_a_bad_tcp_address_is_invalid_argument(clean_env, address):
    with pytest.raises(malv.InvalidArgument) as raised:
        malv.connect(tcp=address)
    assert repr(address) in str(raised.value)


def test_a_bad_tcp_address_from_the_environment_names_the_variable(clean_env):
    clean_env.setenv("MALV_TCP", "nohost")
    with pytest.raises(malv.InvalidArgument) as raised:
        malv.connect()
    assert "MALV_TCP" in str(raised.value)


def test_two_transports_at_once_are_refused(clean_env, host):
    with pytest.raises(malv.InvalidArgument) as raised:
        malv.connect(socket=host.socket, tcp="localhost:7070")
    assert "at most one" in str(raised.value)


def test_a_closed_connection_raises_disconnected(conn):
    conn.close()
    with pytest.raises(malv.Disconnected):
        conn.ping()
    conn.close()  # twice is fine


def test_every_error_code_has_its_own_class_under_malv_error():
    codes = malv._malv.error_codes()
    classes = {cls.code_value: cls for cls in malv.errors.ALL}
    assert set(codes) == set(classes)
    for value, name in codes.items():
        assert classes[value].code == name
        assert issubclass(classes[value], malv.Error)
    assert malv.QuotaExceeded is malv.ResourceExhausted


def test_a_guest_selects_its_policies_within_the_allow_list(conn):
    rows = conn.list_policies()
    assert {row["policy_class"] for row in rows} >= {"gpu_sched"}
    baseline = next(r for r in rows if r["policy_class"] == "gpu_sched" and r["baseline"])
    conn.select_policy(f"gpu_sched={baseline['name']}")
    with pytest.raises(malv.InvalidArgument):
        conn.select_policy("no-equals-sign")
