"""The demo's people written as each partner really sends them: ADT messages and two CSV extracts.

- hospital: one HL7 v2.4 ER7 file per message (`hl7v2/<time>_<control id>.hl7`), HL72UK
  conventions as in `tests/fixtures/hl7v2/` (PID-3 MRN + NHS number, PV1-19 spell, PV1-36/37
  discharge method / destination, ZU1-14 service flag or OBX "REF" onward referral);
- council: one CLD event extract (`council/…csv`), national column names of
  `mappings/council-cld.json`, rows in event order so a Request is stored before what depends on it;
- community: one CSDS extract (`community/…csv`), columns of `mappings/community-csds.json`.

The header of each CSV is read from the column spec, so the files follow the layout the gateway
is configured for.
"""

from __future__ import annotations

import csv
import io
from datetime import date, datetime, timedelta
from pathlib import Path

import orjson

from gateway.demo.people import COMMUNITY_ODS, EXTRACT_END, EXTRACT_START, LA_CODE, REABLEMENT_PROVIDER, Person

FLAGS = {"home-reablement": ("REAB", "ARS"), "recovery-hub": ("HUB", "HUB"), "community-therapy": ("THER", "THER")}


def _ts(moment: datetime) -> str:
    return moment.strftime("%Y%m%d%H%M%S")


def _d(day: date | datetime | None) -> str:
    return day.strftime("%Y-%m-%d") if day else ""


def spec_columns(mappings_dir: Path, name: str) -> list[str]:
    return [c["name"] for c in orjson.loads((mappings_dir / name).read_bytes())["columns"]]


# --------------------------------------------------------------------------- hospital (HL7 v2)


def _pid(p: Person) -> str:
    name = f"{p.family.upper()}^{p.given.upper()}^{p.middle.upper()}^^{p.title}^^L"
    address = f"{p.house} {p.street.upper()}^^{p.locality.upper()}^WEST YORKSHIRE^{p.postcode}^GBR^H"
    fields = ["PID", "1", "", f"{p.mrn}^^^RR8^MR~{p.nhs}^^^NHS^NH", "", name, "", p.birth.strftime("%Y%m%d"), p.sex,
              "", "", address, "", f"{p.phone}^PRN^PH", "", "", "", "", "", "", "", "", p.ethnicity[0]]
    fields += [""] * (32 - len(fields)) + ["NSTS01"]
    return "|".join(fields)


def _pv1(p: Person, ward: str, discharge: bool) -> str:
    j = p.journey
    f = [""] * 46
    f[0], f[1], f[2] = "PV1", "1", "I"
    f[3] = f"{ward}^BAY {1 + p.n % 6}^BED {1 + p.n % 8}^{j.site}"
    f[4] = "21"  # emergency admission via the emergency department
    f[7] = j.consultant
    f[10] = j.specialty
    f[14] = "19"  # admitted from usual place of residence
    f[17] = j.consultant
    f[19] = f"{p.spell}^^^RR8^VN"
    f[44] = _ts(j.admit)
    if discharge:
        f[36] = "1"  # discharged on clinical advice (this trust's PV1-36 is the method, PV1-37 the destination)
        f[37] = j.destination
        f[45] = _ts(j.discharge)
    return "|".join(f).rstrip("|")


def _msh(p: Person, event: str, structure: str, when: datetime, seq: int) -> tuple[str, str]:
    control = f"RR8PAS{p.n:05d}{seq:02d}"
    return control, (f"MSH|^~\\&|PAS|RR8|ROUTE|ACTIVE-RECOVERY|{_ts(when)}||ADT^{event}^{structure}|{control}|P|2.4"
                     f"|||AL|NE|GBR|UNICODE UTF-8")


