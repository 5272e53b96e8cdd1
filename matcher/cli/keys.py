"""``matcher keys``: create key material in a keyring folder.

``keys init DIR`` creates the linkage secret (next epoch) and, where missing, the
development CA, the service's TLS certificate, the audit signing key and ``service.json``
(the epochs and schema the service accepts). ``keys issue DIR --force CODE --role ROLE``
issues a client certificate (and, for a submitter, a registered batch-signing key).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from matcher.keys import create_linkage_secret


def register(sub: argparse._SubParsersAction[Any]) -> None:
    from matcher.pki import ROLES

    keys = sub.add_parser("keys", help="create and manage key material")
    ksub = keys.add_subparsers(dest="keys_command", required=True, metavar="ACTION")
    init = ksub.add_parser(
        "init",
        help="create a keyring: linkage secret (next epoch), dev CA, server certificate, "
        "audit signing key",
    )
    init.add_argument("dir", type=Path, help="keyring folder (created, mode 0700)")
    init.add_argument(
        "--host",
        action="append",
        default=None,
        help="host name or IP address for the server certificate (repeatable; "
        "default localhost, 127.0.0.1, ::1)",
    )
    init.set_defaults(handler=_init)
    issue = ksub.add_parser("issue", help="issue a client certificate for one force and role")
    issue.add_argument("dir", type=Path, help="keyring folder made by 'keys init'")
    issue.add_argument("--force", required=True, help="force code, e.g. F01")
    issue.add_argument("--role", required=True, choices=ROLES, help="the one role it carries")
    issue.add_argument("--name", default="", help="a name for the certificate holder")
    issue.set_defaults(handler=_issue)


def _init(args: argparse.Namespace) -> int:
    from matcher.audit import AUDIT_PRIVATE_KEY_FILE, create_audit_key
    from matcher.pki import create_ca, issue_server_cert
    from matcher.schema import default_schema
    from matcher.service.config import SERVICE_CONFIG_FILE, load_accepted, write_accepted

    keys_dir: Path = args.dir
    secret = create_linkage_secret(keys_dir)
    print(f"created linkage secret epoch {secret.epoch} in {keys_dir}")
    if not (keys_dir / "ca.key").exists():
        create_ca(keys_dir)
        hosts = args.host or ["localhost", "127.0.0.1", "::1"]
        issue_server_cert(keys_dir, hosts)
        print(f"created development CA and server certificate ({', '.join(hosts)})")
    if not (keys_dir / AUDIT_PRIVATE_KEY_FILE).exists():
        create_audit_key(keys_dir)
        print("created audit signing key")
    epochs, schemas = [secret.epoch], [default_schema()]
    if (keys_dir / SERVICE_CONFIG_FILE).exists():
        old_epochs, old_schemas = load_accepted(keys_dir)
        epochs = sorted({*old_epochs, secret.epoch})
        schemas = list(old_schemas)
    path = write_accepted(keys_dir, epochs, schemas)
    print(f"the service accepts epochs {epochs} ({path.name})")
    return 0


def _issue(args: argparse.Namespace) -> int:
    from matcher.pki import issue_client_cert

    pem = issue_client_cert(args.dir, args.force, args.role, name=args.name)
    print(f"issued {args.role} certificate for force {args.force}: {pem}")
    if args.role == "submitter":
        print(f"batch-signing key registered: {args.dir / 'force-keys' / (args.force + '.pub')}")
    return 0
