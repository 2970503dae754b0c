"""Console pages of the channels: accounts, QR codes (with images), 「联系我」 codes, file imports."""

from __future__ import annotations

import csv
import hashlib
import io
import secrets
import shutil
from pathlib import Path
from typing import Annotated
from urllib.parse import quote

import structlog
from fastapi import APIRouter, BackgroundTasks, File, Form, Request, UploadFile
from fastapi.responses import HTMLResponse, Response
from sqlalchemy import select

from siyu.auth.models import Role, User
from siyu.auth.principal import NAME_MASKED_ROLES
from siyu.channels import codes, service
from siyu.channels.api import callback_path
from siyu.channels.imports import mappings
from siyu.channels.imports.models import FileImport
from siyu.channels.imports.service import check_file, csv_cell, run_import
from siyu.channels.models import ChannelKind, OaType, QrPurpose
from siyu.clienteling.models import Store
from siyu.config import get_settings
from siyu.console.rendering import render
from siyu.console.routes import see_other
from siyu.console.security import (
    OperationsDep,
    OperationsWriterDep,
    PageError,
    ReadSession,
    WriterDep,
    WriteSession,
    flash,
)
from siyu.errors import SiyuError
from siyu.profiles.masking import mask_name, mask_text

router = APIRouter(include_in_schema=False)
log = structlog.get_logger()
MAX_UPLOAD_BYTES = 200 * 1024 * 1024


@router.get("/channels", response_class=HTMLResponse)
def channels(request: Request, session: ReadSession, viewer: OperationsDep) -> Response:
    """Accounts with their callback URLs, QR codes with scans and follows, contact codes, imports."""
    stores = dict(session.execute(select(Store.id, Store.code)).all())
    users = dict(session.execute(select(User.id, User.wecom_userid)).all())
    accounts = service.list_accounts(session)
    context = {
        "accounts": [(a, callback_path(a)) for a in accounts],
        "oa_accounts": [a for a in accounts if a.kind == ChannelKind.oa],
        "wecom_accounts": [a for a in accounts if a.kind == ChannelKind.wecom],
        "qr_codes": codes.list_qr_codes(session),
        "contact_ways": codes.list_contact_ways(session),
        "imports": session.execute(select(FileImport).order_by(FileImport.id.desc()).limit(20))
        .scalars()
        .all(),
        "stores": stores,
        "users": users,
        "purposes": list(QrPurpose),
        "sources": mappings.SOURCES,
        "kinds": mappings.KINDS,
    }
    return render(request, "channels.html", context)


@router.get("/channels/qr-codes/{qr_id:int}.{fmt}")
def qr_image(
    qr_id: int, fmt: str, session: ReadSession, viewer: OperationsDep, download: bool = False
) -> Response:
    """A QR code's image (SVG inline, PNG to download)."""
    qr = codes.get_qr_code_or_raise(session, qr_id)
    if not qr.url or fmt not in ("svg", "png"):
        raise PageError(404, "No such image.")
    headers = {"Content-Disposition": f'attachment; filename="qr-{qr.scene}.{fmt}"'} if download else None
    media = "image/svg+xml" if fmt == "svg" else "image/png"
    return Response(codes.qr_image(qr.url, fmt), media_type=media, headers=headers)


@router.post("/channels/accounts")
def create_account(
    request: Request,
    session: WriteSession,
    viewer: WriterDep,
    kind: Annotated[ChannelKind, Form()],
    name: Annotated[str, Form()],
    app_id: Annotated[str, Form()],
    secret: Annotated[str, Form()],
    token: Annotated[str, Form()] = "",
    aes_key: Annotated[str, Form()] = "",
    oa_type: Annotated[str, Form()] = "",
    welcome_text: Annotated[str, Form()] = "",
) -> Response:
    """Configure an account (admin only); its secrets are sealed and never shown again."""
    if viewer.role != Role.admin:
        raise PageError(403, "Channel accounts hold the brand's WeChat secrets: admin only.")
    account = service.create_account(
        session,
        kind=kind,
        name=name.strip(),
        app_id=app_id.strip(),
        secret=secret.strip(),
        token=token.strip() or None,
        aes_key_text=aes_key.strip() or None,
        oa_type=OaType(oa_type) if kind == ChannelKind.oa and oa_type else None,
        welcome_text=welcome_text.strip(),
    )
    path = callback_path(account)
    flash(request, f"{account.name} configured." + (f" Callback URL path: {path}" if path else ""))
    return see_other("/channels")