def adt_messages(p: Person) -> list[tuple[datetime, str, bytes]]:
    """(when, control id, message) for the person's spell: A01, A02 (if moved), A03."""
    j = p.journey
    pd1 = f"PD1|||{p.gp_name}^^{p.gp_code}|G8{p.n:06d}^{'WALSH' if p.n % 2 else 'RAHMAN'}^{'CLAIRE' if p.n % 2 else 'TARIQ'}^^^DR"
    nk1 = f"NK1|1|{p.family.upper()}^{'SUSAN' if p.n % 3 else 'PAUL'}^^^{'MRS' if p.n % 3 else 'MR'}|C^Carer^HL70063||07700 900{p.n % 1000:03d}^PRN^CP"
    out = []
    first_ward = "ACUTE MEDICAL UNIT" if j.transfer else j.ward
    control, msh = _msh(p, "A01", "ADT_A01", j.admit, 1)
    segs = [msh, f"EVN||{_ts(j.admit)}|||ADM0042^CLERK^PAT|{_ts(j.admit)}", _pid(p), pd1, nk1, _pv1(p, first_ward, False)]
    out.append((j.admit, control, _er7(segs)))
    if j.transfer:
        control, msh = _msh(p, "A02", "ADT_A02", j.transfer, 2)
        segs = [msh, f"EVN||{_ts(j.transfer)}|||ADM0042^CLERK^PAT|{_ts(j.transfer)}", _pid(p), pd1,
                _pv1(p, j.ward, False)]
        out.append((j.transfer, control, _er7(segs)))
    sent = j.discharge + timedelta(minutes=20)
    control, msh = _msh(p, "A03", "ADT_A03", sent, 3)
    code, text = j.diagnosis
    fit = (j.discharge - timedelta(days=1)).strftime("%Y%m%d")
    segs = [msh, f"EVN||{_ts(sent)}|||ADM0042^CLERK^PAT|{_ts(j.discharge)}", _pid(p), pd1, nk1, _pv1(p, j.ward, True),
            f"DG1|1||{code}^{text}^I10||{j.admit:%Y%m%d}|F"]
    zu1 = ["ZU1", j.admit.strftime("%Y%m%d"), "1"] + [""] * 22
    zu1[22], zu1[24] = "Y", fit
    if j.pathway in FLAGS and j.flag_style == "zu1":
        zu1[14] = FLAGS[j.pathway][0]
    if j.pathway in FLAGS and j.flag_style == "obx":
        value = FLAGS[j.pathway][1]
        segs.append(f"OBX|1|CE|REF^Onward referral^L||{value}^Active Recovery service^L||||||F")
    segs.append("|".join(zu1).rstrip("|"))
    out.append((sent, control, _er7(segs)))
    return out


def _er7(segments: list[str]) -> bytes:
    return ("\r".join(segments) + "\r").encode("utf-8")


# --------------------------------------------------------------------------- council (CLD)


def council_rows(p: Person) -> list[dict]:
    j = p.journey
    if j.pathway not in ("home-reablement", "recovery-hub"):
        return []
    person = {
        "LA_Code": LA_CODE, "Reporting_Period_Start_Date": _d(EXTRACT_START), "Reporting_Period_End_Date": _d(EXTRACT_END),
        "LA_Person_Unique_Identifier": p.council_id,
        "NHS_Number": "" if p.council_without_nhs else f"{p.nhs[:3]} {p.nhs[3:6]} {p.nhs[6:]}",
        "Family_Name": p.family, "Given_Name": f"{p.given} {p.middle}".strip(), "Date_of_Birth": _d(p.birth),
        "Gender": "Female" if p.sex == "F" else "Male", "Ethnicity": p.ethnicity[1], "Postcode": p.postcode,
        "GP_Practice_Code": p.gp_code, "Client_Type": "Service User", "Primary_Support_Reason": p.support_reason,
    }
    episode = f"EP-{j.admit:%Y}-{p.n:04d}"
    request_day = j.discharge.date()
    assess_day = request_day + timedelta(days=1)
    rows = [{**person, "Event_Type": "Request", "Event_Reference": f"REQ-{p.n:05d}", "Episode_Reference": episode,
             "Event_Start_Date": _d(request_day), "Event_End_Date": _d(request_day),
             "Event_Description": f"Referred by the hospital discharge team: {p.need}",
             "Event_Outcome": "Progress to reablement/ST-Max", "Request_Route_of_Access": "Discharge from Hospital"},
            {**person, "Event_Type": "Assessment", "Event_Reference": f"ASM-{p.n:05d}", "Episode_Reference": episode,
             "Event_Start_Date": _d(assess_day), "Event_End_Date": _d(assess_day),
             "Event_Outcome": "Progress to reablement/ST-Max", "Assessment_Type": "Short term assessment",
             "Eligible_Needs_Identified": "Yes", "Method_of_Assessment": "Face to face"}]
    start = assess_day
    if j.hub:
        cqc, component, _ = j.hub
        hub_end = start + timedelta(days=21 + p.n % 8)  # a 3-4 week stay
        rows.append({**person, "Event_Type": "Service", "Event_Reference": f"SVC-{p.n:05d}H", "Episode_Reference": episode,
                     "Event_Start_Date": _d(start), "Event_End_Date": _d(hub_end), "Event_Outcome": "Provision of service",
                     "Service_Type": "Short term support: ST-Max", "Service_Component": component,
                     "Delivery_Mechanism": "CASSR Commissioned Support", "Provider_CQC_Location_ID": cqc,
                     "Planned_units_per_week": "7"})
        start = hub_end
    end = start + timedelta(days=j.reablement_days)
    ended = end <= EXTRACT_END
    if j.reablement_days >= 18:
        review_day = start + timedelta(days=14)
        rows.append({**person, "Event_Type": "Review", "Event_Reference": f"REV-{p.n:05d}", "Episode_Reference": episode,
                     "Event_Start_Date": _d(review_day), "Event_End_Date": _d(review_day),
                     "Event_Outcome": "Continuation of support or services", "Review_Reason": "Planned",
                     "Review_Outcomes_Achieved": "Partially achieved" if p.n % 3 else "Fully achieved",
                     "Method_of_Review": "Telephone" if p.n % 2 else "Face to face"})
    rows.append({**person, "Event_Type": "Service", "Event_Reference": f"SVC-{p.n:05d}", "Episode_Reference": episode,
                 "Event_Start_Date": _d(start), "Event_End_Date": _d(end) if ended else "",
                 "Event_Outcome": j.service_outcome if ended else "",
                 "Service_Type": "Short term support: ST-Max", "Service_Component": "Reablement",
                 "Delivery_Mechanism": "CASSR Commissioned Support", "Provider_CQC_Location_ID": REABLEMENT_PROVIDER,
                 "Planned_units_per_week": str(7 + (p.n % 5) * 3.5).removesuffix(".0")})
    # Reviews and services are listed in date order, as an extract sorted by event start would be
    return sorted(rows, key=lambda r: (r["Event_Type"] != "Request", r["Event_Start_Date"]))


