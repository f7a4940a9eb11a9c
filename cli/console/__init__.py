"""`calehr console`: the operations console as a local web app (read-only; the reveal is audited).

`app` routes requests to the shared views (`shared.console`), `server` is the loopback-only HTTP
server with its security headers, `ehr` reads the EHR's Appointment (and, on an audited reveal, the
participants' names), `health` gathers queue, DLQ, circuit, reconcile and alarm state for the target.
"""
