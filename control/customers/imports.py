"""Spreadsheet import into a pool (P-4): ``.xlsx`` (openpyxl, read-only streaming) or
``.csv`` (UTF-8, with or without BOM; GB18030 as exported by Chinese spreadsheet tools);
at most 5,000 rows; name and phone required, the phone normalised; with de-dup on, a phone
seen earlier in the file or already a customer keeps only the first. Every row gets a line
in the report: accepted (with the new customer), duplicate of row N / of a customer,
invalid with the reason. The report and a template download as spreadsheets."""

from __future__ import annotations

import csv
import io
import zipfile

from control.customers import rules
from scrm_fast.errors import InputError

MAX_ROWS = 5000
# header cells recognised per field (the template's, and common variants)
HEADERS = {"name": ("客户名称", "姓名", "名称", "name"), "phone": ("手机号", "电话", "手机", "phone", "mobile"),
           "gender": ("性别", "gender"), "company": ("企业", "公司", "company"), "wechat": ("微信号", "wechat"),
           "remark": ("备注", "remark"), "source": ("来源", "source")}


def read_rows(data: bytes, filename: str) -> list[list]:
    """The rows of an uploaded spreadsheet (header included), or InputError saying what is
    wrong with the file. More than MAX_ROWS data rows: InputError with the limit."""
    name = (filename or "").lower()
    if data[:4] == b"PK\x03\x04" or name.endswith(".xlsx"):
        return _xlsx_rows(data)
    if name.endswith((".xls", ".xlsm", ".ods", ".numbers")):
        raise InputError(f"{filename}: save it as .xlsx or .csv (this format is not read)")
    return _csv_rows(data)


def _xlsx_rows(data: bytes) -> list[list]:
    from openpyxl import load_workbook

    try:
        wb = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except (zipfile.BadZipFile, KeyError, ValueError, OSError, TypeError) as e:
        raise InputError(f"not a readable .xlsx workbook: {e}") from None
    except Exception as e:  # noqa: BLE001 - openpyxl raises many kinds on broken files
        raise InputError(f"not a readable .xlsx workbook: {type(e).__name__}") from None
    try:
        ws = wb.worksheets[0] if wb.worksheets else None
        if ws is None:
            raise InputError("the workbook has no sheet")
        rows = []
        for row in ws.iter_rows(values_only=True):
            if len(rows) > MAX_ROWS + 1:
                raise InputError(f"P-4: more than {MAX_ROWS} rows (import at most {MAX_ROWS} at a time)")
            rows.append(list(row))
        return rows
    finally:
        wb.close()


def _csv_rows(data: bytes) -> list[list]:
    if b"\0" in data[:4096]:
        raise InputError("not a spreadsheet: upload .xlsx or .csv")
    for enc in ("utf-8-sig", "gb18030"):
        try:
            text = data.decode(enc)
            break
        except UnicodeDecodeError:
            continue
    else:
        raise InputError("the CSV file is neither UTF-8 nor GB18030 text")
    try:
        rows = []
        for row in csv.reader(io.StringIO(text)):
            if len(rows) > MAX_ROWS + 1:
                raise InputError(f"P-4: more than {MAX_ROWS} rows (import at most {MAX_ROWS} at a time)")
            rows.append(row)
        return rows
    except csv.Error as e:
        raise InputError(f"not a CSV file: {e}") from None


def columns(header: list) -> dict[str, int]:
    """Which column holds which field, from the header row; name and phone must be there."""
    cols: dict[str, int] = {}
    for i, cell in enumerate(header):
        text = str(cell).strip().lower() if cell is not None else ""
        for field, names in HEADERS.items():
            if text in (n.lower() for n in names) and field not in cols:
                cols[field] = i
    missing = [f for f in ("name", "phone") if f not in cols]
    if missing:
        raise InputError("the first row must name the columns; missing: " + ", ".join(
            HEADERS[f][0] for f in missing) + " (download the template)")
    return cols


def plan(rows: list[list], settings: dict, dedup: bool = True) -> tuple[list[dict], list[dict]]:
    """The rows checked on their own (no store): ``(candidates, report)`` where each
    candidate has its row number and cleaned fields, and the report holds every row that is
    already decided (invalid, duplicate within the file)."""
    if not rows:
        raise InputError("the file is empty")
    cols = columns(rows[0])
    data = rows[1:]
    while data and all(c is None or str(c).strip() == "" for c in data[-1]):
        data.pop()
    if len(data) > MAX_ROWS:
        raise InputError(f"P-4: {len(data)} rows; at most {MAX_ROWS} at a time")
    first: dict[str, int] = {}
    cands, report = [], []
    for i, row in enumerate(data, start=2):
        def cell(f, row=row):
            j = cols.get(f)
            v = row[j] if j is not None and j < len(row) else None
            return v.strip() if isinstance(v, str) else v
        name, phone = cell("name"), cell("phone")
        if name is None or str(name).strip() == "":
            report.append({"row": i, "status": "invalid", "reason": "name is missing"})
            continue
        try:
            p = rules.normalise_phone(phone)
        except InputError as e:
            report.append({"row": i, "status": "invalid", "reason": str(e)})
            continue
        if dedup and p in first:
            report.append({"row": i, "status": "duplicate", "of_row": first[p], "reason": f"phone of row {first[p]}"})
            continue
        first.setdefault(p, i)
        doc = {"name": str(name).strip()[:100], "phone": p}
        for f in ("gender", "company", "wechat", "remark", "source"):
            v = cell(f)
            if v not in (None, ""):
                doc[f] = str(v)[:500]
        try:
            fields = rules.check_record({**settings, "fields": {k: {**v, "enabled": True, "required":
                                                                    k in rules.FIXED_FIELDS}
                                                                for k, v in settings["fields"].items()}},
                                        {k: v for k, v in doc.items() if k != "company"} |
                                        ({"company": doc["company"][:100]} if "company" in doc else {}))
        except InputError as e:
            report.append({"row": i, "status": "invalid", "reason": str(e)})
            continue
        cands.append({"row": i, "fields": fields})
    return cands, report


def report_xlsx(report: list[dict]) -> bytes:
    """The per-row report as a workbook (row, status, detail)."""
    from openpyxl import Workbook

    wb = Workbook(write_only=True)
    ws = wb.create_sheet("导入结果")
    ws.append(["行号", "结果", "说明", "客户"])
    names = {"accepted": "已导入", "duplicate": "重复", "invalid": "无效"}
    for r in sorted(report, key=lambda r: r["row"]):
        ws.append([r["row"], names.get(r["status"], r["status"]), r.get("reason", ""), r.get("customer", "")])
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


def template_xlsx() -> bytes:
    from openpyxl import Workbook

    wb = Workbook(write_only=True)
    ws = wb.create_sheet("客户导入模板")
    ws.append(["客户名称", "手机号", "性别", "企业", "微信号", "备注"])
    ws.append(["王先生", "13800138000", "男", "示例科技有限公司", "", "必填：客户名称、手机号；最多 5000 行"])
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()
