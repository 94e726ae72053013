"""Every rule, registered here explicitly, in the order the stages run them."""

from __future__ import annotations

from analyzer.findings.model import CrossFlowRule, FlowRule, Rule
from analyzer.findings.rules import (
    auth,
    dicomweb,
    inventory_change,
    malformed,
    patient_data,
    query,
    scan,
    session,
    transport,
)

FLOW_RULES: tuple[type[FlowRule], ...] = (
    auth.NoUserIdentity,
    auth.WeakUserIdentity,
    auth.CleartextCredentials,
    auth.CleartextToken,
    auth.IdentityNotConfirmed,
    auth.NotAuthorized,
    auth.UnauthenticatedQuery,
    malformed.MalformedUid,
    malformed.MalformedAeTitle,
    malformed.PduFramingError,
    malformed.ProviderAbort,
    malformed.PathTraversalValue,
    patient_data.CleartextPhi,
    patient_data.PhiToUntrustedHost,
    query.WildcardQuery,
    query.LargeResultSet,
    query.WorklistQuery,
    scan.AssociationProbe,
    scan.ServiceEnumeration,
    transport.CleartextAssociation,
    transport.CleartextOnTlsPort,
    transport.TlsOnDicomPort,
    session.NonstandardPort,
    session.AssociationRejected,
    session.AssociationAborted,
    session.NonDicomOnDicomPort,
    dicomweb.ExecutablePreamble,
)
"""Rules over one association or flow at a time (the per-flow stage)."""

CROSS_FLOW_RULES: tuple[type[CrossFlowRule], ...] = (
    auth.IdentityRejected,
    inventory_change.InventoryChange,
    malformed.ConnectionChurn,
    query.PrefixEnumeration,
    query.ThirdPartyMove,
    query.UnknownMoveDestination,
    query.BulkRetrieve,
    scan.AeTitleBruteforce,
    scan.PromiscuousScp,
    scan.DicomScan,
)
"""Rules over the summary records of every flow (the cross-flow stage)."""


def _index() -> dict[str, type[Rule]]:
    out: dict[str, type[Rule]] = {}
    for cls in (*FLOW_RULES, *CROSS_FLOW_RULES):
        if not cls.id or cls.id in out:
            raise ValueError(f"rule id {cls.id!r} missing or registered twice")
        out[cls.id] = cls
    return out


RULES: dict[str, type[Rule]] = _index()
"""Rule id -> rule class."""
