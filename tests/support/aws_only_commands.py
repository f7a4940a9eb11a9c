"""The documented commands the doc test does not run against the local stack, each with the reason.

One place (tests/e2e/test_documented_commands.py and tests/infra/test_documented_cdk_commands.py read
it): a documented command is either run by the doc test or matched here by the start of its text as
written. A new command that is neither fails the doc test, so it cannot slip in unchecked; an entry
here that no documented command matches any more fails too, so the list cannot rot.
"""

from __future__ import annotations

#: Need a real AWS account: the AWS CLI against a deployed stack, and what only makes sense there.
AWS_ONLY: dict[str, str] = {
    "aws backup delete-backup-vault": "a deployed stack's backup vault",
    "aws backup delete-recovery-point": "a deployed stack's backup vault",
    "aws cloudformation update-termination-protection": "a deployed prod stack",
    "aws cloudwatch describe-alarm-history": "CloudWatch alarms of a deployed stack",
    "aws cloudwatch set-alarm-state": "CloudWatch alarms of a deployed stack (the post-deploy check)",
    "aws ec2 create-vpn-connection": "the site-to-site VPN of a deployed VPC",
    "aws events disable-rule": "EventBridge rules of a deployed stack",
    "aws events enable-rule": "EventBridge rules of a deployed stack",
    "aws lambda get-function-concurrency": "Lambda functions of a deployed stack",
    "aws lambda invoke": "invokes the deployed reconcile function",
    "aws lambda list-event-source-mappings": "Lambda event source mappings of a deployed stack",
    "aws lambda update-function-configuration": "Lambda functions of a deployed stack",
    "aws logs tail": "CloudWatch Logs of a deployed stack (the local stack writes .devstack/bridge.log)",
    "aws s3 ls": "the deployed audit archive bucket",
    "aws s3 rb": "the deployed audit archive bucket",
    "aws s3api list-object-versions": "the deployed audit archive bucket",
    "aws s3api list-objects-v2": "the deployed audit archive bucket",
    "aws secretsmanager get-secret-value": "the deployed stack's secrets",
    "aws secretsmanager put-secret-value": "the deployed stack's secrets",
    "aws sns list-subscriptions-by-topic": "the deployed on-call topic",
    "aws sqs purge-queue": "the deployed async-failure queue",
    "aws sqs receive-message": "the deployed async-failure queue",
    "aws ssm get-parameter": "the deployed clinic mapping parameter (then `calehr config validate`, run here)",
    "aws ssm put-parameter": "the deployed clinic mapping parameter",
    "npx cdk bootstrap": "creates the CDK toolkit stack in an AWS account",
    "npx cdk destroy": "deletes a deployed stack",
    'curl -sS -X POST "$(out WebhookUrl)"': "posts to the deployed WebhookUrl",
    # shell around the AWS CLI: the helpers, variables and loops of the deploy guide
    "STACK=CalEhrBridge-staging": "names the deployed stack for `out` and `logs`",
    "out() {": "reads a deployed stack's outputs",
    "logs() {": "reads a deployed function's log group",
    "secret=$(aws secretsmanager get-secret-value": "the deployed webhook secret",
    "VAULT=": "a deployed stack's backup vault",
    "BUCKET=": "the deployed audit archive bucket",
    "for arn in $(aws backup list-recovery-points-by-backup-vault": "a deployed stack's backup vault",
    "done": "ends the loop above",
    "VGW=$(aws ec2 describe-vpn-gateways": "the VPN gateway of a deployed VPC",
    "CGW=$(aws ec2 create-customer-gateway": "the site-to-site VPN of a deployed VPC",
}

#: Local shell steps around a documented command: writing a secret file for the AWS CLI, removing it.
SHELL_STEPS: dict[str, str] = {
    "umask 077": "file permissions for the secret files that follow",
    'python3 -c \'import json, secrets; print(json.dumps({"current"': "writes a secret file for the AWS CLI",
    'echo \'{"type": "none"}\' > ehr-auth.json': "writes a secret file for the AWS CLI",
    'echo \'{"type": "bearer"': "writes a secret file for the AWS CLI",
    'echo \'{"api_key"': "writes a secret file for the AWS CLI",
    "rm webhook-secret.json": "removes the secret file",
    "rm ehr-auth.json": "removes the secret file",
    "rm calcom-api.json": "removes the secret file",
    "rm rotated.json": "removes the secret file",
    "jq -r .current rotated.json": "reads the rotated secret file",
    'body=\'{"triggerEvent":"PING"': "the body for the deployed WebhookUrl",
    "sig=$(printf '%s' \"$body\" | openssl dgst": "signs the body for the deployed WebhookUrl",
    "openssl ecparam": "makes a SMART key pair (openssl, no bridge code)",
    "openssl genpkey": "makes a SMART key pair (openssl, no bridge code)",
    "export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION=20": "set for every CDK CLI run of the doc test",
}

#: Run, but by other tests: the suite itself, long-running servers, and steps that change the checkout.
RUN_ELSEWHERE: dict[str, str] = {
    "make test": "the suite itself (CI runs it)",
    "make dev": "runs `calehr dev`: tests/e2e/test_trial_clinic.py and tests/e2e/test_dev_hl7v2.py run it",
    ".venv/bin/calehr dev --config my-clinic.yaml": "tests/e2e/test_trial_clinic.py (the trial clinic)",
    ".venv/bin/calehr console --local": "serves until stopped: tests/e2e/test_console_browser.py",
    ".venv/bin/python -m devstack.calcom_api_stub": "the doc test starts the same stub (CalcomApiStub) itself",
    "AWS_ENDPOINT_URL=http://127.0.0.1:<moto port>": "tests/integration/test_reconcile_stub.py runs this handler",
    ".venv/bin/calehr jwks --secret-file smart-secret.json": "needs a SMART key: tests/unit/cli/test_cli.py",
    "calehr review retry ID --accept-rule": "needs an item a rule parked: tests/e2e/test_booking_rules_local.py",
    "python3 -m venv /tmp/uvenv": "regenerates requirements/lambda.lock (changes the checkout)",
    "/tmp/uvenv/bin/uv pip compile": "regenerates requirements/lambda.lock (changes the checkout)",
    ".venv/bin/calehr doctor --fhir <EHR base URL>": "a synopsis (optional parts in brackets); its flags are checked",
    "calehr console --stack NAME": "serves until stopped: tests/e2e/test_console_browser.py (with --local)",
}


def matches(command: str, start: str) -> bool:
    """`command` begins with `start` as a whole word (or `start` ends in punctuation)."""
    if not command.startswith(start):
        return False
    rest = command[len(start) :]
    return not rest or not start[-1].isalnum() or rest[0].isspace()


def reason_not_run(command: str) -> str | None:
    """Why the doc test does not run `command` here, or None when it must run it."""
    for table in (AWS_ONLY, SHELL_STEPS, RUN_ELSEWHERE):
        for start, reason in table.items():
            if matches(command, start):
                return reason
    return None


def entries() -> list[str]:
    return [*AWS_ONLY, *SHELL_STEPS, *RUN_ELSEWHERE]
