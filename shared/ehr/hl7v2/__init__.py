"""The `hl7v2` EHR profile: a lineage's Appointment sent as HL7 v2 SIU messages over MLLP.

    escape      HL7 delimiters and control characters in every value (pure)
    siu         the PHI-free projection of a lineage and the ER7 text of one SIU message (pure)
    plan        which event is due (S12/S13/S14/S15/S17/S26) and its control id (pure)
    ack         reading an ACK: applied, retry or review (pure)
    mllp        the MLLP client: TLS, one connection reused per container, timeouts (I/O)
    writer      what the sync calls for a lineage routed to an `hl7v2` endpoint

v2 has no read-back: the bridge keeps the last acknowledged projection (a digest, its status, times
and control id) in the lineage state (`shared.domain.lineage_state.SiuAck`) and decides the next message
against it. Patients are matched by the interface engine, not by the bridge.
"""
