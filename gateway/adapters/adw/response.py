"""The gateway's answer to an ADW notice: an R4 response message Bundle for ``$process-message``.

Shape (FHIR R4 messaging, https://hl7.org/fhir/R4/messaging.html): a ``message`` Bundle whose
first entry is a MessageHeader with ``response.identifier`` = the MessageHeader.id of the notice
answered and ``response.code`` ok | transient-error | fatal-error; when the code is not ok,
``response.details`` references an OperationOutcome entry listing the issues.

The ADW responses (e.g. `Generated/Examples/Profile.ADW-AssessmentNoticeRejectResponse/
ADW-Message-Assessment-Notice-Reject-Response-Bundle-1-Example-1.xml`) are built the same way:
``response.identifier`` is the notice's MessageHeader.id, the event is the accept / reject event
for the notice type, source and destination endpoints are swapped. This module follows that
for the event (``eventCoding``: e.g. 975711000000108 "Assessment Notice Accept Response") and
the endpoints. One difference: an ADW reject carries ``response.code`` ok (the message was
processed; the council disagrees) with an ADW NoticeRejectReason; here a rejection means the
gateway could not take the notice in, so the code is fatal-error (or transient-error) with an
OperationOutcome saying why.

Ids are derived from the incoming message id and the outcome (UUID v5), so answering a retried
notice gives the same response; only ``timestamp`` changes unless given.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timezone
from typing import Any

from .codes import ACCEPT_EVENT, EVENT_DISPLAY, GATEWAY, NOTICE_EVENTS, REJECT_EVENT, SNOMED
from .parse import as_list

__all__ = ["build_response"]

_NAMESPACE = uuid.UUID("6f1d8f5e-5b0c-4c53-9a43-7a1c1d2f0a41")  # gateway-chosen, fixed forever
_GENERIC_EVENT = {"system": f"{GATEWAY}/CodeSystem/message-event", "code": "process-message-response",
                  "display": "Response to a $process-message request"}


def build_response(bundle_in: dict, accepted: bool, issues: list[tuple[str, str]], *,
                   transient: bool = False, timestamp: str | None = None,
                   source_endpoint: str | None = None) -> dict:
    """An R4 response message Bundle answering the notice ``bundle_in`` (a DSTU2 Bundle dict).

    ``issues`` are (location, message) pairs, e.g. `AdwMapping.errors` or an AdwError's. When
    ``accepted`` they are reported as warnings; otherwise as errors, with response code
    ``transient-error`` if ``transient`` (try again later) else ``fatal-error`` (do not resend
    unchanged). ``source_endpoint`` defaults to the notice's destination endpoint (the council).
    """
    header = _header_of(bundle_in)
    message_id = str(header.get("id") or (bundle_in.get("id") if isinstance(bundle_in, dict) else "") or "unknown")
    code = "ok" if accepted else ("transient-error" if transient else "fatal-error")
    when = timestamp or datetime.now(timezone.utc).isoformat(timespec="seconds")

    bundle_id = _uuid(message_id, code, "bundle")
    header_id = _uuid(message_id, code, "header")
    outcome_id = _uuid(message_id, code, "outcome")

    source = (header.get("source") or {}) if isinstance(header.get("source"), dict) else {}
    destination = next((d for d in as_list(header.get("destination")) if isinstance(d, dict)), {})
    reply_to = source.get("endpoint")
    from_endpoint = source_endpoint or destination.get("endpoint") or f"{GATEWAY}/fhir"

    response_header: dict[str, Any] = {
        "resourceType": "MessageHeader",
        "id": header_id,
        "eventCoding": _event(header, accepted),
        "source": {"endpoint": from_endpoint},
        "response": {"identifier": message_id, "code": code},
    }
    if reply_to:
        response_header["destination"] = [{"endpoint": reply_to}]
    # MessageHeader elements are ordered as R4 defines them (eventCoding, destination, source, response).
    response_header = {k: response_header[k] for k in
                       ("resourceType", "id", "eventCoding", "destination", "source", "response")
                       if k in response_header}

    entries = [{"fullUrl": f"urn:uuid:{header_id}", "resource": response_header}]
    if issues or not accepted:
        outcome = _outcome(outcome_id, issues, accepted, transient)
        entries.append({"fullUrl": f"urn:uuid:{outcome_id}", "resource": outcome})
        response_header["response"]["details"] = {"reference": f"urn:uuid:{outcome_id}"}
    return {"resourceType": "Bundle", "id": bundle_id, "type": "message", "timestamp": when, "entry": entries}


def _header_of(bundle_in: Any) -> dict:
    if not isinstance(bundle_in, dict):
        return {}
    first = next(iter(as_list(bundle_in.get("entry"))), None)
    res = first.get("resource") if isinstance(first, dict) else None
    return res if isinstance(res, dict) and res.get("resourceType") == "MessageHeader" else {}


def _event(header: dict, accepted: bool) -> dict:
    event = header.get("event") if isinstance(header.get("event"), dict) else {}
    code = str(event.get("code") or "")
    if event.get("system") == SNOMED and code in NOTICE_EVENTS:
        kind = NOTICE_EVENTS[code][0]
        answer = (ACCEPT_EVENT if accepted else REJECT_EVENT)[kind]
        return {"system": SNOMED, "code": answer, "display": EVENT_DISPLAY[answer]}
    return dict(_GENERIC_EVENT)


def _outcome(outcome_id: str, issues: list[tuple[str, str]], accepted: bool, transient: bool) -> dict:
    severity = "warning" if accepted else "error"
    issue_code = "transient" if transient and not accepted else ("informational" if accepted else "invalid")
    listed = [{"severity": severity, "code": issue_code, "diagnostics": str(message),
               **({"expression": [str(location)]} if location else {})}
              for location, message in issues]
    if not listed:
        listed = [{"severity": severity, "code": issue_code,
                   "diagnostics": "The notice was not accepted." if not accepted else "Accepted."}]
    return {"resourceType": "OperationOutcome", "id": outcome_id, "issue": listed}


def _uuid(message_id: str, code: str, part: str) -> str:
    return str(uuid.uuid5(_NAMESPACE, f"{message_id}|{code}|{part}"))
