"""The clinic mapping: Cal.com event types, hosts and forms → FHIR codes, Practitioners, EHR routes.

`mapping` is the model, `load` reads YAML/JSON into it, `checks` and `rules` validate its sections, `source`
reads it from a file, SSM or AppConfig and refreshes it in a warm container.
"""
