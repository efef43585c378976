"""The kube-apiserver's EncryptionConfiguration (4.4.2): which provider writes Secrets.

The API server encrypts a resource with the **first** provider of the first `resources`
entry that names it (`secrets`, or the wildcards `*.` and `*.*`); later providers only
decrypt. So Secrets are encrypted at rest exactly when that first provider is not
`identity`. No entry naming Secrets means they are stored as plain text.

Parsing is pure and never echoes the file: key material (`secret:`) must not reach a
message, a log or an exception, so errors name the source and a line number only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from exporter.transport.kubernetes import yaml_line

API_VERSION = "apiserver.config.k8s.io/v1"
KIND = "EncryptionConfiguration"
KEYED = ("aescbc", "aesgcm", "secretbox")
PROVIDERS = (*KEYED, "kms", "identity")
SECRETS_NAMES = ("secrets", "secrets.", "*.", "*.*")
"""How an entry of `resources[].resources` can name core/v1 Secrets."""
MAX_BYTES = 1024 * 1024


class EncryptionConfigInvalid(ValueError):
    """The text is not a usable EncryptionConfiguration (secret-free message)."""


@dataclass(frozen=True, slots=True)
class SecretsEncryption:
    """What the configuration does with Secrets."""

    provider: str
    """The provider new Secrets are written with (`identity` = plain text)."""
    detail: str
    """For messages: `aescbc`, `kms v2 (vault)`, `identity (no entry names secrets)`."""

    @property
    def encrypted(self) -> bool:
        return self.provider != "identity"


def _load(text: str, source: str) -> Mapping[str, Any]:
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise EncryptionConfigInvalid(f"{source} is not valid YAML{yaml_line(exc)}") from None
    if not isinstance(document, dict):
        raise EncryptionConfigInvalid(f"{source} is not an {KIND} (not a mapping)")
    if document.get("kind") != KIND or document.get("apiVersion") != API_VERSION:
        raise EncryptionConfigInvalid(
            f"{source} is not an {KIND} (apiVersion {str(document.get('apiVersion'))[:40]!r}"
            f", kind {str(document.get('kind'))[:40]!r}; want {API_VERSION} {KIND})")
    return document


def _provider(entry: Any, source: str, index: int) -> tuple[str, str]:
    """(name, detail) of one provider entry, checked for what the API server needs."""
    where = f"{source}: resources[{index}].providers[0]"
    if not isinstance(entry, dict) or len(entry) != 1:
        raise EncryptionConfigInvalid(f"{where} must name exactly one provider")
    name, options = next(iter(entry.items()))
    if name not in PROVIDERS:
        raise EncryptionConfigInvalid(f"{where}: unknown provider {str(name)[:32]!r} (one "
                                      f"of {', '.join(PROVIDERS)})")
    options = options or {}
    if not isinstance(options, dict):
        raise EncryptionConfigInvalid(f"{where}: {name} options must be a mapping")
    if name in KEYED:
        keys = options.get("keys")
        if not isinstance(keys, list) or not keys or not all(
                isinstance(k, dict) and k.get("name") and k.get("secret") for k in keys):
            raise EncryptionConfigInvalid(f"{where}: {name} needs keys, each with a name "
                                          "and a secret")
        return name, name
    if name == "kms":
        version = str(options.get("apiVersion") or "v1")
        if version not in ("v1", "v2") or not options.get("name") or not options.get(
                "endpoint"):
            raise EncryptionConfigInvalid(f"{where}: kms needs apiVersion v1 or v2, a name "
                                          "and an endpoint")
        return name, f"kms {version} ({str(options['name'])[:40]})"
    return name, name


def secrets_encryption(text: str, source: str) -> SecretsEncryption:
    """How Secrets are written under the EncryptionConfiguration `text` read from `source`.

    Raises `EncryptionConfigInvalid` (naming `source`) when it is malformed.
    """
    document = _load(text, source)
    entries = document.get("resources")
    if not isinstance(entries, list) or not entries:
        raise EncryptionConfigInvalid(f"{source}: `resources` must be a non-empty list")
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise EncryptionConfigInvalid(f"{source}: resources[{index}] is not a mapping")
        names = entry.get("resources")
        providers = entry.get("providers")
        if not isinstance(names, list) or not names:
            raise EncryptionConfigInvalid(f"{source}: resources[{index}].resources must be "
                                          "a non-empty list")
        if not isinstance(providers, list) or not providers:
            raise EncryptionConfigInvalid(f"{source}: resources[{index}].providers must be "
                                          "a non-empty list")
        if any(str(n) in SECRETS_NAMES for n in names):
            name, detail = _provider(providers[0], source, index)
            return SecretsEncryption(name, detail)
    return SecretsEncryption("identity", "identity (no entry names secrets)")


def provider_config_path(pod: Mapping[str, Any]) -> str | None:
    """The `--encryption-provider-config` path of a kube-apiserver pod (None: unset).

    `--encryption-provider-config-automatic-reload` is another flag and does not count.
    """
    for container in (pod.get("spec") or {}).get("containers") or []:
        words = [str(w) for w in (container.get("command") or [])]
        words += [str(w) for w in (container.get("args") or [])]
        for index, word in enumerate(words):
            if word.startswith("--encryption-provider-config="):
                return word.split("=", 1)[1] or None
            if word == "--encryption-provider-config" and index + 1 < len(words):
                return words[index + 1]
    return None
