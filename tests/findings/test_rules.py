"""Every rule fires on the real traffic made for it, and attack rules stay silent on benign traffic."""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import stat
from pathlib import Path

import polars as pl
import pytest

from analyzer.config import Config
from analyzer.findings.catalog import RULES
from tests.helpers import CAPTURES, SAMPLE_FILES, analyze

# rule -> (capture, least severity it must reach there, extra config)
MUST_FIRE: dict[str, tuple[str, str, dict[str, object]]] = {
    "cleartext_association": ("dicom_lab.pcap", "medium", {}),
    "cleartext_on_tls_port": ("tls_2762.pcap", "high", {}),
    "tls_on_dicom_port": ("tls_2762.pcap", "info", {}),
    "no_user_identity": ("dicom_lab.pcap", "low", {}),
    "weak_user_identity": ("user_identity.pcap", "medium", {}),
    "cleartext_credentials": ("user_identity.pcap", "high", {}),
    "cleartext_token": ("user_identity.pcap", "high", {}),
    "identity_not_confirmed": ("user_identity.pcap", "medium", {}),
    "identity_rejected": ("user_identity.pcap", "medium", {}),
    "not_authorized": ("harvest.pcap", "medium", {}),
    "unauthenticated_query": ("dicom_lab.pcap", "high", {}),
    "ae_title_bruteforce": ("nmap_scan.pcap", "critical", {}),
    "promiscuous_scp": ("nmap_scan.pcap", "medium", {}),
    "association_probe": ("nmap_scan.pcap", "medium", {}),
    "dicom_scan": ("nmap_scan.pcap", "high", {}),
    "service_enumeration": ("harvest.pcap", "medium", {}),
    "wildcard_query": ("dicom_lab.pcap", "high", {}),
    "prefix_enumeration": ("harvest.pcap", "high", {}),
    "large_result_set": ("dicom_lab.pcap", "medium", {}),
    "third_party_move": ("orthanc_qr.pcap", "medium", {}),
    "unknown_move_destination": ("harvest.pcap", "medium", {}),
    "bulk_retrieve": (
        "orthanc_qr.pcap",
        "medium",
        {"rule_options": {"bulk_retrieve": {"max_suboperations": 1}}},
    ),
    "cleartext_phi": ("dicom_lab.pcap", "high", {}),
    "malformed_uid": ("malformed.pcap", "high", {}),
    "malformed_ae_title": ("malformed.pcap", "medium", {}),
    "pdu_framing_error": ("malformed.pcap", "medium", {}),
    "provider_abort": ("malformed.pcap", "low", {}),
    "connection_churn": ("malformed.pcap", "medium", {}),
    "inventory_change": (
        "dicom_lab.pcap",
        "high",
        {"known_ae_titles": {"MODALITY_CT1": frozenset({"10.9.9.9"})}},
    ),
    "nonstandard_port": ("nonstandard_port.pcap", "info", {}),
    "association_rejected": ("reject_abort.pcap", "low", {}),
    "association_aborted": ("reject_abort.pcap", "info", {}),
    "non_dicom_on_dicom_port": ("malformed.pcap", "low", {}),
    "worklist_query": ("worklist.pcap", "medium", {}),
    "phi_to_untrusted_host": (
        "dicom_lab.pcap",
        "critical",
        {"trusted_networks": (ipaddress.ip_network("192.0.2.0/24"),)},
    ),
    "path_traversal_value": ("path_traversal.pcap", "high", {}),
    "executable_preamble": ("dicomweb.pcap", "critical", {}),
}
ATTACK_RULES = {
    "ae_title_bruteforce",
    "promiscuous_scp",
    "association_probe",
    "dicom_scan",
    "service_enumeration",
    "prefix_enumeration",
    "unknown_move_destination",
    "bulk_retrieve",
    "malformed_uid",
    "malformed_ae_title",
    "pdu_framing_error",
    "provider_abort",
    "connection_churn",
    "identity_rejected",
    "not_authorized",
    "cleartext_credentials",
    "cleartext_token",
    "weak_user_identity",
    "identity_not_confirmed",
    "inventory_change",
    "third_party_move",
    "tls_on_dicom_port",
    "cleartext_on_tls_port",
    "non_dicom_on_dicom_port",
    "phi_to_untrusted_host",
    "path_traversal_value",
}
BENIGN = [
    "dicom_lab.pcap",
    "ipv6_lab.pcap",
    "transfer_syntaxes.pcap",
    "worklist.pcap",
    "charsets.pcap",
    "tiny_pdu.pcap",
    "nonstandard_port.pcap",
    "ipv4_fragments.pcap",
    "any_sll2.pcap",
    "rotated",
]
RANK = ["info", "low", "medium", "high", "critical"]


