"""A synthetic, realistic and deliberately messy biobank export (source-export.md), for
`biobank-gateway demo-data`, `make run` and the benchmarks.

Deterministic: everything comes from `random.Random(seed)` and a fixed "now" (`REFERENCE`,
2026-06-30), never from the clock, so a seed always gives the same bytes. Exactly
`subjects` subject codes appear. Per subject about five specimens: a whole-blood draw
(WB) with plasma, serum and buffy-coat aliquots and DNA extracted from the blood, now and
then urine, saliva, PBMC, RNA or a tissue block; ~20% of subjects have genotyped DNA (MEGA,
GSA-24v3). Consent histories upgrade the form version (older rows SUPERSEDED, the latest
ACTIVE), a few % are withdrawn with each scope, some expired. Studies come from the
biobank (BB-DIST-YYYY-NNN, distributions) and the TRC trial unit (TRC-YYYY-NNN, phases 0
to 2B, observational too), with enrolments. Some rows use the legacy MM/DD/YYYY dates,
`specimens.csv` carries an extra `lims_batch` column (reported, ignored), `studies.csv`
starts with a BOM, and one aliquot is written before its parent (a forward reference).

Dirty rows — appended at the end of each file, each one hitting a reject rule; the
returned dict lists them (`dirty`: record_set, record_id, line, rule):

specimens    duplicate-id (two rows, both rejected), unknown-parent, unknown-specimen-type,
             missing-collection-datetime (primary), future-collection-date, bad-date,
             negative-quantity, missing-required (status), bad-boolean (genotyped)
consents     duplicate-id (two rows), withdrawn-without-date, withdrawn-without-scope,
             missing-required (permits_genetic), bad-date, unknown-status
studies      missing-required (title), unknown-phase, unknown-status
participants unknown-study, unknown-consent, unknown-status, rejected-study (its study
             is the missing-title row above)
"""

from __future__ import annotations

import csv
import random
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

REFERENCE = datetime(2026, 6, 30, 12, 0)
FIRST_DAY = date(2012, 1, 1)

SPECIMEN_COLUMNS = [
    "specimen_id", "subject_id", "mrn", "parent_specimen_id", "specimen_type", "collection_datetime",
    "received_datetime", "collection_method", "body_site", "quantity_value", "quantity_unit",
    "concentration_ng_ul", "container_type", "container_barcode", "storage_temperature", "storage_location",
    "status", "genotyped", "genotyping_platform", "updated_at", "lims_batch",
]
CONSENT_COLUMNS = [
    "consent_id", "subject_id", "mrn", "form_version", "signed_date", "status", "withdrawn_date",
    "withdrawal_scope", "permits_research_use", "permits_genetic", "permits_ehr_linkage", "permits_recontact",
    "permits_external_sharing", "permits_commercial", "expires_date", "updated_at",
]
STUDY_COLUMNS = [
    "study_id", "irb_protocol", "title", "description", "phase", "category", "status", "start_date", "end_date",
    "principal_investigator", "sponsor", "site", "conditions", "keywords", "updated_at",
]
PARTICIPANT_COLUMNS = [
    "enrollment_id", "study_id", "subject_id", "consent_id", "status", "enrolled_date", "off_study_date", "arm",
    "updated_at",
]

FORMS = [(date(2012, 1, 1), "BIOBANK-v2.1"), (date(2017, 3, 1), "BIOBANK-v3.0"), (date(2021, 9, 1), "BIOBANK-v3.2")]
PIS = ["Elena Marquez, MD", "David Chen, MD PhD", "Priya Raman, PhD", "Thomas O'Neil, MD", "Grace Liu, MD",
       "Samuel Okafor, MD", "Hannah Weiss, PhD", "Miguel Santos, MD"]
SPONSORS = ["National Cancer Institute", "NHLBI", "Massachusetts General Hospital", "Brigham Research Fund",
            "Novagen Therapeutics", "Helix Oncology Inc."]
