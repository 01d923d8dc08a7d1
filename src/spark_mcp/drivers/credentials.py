"""A profile's credentials, handed to one driver and to nothing else.

Each credential file is copied ``0600`` into ``<driver>/credentials/`` (``0700``) when the
driver starts and removed when it stops; the driver finds them through its environment
(``{credentials}`` in a profile's ``env`` values) or, for Kerberos, through
``spark.kerberos.keytab`` pointing at the copy. ``secret_env`` values are read from their
files into the driver's environment. Nothing secret is ever in argv.

``secret_values`` gives the redactor what to scrub from replies and logs: each
``secret_env`` value, and each text credential file whole, line by line and (for JSON)
string by string, so a fragment of a key file is caught too. Keytabs are binary and not
text a reply could carry. In a JSON key file, only values under secret-looking keys count.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spark_mcp.config.driver_env import CREDENTIALS_PLACEHOLDER
from spark_mcp.drivers.files import ensure_private_dir, write_private
from spark_mcp.drivers.profiles import Profile
from spark_mcp.errors import DriverStartError

_MIN_SECRET = 8  # shorter strings are too common to scrub from every reply


@dataclass(frozen=True)
class StagedCredentials:
    folder: Path | None = None
    keytab: Path | None = None
    env: dict[str, str] = field(default_factory=dict)


def stage(profile: Profile, workdir: Path) -> StagedCredentials:
    """Copy ``profile``'s credentials into the driver's folder; the environment that points at them."""
    creds = profile.credentials
    if not (creds.files or creds.kerberos_keytab or creds.secret_env) and not _uses_folder(profile):
        return StagedCredentials(env=dict(profile.env))
    folder = ensure_private_dir(workdir / "credentials")
    try:
        for path in creds.files:
            write_private(folder / path.name, path.read_bytes())
        keytab = None
        if creds.kerberos_keytab is not None:
            keytab = folder / f"kerberos-{creds.kerberos_keytab.name}"
            write_private(keytab, creds.kerberos_keytab.read_bytes())
        env = {name: value.replace(CREDENTIALS_PLACEHOLDER, str(folder)) for name, value in profile.env.items()}
        for name, path in creds.secret_env.items():
            env[name] = path.read_text().strip()
    except OSError as exc:
        shutil.rmtree(folder, ignore_errors=True)
        raise DriverStartError(
            f"profile {profile.name}: a credential file could not be read ({exc.filename}: {exc.strerror}); "
            f"fix [profiles.{profile.name}.credentials]"
        ) from None
    return StagedCredentials(folder=folder, keytab=keytab, env=env)


def _uses_folder(profile: Profile) -> bool:
    return any(CREDENTIALS_PLACEHOLDER in value for value in profile.env.values())


def secret_values(profile: Profile) -> list[str]:
    """The strings of ``profile``'s credentials that must never reach a reply or a log."""
    found: list[str] = []
    creds = profile.credentials
    for path in creds.secret_env.values():
        found.append(_read_text(path).strip())
    for path in creds.files:
        text = _read_text(path)
        found.append(text.strip())
        secrets = _json_secrets(text)
        if secrets is None:  # not JSON: every line may be part of a key (PEM, properties, netrc)
            found += [line.strip() for line in text.splitlines()]
        else:
            found += secrets
    return sorted({value for value in found if len(value) >= _MIN_SECRET}, key=len, reverse=True)


def _read_text(path: Path) -> str:
    try:
        return path.read_bytes().decode("utf-8")
    except (OSError, UnicodeDecodeError):
        return ""  # binary or unreadable: nothing a reply could quote as text


_SECRET_KEY = re.compile(r"key|secret|token|password|credential", re.IGNORECASE)


def _json_secrets(text: str) -> list[str] | None:
    """In a JSON key file, the values under secret-looking keys (and their lines); None if not JSON.

    Only those: a service account's e-mail or token URL is not secret, and scrubbing it from
    every reply would garble results for nothing.
    """
    try:
        data: Any = json.loads(text)
    except ValueError:
        return None
    found: list[str] = []

    def walk(value: Any, secret: bool) -> None:
        if isinstance(value, str) and secret:
            found.append(value.strip())
            found.extend(line.strip() for line in value.splitlines())
        elif isinstance(value, dict):
            for key, item in value.items():
                named = bool(_SECRET_KEY.search(str(key))) and not str(key).lower().endswith(("_uri", "_url"))
                walk(item, secret or named)
        elif isinstance(value, list):
            for item in value:
                walk(item, secret)

    walk(data, False)
    return found
