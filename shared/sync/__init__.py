"""The sync: one queued message → lineage state → the EHR (docs/sync-semantics.md), in the order it runs.

* `worker`      one SQS record: time budget, the service, then done, parked or back on the queue;
* `message`     what a queue message says besides its body (`Delivery`), drift-check bodies, the backoff;
* `service`     `SyncService`: orders the steps of one message under the lineage's lease;
* `joins`       no-show marks and routing forms a lineage picks up from outside its own events;
* `routing`     what an EHR route should hold: event type, route, practitioner, the rendered Appointment;
* `read_plan`   the reads one attempt makes before its first write, decided once, sent as one batch;
* `slot_check`  the double-booking check's EHR side;
* `fhir_writer` the write protocol on FHIR routes (read, merge, fenced write; drift comparison);
* `siu_writer`  the same for HL7 v2 routes (SIU over MLLP);
* `drift`       a drift check of one lineage (report; repair what the bridge left stale);
* `outcome`     what became of a message: a typed value, and what it counts and logs;
* `parking`     the one place a message is parked for a human;
* `audit`       the audit records the sync writes, built and written one way;
* `ports`       the state store's port (the others sit next to their users);
* `bootstrap`   the composition root: the only place the sync's objects are built.
"""
