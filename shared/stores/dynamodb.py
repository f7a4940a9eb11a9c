"""One DynamoDB client for several stores of a function (the console reads three tables with one)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import boto3

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient


def dynamodb_client() -> DynamoDBClient:
    return boto3.client("dynamodb")
