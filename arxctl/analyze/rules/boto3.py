"""AWS through boto3: clients, resources and their sub-resources, collections, paginators and sessions."""

from __future__ import annotations

from typing import Any

import libcst as cst

from arxctl.analyze.python import Ctx, Hit, Outcome
from arxctl.analyze.rules._base import hit, snake
from arxctl.analyze.values import Obj, obj

RULE_ID = "ARXA101"
DESCRIPTION = "AWS call through boto3: service and operation map to aws.<service>.<operation>"
FAMILIES = ("aws",)
MODULES = ("boto3", "aioboto3")
ENTRY = ("boto3", "aioboto3")

# Client helpers that are not API operations, or that run another operation.
_NOT_OPERATIONS = frozenset({
    "close", "can_paginate", "get_waiter", "generate_presigned_url", "generate_presigned_post", "meta",
    "exceptions", "waiter_names",
})
_TRANSFER = {
    "upload_file": "put_object", "upload_fileobj": "put_object",
    "download_file": "get_object", "download_fileobj": "get_object", "copy": "copy_object",
}

# Resource model: (service, resource type) -> {method: client operation}; capitalised names make sub-resources.
_ACTIONS: dict[tuple[str, str], dict[str, str]] = {
    ("s3", "Bucket"): {
        "delete": "delete_bucket", "put_object": "put_object", "upload_file": "put_object",
        "upload_fileobj": "put_object", "download_file": "get_object", "download_fileobj": "get_object",
        "delete_objects": "delete_objects", "create": "create_bucket", "load": "list_buckets",
    },
    ("s3", "Object"): {
        "delete": "delete_object", "get": "get_object", "put": "put_object", "upload_file": "put_object",
        "upload_fileobj": "put_object", "download_file": "get_object", "download_fileobj": "get_object",
        "copy_from": "copy_object", "load": "head_object", "reload": "head_object",
    },
    ("s3", "ObjectAcl"): {"put": "put_object_acl", "load": "get_object_acl", "reload": "get_object_acl"},
    ("s3", "BucketAcl"): {"put": "put_bucket_acl", "load": "get_bucket_acl", "reload": "get_bucket_acl"},
    ("s3", "BucketPolicy"): {
        "put": "put_bucket_policy", "delete": "delete_bucket_policy", "load": "get_bucket_policy",
        "reload": "get_bucket_policy",
    },
    ("ec2", "Instance"): {
        "terminate": "terminate_instances", "stop": "stop_instances", "start": "start_instances",
        "reboot": "reboot_instances", "modify_attribute": "modify_instance_attribute",
        "load": "describe_instances", "reload": "describe_instances",
    },
    ("ec2", "SecurityGroup"): {
        "authorize_ingress": "authorize_security_group_ingress",
        "revoke_ingress": "revoke_security_group_ingress", "delete": "delete_security_group",
        "load": "describe_security_groups", "reload": "describe_security_groups",
    },
    ("ec2", "Volume"): {"create_snapshot": "create_snapshot", "delete": "delete_volume", "load": "describe_volumes"},
    ("iam", "User"): {
        "delete": "delete_user", "create": "create_user", "create_access_key_pair": "create_access_key",
        "attach_policy": "attach_user_policy", "detach_policy": "detach_user_policy", "load": "get_user",
        "reload": "get_user",
    },
    ("iam", "AccessKey"): {"delete": "delete_access_key", "activate": "update_access_key",
                           "deactivate": "update_access_key"},
    ("dynamodb", "Table"): {
        "put_item": "put_item", "get_item": "get_item", "delete_item": "delete_item", "update_item": "update_item",
        "query": "query", "scan": "scan", "delete": "delete_table", "load": "describe_table",
    },
}
_SUBRESOURCES: dict[tuple[str, str], dict[str, str]] = {
    ("s3", ""): {"Bucket": "Bucket", "Object": "Object", "ObjectSummary": "Object", "BucketAcl": "BucketAcl",
                 "BucketPolicy": "BucketPolicy", "ObjectAcl": "ObjectAcl"},
    ("s3", "Bucket"): {"Object": "Object", "Acl": "BucketAcl", "Policy": "BucketPolicy"},
    ("s3", "Object"): {"Acl": "ObjectAcl", "Bucket": "Bucket"},
    ("ec2", ""): {"Instance": "Instance", "SecurityGroup": "SecurityGroup", "Volume": "Volume"},
    ("iam", ""): {"User": "User", "AccessKey": "AccessKey"},
    ("iam", "User"): {"AccessKey": "AccessKey"},
    ("dynamodb", ""): {"Table": "Table"},
}
# (service, parent type, attribute) -> item type of the collection; parent "" is the service resource.
_COLLECTIONS: dict[tuple[str, str, str], str] = {
    ("s3", "", "buckets"): "Bucket",
    ("s3", "Bucket", "objects"): "Object",
    ("s3", "Bucket", "object_versions"): "ObjectVersion",
    ("ec2", "", "instances"): "Instance",
    ("ec2", "", "security_groups"): "SecurityGroup",
    ("ec2", "", "volumes"): "Volume",
    ("iam", "", "users"): "User",
    ("iam", "User", "access_keys"): "AccessKey",
    ("dynamodb", "", "tables"): "Table",
}
_LIST: dict[tuple[str, str], str] = {
    ("s3", "Bucket"): "list_buckets", ("s3", "Object"): "list_objects", ("s3", "ObjectVersion"): "list_object_versions",
    ("ec2", "Instance"): "describe_instances", ("ec2", "SecurityGroup"): "describe_security_groups",
    ("ec2", "Volume"): "describe_volumes", ("iam", "User"): "list_users", ("iam", "AccessKey"): "list_access_keys",
    ("dynamodb", "Table"): "list_tables",
}
_BATCH: dict[tuple[str, str, str], str] = {
    ("s3", "Object", "delete"): "delete_objects", ("s3", "ObjectVersion", "delete"): "delete_objects",
    ("ec2", "Instance", "terminate"): "terminate_instances", ("ec2", "Instance", "stop"): "stop_instances",
    ("ec2", "Instance", "start"): "start_instances",
}
_SERVICE_METHODS = {("ec2", "create_instances"): "run_instances"}
# Identifiers are known without a request; any other attribute of a resource built by hand loads it.
_IDENTIFIERS = frozenset({"name", "id", "key", "bucket_name", "meta"})
_COLLECTION_QUERIES = frozenset({"all", "filter", "limit", "page_size"})


