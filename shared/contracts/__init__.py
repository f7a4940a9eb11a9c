"""Names the Lambda functions, the CDK app and the operator CLI must agree on, each written once.

Dependency-free on purpose (the standard library's `dataclasses` and `typing`, nothing of the project, no
boto3, no pydantic): `infra/` imports these modules to build the stack, the functions import them to
emit, store and read, so there is nothing to keep in step and no test that compares two copies.

* `metrics`: every metric the functions emit, by service, and the alarm declared with it;
* `tables`: table keys, item prefixes and the attributes a role may read or write;
* `queue`: message attributes, message sources, the drift-check body key, the retry backoff;
* `deployment`: EHR profiles and route names, the clinic mapping's sources, defaults the stack sets,
  the SnapStart alias, the stack outputs the CLI reads.
"""
