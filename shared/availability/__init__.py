"""EHR-first appointments as Cal.com busy time (per-practitioner iCalendar feeds) and the provider roster."""
