"""How the bridge authenticates to an EHR: SMART Backend Services, AWS SigV4 (HealthLake), compact JWS."""