CONDITIONS = ["C34.90", "C18.9", "C50.919", "E11.9", "I25.10", "J45.909", "G30.9", "C61", "K50.90", "M05.79"]
KEYWORDS = ["biomarker", "genomics", "first-in-human", "dose escalation", "proteomics", "cohort", "pharmacokinetics"]
DISEASE_AREAS = ["non-small cell lung cancer", "colorectal cancer", "type 2 diabetes", "coronary disease",
                 "asthma", "Alzheimer disease", "prostate cancer", "Crohn disease", "rheumatoid arthritis"]


class _Csv:
    """One output file: writes rows in the contract's column order and counts lines."""

    def __init__(self, path: Path, columns: list[str], bom: bool = False) -> None:
        self.handle = path.open("w", encoding="utf-8-sig" if bom else "utf-8", newline="")
        self.writer = csv.writer(self.handle, lineterminator="\n")
        self.columns = columns
        self.writer.writerow(columns)
        self.line = 1

    def write(self, row: dict[str, Any]) -> int:
        self.writer.writerow([row.get(c, "") for c in self.columns])
        self.line += 1
        return self.line

    def close(self) -> None:
        self.handle.close()


class _Demo:
    def __init__(self, out_dir: Path, subjects: int, seed: int) -> None:
        self.rng = random.Random(seed)
        self.subjects = subjects
        self.specimens = _Csv(out_dir / "specimens.csv", SPECIMEN_COLUMNS)
        self.consents = _Csv(out_dir / "consents.csv", CONSENT_COLUMNS)
        self.studies = _Csv(out_dir / "studies.csv", STUDY_COLUMNS, bom=True)
        self.participants = _Csv(out_dir / "participants.csv", PARTICIPANT_COLUMNS)
        self.dirty: list[dict[str, Any]] = []
        self.barcodes = 0
        self.enrollments = 0
        self.latest_consent: dict[str, str] = {}

    # -- small helpers ---------------------------------------------------------------

    def day(self, start: date, end: date) -> date:
        return start + timedelta(days=self.rng.randrange(max(1, (end - start).days)))

    def moment(self, day: date, first_hour: int = 7, last_hour: int = 17) -> datetime:
        return datetime(day.year, day.month, day.day, self.rng.randrange(first_hour, last_hour), self.rng.randrange(60))

    def when(self, value: datetime) -> str:
        """Mostly ISO local time, sometimes with an offset, now and then the legacy LIMS form."""
        roll = self.rng.random()
        if roll < 0.04:
            return value.strftime("%m/%d/%Y %H:%M")
        if roll < 0.10:
            return value.strftime("%Y-%m-%dT%H:%M:%S") + ("-04:00" if 3 < value.month < 11 else "-05:00")
        return value.strftime("%Y-%m-%dT%H:%M:%S")

    def date_text(self, value: date) -> str:
        return value.strftime("%m/%d/%Y") if self.rng.random() < 0.04 else value.isoformat()

    def updated(self, after: date) -> str:
        return self.when(self.moment(self.day(after, REFERENCE.date())))

    def barcode(self) -> str:
        self.barcodes += 1
        return f"FR{(self.barcodes * 7919 + 100_003) % 10**10:010d}"

    def location(self, temperature: str) -> str:
        unit = {"-80": "ULT", "-20": "FRZ", "4": "REF", "RT": "CAB", "LN2": "LN2"}[temperature]
        return (f"{unit}-{self.rng.randrange(1, 13):02d}/R{self.rng.randrange(1, 9)}/B{self.rng.randrange(1, 200):03d}/"
                f"{'ABCDEFGHI'[self.rng.randrange(9)]}{self.rng.randrange(1, 10)}")

    @staticmethod
    def subject(i: int) -> str:
        return f"S{i:07d}"

    @staticmethod
    def mrn(i: int) -> str:
        return f"MGH-{(i * 7919 + 1_234_567) % 10_000_000:07d}"

    def mark(self, record_set: str, record_id: str, line: int, rule: str) -> None:
        self.dirty.append({"record_set": record_set, "record_id": record_id, "line": line, "rule": rule})

    # -- studies ---------------------------------------------------------------------

    def write_studies(self) -> list[tuple[str, str, date]]:
        """Biobank distributions and TRC trials; returns (study_id, kind, start) of each."""
        studies = []
        for n in range(max(4, self.subjects // 400)):
            year = 2014 + n % 12
            studies.append(self.study(f"BB-DIST-{year}-{100 + n:03d}", "BB", year))
        for n in range(max(5, self.subjects // 300)):
            year = 2015 + n % 11
            studies.append(self.study(f"TRC-{year}-{1 + n:03d}", "TRC", year))
        return studies

    def study(self, study_id: str, kind: str, year: int) -> tuple[str, str, date]:
        rng = self.rng
        start = self.day(date(year, 1, 1), date(year, 12, 28))
        area = rng.choice(DISEASE_AREAS)
        if kind == "BB":
            phase, category = "N/A", "BIOBANK_DISTRIBUTION"
            title = f"Biobank distribution: {area} specimens for {rng.choice(PIS).split(',')[0]}"
            status = rng.choice(["ACTIVE", "ACTIVE", "COMPLETED"])
            site = "MGH Biobank"
        else:
            category = rng.choice(["INTERVENTIONAL"] * 4 + ["OBSERVATIONAL"])
            phase = rng.choice(["0", "1", "1", "1/2", "2", "2A", "2B"]) if category == "INTERVENTIONAL" else "N/A"
            title = f"Phase {phase} study in {area}" if phase != "N/A" else f"Observational study of {area}"
            status = rng.choice(["PLANNED", "ENROLLING", "ENROLLING", "ACTIVE", "CLOSED_TO_ACCRUAL", "COMPLETED",
                                 "SUSPENDED"])
            site = "Translational Research Center"
        end = start + timedelta(days=rng.randrange(365, 2200)) if status == "COMPLETED" else None
        self.studies.write({
            "study_id": study_id, "irb_protocol": f"{year}P{rng.randrange(10**6):06d}", "title": title,
            "description": f"{title}, with collection of blood and tissue specimens." if rng.random() < 0.7 else "",
            "phase": phase, "category": category, "status": status, "start_date": self.date_text(start),
            "end_date": end.isoformat() if end and end < REFERENCE.date() else "",
            "principal_investigator": rng.choice(PIS), "sponsor": rng.choice(SPONSORS), "site": site,
            "conditions": "|".join(rng.sample(CONDITIONS, rng.randrange(1, 3))),
            "keywords": "|".join(rng.sample(KEYWORDS, rng.randrange(0, 3))),
            "updated_at": self.updated(start),
        })
        return study_id, kind, start

    # -- consents --------------------------------------------------------------------

    def write_consents(self, i: int, first_visit: date) -> date:
        """The subject's consent history; returns the date of the first signature."""
        rng, subject = self.rng, self.subject(i)
        signed = max(FIRST_DAY, first_visit - timedelta(days=rng.randrange(0, 30)))
        forms = [(since, form) for since, form in FORMS if since <= REFERENCE.date()]
        history = [next(f for s, f in reversed(forms) if s <= signed)]
        upgrades = [(s, f) for s, f in forms if s > signed and rng.random() < 0.6]
        dates = [signed] + [self.day(s, min(s + timedelta(days=400), REFERENCE.date())) for s, _ in upgrades]
        history += [f for _, f in upgrades]
        fate = rng.random()
        for k, (form, signed_on) in enumerate(zip(history, dates, strict=True), start=1):
            last = k == len(history)
            row = self.permissions()
            row.update({"consent_id": f"C{i:07d}-{k}", "subject_id": subject, "form_version": form,
                        "mrn": self.mrn(i) if rng.random() < 0.97 else "", "signed_date": self.date_text(signed_on),
                        "status": "SUPERSEDED", "updated_at": self.updated(signed_on)})
            if last:
                row["status"] = "ACTIVE"
                if fate < 0.06:
                    withdrawn = self.day(signed_on, REFERENCE.date())
                    row.update({"status": "WITHDRAWN", "withdrawn_date": self.date_text(withdrawn),
                                "withdrawal_scope": ("NO_FURTHER_USE", "DESTROY", "NO_CONTACT")[int(fate / 0.02)],
                                "updated_at": self.updated(withdrawn)})
                elif fate < 0.09:
                    expired = self.day(signed_on, REFERENCE.date())
                    row.update({"status": "EXPIRED", "expires_date": expired.isoformat()})
                elif fate < 0.2:
                    row["expires_date"] = (signed_on + timedelta(days=365 * 10)).isoformat()
            self.consents.write(row)
            self.latest_consent[subject] = row["consent_id"]
        return signed

    def permissions(self) -> dict[str, str]:
        rng = self.rng
        yes_no = ("Y", "N") if rng.random() < 0.7 else ("true", "false") if rng.random() < 0.5 else ("1", "0")

        def flag(p: float) -> str:
            return yes_no[0] if rng.random() < p else yes_no[1]

        commercial = rng.random()
        return {"permits_research_use": flag(0.99), "permits_genetic": flag(0.85), "permits_ehr_linkage": flag(0.9),
                "permits_recontact": flag(0.7), "permits_external_sharing": flag(0.6),
                "permits_commercial": "" if commercial < 0.5 else flag(0.4)}

    # -- specimens -------------------------------------------------------------------

    def write_specimens(self, i: int, visit: date, genotyped: bool) -> None:
        rng = self.rng
        subject, mrn = self.subject(i), self.mrn(i)
        drawn = self.moment(visit)
        seq = 0
        rows: list[dict[str, Any]] = []

        def add(kind: str, parent: str = "", **fields: Any) -> str:
            nonlocal seq
            seq += 1
            accession = f"BB-{i:07d}-{seq:02d}"
            rows.append(self.specimen(accession, subject, mrn if rng.random() < 0.9 else "", kind, parent, drawn,
                                      **fields))
            return accession

        primary = rng.random()
        if primary < 0.9:
            blood = add("WB", method="VENI", body_site=rng.choice(["left arm", "right arm", "antecubital fossa"]))
            for _ in range(rng.choice([1, 2, 2, 3])):
                add("PLS", blood)
            if rng.random() < 0.4:
                add("SER", blood)
            buffy = add("BC", blood) if rng.random() < 0.8 else blood
            if genotyped or rng.random() < 0.7:
                add("DNA", buffy, genotyped=genotyped)
            if rng.random() < 0.08:
                add("PBMC", blood)
            if rng.random() < 0.04:
                add("RNA", blood)
        else:
            kind, method = rng.choice([("URN", "VOID"), ("SAL", "SPIT"), ("FFPE", "SURG"), ("FRZ", "BIOP")])
            source = add(kind, method=method)
            if kind == "SAL" or genotyped:
                add("DNA", source, genotyped=genotyped)
        if i == 2 and len(rows) > 1:
            rows[0], rows[1] = rows[1], rows[0]  # an aliquot before its parent: a forward reference
        for row in rows:
            self.specimens.write(row)

    def specimen(self, accession: str, subject: str, mrn: str, kind: str, parent: str, drawn: datetime,
                 method: str = "", body_site: str = "", genotyped: bool = False) -> dict[str, Any]:
        rng = self.rng
        quantity, unit, temperature, container = {
            "WB": (rng.choice([6, 8, 10]), "mL", rng.choice(["4", "RT"]), "EDTA tube 10 mL"),
            "PLS": (rng.choice([0.5, 1.0, 1.0]), "mL", "-80", "2D barcoded cryovial 1.0 mL"),
            "SER": (0.5, "mL", "-80", "2D barcoded cryovial 1.0 mL"),
            "BC": (rng.choice([250, 500]), "uL", "-80", "2D barcoded cryovial 0.5 mL"),
            "DNA": (round(rng.uniform(2, 60), 1), "ug", rng.choice(["-20", "-20", "4"]), "2D barcoded tube 0.75 mL"),
            "RNA": (round(rng.uniform(200, 5000)), "ng", "-80", "2D barcoded tube 0.75 mL"),
            "PBMC": (1.0, "mL", "LN2", "cryovial 1.8 mL"),
            "URN": (rng.choice([5, 10]), "mL", "-80", "urine cup 50 mL"),
            "SAL": (2, "mL", "RT", "Oragene DNA kit"),
            "FFPE": (1, "block", "RT", "FFPE cassette"),
            "FRZ": (round(rng.uniform(10, 200)), "mg", "LN2", "cryovial 2.0 mL"),
        }[kind]
        status = rng.choices(["AVAILABLE", "RESERVED", "DEPLETED", "SHIPPED", "DESTROYED", "QC_FAIL"],
                             [80, 5, 6, 6, 2, 1])[0]
        if status == "DEPLETED":
            quantity = 0
        primary = not parent
        received = drawn + timedelta(minutes=rng.randrange(30, 300))
        processed = received + timedelta(minutes=rng.randrange(20, 240))
        return {
            "specimen_id": accession, "subject_id": subject, "mrn": mrn, "parent_specimen_id": parent,
            "specimen_type": kind,
            "collection_datetime": self.when(drawn if primary else processed) if primary or rng.random() < 0.5 else "",
            "received_datetime": self.when(received) if primary else "",
            "collection_method": method, "body_site": body_site,
            "quantity_value": quantity, "quantity_unit": unit,
            "concentration_ng_ul": round(rng.uniform(15, 250), 1) if kind in ("DNA", "RNA") else "",
            "container_type": container, "container_barcode": self.barcode(), "storage_temperature": temperature,
            "storage_location": self.location(temperature), "status": status,
            "genotyped": ("Y" if genotyped else rng.choice(["N", ""])) if kind == "DNA" else "",
            "genotyping_platform": rng.choice(["MEGA", "GSA-24v3"]) if genotyped else "",
            "updated_at": self.updated(drawn.date()), "lims_batch": f"LB{drawn:%y%m}-{rng.randrange(1, 40):02d}",
        }

    # -- participants ----------------------------------------------------------------

    def write_participants(self, i: int, signed: date, studies: list[tuple[str, str, date]]) -> None:
        rng = self.rng
        roll = rng.random()
        count = 0 if roll < 0.65 else 1 if roll < 0.92 else 2
        for study_id, kind, start in rng.sample(studies, count):
            self.enrollments += 1
            enrolled = self.day(max(start, signed), REFERENCE.date())
            status = rng.choices(["CANDIDATE", "ELIGIBLE", "ENROLLED", "ON_STUDY", "OFF_STUDY", "WITHDRAWN",
                                  "COMPLETED"], [3, 4, 20, 40, 10, 5, 18])[0]
            ended = status in ("OFF_STUDY", "WITHDRAWN", "COMPLETED")
            self.participants.write({
                "enrollment_id": f"E{self.enrollments:07d}", "study_id": study_id, "subject_id": self.subject(i),
                "consent_id": self.latest_consent[self.subject(i)] if rng.random() < 0.9 else "",
                "status": status, "enrolled_date": self.date_text(enrolled) if status not in ("CANDIDATE", "ELIGIBLE")
                else "", "off_study_date": self.day(enrolled, REFERENCE.date()).isoformat() if ended else "",
                "arm": rng.choice(["Arm A", "Arm B", "Dose level 1", "Dose level 2"]) if kind == "TRC"
                else "distribution cohort",
                "updated_at": self.updated(enrolled),
            })

    # -- the dirty rows ----------------------------------------------------------------

    def write_dirty(self) -> None:
        base = self.specimen("", self.subject(1), self.mrn(1), "PLS", "", self.moment(date(2020, 5, 4)))
        base.update(parent_specimen_id="", collection_datetime="2020-05-04T09:30:00", status="AVAILABLE",
                    genotyped="")
        cases = [
            ("BB-DIRTY-01", "duplicate-id", {}), ("BB-DIRTY-01", "duplicate-id", {}),
            ("BB-DIRTY-02", "unknown-parent", {"parent_specimen_id": "BB-9999999-01"}),
            ("BB-DIRTY-03", "unknown-specimen-type", {"specimen_type": "XYZ"}),
            ("BB-DIRTY-04", "missing-collection-datetime", {"collection_datetime": ""}),
            ("BB-DIRTY-05", "future-collection-date", {"collection_datetime": "2099-01-01T09:00:00"}),
            ("BB-DIRTY-06", "bad-date", {"collection_datetime": "March 5th 2019"}),
            ("BB-DIRTY-07", "negative-quantity", {"quantity_value": "-0.5"}),
            ("BB-DIRTY-08", "missing-required", {"status": ""}),
            ("BB-DIRTY-09", "bad-boolean", {"specimen_type": "DNA", "genotyped": "maybe"}),
        ]
        for n, (accession, rule, changes) in enumerate(cases):
            subject = self.subject(1 + n % self.subjects)
            row = {**base, "specimen_id": accession, "subject_id": subject, "mrn": self.mrn(1 + n % self.subjects),
                   **changes}
            self.mark("specimens", accession, self.specimens.write(row), rule)

        consent = {"subject_id": self.subject(1), "mrn": self.mrn(1), "form_version": "BIOBANK-v3.2",
                   "signed_date": "2022-02-01", "status": "ACTIVE", "updated_at": "2022-02-01T10:00:00",
                   **{c: "Y" for c in CONSENT_COLUMNS if c.startswith("permits_")}}
        for consent_id, rule, changes in [
            ("C-DIRTY-1", "duplicate-id", {}), ("C-DIRTY-1", "duplicate-id", {}),
            ("C-DIRTY-2", "withdrawn-without-date", {"status": "WITHDRAWN", "withdrawal_scope": "DESTROY"}),
            ("C-DIRTY-3", "withdrawn-without-scope", {"status": "WITHDRAWN", "withdrawn_date": "2023-01-01"}),
            ("C-DIRTY-4", "missing-required", {"permits_genetic": ""}),
            ("C-DIRTY-5", "bad-date", {"signed_date": "13/45/2019"}),
            ("C-DIRTY-6", "unknown-status", {"status": "REVOKED"}),
        ]:
            self.mark("consents", consent_id, self.consents.write({**consent, "consent_id": consent_id, **changes}),
                      rule)

        study = {"title": "Dirty study", "status": "ACTIVE", "category": "OBSERVATIONAL", "phase": "N/A",
                 "updated_at": "2024-01-01T00:00:00"}
        for study_id, rule, changes in [
            ("TRC-2024-901", "missing-required", {"title": ""}),
            ("TRC-2024-902", "unknown-phase", {"phase": "3B", "category": "INTERVENTIONAL"}),
            ("TRC-2024-903", "unknown-status", {"status": "ON_HOLD"}),
        ]:
            self.mark("studies", study_id, self.studies.write({**study, "study_id": study_id, **changes}), rule)

        enrolment = {"subject_id": self.subject(1), "status": "ON_STUDY", "enrolled_date": "2024-02-01",
                     "updated_at": "2024-02-01T00:00:00", "study_id": "TRC-2015-001"}
        for enrollment_id, rule, changes in [
            ("E-DIRTY-1", "unknown-study", {"study_id": "TRC-1999-000"}),
            ("E-DIRTY-2", "unknown-consent", {"consent_id": "C9999999-1"}),
            ("E-DIRTY-3", "unknown-status", {"status": "SCREENED"}),
            ("E-DIRTY-4", "rejected-study", {"study_id": "TRC-2024-901"}),
        ]:
            row = {**enrolment, "enrollment_id": enrollment_id, **changes}
            self.mark("participants", enrollment_id, self.participants.write(row), rule)

    def run(self) -> dict[str, Any]:
        studies = self.write_studies()
        genotyped = set(self.rng.sample(range(1, self.subjects + 1), round(self.subjects * 0.2)))
        for i in range(1, self.subjects + 1):
            visit = self.day(FIRST_DAY, REFERENCE.date() - timedelta(days=30))
            signed = self.write_consents(i, visit)
            self.write_specimens(i, visit, i in genotyped)
            self.write_participants(i, signed, studies)
        self.write_dirty()
        files = {name: getattr(self, name) for name in ("specimens", "consents", "studies", "participants")}
        for writer in files.values():
            writer.close()
        return {"subjects": self.subjects, "rows": {name: w.line - 1 for name, w in files.items()},
                "genotyped_subjects": len(genotyped), "dirty": self.dirty}


def write_demo_export(out_dir: Path, subjects: int, seed: int) -> dict[str, Any]:
    """Write the four CSV files into `out_dir`; return row counts and the dirty rows."""
    if subjects < 1:
        raise ValueError("subjects must be at least 1")
    out_dir.mkdir(parents=True, exist_ok=True)
    return _Demo(Path(out_dir), subjects, seed).run()