def findings(capture: str, tmp_path: Path, **config: object) -> pl.DataFrame:
    analyze(CAPTURES / capture, tmp_path, dataclasses.replace(Config(), **config))  # type: ignore[arg-type]
    return pl.read_parquet(tmp_path / "finding.parquet")


def test_every_registered_rule_is_tested_and_documented() -> None:
    assert set(RULES) == set(MUST_FIRE)
    for cls in RULES.values():
        assert cls.title and cls.description and cls.id.islower()


@pytest.mark.parametrize("rule", sorted(MUST_FIRE))
def test_rule_fires_on_its_capture(rule: str, tmp_path: Path) -> None:
    capture, least, config = MUST_FIRE[rule]
    found = findings(capture, tmp_path, **config).filter(pl.col("rule") == rule)
    assert found.height > 0, f"{rule} silent on {capture}"
    best = max(RANK.index(s) for s in found["severity"])
    assert best >= RANK.index(least), f"{rule} only reached {RANK[best]}"
    row = found.row(0, named=True)
    assert row["wireshark_filter"] and row["title"] and json.loads(row["evidence"]) is not None


@pytest.mark.parametrize("capture", BENIGN)
def test_attack_rules_stay_silent_on_benign_traffic(capture: str, tmp_path: Path) -> None:
    rules = set(findings(capture, tmp_path)["rule"])
    assert not rules & ATTACK_RULES, sorted(rules & ATTACK_RULES)


def test_one_ae_title_on_two_addresses(tmp_path: Path) -> None:
    """two_interfaces.pcapng really has a storescp called STORESCP on two hosts: worth reporting."""
    f = findings("two_interfaces.pcapng", tmp_path).filter(pl.col("rule") == "inventory_change")
    assert f["detail"].to_list() == ["STORESCP first seen at 10.231.0.2, now at 127.0.0.1"]


def test_nmap_is_recognised_and_the_guessed_title_named(tmp_path: Path) -> None:
    f = findings("nmap_scan.pcap", tmp_path)
    probe = f.filter(pl.col("rule") == "association_probe")
    assert any(json.loads(e)["nmap"] for e in probe["evidence"])
    crit = f.filter(pl.col("severity") == "critical")
    assert json.loads(crit["evidence"][0])["guessed_title"] == "STRICTSCP"


def test_third_party_move_correlates_the_sub_association(tmp_path: Path) -> None:
    f = findings("orthanc_qr.pcap", tmp_path).filter(pl.col("rule") == "third_party_move")
    archive = [
        json.loads(e) for e in f["evidence"] if json.loads(e)["move_destination"] == "ARCHIVE2"
    ]
    assert (
        archive
        and archive[0]["destination_host"] == "10.231.0.1"
        and archive[0]["destination_port"] == 11113
    )
    untrusted = findings(
        "orthanc_qr.pcap", tmp_path / "u", trusted_networks=(ipaddress.ip_network("127.0.0.0/8"),)
    ).filter(pl.col("rule") == "third_party_move")
    assert (
        "high" in untrusted["severity"].to_list()
    )  # the destination is outside the trusted networks now


def test_cleartext_association_rises_outside_trusted_networks(tmp_path: Path) -> None:
    f = findings(
        "dicom_lab.pcap", tmp_path, trusted_networks=(ipaddress.ip_network("127.0.0.0/8"),)
    )
    assert "high" in f.filter(pl.col("rule") == "cleartext_association")["severity"].to_list()
    assert "critical" in f.filter(pl.col("rule") == "cleartext_phi")["severity"].to_list()


