"""Webhook intake: the ingest function's flow (`intake`) and its composition root (`bootstrap`)."""