# --------------------------------------------------------------------------- community (CSDS)


def community_rows(p: Person) -> list[dict]:
    j = p.journey
    if not j.therapy:
        return []
    person = {
        "OrgID_Provider": COMMUNITY_ODS, "LocalPatientID": p.community_id, "NHSNumber": p.nhs, "NHSNumberStatus": "01",
        "PersonFamilyName": p.family.upper(), "PersonGivenName": p.given, "PersonBirthDate": _d(p.birth),
        "Gender": "2" if p.sex == "F" else "1", "EthnicCategory": p.ethnicity[0], "Postcode": p.postcode.replace(" ", ""),
        "OrgID_GP": p.gp_code,
    }
    sr = f"SR{p.n:06d}"
    received = j.discharge + timedelta(hours=2, minutes=10)
    # At a hub the therapy team sees the person there; at home, at home
    at_hub = j.hub is not None
    start = (j.discharge + timedelta(days=1)).replace(hour=10, minute=0)
    end_day = start.date() + timedelta(days=j.therapy_days)
    discharged = end_day <= EXTRACT_END
    rows = [{**person, "Record_Type": "CYP101", "ServiceRequestID": sr, "ReferralRequest_ReceivedDate": _d(received),
             "ReferralRequest_ReceivedTime": received.strftime("%H:%M"),
             "SourceOfReferral": "C1" if j.pathway != "community-therapy" else "H2",
             "PriorityType": "2" if p.n % 4 else "1", "TeamID_Local": p.team,
             "Discharge_Date": _d(end_day) if discharged else ""}]
    visits = max(3, j.therapy_days // 5)
    professional = f"{'OT' if p.n % 2 else 'PT'}-{4400 + p.n % 37}"
    procedure = "84478008" if p.n % 2 else "91251008"
    for k in range(visits):
        day = start + timedelta(days=round(k * j.therapy_days / visits), hours=(k * 3) % 6)
        cc = f"CC{p.n:05d}{k:02d}"
        attendance = "5"
        if k not in (0, visits - 1) and (p.n + k) % 9 == 0:
            attendance = "3" if (p.n + k) % 2 else "4"  # did not attend / cancelled by the team
        phone = k not in (0, visits - 1) and k % 3 == 2
        row = {**person, "Record_Type": "CYP201", "ServiceRequestID": sr, "CareContactID": cc,
               "Contact_Date": _d(day), "Contact_Time": day.strftime("%H:%M"),
               "CareContact_Duration": ("15" if phone else str(30 + (p.n + k) % 4 * 10)) if attendance == "5" else "",
               "ConsMechanism": "02" if phone else "01",
               "ActLocTypeCode": "" if phone else ("G02" if at_hub and k < visits // 2 else "A01"),
               "AttendanceStatus": attendance, "CareContact_CancellationReason": "02" if attendance == "4" else ""}
        if k == 0:
            row["TeamID_Local"] = p.team
        rows.append(row)
        if attendance != "5" or phone:
            continue
        if k in (0, visits - 1):
            score = j.barthel_start if k == 0 else j.barthel_end
            rows.append({**person, "Record_Type": "CYP202", "ServiceRequestID": sr, "CareContactID": cc,
                         "Contact_Date": _d(day), "CareActivityID": f"CA{p.n:05d}{k:02d}1", "CommCareActType": "02",
                         "CareProfLocalID": professional, "CareActivity_Duration": "20",
                         "CodedObservation": "273302005", "ObsValue": str(score), "UCUMUnit": "{score}"})
        rows.append({**person, "Record_Type": "CYP202", "ServiceRequestID": sr, "CareContactID": cc,
                     "Contact_Date": _d(day), "CareActivityID": f"CA{p.n:05d}{k:02d}2", "CommCareActType": "03",
                     "CareProfLocalID": professional, "CareActivity_Duration": "25", "CodedProcedure": procedure})
    plan_day = start.date()
    plan = {**person, "Record_Type": "CYP004", "ServiceRequestID": sr, "PlanID": f"CP{p.n:05d}",
            "CarePlanCreationDate": _d(plan_day), "CarePlanImplementationDate": _d(plan_day + timedelta(days=1)),
            "CarePlanAgreedDate": _d(plan_day), "CarePlanEndDate": _d(end_day) if discharged else ""}
    for g, text in enumerate(j.goals, 1):
        target = plan_day + timedelta(days=min(j.therapy_days, 7 * (g + 1)))
        if not discharged:
            status = "In progress" if g == 1 else "Agreed"
        else:
            status = ["Achieved", "Achieved", "Partially achieved", "Not achieved"][(p.n + g) % 4]
        plan.update({f"Goal_{g}_Description": text, f"Goal_{g}_TargetDate": _d(target), f"Goal_{g}_Status": status})
    rows.append(plan)
    return rows


# --------------------------------------------------------------------------- writing


def _csv(header: list[str], rows: list[dict]) -> bytes:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=header, extrasaction="raise", lineterminator="\r\n")
    w.writeheader()
    for row in rows:
        w.writerow(row)
    return buf.getvalue().encode("utf-8")


def write_dataset(people: list[Person], folder: Path, mappings_dir: Path) -> dict[str, list[Path]]:
    """Write the three partners' files; returns them by source, in the order to load them."""
    folder.mkdir(parents=True, exist_ok=True)
    hl7_dir = folder / "hl7v2"
    hl7_dir.mkdir(exist_ok=True)
    messages = sorted((m for p in people for m in adt_messages(p)), key=lambda m: (m[0], m[1]))
    hl7_files = []
    for when, control, raw in messages:
        path = hl7_dir / f"{_ts(when)}_{control}.hl7"
        _write_if_changed(path, raw)
        hl7_files.append(path)
    council = folder / "council" / f"cld_{LA_CODE}_{EXTRACT_START:%Y%m%d}_{EXTRACT_END:%Y%m%d}.csv"
    council.parent.mkdir(exist_ok=True)
    council_rows_all = [r for p in people for r in council_rows(p)]
    _write_if_changed(council, _csv(spec_columns(mappings_dir, "council-cld.json"), council_rows_all))
    community = folder / "community" / f"csds_{COMMUNITY_ODS}_{EXTRACT_START:%Y%m%d}_{EXTRACT_END:%Y%m%d}.csv"
    community.parent.mkdir(exist_ok=True)
    community_rows_all = [r for p in people for r in community_rows(p)]
    _write_if_changed(community, _csv(spec_columns(mappings_dir, "community-csds.json"), community_rows_all))
    return {"hl7v2": hl7_files, "council": [council], "community": [community]}


def _write_if_changed(path: Path, data: bytes) -> None:
    if not path.exists() or path.read_bytes() != data:
        path.write_bytes(data)