def test_disabled_rules_and_options_come_from_config(tmp_path: Path) -> None:
    f = findings(
        "dicom_lab.pcap",
        tmp_path,
        rules_disabled=frozenset({"cleartext_phi"}),
        rule_options={"large_result_set": {"max_results": 50}},
    )
    assert "cleartext_phi" not in set(f["rule"]) and "large_result_set" not in set(f["rule"])


def test_alerts_mirror_the_finding_table_and_are_private(tmp_path: Path) -> None:
    f = findings("user_identity.pcap", tmp_path)
    alerts = tmp_path / "alerts.jsonl"
    assert stat.S_IMODE(alerts.stat().st_mode) == 0o600
    lines = [json.loads(line) for line in alerts.read_text().splitlines()]
    # one alert per finding as it is raised, one more with the final count of a folded one
    first = [a for a in lines if a["count"] == 1]
    assert sorted(a["rule"] for a in first) == sorted(f["rule"].to_list())
    folded = f.filter(pl.col("count") > 1)
    assert sorted(a["rule"] for a in lines if a["count"] > 1) == sorted(folded["rule"].to_list())
    assert all(
        set(a) >= {"ts", "uid", "rule", "severity", "evidence", "wireshark_filter"} for a in lines
    )


def test_an_exception_in_a_rule_is_an_anomaly_not_the_end(tmp_path: Path) -> None:
    from analyzer.findings.rules.query import WildcardQuery

    original = WildcardQuery.on_message

    def broken(self, a, m):  # type: ignore[no-untyped-def]
        raise RuntimeError("rule bug")

    WildcardQuery.on_message = broken  # type: ignore[method-assign]
    try:
        from analyzer.capture import open_inputs
        from analyzer.run.pipeline import run_analysis
        from analyzer.run.progress import Progress

        readers, _ = open_inputs([str(CAPTURES / "dicom_lab.pcap")])
        run_analysis(
            Config(), readers, tmp_path, "parquet", Progress(None, enabled=False)
        )  # not strict
    finally:
        WildcardQuery.on_message = original  # type: ignore[method-assign]
    weird = pl.read_parquet(tmp_path / "weird.parquet")
    errors = weird.filter(pl.col("name") == "analyzer_internal_error")
    assert errors.height > 0 and "wildcard_query.on_message" in errors["detail"][0]
    assert "cleartext_phi" in set(
        pl.read_parquet(tmp_path / "finding.parquet")["rule"]
    )  # the others went on


def test_provider_abort_reasons_from_encoded_pdus() -> None:
    """Real peers here abort with reason 0; the 1/2/4/5/6 branch is checked on pynetdicom-encoded bytes."""
    from tests.dicom import fixtures as fx
    from tests.helpers import ACK, PSH, SYN, dicom_driver

    drv, rows, engine = dicom_driver()
    drv.seg(1.0, SYN, 100)
    drv.seg(1.0, SYN | ACK, 900, 101, from_client=False)
    drv.seg(1.1, ACK | PSH, 101, 901, fx.A_ASSOCIATE_RQ_PLAIN)
    server = fx.A_ASSOCIATE_AC_PLAIN + fx.A_ABORT_PROVIDER_INVALID
    drv.seg(1.2, ACK | PSH, 901, 101 + len(fx.A_ASSOCIATE_RQ_PLAIN), server, from_client=False)
    drv.finish()
    engine.finish()
    aborts = [r for r in rows["finding"] if r.rule == "provider_abort"]
    assert aborts and aborts[0].severity == "medium" and "reason 6" in aborts[0].detail


def test_cross_flow_rules_span_the_files_of_one_run(tmp_path: Path) -> None:
    """The nmap scan cut into two rotated files still reads as one brute force and one scan."""
    import dpkt

    with open(CAPTURES / "nmap_scan.pcap", "rb") as fh:
        packets = [(ts, bytes(buf)) for ts, buf in dpkt.pcap.Reader(fh)]
    half = len(packets) // 2
    for name, part in (("scan.pcap0", packets[:half]), ("scan.pcap1", packets[half:])):
        with open(tmp_path / name, "wb") as fh:
            writer = dpkt.pcap.Writer(fh, snaplen=262144, linktype=1)
            for ts, buf in part:
                writer.writepkt(buf, ts)
    analyze([tmp_path / "scan.pcap0", tmp_path / "scan.pcap1"], tmp_path / "out")
    f = pl.read_parquet(tmp_path / "out" / "finding.parquet")
    assert "critical" in f.filter(pl.col("rule") == "ae_title_bruteforce")["severity"].to_list()
    assert f.filter(pl.col("rule") == "dicom_scan").height == 1


