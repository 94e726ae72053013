"""What each rule rests on: the DICOM standard's sections, and where a published vulnerability
or an ATT&CK technique has the traffic's shape, its id. Every id here was checked against its
published source (the ATT&CK technique pages, the CVE records); the list in
``docs/detections.md`` cites them.
"""

from __future__ import annotations

PS3 = {
    "ps3.8-9.3.2": "PS3.8 9.3.2 A-ASSOCIATE-RQ PDU structure",
    "ps3.8-9.3.4": "PS3.8 9.3.4 A-ASSOCIATE-RJ PDU structure",
    "ps3.8-9.3.5": "PS3.8 9.3.5 P-DATA-TF PDU structure",
    "ps3.8-9.3.8": "PS3.8 9.3.8 A-ABORT PDU structure",
    "ps3.7-d.3.3.4": "PS3.7 D.3.3.4 SCP/SCU Role Selection Negotiation",
    "ps3.7-d.3.3.7": "PS3.7 D.3.3.7 User Identity Negotiation",
    "ps3.7-c": "PS3.7 Annex C Status Type Encoding",
    "ps3.4-c": "PS3.4 Annex C Query/Retrieve Service Class",
    "ps3.4-k": "PS3.4 Annex K Basic Worklist Management Service",
    "ps3.5-6.2": "PS3.5 6.2 Value Representation (UI, AE)",
    "ps3.15-b": "PS3.15 Annex B Secure Transport Connection Profiles (TLS)",
    "ps3.15-e": "PS3.15 Annex E Attribute Confidentiality Profiles (Table E.1-1)",
    "ps3.10-7.1": "PS3.10 7.1 DICOM File Meta Information (the 128-byte preamble)",
    "ps3.18-10": "PS3.18 10 Transactions (QIDO-RS, WADO-RS, STOW-RS)",
}
ATTACK = {
    "T1040": "ATT&CK T1040 Network Sniffing",
    "T1046": "ATT&CK T1046 Network Service Discovery",
    "T1048": "ATT&CK T1048 Exfiltration Over Alternative Protocol",
    "T1078": "ATT&CK T1078 Valid Accounts",
    "T1110": "ATT&CK T1110 Brute Force",
    "T1190": "ATT&CK T1190 Exploit Public-Facing Application",
    "T1571": "ATT&CK T1571 Non-Standard Port",
    "T0819": "ATT&CK for ICS T0819 Exploit Public-Facing Application",
}
CVE = {
    "CVE-2022-2119": "CVE-2022-2119 DCMTK SCP path traversal (file names from request values)",
    "CVE-2022-2120": "CVE-2022-2120 DCMTK SCU relative path traversal (C-GET from a server)",
    "CVE-2022-2121": "CVE-2022-2121 DCMTK NULL pointer dereference on malformed input",
    "CVE-2019-11687": "CVE-2019-11687 DICOM preamble can hold an executable (PE/DICOM polyglot)",
}
SOURCES = {
    **{
        k: "https://dicom.nema.org/medical/dicom/current/output/html/"
        f"part{int(k.split('-')[0].removeprefix('ps3.')):02d}.html"
        for k in PS3
    },
    **{k: f"https://attack.mitre.org/techniques/{k}/" for k in ATTACK if k.startswith("T1")},
    "T0819": "https://attack.mitre.org/techniques/ics/T0819/",
    **{k: f"https://www.cve.org/CVERecord?id={k}" for k in CVE},
}
LABELS = {**PS3, **ATTACK, **CVE}

RULE_REFERENCES: dict[str, tuple[str, ...]] = {
    "cleartext_association": ("ps3.8-9.3.2", "ps3.15-b", "T1040"),
    "cleartext_on_tls_port": ("ps3.15-b", "T1040"),
    "tls_on_dicom_port": ("ps3.15-b",),
    "no_user_identity": ("ps3.7-d.3.3.7",),
    "weak_user_identity": ("ps3.7-d.3.3.7",),
    "cleartext_credentials": ("ps3.7-d.3.3.7", "T1040", "T1078"),
    "cleartext_token": ("ps3.7-d.3.3.7", "T1040", "T1078"),
    "identity_not_confirmed": ("ps3.7-d.3.3.7",),
    "identity_rejected": ("ps3.7-d.3.3.7", "ps3.8-9.3.4", "T1110"),
    "not_authorized": ("ps3.7-c",),
    "unauthenticated_query": ("ps3.4-c", "ps3.7-d.3.3.7"),
    "ae_title_bruteforce": ("ps3.8-9.3.4", "T1110"),
    "promiscuous_scp": ("ps3.8-9.3.2",),
    "association_probe": ("ps3.8-9.3.2", "T1046"),
    "dicom_scan": ("ps3.8-9.3.2", "T1046"),
    "service_enumeration": ("ps3.8-9.3.2", "T1046"),
    "wildcard_query": ("ps3.4-c",),
    "prefix_enumeration": ("ps3.4-c",),
    "large_result_set": ("ps3.4-c",),
    "third_party_move": ("ps3.4-c", "T1048"),
    "unknown_move_destination": ("ps3.4-c", "ps3.7-c"),
    "bulk_retrieve": ("ps3.4-c", "T1048"),
    "cleartext_phi": ("ps3.15-e", "T1040"),
    "phi_to_untrusted_host": ("ps3.15-e", "T1048"),
    "worklist_query": ("ps3.4-k", "ps3.15-e"),
    "malformed_uid": ("ps3.5-6.2", "CVE-2022-2119", "T1190"),
    "malformed_ae_title": ("ps3.5-6.2", "ps3.8-9.3.2"),
    "path_traversal_value": ("CVE-2022-2119", "CVE-2022-2120", "T1190", "T0819"),
    "pdu_framing_error": ("ps3.8-9.3.2", "ps3.8-9.3.5", "CVE-2022-2121", "T1190"),
    "provider_abort": ("ps3.8-9.3.8",),
    "connection_churn": ("ps3.8-9.3.2",),
    "inventory_change": ("ps3.8-9.3.2",),
    "nonstandard_port": ("ps3.8-9.3.2", "T1571"),
    "association_rejected": ("ps3.8-9.3.4",),
    "association_aborted": ("ps3.8-9.3.8",),
    "non_dicom_on_dicom_port": ("T1571",),
    "executable_preamble": ("ps3.10-7.1", "ps3.18-10", "CVE-2019-11687", "T1190"),
}


def references(rule_id: str) -> list[str]:
    """The labels of a rule's references, in the order above."""
    return [LABELS[k] for k in RULE_REFERENCES.get(rule_id, ())]
