"""``[[suppress]]``: findings a site has accepted, not alerted, still written and counted.

    [[suppress]]
    rules = ["cleartext_association", "no_user_identity"]   # or rule = "..."; none: every rule
    hosts = ["10.20.0.0/16", "10.30.1.5"]                   # either endpoint; none: any host
    ae_titles = ["MODALITY_CT1"]                            # either AE title; none: any
    expires = 2027-06-30                                    # optional: after it, not applied
    reason = "legacy modality, isolated VLAN, risk accepted in ticket 4711"   # mandatory

An entry matches a finding when every condition it names holds. A matched finding keeps its
``finding`` row with the entry's name in the ``suppressed`` column and raises no alert; the run
summary counts matches per entry. An expired entry is reported when the run starts.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from typing import Any

from analyzer.errors import ConfigError

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class Suppression:
    name: str
    """``suppress[N]``, N counting from 1 in the file's order (the column and summary say it)."""
    reason: str
    rules: frozenset[str] = frozenset()
    hosts: tuple[Network, ...] = ()
    ae_titles: frozenset[str] = frozenset()
    expires: dt.date | None = None

    def expired(self, today: dt.date) -> bool:
        return self.expires is not None and today > self.expires

    def matches(
        self,
        rule: str,
        hosts: tuple[str | None, str | None],
        ae_titles: tuple[str | None, str | None],
    ) -> bool:
        if self.rules and rule not in self.rules:
            return False
        if self.hosts and not any(_inside(h, self.hosts) for h in hosts):
            return False
        return not self.ae_titles or any(a in self.ae_titles for a in ae_titles if a)


def _inside(host: str | None, networks: tuple[Network, ...]) -> bool:
    if not host:
        return False
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    return any(ip in n for n in networks)


def parse(entries: Any, where: str) -> tuple[Suppression, ...]:
    """The ``[[suppress]]`` array of tables; a mistake is a one-line ``ConfigError``."""
    if not isinstance(entries, list):
        raise ConfigError(f"{where}: suppress must be an array of tables ([[suppress]])")
    out = []
    for i, raw in enumerate(entries, 1):
        name = f"suppress[{i}]"
        if not isinstance(raw, dict):
            raise ConfigError(f"{where}: {name} must be a table")
        entry = dict(raw)
        reason = entry.pop("reason", None)
        if not isinstance(reason, str) or not reason.strip():
            raise ConfigError(f"{where}: {name} needs a reason (why the finding is accepted)")
        rules = entry.pop("rules", [])
        if "rule" in entry:
            rules = [*rules, entry.pop("rule")]
        hosts, titles = entry.pop("hosts", []), entry.pop("ae_titles", [])
        expires = entry.pop("expires", None)
        if entry:
            raise ConfigError(f"{where}: unknown setting '{name}.{next(iter(entry))}'")
        for key, value in (("rules", rules), ("hosts", hosts), ("ae_titles", titles)):
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ConfigError(f"{where}: {name}.{key} must be a list of strings")
        if expires is not None and not isinstance(expires, dt.date):
            raise ConfigError(f"{where}: {name}.expires must be a date (2027-06-30)")
        try:
            networks = tuple(ipaddress.ip_network(h, strict=False) for h in hosts)
        except ValueError as exc:
            raise ConfigError(f"{where}: {name}.hosts: {exc}") from None
        out.append(
            Suppression(
                name=name,
                reason=reason.strip(),
                rules=frozenset(rules),
                hosts=networks,
                ae_titles=frozenset(t.strip() for t in titles),
                expires=expires if not isinstance(expires, dt.datetime) else expires.date(),
            )
        )
    return tuple(out)
