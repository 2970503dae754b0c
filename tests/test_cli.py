"""The command line, run as a user runs it: a subprocess on a fresh database."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

from sqlalchemy.orm import Session

from siyu.auth import service as auth_service
from siyu.db import create_db_engine


def run(*args: str, db_url: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
    env = {"SIYU_DATABASE_URL": db_url, "SIYU_SECRET_KEY": "cli-test", "PATH": "/usr/bin:/bin"}
    return subprocess.run(
        [sys.executable, "-m", "siyu.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_db_upgrade_apikeys_and_users(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    up = run("db", "upgrade", db_url=url)
    assert up.returncode == 0, up.stderr
    created = run("apikeys", "create", "--role", "source", "--name", "Mini Program", db_url=url)
    assert created.returncode == 0, created.stderr
    secret = created.stdout.strip().splitlines()[-1]
    assert secret.startswith("sy_")
    engine = create_db_engine(url)
    with Session(engine) as session:
        key = auth_service.get_api_key_by_secret(session, secret)
        assert key is not None and key.role == "source" and key.name == "Mini Program"
    engine.dispose()
    bad = run("apikeys", "create", "--role", "emperor", "--name", "x", db_url=url)
    assert bad.returncode != 0 and "emperor" in bad.stderr
    user = run("users", "create", "--username", "ops", "--role", "hq", "--generate", db_url=url)
    assert user.returncode == 0 and len(user.stdout.strip()) >= 12
    dup = run("users", "create", "--username", "ops", "--role", "hq", "--password", "12345678", db_url=url)
    assert dup.returncode == 1 and "taken" in dup.stderr


def test_worker_once(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'w.db'}"
    assert run("db", "upgrade", db_url=url).returncode == 0
    out = run("worker", "--once", db_url=url)
    assert out.returncode == 0 and "ran 0 job(s)" in out.stderr


def test_channels_add_and_list(tmp_path: Path) -> None:
    from sqlalchemy import select

    from siyu import vault
    from siyu.channels.models import ChannelAccount
    from siyu.config import Settings

    url = f"sqlite:///{tmp_path / 'ch.db'}"
    assert run("db", "upgrade", db_url=url).returncode == 0
    aes = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
    oa = run(
        "channels",
        "add",
        "oa",
        "--name",
        "tos-oa",
        "--app-id",
        "wx5823bf96d3bd56c7",
        "--type",
        "service",
        "--token",
        "AAAAA",
        "--aes-key",
        aes,
        "--secret",
        "app-s3cret",
        db_url=url,
    )
    assert oa.returncode == 0, oa.stderr
    assert "/wechat/oa/tos-oa/callback" in oa.stderr
    bad = run(
        "channels",
        "add",
        "wecom",
        "--name",
        "tos-wecom",
        "--corp-id",
        "ww1a2b3c4d5e6f7a8b",
        "--token",
        "abc",
        "--aes-key",
        "short",
        "--secret",
        "x",
        db_url=url,
    )
    assert bad.returncode == 1 and "aes_key: EncodingAESKey must be 43 characters" in bad.stderr
    listed = run("channels", "list", db_url=url)
    assert listed.returncode == 0 and "tos-oa" in listed.stdout and "app-s3cret" not in listed.stdout
    # In 80 columns the path is wrapped, not cut with an ellipsis: it is pasted into WeChat's settings.
    assert "…" not in listed.stdout
    cells = "".join(line.split("│")[-2].strip() for line in listed.stdout.splitlines() if line.count("│") > 2)
    assert "/wechat/oa/tos-oa/callback" in cells
    engine = create_db_engine(url)
    with Session(engine) as session:
        account = session.execute(select(ChannelAccount)).scalar_one()
        assert "app-s3cret" not in account.secret_sealed
        assert vault.unseal(account.secret_sealed, Settings(secret_key="cli-test")) == "app-s3cret"
    engine.dispose()


def test_import_orders(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'imp.db'}"
    assert run("db", "upgrade", db_url=url).returncode == 0
    orders = tmp_path / "pos.csv"
    orders.write_text(
        "order_id,member_card,amount,time,status\n"
        "P1,C1,100,2026-11-01 10:00:00,paid\n"
        "P2,C2,not-money,2026-11-01 10:00:00,paid\n",
        encoding="utf-8",
    )
    first = run("import", "orders", str(orders), "--source", "pos", db_url=url)
    assert first.returncode == 0, first.stderr
    said = " ".join(first.stderr.split())  # Rich wraps long lines
    assert "2 rows read, 1 imported, 0 already there, 0 skipped (cancelled or unpaid), 1 refused" in said
    assert "row 3, column amount (C): 'not-money' is not an amount" in said
    assert (tmp_path / "pos.csv.errors.csv").exists()
    again = run("import", "orders", str(orders), "--source", "pos", db_url=url)
    assert "1 already there" in " ".join(again.stderr.split())
    wrong = run("import", "orders", str(orders), "--source", "tmall", db_url=url)
    assert wrong.returncode == 1 and "has no column '订单编号'" in " ".join(wrong.stderr.split())


def test_busy_port_is_refused_before_any_work(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'busy.db'}"
    holder = socket.socket()
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    port = str(holder.getsockname()[1])
    served = f"sqlite:///{tmp_path / 'served.db'}"
    assert run("db", "upgrade", db_url=served).returncode == 0  # serve checks the database first
    try:
        for args, db_url in (
            (("serve", "--port", port), served),
            (("demo", "--customers", "10", "--port", port), url),
        ):
            done = run(*args, db_url=db_url)
            said = " ".join(done.stderr.split())
            assert done.returncode == 1, done.stderr
            assert f"cannot listen on 127.0.0.1:{port}" in said and "--port" in said
            assert "Traceback" not in done.stderr
        # The demo stopped before generating anything: not even the database file was created.
        assert not (tmp_path / "busy.db").exists()
    finally:
        holder.close()


def test_org_set_up_and_scoped_users(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'org.db'}"
    assert run("db", "upgrade", db_url=url).returncode == 0
    assert run("org", "add-region", "--code", "EAST", "--name", "East China", db_url=url).returncode == 0
    added = run(
        "org", "add-store", "--code", "SH01", "--name", "Nanjing Road", "--region", "EAST", db_url=url
    )
    assert added.returncode == 0, added.stderr
    stores = tmp_path / "stores.csv"
    stores.write_text(
        "code,name,city,region\nBJ01,Sanlitun,Beijing,NORTH\nBJ02,,Beijing,NORTH\n", encoding="utf-8"
    )
    bad = run("org", "import-stores", str(stores), db_url=url)
    assert bad.returncode == 1 and "row 3, column name (B)" in " ".join(bad.stderr.split())
    stores.write_text("code,name,city,region\nBJ01,Sanlitun,Beijing,NORTH\n", encoding="utf-8")
    good = run("org", "import-stores", str(stores), db_url=url)
    assert "1 created, 0 updated, 0 unchanged; 1 region(s) created" in " ".join(good.stderr.split())
    listed = run("org", "list", db_url=url)
    assert all(code in listed.stdout for code in ("EAST", "SH01", "NORTH", "BJ01"))

    user = ("users", "create", "--username", "li.si", "--role", "sales_associate", "--password", "12345678")
    missing = run(*user, db_url=url)
    assert missing.returncode == 1 and "works in one store" in missing.stderr
    made = run(*user, "--store", "SH01", "--wecom-userid", "lisi", db_url=url)
    assert made.returncode == 0, made.stderr
    key = run(
        "apikeys", "create", "--role", "store_manager", "--name", "SH01 tablet", "--store", "SH01", db_url=url
    )
    assert key.returncode == 0, key.stderr
    mine = run("apikeys", "create", "--name", "li's app", "--user", "li.si", db_url=url)
    assert mine.returncode == 0, mine.stderr
    wrong = run("apikeys", "create", "--name", "x", "--user", "li.si", "--role", "admin", db_url=url)
    assert wrong.returncode == 1 and "acts as this sales_associate" in wrong.stderr
    assert "--role: required" in run("apikeys", "create", "--name", "x", db_url=url).stderr
    engine = create_db_engine(url)
    with Session(engine) as session:
        from sqlalchemy import select

        from siyu.auth.models import ApiKey, User
        from siyu.clienteling.models import Store

        store = session.execute(select(Store).where(Store.code == "SH01")).scalar_one()
        li = session.execute(select(User).where(User.username == "li.si")).scalar_one()
        assert (li.store_id, li.region_id, li.wecom_userid) == (store.id, store.region_id, "lisi")
        tablet = session.execute(select(ApiKey).where(ApiKey.name == "SH01 tablet")).scalar_one()
        assert tablet.store_id == store.id
        own = session.execute(select(ApiKey).where(ApiKey.name == "li's app")).scalar_one()
        assert (own.user_id, own.role, own.store_id) == (li.id, "sales_associate", store.id)
    engine.dispose()


def test_staff_and_keys_are_listed_disabled_reset_and_revoked(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'staff.db'}"
    assert run("db", "upgrade", db_url=url).returncode == 0
    run("org", "add-region", "--code", "EAST", "--name", "East China", db_url=url)
    run("org", "add-store", "--code", "SH01", "--name", "Nanjing Road", "--region", "EAST", db_url=url)
    sa = ("users", "create", "--role", "sales_associate", "--store", "SH01", "--password", "12345678")
    assert run(*sa, "--username", "li.si", "--wecom-userid", "lisi", db_url=url).returncode == 0
    taken = run(*sa, "--username", "wang.wu", "--wecom-userid", "lisi", db_url=url)
    assert taken.returncode == 1 and "wecom_userid 'lisi' already belongs to user 'li.si'" in taken.stderr
    assert "Traceback" not in taken.stderr
    key = run("apikeys", "create", "--name", "li's app", "--user", "li.si", db_url=url)
    write = run("apikeys", "create", "--name", "POS", "--role", "source", db_url=url)
    write_id = (
        write.stderr.split("key #")[1].split()[0]
        if "key #" in write.stderr
        else write.stdout.split("key #")[1].split()[0]
    )

    listed = " ".join(run("users", "list", db_url=url).stdout.split())
    assert "li.si" in listed and "store SH01" in listed and "lisi" in listed
    assert run("users", "disable", "li.si", db_url=url).returncode == 0
    assert "disabled" in " ".join(run("users", "list", db_url=url).stdout.split())
    keys = " ".join(run("apikeys", "list", db_url=url).stdout.split())
    assert "user li.si" in keys and "POS" in keys
    both = run("users", "reset-password", "li.si", "--generate", "--password", "12345678", db_url=url)
    assert both.returncode == 1 and "not both" in both.stderr
    reset = run("users", "reset-password", "li.si", "--generate", db_url=url)
    assert reset.returncode == 0 and len(reset.stdout.strip().splitlines()[-1]) >= 12
    assert run("apikeys", "revoke", write_id, db_url=url).returncode == 0
    missing = run("apikeys", "revoke", "999", db_url=url)
    assert missing.returncode == 1 and "no API key #999" in missing.stderr
    assert "no console user 'nobody'" in run("users", "disable", "nobody", db_url=url).stderr

    engine = create_db_engine(url)
    with Session(engine) as session:
        secret = key.stdout.strip().splitlines()[-1]
        pos = write.stdout.strip().splitlines()[-1]
        # Disabling li.si revoked the key acting as her; the POS key was revoked by id.
        assert auth_service.get_api_key_by_secret(session, secret) is None
        assert auth_service.get_api_key_by_secret(session, pos) is None
        assert auth_service.authenticate(session, "li.si", "12345678") is None
    engine.dispose()


def test_a_person_s_data_is_exported_and_erased_from_the_command_line(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'pipl.db'}"
    assert run("db", "upgrade", db_url=url).returncode == 0
    engine = create_db_engine(url)
    with Session(engine) as session:
        from siyu.config import Settings
        from siyu.ingest.service import ingest_batch

        event = {
            "type": "identify",
            "userId": "M1",
            "messageId": "m1",
            "traits": {"name": "林南希", "phone": "13812345678"},
        }
        pid = ingest_batch(session, [event], source_key_id=None, settings=Settings()).profile_ids[0]
        session.commit()
    engine.dispose()
    out = tmp_path / "nancy.json"
    exported = run("profiles", "export", str(pid), "--out", str(out), db_url=url)
    assert exported.returncode == 0, exported.stderr
    assert "+8613812345678" in out.read_text(encoding="utf-8")
    unsure = run("profiles", "erase", str(pid), db_url=url)
    assert unsure.returncode == 1 and "--yes" in unsure.stderr
    erased = run("profiles", "erase", str(pid), "--yes", db_url=url)
    assert erased.returncode == 0 and "2 identifiers" in erased.stderr, erased.stderr
    again = run("profiles", "erase", str(pid), "--yes", db_url=url)
    assert again.returncode == 1 and "was erased on" in again.stderr


def test_a_command_on_a_database_that_is_not_set_up_says_so(tmp_path: Path) -> None:
    """Run outside the project directory: no empty ./var/siyu.db made, no "no such table" traceback."""
    path = tmp_path / "elsewhere" / "siyu.db"
    missing = run("users", "list", db_url=f"sqlite:///{path}")
    assert (
        missing.returncode == 1 and "no database at" in missing.stderr and "siyu db upgrade" in missing.stderr
    )
    assert not path.exists() and "Traceback" not in missing.stderr
    path.parent.mkdir()
    path.touch()  # a file, but never migrated
    empty = run("import", "orders", str(tmp_path / "x.csv"), "--source", "pos", db_url=f"sqlite:///{path}")
    assert empty.returncode == 1 and "never migrated" in empty.stderr
