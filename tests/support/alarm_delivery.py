"""Can each alarm of a synthesized template actually reach on-call? A walk over the template JSON.

For every AlarmActions/OKActions entry of every `AWS::CloudWatch::Alarm`: the action must be a topic
of the template; one of the topic's `AWS::SNS::TopicPolicy` documents must allow
`cloudwatch.amazonaws.com` to `sns:Publish` to it for this account (`aws:SourceAccount`) and for
that alarm (`aws:SourceArn` naming the alarm's own ARN), and no Deny may apply to such a publish
over TLS; if the topic is KMS-encrypted, the key's policy must allow `cloudwatch.amazonaws.com`
`kms:Decrypt` and `kms:GenerateDataKey*` for this account and an `aws:SourceArn` pattern that
matches the alarm. An SNS topic policy replaces SNS's default, so nothing else would allow it.

`undeliverable_alarms` returns the problems found; a template without a single alarm action is a
problem too (a walk that checks nothing must not pass).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterator
from typing import Any

CLOUDWATCH = "cloudwatch.amazonaws.com"
ACCOUNT = {"Ref": "AWS::AccountId"}


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def render(value: Any) -> str:
    """A CloudFormation string expression as text, with pseudo parameters left as `${...}`."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and "Ref" in value:
        return "${" + str(value["Ref"]) + "}"
    if isinstance(value, dict) and "Fn::Join" in value:
        separator, parts = value["Fn::Join"]
        return str(separator).join(render(part) for part in parts)
    if isinstance(value, dict) and "Fn::GetAtt" in value:
        return "${" + ".".join(value["Fn::GetAtt"]) + "}"
    raise AssertionError(f"cannot render {value!r}")


def _resources(template: dict[str, Any], resource_type: str) -> Iterator[tuple[str, dict[str, Any]]]:
    for logical_id, resource in template["Resources"].items():
        if resource["Type"] == resource_type:
            yield logical_id, resource


def _services(statement: dict[str, Any]) -> set[str]:
    principal = statement.get("Principal", {})
    if not isinstance(principal, dict):
        return set()
    return {render(service) for service in as_list(principal.get("Service", []))}


def _allows_publish(statement: dict[str, Any], topic_ref: dict[str, str], alarm_arn: dict[str, Any]) -> bool:
    if statement.get("Effect") != "Allow" or CLOUDWATCH not in _services(statement):
        return False
    if "sns:Publish" not in as_list(statement.get("Action")) or topic_ref not in as_list(statement.get("Resource")):
        return False
    condition = statement.get("Condition", {})
    account = condition.get("StringEquals", {}).get("aws:SourceAccount")
    arns = as_list(condition.get("ArnEquals", {}).get("aws:SourceArn", []))
    arns += as_list(condition.get("ArnLike", {}).get("aws:SourceArn", []))
    return account == ACCOUNT and alarm_arn in arns


def _denies_tls_publish(statement: dict[str, Any]) -> bool:
    """A Deny that would also refuse CloudWatch's publish over TLS (anything but the TLS-only Deny)."""
    if statement.get("Effect") != "Deny" or not {"sns:Publish", "sns:*", "*"} & set(as_list(statement["Action"])):
        return False
    return statement.get("Condition") != {"Bool": {"aws:SecureTransport": "false"}}


def _key_allows(statement: dict[str, Any], alarm_arn_text: str) -> bool:
    if statement.get("Effect") != "Allow" or CLOUDWATCH not in _services(statement):
        return False
    actions = set(as_list(statement.get("Action")))
    if "kms:Decrypt" not in actions or not {"kms:GenerateDataKey*", "kms:GenerateDataKey"} & actions:
        return False
    condition = statement.get("Condition", {})
    if condition.get("StringEquals", {}).get("aws:SourceAccount") != ACCOUNT:
        return False
    patterns = as_list(condition.get("ArnLike", {}).get("aws:SourceArn", []))
    return any(fnmatch.fnmatchcase(alarm_arn_text, render(pattern)) for pattern in patterns)


def undeliverable_alarms(template: dict[str, Any]) -> list[str]:
    """Every reason an alarm action of `template` could not reach its topic's subscribers."""
    resources = template["Resources"]
    problems: list[str] = []
    checked = 0
    for alarm_id, alarm in _resources(template, "AWS::CloudWatch::Alarm"):
        properties = alarm["Properties"]
        alarm_arn = {"Fn::GetAtt": [alarm_id, "Arn"]}
        # What `aws:SourceArn` will be: arn:<partition>:cloudwatch:<region>:<account>:alarm:<name>
        alarm_arn_text = "arn:${AWS::Partition}:cloudwatch:${AWS::Region}:${AWS::AccountId}:alarm:" + alarm_id
        for action in [*properties.get("AlarmActions", []), *properties.get("OKActions", [])]:
            checked += 1
            topic_id = action.get("Ref") if isinstance(action, dict) else None
            if topic_id not in resources or resources[topic_id]["Type"] != "AWS::SNS::Topic":
                problems.append(f"{alarm_id}: action {action!r} is not a topic of this stack")
                continue
            topic_ref = {"Ref": topic_id}
            statements = [
                statement
                for _, policy in _resources(template, "AWS::SNS::TopicPolicy")
                if topic_ref in policy["Properties"]["Topics"]
                for statement in policy["Properties"]["PolicyDocument"]["Statement"]
            ]
            if not any(_allows_publish(s, topic_ref, alarm_arn) for s in statements):
                problems.append(f"{alarm_id}: the policy of {topic_id} does not let CloudWatch publish this alarm")
            if any(_denies_tls_publish(s) for s in statements):
                problems.append(f"{alarm_id}: the policy of {topic_id} denies the publish")
            key = resources[topic_id]["Properties"].get("KmsMasterKeyId")
            if key is None:
                continue
            key_id = key["Fn::GetAtt"][0] if "Fn::GetAtt" in key else key.get("Ref")
            key_statements = resources[key_id]["Properties"]["KeyPolicy"]["Statement"]
            if not any(_key_allows(s, alarm_arn_text) for s in key_statements):
                problems.append(f"{alarm_id}: the key {key_id} of {topic_id} does not let CloudWatch encrypt")
    if checked == 0:
        problems.append("no alarm action found: nothing was checked")
    return problems
