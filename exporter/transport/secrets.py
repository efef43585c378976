"""One secret resolution policy for every transport.

- A secret is configured only by reference (`SecretRef`: `${ENV}`, `{env: NAME}`,
  `{file: PATH}`), checked at load time for enabled checks.
- It is resolved again each time a client is built or a request is sent, so a rotated
  secret (a new file content, a re-rendered Secret volume) is used from the next run on.
- When it cannot be resolved the run ends as `error/config`, with a message naming the
  option and the reference (`bearer_token: environment variable API_TOKEN is not set`),
  never a value. The value is handed over as `SecretStr` and unwrapped only where it is
  sent.
"""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import SecretStr

from exporter.model import ProbeError, Reason, SecretRef

__all__ = ["resolve_optional", "resolve_secret"]


def resolve_secret(ref: SecretRef, option: str,
                   environ: Mapping[str, str] | None = None) -> SecretStr:
    """Read the secret `ref` configured at option path `option`; `ProbeError(config)` when
    it is not available."""
    try:
        return ref.resolve(environ)
    except LookupError as exc:  # names the reference, never a value
        raise ProbeError(Reason.CONFIG, f"{option}: {exc} (set it, or change {option})") \
            from None


def resolve_optional(ref: SecretRef | None, option: str,
                     environ: Mapping[str, str] | None = None) -> SecretStr | None:
    """`resolve_secret` for an optional reference (None stays None)."""
    return None if ref is None else resolve_secret(ref, option, environ)
