"""Bundles assembled from stored JSON bytes, so a search page never re-serialises its resources."""

from __future__ import annotations

import orjson


def entry_bytes(full_url: str, content: bytes, extra: dict | None = None) -> bytes:
    head = b'{"fullUrl":' + orjson.dumps(full_url) + b',"resource":' + content
    if extra:
        return head + b"," + orjson.dumps(extra)[1:]
    return head + b"}"


def bundle_bytes(btype: str, entries: list[bytes], total: int | None = None, links: list[dict] | None = None,
                 extra: dict | None = None) -> bytes:
    head: dict = {"resourceType": "Bundle", "type": btype}
    if extra:
        head.update(extra)
    if total is not None:
        head["total"] = total
    if links:
        head["link"] = links
    out = orjson.dumps(head)[:-1]
    if not entries:
        return out + b"}"
    return out + b',"entry":[' + b",".join(entries) + b"]}"