def _service(call: cst.Call | None, ctx: Ctx) -> str:
    if call is None:
        return "unresolved"
    s = ctx.arg_string(call, 0, "service_name")
    return s.known if s is not None and s.known else "unresolved"


def _aws(node: cst.CSTNode, service: str, operation: str, how: str) -> Outcome:
    action = f"aws.{service}.{operation}"
    return None, [hit(RULE_ID, node, "aws", action, f"{how} calls AWS {service} {operation}",
                      service=service, operation=operation)]


def construct(qname: str, call: cst.Call | None, ctx: Ctx) -> Outcome | None:
    tail = qname.split(".", 1)[1] if "." in qname else ""
    if tail == "client":
        return obj("aws", "client", service=_service(call, ctx)), []
    if tail == "resource":
        return obj("aws", "resource", service=_service(call, ctx), type=""), []
    if tail in ("Session", "session.Session"):
        return obj("aws", "session"), []
    return None


def method(o: Obj, name: str, call: cst.Call, ctx: Ctx) -> Outcome | None:
    service = o.get("service", "unresolved")
    if o.kind == "session":
        if name == "client":
            return obj("aws", "client", service=_service(call, ctx)), []
        if name == "resource":
            return obj("aws", "resource", service=_service(call, ctx), type=""), []
        return None
    if o.kind == "client":
        if name == "get_paginator":
            op = ctx.arg_string(call, 0, "operation_name")
            return obj("aws", "paginator", service=service, op=op.known if op and op.known else "unresolved"), []
        if name in _NOT_OPERATIONS or name.startswith("_"):
            return None
        return _aws(call, service, _TRANSFER.get(name, name), "boto3 client")
    if o.kind == "paginator" and name == "paginate":
        return _aws(call, service, o.get("op"), "boto3 paginator")
    if o.kind == "resource":
        rtype = o.get("type", "")
        sub = _SUBRESOURCES.get((service, rtype), {}).get(name)
        if sub is not None:
            return obj("aws", "resource", service=service, type=sub), []
        if name[:1].isupper():
            return obj("aws", "resource", service=service, type=name), []
        if rtype == "Table" and name == "batch_writer":
            return obj("aws", "writer", service=service), []
        if rtype == "":
            op = _SERVICE_METHODS.get((service, name), name)
            return _aws(call, service, op, "boto3 resource")
        op = _ACTIONS.get((service, rtype), {}).get(name)
        if op is None:
            if name in ("get_available_subresources", "meta") or name.startswith("wait_until"):
                return None
            op = f"{name}_{snake(rtype)}"
        return _aws(call, service, op, f"boto3 {rtype}")
    if o.kind == "collection":
        item = o.get("item")
        if name in _COLLECTION_QUERIES:
            listed = _LIST.get((service, item), f"list_{snake(item)}s")
            return o.with_(queried=True), _aws(call, service, listed, "boto3 collection")[1]
        batch = _BATCH.get((service, item, name))
        if batch is not None:
            return _aws(call, service, batch, "boto3 collection batch")
        return None
    if o.kind == "writer" and name in ("put_item", "delete_item"):
        return _aws(call, service, name, "boto3 batch writer")
    return None


def attribute(o: Obj, name: str, ctx: Ctx) -> Obj | None:
    if o.kind == "resource":
        if name == "meta":
            return obj("aws", "meta", service=o.get("service"))
        item = _COLLECTIONS.get((o.get("service"), o.get("type", ""), name))
        if item is not None:
            return obj("aws", "collection", service=o.get("service"), item=item)
    if o.kind == "meta" and name == "client":
        return obj("aws", "client", service=o.get("service"))
    return None


def iterate(o: Obj) -> Obj | None:
    if o.kind == "collection":
        return obj("aws", "resource", service=o.get("service"), type=o.get("item"), loaded=True)
    return None


def reference(analyzer: Any, node: cst.Attribute) -> list[Hit]:
    """Reading an attribute of a resource built by hand (`iam.User(n).arn`) loads it: one describe/get call."""
    name = node.attr.value
    if name in _IDENTIFIERS or name.startswith("_") or id(node) in analyzer.call_funcs:
        return []
    base = analyzer.ev(node.value)
    if not (isinstance(base, Obj) and base.family == "aws" and base.kind == "resource") or base.get("loaded"):
        return []
    service, rtype = base.get("service"), base.get("type", "")
    if not rtype or (service, rtype, name) in _COLLECTIONS or name in _SUBRESOURCES.get((service, rtype), {}):
        return []
    op = _ACTIONS.get((service, rtype), {}).get("load")
    if op is None or name in _ACTIONS.get((service, rtype), {}):
        return []
    return _aws(node, service, op, f"boto3 {rtype}.{name} (lazy load)")[1]
