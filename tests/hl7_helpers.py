"""Small builders for HL7 v2 test messages (NHS conventions)."""

from __future__ import annotations


def nhs_number(n: int) -> str:
    """A Modulus-11-valid NHS number in the issued 4xx range, derived from n."""
    base = 400000000 + (n * 7919) % 99999999
    while True:
        digits = f"{base:09d}"
        total = sum(int(d) * w for d, w in zip(digits, range(10, 1, -1)))
        check = 11 - total % 11
        if check == 11:
            check = 0
        if check != 10:
            return digits + str(check)
        base += 1


def admit(n: int, control: str | None = None, event: str = "A01", sender: str = "PAS", facility: str = "RR8") -> bytes:
    """An ADT^A01-style message for person n, spell n."""
    cid = control or f"CRASH{n:06d}"
    segs = [
        f"MSH|^~\\&|{sender}|{facility}|ROUTE|ACTIVE-RECOVERY|20260401083000||ADT^{event}^ADT_A01|{cid}|P|2.4|||AL|NE",
        "EVN||20260401083000|||ADM0042^CLERK^PAT|20260401083000",
        f"PID|1||LTH{n:07d}^^^RR8^MR~{nhs_number(n)}^^^NHS^NH||TESTER{n}^ALICE^^^MRS||19400101|2|||1 HIGH STREET^^LEEDS^^LS1 4AP^GBR^H",
        f"PV1|1|I|WARD 8^BAY 1^BED 3^RR801|21|||C2893004^OKONJO^EMEKA^^^DR|||300||||19|||||SP{n:08d}^^^RR8^VN" + "|" * 25 + "20260401081500",
    ]
    return ("\r".join(segs) + "\r").encode()


def ack_code(ack: bytes | str) -> str:
    text = ack.decode() if isinstance(ack, bytes) else ack
    for seg in text.replace("\n", "\r").split("\r"):
        if seg.startswith("MSA|"):
            return seg.split("|")[1]
    raise AssertionError(f"no MSA in {text!r}")


def ack_control(ack: bytes | str) -> str:
    text = ack.decode() if isinstance(ack, bytes) else ack
    for seg in text.replace("\n", "\r").split("\r"):
        if seg.startswith("MSA|"):
            return seg.split("|")[2]
    return ""
