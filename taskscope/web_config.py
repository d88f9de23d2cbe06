"""Protecting the HTTP endpoints the way Prometheus exporters do: a
`--web-config-file` in the exporter-toolkit format that node_exporter reads.

    tls_server_config:
      cert_file: /etc/taskscope/tls.crt
      key_file: /etc/taskscope/tls.key
      client_ca_file: /etc/taskscope/ca.crt        # optional
      client_auth_type: RequireAndVerifyClientCert  # or NoClientCert (default),
                                                    # VerifyClientCertIfGiven
    basic_auth_users:
      prometheus: $2b$12$...                        # bcrypt hashes only

Without the file, endpoints are served in the clear and without
authentication, as node_exporter does by default.
"""

import base64
import binascii
import hashlib
import hmac
import os
import ssl
import threading
from dataclasses import dataclass, field

import yaml

from taskscope.records.errors import ConfigError

__all__ = ["WebConfig", "load_web_config"]

CLIENT_AUTH = {
    "NoClientCert": ssl.CERT_NONE,
    "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
    "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
}


@dataclass
class WebConfig:
    tls: ssl.SSLContext = None
    users: dict = field(default_factory=dict)  # user -> bcrypt hash (bytes)
    # Verified credentials, by a keyed digest of the header: bcrypt costs
    # ~100 ms by design, which every scrape must not pay again.
    _verified: set = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _key: bytes = field(default_factory=lambda: os.urandom(32))

    def authorized(self, header):
        """Whether an Authorization header value passes (always, without users)."""
        if not self.users:
            return True
        if not header or not header.startswith("Basic "):
            return False
        digest = hmac.new(self._key, header.encode("utf-8", "replace"), hashlib.sha256).digest()
        with self._lock:
            if digest in self._verified:
                return True
        try:
            user, _, password = base64.b64decode(header[6:], validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        hashed = self.users.get(user)
        if hashed is None:
            return False
        import bcrypt  # only where basic auth is configured
        try:
            ok = bcrypt.checkpw(password.encode(), hashed)
        except ValueError:
            return False
        if ok:
            with self._lock:
                if len(self._verified) > 1024:
                    self._verified.clear()
                self._verified.add(digest)
        return ok


def _tls_context(conf, origin):
    if not isinstance(conf, dict):
        raise ConfigError(f"{origin}: tls_server_config must be a mapping")
    unknown = set(conf) - {"cert_file", "key_file", "client_ca_file", "client_auth_type",
                           "min_version"}
    if unknown:
        raise ConfigError(f"{origin}: tls_server_config: unknown key(s) {', '.join(sorted(unknown))}")
    cert, key = conf.get("cert_file"), conf.get("key_file")
    if not cert or not key:
        raise ConfigError(f"{origin}: tls_server_config needs cert_file and key_file")
    auth = conf.get("client_auth_type", "NoClientCert")
    if auth not in CLIENT_AUTH:
        raise ConfigError(f"{origin}: client_auth_type: expected one of {', '.join(CLIENT_AUTH)}, "
                          f"got {auth!r}")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"{origin}: cannot load cert_file {cert} / key_file {key}: {exc}") from exc
    context.verify_mode = CLIENT_AUTH[auth]
    if auth != "NoClientCert":
        ca = conf.get("client_ca_file")
        if not ca:
            raise ConfigError(f"{origin}: client_auth_type {auth} needs client_ca_file")
        try:
            context.load_verify_locations(ca)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"{origin}: cannot load client_ca_file {ca}: {exc}") from exc
    return context


def load_web_config(path):
    """WebConfig from an exporter-toolkit web config file; ConfigError naming
    the file and the key on anything wrong."""
    try:
        with open(path) as f:
            data = yaml.safe_load(f) or {}
    except OSError as exc:
        raise ConfigError(f"cannot read web config {path}: {exc.strerror or exc}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping with tls_server_config and/or "
                          "basic_auth_users")
    unknown = set(data) - {"tls_server_config", "basic_auth_users", "http_server_config"}
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) {', '.join(sorted(unknown))}")
    config = WebConfig()
    if data.get("tls_server_config"):
        config.tls = _tls_context(data["tls_server_config"], path)
    users = data.get("basic_auth_users") or {}
    if not isinstance(users, dict):
        raise ConfigError(f"{path}: basic_auth_users must map user names to bcrypt hashes")
    for user, hashed in users.items():
        if not isinstance(hashed, str) or not hashed.startswith(("$2a$", "$2b$", "$2y$")):
            raise ConfigError(f"{path}: basic_auth_users: {user}: expected a bcrypt hash "
                              "(htpasswd -nBC 10 USER), not a plain password")
        config.users[str(user)] = hashed.replace("$2y$", "$2b$", 1).encode()
    if users:
        try:
            import bcrypt  # noqa: F401
        except ImportError as exc:
            raise ConfigError("basic_auth_users needs the bcrypt package") from exc
    return config
