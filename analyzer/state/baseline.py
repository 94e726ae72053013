"""What the inventory has learned, kept across runs: the baseline ``inventory_change`` and the
"new host" escalations compare with.

Learned from the cross-flow stage's summary records (after the rules have seen each one, so a
rule sees what was known *before* it):

    hosts               address -> first/last seen, roles (scu, scp), AE titles used there
    ae_titles           AE title -> the address it was first seen at, first/last seen
    versions            (address, AE title) -> implementation version name, last seen
    move_destinations   AE title -> last seen
    peers               (client, server, server port) -> last seen

Every map is bounded; when one is full the least recently seen tenth is forgotten. Times are
capture times. ``store.py`` reads and writes it as a versioned JSON file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TypeVar

from analyzer.findings.summary import AssocSummary, DimseFact, FactKind

MAX_HOSTS = 20_000
MAX_ENTRIES = 100_000
MAX_TITLES_PER_HOST = 32

K = TypeVar("K")
V = TypeVar("V")


@dataclass(slots=True)
class Host:
    first_seen: float
    last_seen: float
    roles: set[str] = field(default_factory=set)
    ae_titles: set[str] = field(default_factory=set)


@dataclass(slots=True)
class TitleHome:
    host: str
    first_seen: float
    last_seen: float


@dataclass(slots=True)
class Version:
    version: str
    last_seen: float


def _last_seen(value: object) -> float:
    if isinstance(value, Host | TitleHome | Version):
        return value.last_seen
    assert isinstance(value, float)
    return value


def make_room(table: dict[K, V], limit: int) -> None:
    """Forget the least recently seen tenth of ``table`` once it holds ``limit`` entries."""
    if len(table) < limit:
        return
    keep = max(limit - max(limit // 10, 1), 0)
    ranked = sorted(table.items(), key=lambda kv: _last_seen(kv[1]), reverse=True)
    table.clear()
    table.update(ranked[:keep])


class Baseline:
    """The learned inventory (empty, or as a state file holds it)."""

    def __init__(self, max_hosts: int = MAX_HOSTS, max_entries: int = MAX_ENTRIES) -> None:
        self.max_hosts = max_hosts
        self.max_entries = max_entries
        self.hosts: dict[str, Host] = {}
        self.ae_titles: dict[str, TitleHome] = {}
        self.versions: dict[tuple[str, str], Version] = {}
        self.move_destinations: dict[str, float] = {}
        self.peers: dict[tuple[str, str, int], float] = {}
        self.runs = 0
        """Runs (and live sessions) that have added to this baseline before."""
        self.learned_before = False
        """Loaded from a state with at least one earlier run: "new" means new to that state
        (without one, every host of a single capture would be new)."""

    # -- questions the rules ask -------------------------------------------------------------

    def host_of(self, title: str) -> str | None:
        """The address ``title`` was first seen at."""
        home = self.ae_titles.get(title)
        return home.host if home is not None else None

    def version_of(self, host: str, title: str) -> str | None:
        v = self.versions.get((host, title))
        return v.version if v is not None else None

    def knows_host(self, host: str) -> bool:
        return host in self.hosts

    def new_since(self, host: str, ts: float) -> bool:
        """Was ``host`` unknown before capture time ``ts`` (first seen then or later)?"""
        h = self.hosts.get(host)
        return h is None or h.first_seen >= ts

    def knows_destination(self, title: str) -> bool:
        return title in self.move_destinations

    def knows_peer(self, client: str, server: str, port: int) -> bool:
        return (client, server, port) in self.peers

    # -- learning ------------------------------------------------------------------------------

    def _host(self, addr: str, ts: float, role: str, title: str | None) -> None:
        h = self.hosts.get(addr)
        if h is None:
            make_room(self.hosts, self.max_hosts)
            h = self.hosts[addr] = Host(ts, ts)
        h.first_seen = min(h.first_seen, ts)
        h.last_seen = max(h.last_seen, ts)
        h.roles.add(role)
        if title and len(h.ae_titles) < MAX_TITLES_PER_HOST:
            h.ae_titles.add(title)

    def _title(self, title: str, addr: str, ts: float) -> None:
        home = self.ae_titles.get(title)
        if home is None:
            make_room(self.ae_titles, self.max_entries)
            self.ae_titles[title] = TitleHome(addr, ts, ts)
        else:
            home.last_seen = max(home.last_seen, ts)

    def _version(self, addr: str, title: str, version: str, ts: float) -> None:
        key = (addr, title)
        if key not in self.versions:
            make_room(self.versions, self.max_entries)
        self.versions[key] = Version(version, ts)

    def association(self, a: AssocSummary) -> None:
        if not a.has_request:
            return
        answered = a.accepted or a.reject_result is not None
        sides = [(a.orig_h, "scu", a.calling_ae, a.request_version)]
        if answered:
            sides.append((a.resp_h, "scp", a.called_ae if a.accepted else None, a.accept_version))
        for addr, role, title, version in sides:
            self._host(addr, a.ts, role, title)
            if title:
                self._title(title, addr, a.ts)
                if version:
                    self._version(addr, title, version, a.ts)
        if a.accepted:
            key = (a.orig_h, a.resp_h, int(a.resp_p))
            if key not in self.peers:
                make_room(self.peers, self.max_entries)
            self.peers[key] = max(self.peers.get(key, a.ts), a.ts)

    def fact(self, f: DimseFact) -> None:
        if f.kind == FactKind.MOVE_REQUEST and f.ae:
            if f.ae not in self.move_destinations:
                make_room(self.move_destinations, self.max_entries)
            seen = self.move_destinations.get(f.ae, f.message_ts)
            self.move_destinations[f.ae] = max(seen, f.message_ts)

    # -- merging (another run wrote the state meanwhile) ---------------------------------------

    def merge(self, other: Baseline) -> None:
        """Add what ``other`` knows: earliest first sight, latest last sight, the newer version."""
        for addr, oh in other.hosts.items():
            h = self.hosts.get(addr)
            if h is None:
                self.hosts[addr] = Host(
                    oh.first_seen, oh.last_seen, set(oh.roles), set(oh.ae_titles)
                )
                continue
            h.first_seen = min(h.first_seen, oh.first_seen)
            h.last_seen = max(h.last_seen, oh.last_seen)
            h.roles |= oh.roles
            for t in sorted(oh.ae_titles):
                if len(h.ae_titles) < MAX_TITLES_PER_HOST:
                    h.ae_titles.add(t)
        for title, oh2 in other.ae_titles.items():
            home = self.ae_titles.get(title)
            if home is None or oh2.first_seen < home.first_seen:
                last = max(oh2.last_seen, home.last_seen) if home else oh2.last_seen
                self.ae_titles[title] = TitleHome(oh2.host, oh2.first_seen, last)
            else:
                home.last_seen = max(home.last_seen, oh2.last_seen)
        for key, ov in other.versions.items():
            v = self.versions.get(key)
            if v is None or ov.last_seen > v.last_seen:
                self.versions[key] = Version(ov.version, ov.last_seen)
        for title, ts in other.move_destinations.items():
            self.move_destinations[title] = max(ts, self.move_destinations.get(title, ts))
        for peer, ts in other.peers.items():
            self.peers[peer] = max(ts, self.peers.get(peer, ts))
        self.runs = max(self.runs, other.runs)
        self.bound()

    def bound(self) -> None:
        """Back within the limits (a merge may go over them)."""
        while len(self.hosts) > self.max_hosts:
            make_room(self.hosts, self.max_hosts)
        while len(self.ae_titles) > self.max_entries:
            make_room(self.ae_titles, self.max_entries)
        while len(self.versions) > self.max_entries:
            make_room(self.versions, self.max_entries)
        while len(self.move_destinations) > self.max_entries:
            make_room(self.move_destinations, self.max_entries)
        while len(self.peers) > self.max_entries:
            make_room(self.peers, self.max_entries)

    def counts(self) -> dict[str, int]:
        return {
            "hosts": len(self.hosts),
            "ae_titles": len(self.ae_titles),
            "versions": len(self.versions),
            "move_destinations": len(self.move_destinations),
            "peers": len(self.peers),
        }
