"""`--web.config.file`: every malformed file is refused at load with `FILE: option.path:
reason`, and `serve` exits 2 with those messages, never a traceback or a later 500."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import bcrypt
import pytest
import trustme

from exporter.config import ConfigError
from exporter.webconfig import bcrypt_hash_problem, load_web_config
from tests.core.conftest import EXE

GOOD_HASH = bcrypt.hashpw(b"pw", bcrypt.gensalt(rounds=4)).decode()
SALT, CHECKSUM = GOOD_HASH[7:29], GOOD_HASH[29:]


def errors_of(tmp_path: Path, text: str | bytes) -> list[str]:
    path = tmp_path / "web.yml"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_web_config(path)
    for error in info.value.errors:
        assert error.startswith(f"{path}: "), error
    return info.value.errors


@pytest.fixture
def tls_pair(tmp_path: Path) -> tuple[Path, Path]:
    ca = trustme.CA()
    cert = ca.issue_cert("localhost")
    cert.private_key_and_cert_chain_pem.write_to_path(str(tmp_path / "server.pem"))
    cert.private_key_pem.write_to_path(str(tmp_path / "server.key"))
    return tmp_path / "server.pem", tmp_path / "server.key"


def test_good_file_loads_and_keeps_its_tls_context(tmp_path: Path,
                                                   tls_pair: tuple[Path, Path]) -> None:
    path = tmp_path / "web.yml"
    path.write_text(f"tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\n"
                    f"basic_auth_users:\n  alice: '{GOOD_HASH}'\n  bob: '{GOOD_HASH}'\n")
    web = load_web_config(path)
    assert set(web.basic_auth_users) == {"alice", "bob"}
    assert web.ssl_context is not None


@pytest.mark.parametrize(("hashed", "reason"), [
    ("plaintext", "must be a bcrypt hash"),
    ("$2b$10$" + "!" * 53, "must be a bcrypt hash"),            # not bcrypt base64
    ("$2b$10$" + "a" * 52, "must be a bcrypt hash"),            # one character short
    ("$2x$10$" + SALT + CHECKSUM, "must be a bcrypt hash"),     # unknown variant
    ("$2b$03$" + SALT + CHECKSUM, "cost 3 is outside 4..31"),
    ("$2b$32$" + SALT + CHECKSUM, "cost 32 is outside 4..31"),
    ("$2b$10$" + "a" * 22 + CHECKSUM, "not canonical"),         # salt padding bits set
    ("$2b$10$" + SALT + "b" * 31, "not canonical"),             # checksum padding bits set
], ids=["plain", "alphabet", "short", "variant", "cost-low", "cost-high", "salt-bits",
        "checksum-bits"])
def test_malformed_bcrypt_hash_is_refused_at_load(tmp_path: Path, hashed: str,
                                                   reason: str) -> None:
    # Before: anything starting with $2b$ was accepted, then every login of that user
    # answered 500 (bcrypt's "Invalid salt").
    assert bcrypt_hash_problem(hashed) is not None
    errors = errors_of(tmp_path, f"basic_auth_users:\n  alice: '{hashed}'\n")
    assert len(errors) == 1
    assert "basic_auth_users: " in errors[0] and "'alice'" in errors[0]
    assert reason in errors[0]
    assert hashed not in errors[0]


def test_hashes_of_every_variant_and_cost_bound_are_accepted() -> None:
    for variant in ("2a", "2b", "2y"):
        assert bcrypt_hash_problem(f"${variant}$04${SALT}{CHECKSUM}") is None
    assert bcrypt_hash_problem(f"$2b$31${SALT}{CHECKSUM}") is None


@pytest.mark.parametrize(("text", "expected"), [
    ("basic_auth_users:\n  'a:b': '" + GOOD_HASH + "'\n", "cannot contain ':'"),
    ("basic_auth_users:\n  '': '" + GOOD_HASH + "'\n", "must not be empty"),
    ("basic_auth_users:\n  alice: 12\n", "basic_auth_users.alice: input should be"),
    ("basic_auth_users:\n  12: '" + GOOD_HASH + "'\n", "basic_auth_users.12: input should be"),
    ("basic_auth_users: [alice]\n", "basic_auth_users: input should be a valid dictionary"),
    ("basic_auth_users:\n  alice: x\n  alice: y\n", "duplicate key 'alice'"),
    ("basic_auth_users:\n  ? [a, b]\n  : x\n", "a key must be a plain string"),
    ("a: &x [1]\nb: *x\n", "aliases"),
    ("- 1\n- 2\n", "top level must be a mapping"),
    ("tls_server_config: 5\n", "tls_server_config: input should be"),
    ("tls_server_config:\n  cert_file: [a]\n  key_file: k\n", "tls_server_config.cert_file:"),
    ("tls_server_config:\n  cert_file: \"a\\0b\"\n  key_file: k\n",
     "tls_server_config.cert_file: must not contain a NUL"),
    ("tls_server_config:\n  cert_file: " + "a" * 5000 + "\n  key_file: k\n",
     "tls_server_config.cert_file: path is longer than 4096"),
    ("tls_server_config:\n  cert_file: ''\n  key_file: k\n", "must name a file"),
    ("tls_server_config:\n  key_file: k\n", "tls_server_config.cert_file: required"),
    ("tls_server_config:\n  cert_file: a\n  key_file: b\n  min_version: TLS9\n",
     "tls_server_config.min_version: input should be"),
    ("unknown: 1\n", "unknown: unknown key"),
    ("a: [\n", "YAML syntax error"),
    ("[" * 5000 + "]" * 5000 + "\n", "nested too deeply"),
    ("{a: " * 5000 + "1" + "}" * 5000 + "\n", "nested too deeply"),
], ids=["colon-user", "empty-user", "int-hash", "int-user", "users-list", "duplicate-user",
        "complex-key", "alias", "top-list", "tls-int", "path-list", "path-nul", "path-long",
        "path-empty", "cert-missing", "bad-version", "unknown-key", "yaml-syntax",
        "deep-list", "deep-map"])
def test_malformed_web_config_is_a_config_error(tmp_path: Path, text: str,
                                                 expected: str) -> None:
    errors = errors_of(tmp_path, text)
    assert any(expected in e.lower() or expected in e for e in errors), errors


def test_file_bounds(tmp_path: Path) -> None:
    assert "not UTF-8" in errors_of(tmp_path, b"basic_auth_users:\n  \xff: x\n")[0]
    assert "larger than" in errors_of(tmp_path, b"#" * (2 << 20))[0]
    with pytest.raises(ConfigError, match="no such file"):
        load_web_config(tmp_path / "absent.yml")
    with pytest.raises(ConfigError, match="not a regular file"):
        load_web_config(Path("/dev/zero"))
    fifo = tmp_path / "fifo.yml"
    os.mkfifo(fifo)
    with pytest.raises(ConfigError, match="not a regular file"):  # and does not block
        load_web_config(fifo)


@pytest.mark.parametrize(("cert", "key", "expected"), [
    ("missing.pem", "server.key", "tls_server_config.cert_file: cannot load"),
    ("server.pem", "missing.key", "tls_server_config.key_file: cannot load"),
    ("/dev/zero", "server.key", "tls_server_config.cert_file: cannot load /dev/zero: is not a"),
    ("certs", "server.key", "tls_server_config.cert_file: cannot load"),
    ("server.key", "server.key", "tls_server_config.cert_file/key_file: cannot load"),
    ("server.pem", "garbage.key", "tls_server_config.cert_file/key_file: cannot load"),
], ids=["cert-missing", "key-missing", "cert-dev-zero", "cert-directory", "cert-is-key",
        "key-garbage"])
def test_unusable_tls_files(tmp_path: Path, tls_pair: tuple[Path, Path], cert: str, key: str,
                            expected: str) -> None:
    (tmp_path / "garbage.key").write_text("not a key\n")
    (tmp_path / "certs").mkdir()
    errors = errors_of(tmp_path, f"tls_server_config:\n  cert_file: {cert}\n  key_file: {key}\n")
    assert expected in errors[0], errors


def test_unreadable_cert_file(tmp_path: Path, tls_pair: tuple[Path, Path]) -> None:
    if os.geteuid() == 0:
        # root reads any file whatever its mode: exercise the same path with a directory
        # entry that cannot be opened for reading instead (a dangling symlink).
        (tmp_path / "unreadable.pem").symlink_to(tmp_path / "nowhere")
    else:
        (tmp_path / "unreadable.pem").write_text("x")
        (tmp_path / "unreadable.pem").chmod(0)
    errors = errors_of(tmp_path, "tls_server_config:\n  cert_file: unreadable.pem\n"
                                 "  key_file: server.key\n")
    assert "tls_server_config.cert_file: cannot load" in errors[0]


def test_max_version_below_min_version(tmp_path: Path, tls_pair: tuple[Path, Path]) -> None:
    errors = errors_of(tmp_path, "tls_server_config:\n  cert_file: server.pem\n"
                                 "  key_file: server.key\n  min_version: TLS13\n"
                                 "  max_version: TLS12\n")
    assert "tls_server_config.max_version: is lower than min_version" in errors[0]


@pytest.mark.parametrize("text", [
    "basic_auth_users:\n  alice: '$2b$10$" + "!" * 53 + "'\n",
    "tls_server_config:\n  cert_file: \"a\\0b\"\n  key_file: k\n",
    "[" * 5000 + "]" * 5000 + "\n",
    "tls_server_config:\n  cert_file: /dev/zero\n  key_file: /dev/zero\n",
], ids=["bad-hash", "nul-path", "deep", "dev-zero"])
def test_serve_exits_2_with_the_message_and_no_traceback(tmp_path: Path, text: str) -> None:
    web = tmp_path / "web.yml"
    web.write_text(text, encoding="utf-8")
    result = subprocess.run([str(EXE), "serve", "--web.config.file", str(web),
                             "--web.listen-address", "127.0.0.1:1"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert f"{web}: " in result.stderr
