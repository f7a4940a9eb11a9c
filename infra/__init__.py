"""CDK app for Cal EHR Bridge: one construct per capability, composed by `infra.stack`."""
