"""The headline numbers of an output directory (the report's summary, the notebook's start)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import polars as pl

from analyzer.config import Network, TrustTest
from analyzer.report.load import Tables


def trust_test(networks: Iterable[Network]) -> TrustTest:
    """A predicate: is this address inside one of ``networks``? (unparsable: no)."""
    return TrustTest(tuple(networks))


@dataclass(slots=True)
class Summary:
    flows: int = 0
    dicom_flows: int = 0
    tls_on_dicom_ports: int = 0
    hosts: int = 0
    untrusted_hosts: list[str] = field(default_factory=list)
    ae_titles: int = 0
    associations: int = 0
    by_result: dict[str, int] = field(default_factory=dict)
    dimse: int = 0
    objects: int = 0
    phi_values: int = 0
    phi_attributes: int = 0
    phi_patients: int = 0
    phi_flows: int = 0
    phi_hosts: list[str] = field(default_factory=list)
    findings: dict[str, int] = field(default_factory=dict)
    anomalies: int = 0
    first_ts: float | None = None
    last_ts: float | None = None

    @property
    def cleartext_share(self) -> float | None:
        """Share of DICOM connections not protected by TLS (None: no DICOM at all)."""
        total = self.dicom_flows + self.tls_on_dicom_ports
        return self.dicom_flows / total if total else None


def summarize(
    tables: Tables, trusted: Callable[[str], bool], dicom_ports: Iterable[int]
) -> Summary:
    conn, assoc, phi = tables["conn"], tables["dicom_assoc"], tables["phi"]
    s = Summary(flows=conn.height)
    s.dicom_flows = conn.filter(pl.col("service") == "dicom").height
    s.tls_on_dicom_ports = conn.filter(
        (pl.col("service") == "ssl") & pl.col("resp_p").is_in(list(dicom_ports))
    ).height
    hosts = pl.concat([assoc["orig_h"], assoc["resp_h"]]).drop_nulls().unique().sort().to_list()
    s.hosts = len(hosts)
    s.untrusted_hosts = [h for h in hosts if not trusted(h)]
    s.ae_titles = pl.concat([assoc["calling_ae"], assoc["called_ae"]]).drop_nulls().n_unique()
    s.associations = assoc.height
    s.by_result = dict(
        assoc.group_by(pl.col("result").fill_null("unknown")).len().sort("result").iter_rows()
    )
    s.dimse = tables["dimse"].height
    s.objects = tables["dicom_object"].height
    s.phi_values = phi.height
    s.phi_attributes = phi["keyword"].drop_nulls().n_unique()
    s.phi_patients = phi["patient_key"].drop_nulls().n_unique()
    s.phi_flows = phi["uid"].n_unique()
    exposed = assoc.join(phi.select("uid").unique(), on="uid", how="semi")
    s.phi_hosts = (
        pl.concat([exposed["orig_h"], exposed["resp_h"]]).drop_nulls().unique().sort().to_list()
    )
    s.findings = dict(tables["finding"].group_by("severity").len().iter_rows())
    s.anomalies = tables["weird"].height
    if conn.height:
        first = conn["ts"].min()
        last = (conn["ts"] + conn["duration"].fill_null(0.0)).max()
        s.first_ts = float(first) if isinstance(first, int | float) else None
        s.last_ts = float(last) if isinstance(last, int | float) else None
    return s