@router.post("/channels/qr-codes")
def create_qr_code(
    request: Request,
    session: WriteSession,
    viewer: OperationsWriterDep,
    account: Annotated[str, Form()],
    name: Annotated[str, Form()],
    purpose: Annotated[QrPurpose, Form()],
    target: Annotated[str, Form()] = "",
) -> Response:
    """Create a QR code on WeChat; `target` is the store code, associate, campaign or placement."""
    oa = service.get_account_or_raise(session, ChannelKind.oa, account)
    value = target.strip() or None
    qr = codes.create_qr_code(
        session,
        oa,
        name=name,
        purpose=purpose,
        store=value if purpose == QrPurpose.store else None,
        associate=value if purpose == QrPurpose.associate else None,
        campaign=value if purpose == QrPurpose.campaign else None,
        placement=value if purpose == QrPurpose.placement else None,
    )
    flash(request, f"QR code “{qr.name}” created (scene {qr.scene}).")
    return see_other("/channels#qr-codes")


@router.post("/channels/contact-ways")
def create_contact_way(
    request: Request,
    session: WriteSession,
    viewer: OperationsWriterDep,
    account: Annotated[str, Form()],
    name: Annotated[str, Form()],
    associate: Annotated[str, Form()],
    campaign: Annotated[str, Form()] = "",
) -> Response:
    """Create a 「联系我」 code on WeCom for one associate."""
    corp = service.get_account_or_raise(session, ChannelKind.wecom, account)
    way = codes.create_contact_way(session, corp, name=name, associate=associate, campaign=campaign or None)
    flash(request, f"Contact code “{way.name}” created (state {way.state}).")
    return see_other("/channels#contact-ways")


def _run_upload(path: Path, filename: str, kind: str, source: str, actor: str) -> None:
    # Runs after the answer; file_imports records its progress, and a failure with its message.
    try:
        run_import(
            path,
            kind=kind,
            source=source,
            mapping=mappings.load(kind, source),
            actor=actor,
            filename=filename,
        )
    except SiyuError as exc:
        log.warning("import.failed", file=path.name, error=exc.message)


@router.post("/channels/imports")
def upload(
    request: Request,
    background: BackgroundTasks,
    session: WriteSession,
    viewer: OperationsWriterDep,
    kind: Annotated[str, Form()],
    source: Annotated[str, Form()],
    file: Annotated[UploadFile, File()],
) -> Response:
    """Save the upload under var/imports and import it in the background; the page shows its progress."""
    mapping = mappings.load(kind, source)  # refuses an unknown kind or source before saving anything
    filename = Path(file.filename or "upload.csv").name
    if Path(filename).suffix.lower() not in (".csv", ".txt", ".tsv", ".xlsx", ".xlsm"):
        raise PageError(400, f"{filename}: upload a .csv or .xlsx file")
    upload_dir = Path(get_settings().import_dir)
    upload_dir.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    temp = upload_dir / f".upload-{secrets.token_hex(8)}"
    size = 0
    with temp.open("wb") as out:
        while block := file.file.read(1 << 20):
            size += len(block)
            if size > MAX_UPLOAD_BYTES:
                out.close()
                temp.unlink(missing_ok=True)
                raise PageError(413, "The file is over 200 MB: import it with `siyu import` instead.")
            digest.update(block)
            out.write(block)
    target = upload_dir / f"{digest.hexdigest()[:16]}-{filename}"
    shutil.move(temp, target)
    try:
        check_file(target, kind=kind, source=source, mapping=mapping, filename=filename)
    except SiyuError as exc:
        target.unlink(missing_ok=True)
        raise PageError(400, exc.message) from exc
    background.add_task(_run_upload, target, filename, kind, source, viewer.display_name)
    flash(request, f"{filename} is being imported: refresh to follow it.")
    return see_other("/channels#imports")


@router.get("/channels/imports/{import_id}/errors.csv")
def import_errors(import_id: int, session: ReadSession, viewer: OperationsDep) -> Response:
    """The refused rows of an import (row, column, value, reason), phones and emails masked."""
    record = session.get(FileImport, import_id)
    report = Path(record.error_report) if record is not None and record.error_report else None
    if record is None or report is None or not report.is_file():
        raise PageError(404, "This import has no report of refused rows (or its file was removed).")
    mask_names = viewer.role in NAME_MASKED_ROLES
    out = io.StringIO()
    writer = csv.writer(out)
    with report.open(encoding="utf-8-sig", newline="") as f:
        for i, row in enumerate(csv.reader(f)):
            if i > 0 and len(row) == 4:
                # The value that was refused may be a phone, an email or a name: masked as the 360 masks.
                column, value = row[1], mask_text(row[2], reveal=False, mask_names=False)
                if mask_names and "name" in column.lower() and value:
                    value = mask_name(value)
                row = [
                    row[0],
                    column,
                    csv_cell(value),
                    csv_cell(mask_text(row[3], reveal=False, mask_names=False)),
                ]
            writer.writerow(row)
    name = Path(record.filename).stem + ".errors.csv"
    return Response(
        "\ufeff" + out.getvalue(),  # a BOM so Excel reads the Chinese as UTF-8
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f"attachment; filename*=UTF-8''{quote(name)}"},
    )