def test_credentials_in_a_truncated_request_are_found() -> None:
    """An A-ASSOCIATE-RQ cut off before its claimed length, then FIN: the association is
    recorded with what survived and the cleartext passcode raises its finding."""
    from tests.dicom import fixtures as fx
    from tests.helpers import ACK, FIN, PSH, SYN, dicom_driver

    rq = fx.A_ASSOCIATE_RQ_USER_ID_USER_PASS
    cut = bytes(rq[:2]) + (len(rq) - 6 + 300).to_bytes(4, "big") + bytes(rq[6:])
    drv, rows, engine = dicom_driver()
    drv.seg(1.0, SYN, 100)
    drv.seg(1.0, SYN | ACK, 900, 101, from_client=False)
    drv.seg(1.1, ACK | PSH, 101, 901, cut)
    drv.seg(1.2, ACK | FIN, 101 + len(cut), 901)
    drv.seg(1.3, ACK | FIN, 901, 102 + len(cut), from_client=False)
    drv.finish()
    engine.finish()
    assoc = rows["dicom_assoc"]
    assert len(assoc) == 1 and assoc[0].calling_ae and assoc[0].passcode_present
    assert assoc[0].user_identity_type == 2
    assert "cleartext_credentials" in {r.rule for r in rows["finding"]}


def test_every_malformed_connection_is_a_finding(tmp_path: Path) -> None:
    """Five connections a raw-socket attacker made to a real storescp (P-DATA longer than its
    bytes, a PDV longer than its PDU, PDU type 0x0A first, an undefined item in an RQ, an RQ cut
    short): each is decoded as DICOM and raises pdu_framing_error."""
    result = analyze(CAPTURES / "malformed_pdus.pcap", tmp_path)
    dicom = set(result.conn.filter(pl.col("service") == "dicom")["uid"].to_list())
    assert len(dicom) == 5
    f = pl.read_parquet(tmp_path / "finding.parquet")
    framing = f.filter(pl.col("rule") == "pdu_framing_error")
    covered = {u for us in framing["uids"].to_list() for u in us}
    assert covered == dicom


def test_nmap_probes_are_recognised_whatever_the_called_title(tmp_path: Path) -> None:
    """nmap --script dicom-ping,dicom-brute: dicom-brute tries called titles; every probe is
    recognised by the tool's fingerprint and folded per tool, the counts adding up."""
    analyze(CAPTURES / "nmap_scan.pcap", tmp_path)
    f = pl.read_parquet(tmp_path / "finding.parquet").filter(pl.col("rule") == "association_probe")
    assoc = pl.read_parquet(tmp_path / "dicom_assoc.parquet")
    probes = assoc.filter(pl.col("n_dimse") == 0)
    assert f.height > 0 and all(json.loads(e)["nmap"] for e in f["evidence"])
    assert f["count"].sum() == probes.height
    assert probes["called_ae"].n_unique() > 5  # many titles, few rows


@pytest.mark.parametrize("capture", SAMPLE_FILES, ids=[p.name for p in SAMPLE_FILES])
def test_folded_counts_add_up_to_every_occurrence(capture: Path, tmp_path: Path) -> None:
    """Folding loses nothing: per rule, the counts of the folded rows equal the rows of the
    same run with every dedup window set to zero (each occurrence its own row)."""
    folded = findings(capture.name, tmp_path / "folded")
    unfold = {
        # below any difference of timestamps (rows need not come in timestamp order)
        rid: {"dedup_window": -1e18}
        for rid, cls in RULES.items()
        if "dedup_window" in cls.options
    }
    every = findings(capture.name, tmp_path / "every", rule_options=unfold)
    got = dict(folded.group_by("rule").agg(pl.col("count").sum()).iter_rows())
    want = dict(every.group_by("rule").len().iter_rows())
    assert got == want
