"""The WORM copy of the audit trail: the archive function's flow (`worm_copy`) and its composition root."""
