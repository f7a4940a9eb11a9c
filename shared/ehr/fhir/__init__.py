"""FHIR R4 clients: the generic one (`client`), and the HealthLake and Oracle Health profiles over it."""
