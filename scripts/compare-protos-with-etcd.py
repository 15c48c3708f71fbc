#!/usr/bin/env python3
"""Checks our protos' wire schema against etcd's own protos.

Both sets are compiled by protoc into descriptor sets, decoded to text with
protoc, and reduced to comparable facts: messages, fields (name, number,
label, type, type name, oneof), enum values and methods (types, streaming).
Debian ships etcd 3.4's protos (package golang-etcd-server-dev), so the only
differences allowed are etcd 3.5's additions, listed in ADDED_IN_3_5; any
other difference fails.

Usage: compare-protos-with-etcd.py OURS.txt ETCD.txt
(each a FileDescriptorSet decoded by `protoc --decode=google.protobuf.FileDescriptorSet`)
"""

import sys

PACKAGES = {"etcdserverpb", "mvccpb", "authpb", "v3lockpb", "v3electionpb"}

# Everything etcd 3.5 added to the client API over 3.4, as facts of the form
# produced by facts() below.
ADDED_IN_3_5 = {
    ("message", "etcdserverpb.AuthStatusRequest"),
    ("message", "etcdserverpb.AuthStatusResponse"),
    ("message", "etcdserverpb.DowngradeRequest"),
    ("message", "etcdserverpb.DowngradeResponse"),
    ("method", "etcdserverpb.Auth", "AuthStatus", ".etcdserverpb.AuthStatusRequest", ".etcdserverpb.AuthStatusResponse", "false", "false"),
    ("method", "etcdserverpb.Maintenance", "Downgrade", ".etcdserverpb.DowngradeRequest", ".etcdserverpb.DowngradeResponse", "false", "false"),
    ("enumvalue", "etcdserverpb.DowngradeRequest.DowngradeAction", "VALIDATE", "0"),
    ("enumvalue", "etcdserverpb.DowngradeRequest.DowngradeAction", "ENABLE", "1"),
    ("enumvalue", "etcdserverpb.DowngradeRequest.DowngradeAction", "CANCEL", "2"),
    ("field", "etcdserverpb.AuthStatusResponse", "header", "1", "LABEL_OPTIONAL", "TYPE_MESSAGE", ".etcdserverpb.ResponseHeader", "-"),
    ("field", "etcdserverpb.AuthStatusResponse", "enabled", "2", "LABEL_OPTIONAL", "TYPE_BOOL", "", "-"),
    ("field", "etcdserverpb.AuthStatusResponse", "authRevision", "3", "LABEL_OPTIONAL", "TYPE_UINT64", "", "-"),
    ("field", "etcdserverpb.AuthUserAddRequest", "hashedPassword", "4", "LABEL_OPTIONAL", "TYPE_STRING", "", "-"),
    ("field", "etcdserverpb.AuthUserChangePasswordRequest", "hashedPassword", "3", "LABEL_OPTIONAL", "TYPE_STRING", "", "-"),
    ("field", "etcdserverpb.DowngradeRequest", "action", "1", "LABEL_OPTIONAL", "TYPE_ENUM", ".etcdserverpb.DowngradeRequest.DowngradeAction", "-"),
    ("field", "etcdserverpb.DowngradeRequest", "version", "2", "LABEL_OPTIONAL", "TYPE_STRING", "", "-"),
    ("field", "etcdserverpb.DowngradeResponse", "header", "1", "LABEL_OPTIONAL", "TYPE_MESSAGE", ".etcdserverpb.ResponseHeader", "-"),
    ("field", "etcdserverpb.DowngradeResponse", "version", "2", "LABEL_OPTIONAL", "TYPE_STRING", "", "-"),
    ("field", "etcdserverpb.MemberListRequest", "linearizable", "1", "LABEL_OPTIONAL", "TYPE_BOOL", "", "-"),
}


def parse_text_format(path):
    """Parses protoc's text output into nested dicts of lists."""
    root = {}
    stack = [root]
    for line in open(path, encoding="utf-8"):
        text = line.strip()
        if text.endswith("{"):
            node = {}
            stack[-1].setdefault(text[:-1].strip(), []).append(node)
            stack.append(node)
        elif text == "}":
            stack.pop()
        elif ":" in text:
            key, value = text.split(":", 1)
            stack[-1].setdefault(key.strip(), []).append(value.strip().strip('"'))
    return root


def first(node, key, default=""):
    return node.get(key, [default])[0]


def facts(path):
    result = set()

    def add_enum(enum, scope):
        name = scope + "." + first(enum, "name")
        for value in enum.get("value", []):
            result.add(("enumvalue", name, first(value, "name"), first(value, "number")))

    def add_message(message, scope):
        name = scope + "." + first(message, "name")
        result.add(("message", name))
        for field in message.get("field", []):
            result.add((
                "field", name, first(field, "name"), first(field, "number"), first(field, "label"),
                first(field, "type"), first(field, "type_name"), first(field, "oneof_index", "-"),
            ))
        for enum in message.get("enum_type", []):
            add_enum(enum, name)
        for nested in message.get("nested_type", []):
            add_message(nested, name)

    for file in parse_text_format(path).get("file", []):
        package = first(file, "package")
        if package not in PACKAGES:
            continue
        for message in file.get("message_type", []):
            add_message(message, package)
        for enum in file.get("enum_type", []):
            add_enum(enum, package)
        for service in file.get("service", []):
            service_name = package + "." + first(service, "name")
            for method in service.get("method", []):
                result.add((
                    "method", service_name, first(method, "name"), first(method, "input_type"),
                    first(method, "output_type"), first(method, "client_streaming", "false"),
                    first(method, "server_streaming", "false"),
                ))
    return result


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    ours, etcd = facts(sys.argv[1]), facts(sys.argv[2])
    missing = etcd - ours
    extra = (ours - etcd) - ADDED_IN_3_5
    absent_additions = ADDED_IN_3_5 - ours
    for title, items in (("missing from ours", missing), ("unexpected in ours", extra),
                         ("3.5 additions missing from ours", absent_additions)):
        for item in sorted(items):
            print(f"{title}: {item}", file=sys.stderr)
    if missing or extra or absent_additions:
        sys.exit("our protos differ from etcd's wire schema")
    print(f"wire schema matches etcd 3.4 plus the {len(ADDED_IN_3_5)} facts etcd 3.5 added "
          f"({len(ours)} facts compared)")


if __name__ == "__main__":
    main()
