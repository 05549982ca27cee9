"""Per-role IP allow-lists (远程访问针对IP的授权或限制): the networks a role may work from.

Seed 000 asks that remote access be authorised or restricted by IP, with key modules reachable
only from the office network. Each role holds a list of networks (CIDR, IPv4 or IPv6); an empty
list means "from anywhere", so existing sites keep working until an administrator restricts a role.

The rule for a user with several roles: the user is allowed from an address when **any** of their
roles allows it (an empty list allows everywhere). Restricting a powerful role therefore only
protects users who hold no unrestricted role as well: give an administrator the admin role alone,
or restrict every role they hold.

Addresses are plain strings here (crm knows nothing of HTTP): the web layer decides which address
is the client's (socket peer, or X-Forwarded-For from a trusted proxy).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Sequence
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

from crm.db import Transaction
from crm.errors import ValidationError

Network = IPv4Network | IPv6Network
Address = IPv4Address | IPv6Address

#: An office, its VPN and a branch or two; a list longer than this is a data-entry mistake and
#: would make every request's check slower for nothing.
MAX_NETWORKS_PER_ROLE = 64
#: The longest IPv6 CIDR ("ffff:...:ffff/128") is 43 characters.
MAX_ENTRY_CHARS = 64
_SEPARATORS = re.compile(r"[\s,;]+")


def parse_network(text: str, *, field: str = "networks") -> Network:
    """One network: CIDR ("10.0.0.0/8", "fd00::/8") or a single address (a /32 or /128).

    Host bits are cleared ("192.168.1.7/24" is the network 192.168.1.0/24): people type the
    address of their own machine with the office's prefix length and mean the office."""
    entry = text.strip() if isinstance(text, str) else ""
    if not entry or len(entry) > MAX_ENTRY_CHARS:
        raise ValidationError(field, f"{str(text)[:MAX_ENTRY_CHARS]!r} is not an IP network", code="network.invalid")
    try:
        network = ipaddress.ip_network(entry, strict=False)
    except ValueError:
        raise ValidationError(field, f"{entry!r} is not an IP address or CIDR network (e.g. 10.0.0.0/8, fd00::/8)",
                              code="network.invalid") from None  # fmt: skip
    if isinstance(network, IPv6Network) and network.prefixlen >= 96 and network.network_address.ipv4_mapped:
        # ::ffff:a.b.c.d/n is an IPv4 network written as IPv6; addresses are unmapped before
        # matching (see parse_address), so store it as what it means.
        mapped = network.network_address.ipv4_mapped
        return IPv4Network(f"{mapped}/{network.prefixlen - 96}", strict=False)
    return network


def parse_networks(entries: Iterable[str] | str, *, field: str = "networks") -> tuple[Network, ...]:
    """A list of networks, given as strings or as one text with one entry per line (commas and
    spaces separate too). Duplicates collapse; the order given is kept."""
    if isinstance(entries, str):
        entries = [e for e in _SEPARATORS.split(entries) if e]
    seen: dict[Network, None] = {}
    for entry in entries:
        seen[parse_network(entry, field=field)] = None
    if len(seen) > MAX_NETWORKS_PER_ROLE:
        raise ValidationError(field, f"at most {MAX_NETWORKS_PER_ROLE} networks per role", code="network.too_many")
    return tuple(seen)


def parse_address(text: str) -> Address | None:
    """The client's address, or None when it is not an IP address (a Unix socket, a test
    client's name). IPv4-mapped IPv6 addresses (::ffff:10.1.2.3, what a dual-stack socket
    reports for an IPv4 peer) become the IPv4 address they carry."""
    try:
        address = ipaddress.ip_address(text.strip().split("%", 1)[0])  # drop an IPv6 zone id
    except (ValueError, AttributeError):
        return None
    if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def role_allows(networks: Sequence[Network], address: Address | None) -> bool:
    """An empty list allows everywhere; otherwise the address must lie in one of the networks.
    An address that is not an IP never matches a non-empty list."""
    if not networks:
        return True
    if address is None:
        return False
    return any(address.version == n.version and address in n for n in networks)


def user_allows(role_networks: Sequence[Sequence[Network]], address: str) -> bool:
    """The module's rule: any role of the user allows the address. A user without roles has
    no permission to protect and is not restricted."""
    if not role_networks:
        return True
    parsed = parse_address(address)
    return any(role_allows(networks, parsed) for networks in role_networks)


async def networks_of_user(tx: Transaction, user_id: int) -> dict[int, tuple[Network, ...]]:
    """Role id -> that role's networks, for every role the user holds."""
    rows = await tx.fetch_all(
        "SELECT ur.role_id, rn.network FROM user_roles ur LEFT JOIN role_networks rn ON rn.role_id = ur.role_id"
        " WHERE ur.user_id = ? ORDER BY ur.role_id, rn.position",
        (user_id,),
    )
    out: dict[int, list[Network]] = {}
    for row in rows:
        networks = out.setdefault(row["role_id"], [])
        if row["network"] is not None:
            networks.append(ipaddress.ip_network(row["network"]))
    return {role_id: tuple(networks) for role_id, networks in out.items()}


async def networks_of_roles(tx: Transaction) -> dict[int, tuple[str, ...]]:
    """Role id -> its networks as stored (normalised CIDR text), for the roles screen."""
    rows = await tx.fetch_all("SELECT role_id, network FROM role_networks ORDER BY role_id, position")
    out: dict[int, list[str]] = {}
    for row in rows:
        out.setdefault(row["role_id"], []).append(row["network"])
    return {role_id: tuple(networks) for role_id, networks in out.items()}


async def store_role_networks(tx: Transaction, role_id: int, networks: Sequence[Network]) -> None:
    await tx.execute("DELETE FROM role_networks WHERE role_id = ?", (role_id,))
    await tx.execute_many("INSERT INTO role_networks (role_id, position, network) VALUES (?, ?, ?)",
                          [(role_id, i, str(n)) for i, n in enumerate(networks)])  # fmt: skip
